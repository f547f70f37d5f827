#!/usr/bin/env bash
# Installs what building, running and testing StoryCore Engine needs on Debian/Ubuntu,
# skipping everything that is already there. Only package registries are used:
# Debian's apt, crates.io (cargo install) and npm. Safe to run again and again.
set -euo pipefail

WASM_BINDGEN_VERSION=0.2.130   # must equal the wasm-bindgen crate pinned in Cargo.toml
TAURI_DRIVER_VERSION=2.1.0
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(
  # build
  libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libssl-dev libxdo-dev
  build-essential file patchelf pkg-config curl
  # tests: headless display, WebDriver for WebKitGTK, D-Bus session, screenshots
  webkit2gtk-driver xvfb xauth dbus dbus-x11 imagemagick python3-dbus python3-gi x11-utils
  # tests: driving native dialogs (the folder and file pickers)
  xdotool
  # tests: a real Secret Service for API keys (GNOME Keyring; secret-tool reads
  # what the app stored), dbus-send, and a self-signed certificate for HTTPS
  gnome-keyring libsecret-tools dbus-bin openssl
  # tests: a third-party ComfyUI client from PyPI runs against the gateway
  python3-venv
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "system packages: present"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not installed: install Rust with rustup (https://rustup.rs) and run this again" >&2
  exit 1
fi
export PATH="$HOME/.cargo/bin:$PATH"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
else
  say "wasm32 target: present"
fi
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done

if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 2-3 minutes)"
  # no --locked: the CLI's own lockfile names a crate version crates.io lacks
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
else
  say "wasm-bindgen-cli $WASM_BINDGEN_VERSION: present"
fi

# tauri-driver has no --version: ask cargo what it installed.
if ! cargo install --list 2>/dev/null | grep -q "^tauri-driver v$TAURI_DRIVER_VERSION:" \
   || ! command -v tauri-driver >/dev/null 2>&1; then
  say "installing tauri-driver $TAURI_DRIVER_VERSION (about 1 minute)"
  cargo install tauri-driver --version "$TAURI_DRIVER_VERSION" --locked --force
else
  say "tauri-driver $TAURI_DRIVER_VERSION: present"
fi

if ! command -v npm >/dev/null 2>&1; then
  say "installing Node.js and npm (for the Tauri CLI)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
TAURI_CLI_VERSION="$(sed -n 's/.*"@tauri-apps\/cli": "\([0-9.]*\)".*/\1/p' "$ROOT/package.json")"
if [ "$("$ROOT/node_modules/.bin/tauri" --version 2>/dev/null | awk '{print $2}')" != "$TAURI_CLI_VERSION" ]; then
  say "installing the Tauri CLI $TAURI_CLI_VERSION from npm"
  (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
else
  say "Tauri CLI $TAURI_CLI_VERSION: present"
fi
# A real third-party ComfyUI client (PyPI), in its own virtualenv under
# target/: the gateway's tests run it unchanged (tests/clients/).
PY_CLIENT="$ROOT/target/py-comfy-client"
PY_CLIENT_VERSION=1.6.0
if ! "$PY_CLIENT/bin/python" -c "import comfy_api_simplified" 2>/dev/null \
   || ! "$PY_CLIENT/bin/pip" show comfy-api-simplified 2>/dev/null | grep -qx "Version: $PY_CLIENT_VERSION"; then
  say "installing comfy-api-simplified $PY_CLIENT_VERSION from PyPI (a ComfyUI client the gateway's tests use)"
  rm -rf "$PY_CLIENT"
  python3 -m venv "$PY_CLIENT"
  "$PY_CLIENT/bin/pip" install --quiet --disable-pip-version-check "comfy-api-simplified==$PY_CLIENT_VERSION"
else
  say "comfy-api-simplified $PY_CLIENT_VERSION: present"
fi
say "tools ready"
