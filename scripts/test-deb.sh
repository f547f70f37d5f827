#!/usr/bin/env bash
# Builds the .deb offline with the pinned Tauri CLI, installs it with dpkg, starts
# the installed program on a private X display and D-Bus session, and checks that
# it showed its window and that the UI inside talked to the backend. Leaves a
# screenshot in target/e2e-screenshots/deb-installed.png.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

# The package holds the very program the tests run: target/debug/storycore-engine
# as the test build made it (scripts/test.sh builds before this). `tauri build
# --debug` would compile it again with a plain `cargo build`, whose dependencies
# lack the features the tests' dev-dependencies add: 2 min more on a cold machine.
# Run alone, this script builds the program first.
if [ -z "${STORYCORE_TESTS_PREBUILT:-}" ]; then
  cargo build --quiet --bin storycore-engine
fi
node_modules/.bin/tauri bundle --debug --bundles deb --ci >&2
deb=$(ls -t target/debug/bundle/deb/*.deb | head -n1)
echo "built $deb ($(du -h "$deb" | cut -f1))" >&2
$SUDO dpkg -i "$deb" >/dev/null
prog=/usr/bin/storycore-engine
[ -x "$prog" ] || { echo "FAIL: $prog was not installed by $deb" >&2; exit 1; }
unit=/usr/lib/systemd/user/storycore-engine.service
grep -q "^ExecStart=$prog serve" "$unit" 2>/dev/null \
  || { echo "FAIL: $deb did not install the headless mode's user unit $unit" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# A private X display and D-Bus session (scripts/private-session.sh).
# shellcheck source=scripts/private-session.sh
. "$ROOT/scripts/private-session.sh"
start_private_session || exit 1

STORYCORE_CONFIG_DIR="$work/config" STORYCORE_DATA_DIR="$work/data" STORYCORE_LOG=debug setsid "$prog" >"$work/app.log" 2>&1 &
pids+=($!)

# The window exists, and the WASM UI inside it asked the backend for app_info.
ok=""
for _ in $(seq 300); do
  if xwininfo -root -tree 2>/dev/null | grep -q '"StoryCore Engine"' \
     && grep -q "app_info answered" "$work/app.log"; then ok=1; break; fi
  sleep 0.1
done
sleep 1 # let the first heartbeat paint before the picture
mkdir -p target/e2e-screenshots
shot=target/e2e-screenshots/deb-installed.png
import -display "$DISPLAY" -window root "$shot"
if [ -z "$ok" ]; then
  echo "FAIL: the installed program did not show its window and UI within 30 s (DISPLAY=$DISPLAY); its log:" >&2
  cat "$work/app.log" >&2
  echo "Xvfb's log:" >&2
  cat "$work/xvfb.log" >&2
  echo "the display as a client sees it (xdpyinfo):" >&2
  xdpyinfo 2>&1 | head -n 15 >&2 || true
  exit 1
fi
# Debian's ImageMagick, not whatever else is called convert earlier on PATH.
CONVERT=/usr/bin/convert; [ -x "$CONVERT" ] || CONVERT=convert
colours=$("$CONVERT" "$shot" -format %k info:)
if [ "$colours" -lt 16 ]; then
  echo "FAIL: the screenshot $shot is nearly blank ($colours colours)" >&2
  exit 1
fi
echo "deb test: $(basename "$deb") installed, $prog started, window and UI up; screenshot $shot ($colours colours)" >&2
