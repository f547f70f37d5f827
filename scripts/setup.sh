#!/usr/bin/env bash
# Installs what building, running and testing StoryCore Engine needs on Debian/Ubuntu,
# skipping everything that is already there. Only package registries are used:
# Debian's apt, crates.io (cargo install) and npm. Safe to run again and again.
# Usage: scripts/setup.sh [--tests]   (--tests: also cargo-nextest, which only the tests need)
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

# What is missing is installed side by side: the system packages (network and
# dpkg) while the two Rust tools compile (CPU), and the crates the project
# needs are downloaded meanwhile; each job's output goes to a log that is
# printed if it fails.
LOGS="$(mktemp -d)"
jobs_pids=(); jobs_names=(); apt_pid=""
# On a failure, the compiles still running are stopped; apt is let finish
# (stopping dpkg halfway would leave packages half-configured).
on_exit() {
  [ ${#jobs_pids[@]} -eq 0 ] || kill "${jobs_pids[@]}" 2>/dev/null || true
  [ -z "$apt_pid" ] || wait "$apt_pid" 2>/dev/null || true
  rm -rf "$LOGS"
}
trap on_exit EXIT
background() { # background NAME COMMAND...: runs COMMAND, its output to a log
  local name="$1"; shift
  ( "$@" ) >"$LOGS/$name.log" 2>&1 &
  jobs_pids+=($!); jobs_names+=("$name")
}
failed() { # failed NAME: says so, with the job's output
  { echo "setup: $1 failed; its output:"; cat "$LOGS/$1.log"; } >&2
}
wait_all() { # waits for every background job; prints the log of each that failed
  local i failed=0
  for i in "${!jobs_pids[@]}"; do
    wait "${jobs_pids[$i]}" || { failed "${jobs_names[$i]}"; failed=1; }
  done
  jobs_pids=(); jobs_names=()
  [ "$failed" -eq 0 ] || exit 1
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm (for the Tauri CLI), unless the machine has them already.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
apt_install() {
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
if [ ${#missing[@]} -gt 0 ]; then
  say "installing system packages (in the background): ${missing[*]}"
  apt_install >"$LOGS/apt.log" 2>&1 &
  apt_pid=$!
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
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (in the background, about 1 minute)"
  # no --locked: the CLI's own lockfile names a crate version crates.io lacks.
  # --debug: it compiles in half the time of a release build; it then takes
  # 2 s instead of 0.5 s on the UI (the same output), and only when the UI
  # changed (scripts/build-ui.sh).
  background wasm-bindgen-cli cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force --debug
else
  say "wasm-bindgen-cli $WASM_BINDGEN_VERSION: present"
fi

# tauri-driver has no --version: ask cargo what it installed.
if ! cargo install --list 2>/dev/null | grep -q "^tauri-driver v$TAURI_DRIVER_VERSION:" \
   || ! command -v tauri-driver >/dev/null 2>&1; then
  say "installing tauri-driver $TAURI_DRIVER_VERSION (in the background, about 20 s)"
  # --debug: a proxy between the tests and WebKitWebDriver, never the bottleneck.
  background tauri-driver cargo install tauri-driver --version "$TAURI_DRIVER_VERSION" --locked --force --debug
else
  say "tauri-driver $TAURI_DRIVER_VERSION: present"
fi

# cargo-nextest runs the tests (each in a process of its own, with timeouts);
# only the test command asks for it (--tests): running the app needs none.
if [ "${1:-}" = "--tests" ]; then
  if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest (in the background, a few minutes)"
    background cargo-nextest cargo install cargo-nextest --locked
  else
    say "cargo-nextest: present"
  fi
fi

# The project's own crates, downloaded while the tools compile.
if [ ${#jobs_pids[@]} -gt 0 ] || [ -n "$apt_pid" ]; then
  background crates cargo fetch --locked --manifest-path "$ROOT/Cargo.toml"
fi

if [ -n "$apt_pid" ]; then
  if ! wait "$apt_pid"; then
    failed apt; apt_pid=""; exit 1
  fi
  apt_pid=""
  say "system packages installed"
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
if [ ${#jobs_pids[@]} -gt 0 ]; then
  say "waiting for: ${jobs_names[*]}"
  wait_all
fi
say "tools ready"
