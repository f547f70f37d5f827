#!/usr/bin/env bash
# Builds the .deb a user installs: an optimised release build (the release
# profile of Cargo.toml, the UI in release WASM), offline, with the pinned
# Tauri CLI. Prints the package's path, size and build time, then installs it
# with dpkg and measures the time to first window: the installed program is
# started (RUNS times, 3 by default, each with a fresh config folder) on a
# private X display and D-Bus session, and timed from its exec to
#   - its window being mapped: `xdotool search --onlyvisible --name` finds the
#     window titled "StoryCore Engine" (viewable on the X server), and
#   - its UI being up: the app's log says "app_info answered", the first
#     command the WASM UI sends once the webview has loaded the page and
#     started it.
# Polls every 20 ms. Each run is quit with SIGTERM (the app's orderly exit)
# and waited for before the next.
#
# Usage: scripts/build-release-deb.sh            build, install, time
#        RUNS=5 scripts/build-release-deb.sh     more launches
#        scripts/build-release-deb.sh --no-install   build and print only
#
# The package installs /usr/bin/storycore-engine, as the debug one that
# scripts/test-deb.sh builds and installs does: each script installs what it
# tests, so the last one run is the one installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
RUNS="${RUNS:-3}"
install=1
[ "${1:-}" = "--no-install" ] && install=""

say() { printf '\033[1;34m[release-deb]\033[0m %s\n' "$*" >&2; }

scripts/setup.sh
# tauri.conf.json has no beforeBuildCommand: the UI is built here (release
# WASM, scripts/build-ui.sh) into ui/dist, which the binary embeds.
t0=$(date +%s)
scripts/build-ui.sh
node_modules/.bin/tauri build --bundles deb --ci >&2
build_s=$(( $(date +%s) - t0 ))
deb=$(ls -t target/release/bundle/deb/*.deb | head -n1)
deb_bytes=$(stat -c %s "$deb")
bin_bytes=$(stat -c %s target/release/storycore-engine)
say "built in ${build_s} s: $deb"
echo "deb: $deb"
awk -v d="$deb_bytes" -v b="$bin_bytes" -v s="$build_s" \
  'BEGIN { printf "deb_size: %d bytes (%.1f MiB); binary %.1f MiB; built in %d s\n", d, d / 1048576, b / 1048576, s }'
[ -n "$install" ] || exit 0

$SUDO dpkg -i "$deb" >/dev/null
prog=/usr/bin/storycore-engine
[ -x "$prog" ] || { echo "FAIL: $prog was not installed by $deb" >&2; exit 1; }
# The one installed is the one in this package (the debug .deb installs the
# same path; the bundler marks the binary with its package type, so compare
# with the package's copy, not target/release's).
dpkg-deb --fsys-tarfile "$deb" | tar -xOf - usr/bin/storycore-engine | cmp -s - "$prog" \
  || { echo "FAIL: $prog is not the program of $deb" >&2; exit 1; }

work=$(mktemp -d)
pids=()
app=""
cleanup() {
  [ -n "$app" ] && kill -KILL -- "-$app" 2>/dev/null || true
  for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=scripts/private-session.sh
. "$ROOT/scripts/private-session.sh"
start_private_session || exit 1

now_ms() { date +%s%3N; }
# Running, and not a zombie waiting to be reaped.
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${st#Z}" = "$st" ]; }
window_ms=(); ui_ms=()
for run in $(seq "$RUNS"); do
  log="$work/app-$run.log"
  : >"$log"
  t_start=$(now_ms)
  STORYCORE_CONFIG_DIR="$work/config-$run" STORYCORE_DATA_DIR="$work/data-$run" \
    STORYCORE_LOG="info,storycore_engine=debug" setsid "$prog" >"$log" 2>&1 &
  app=$!
  t_window=""; t_ui=""
  for _ in $(seq 1500); do # 30 s
    if [ -z "$t_window" ] && xdotool search --onlyvisible --name '^StoryCore Engine$' >/dev/null 2>&1; then
      t_window=$(now_ms)
    fi
    if [ -z "$t_ui" ] && grep -q "app_info answered" "$log"; then t_ui=$(now_ms); fi
    [ -n "$t_window" ] && [ -n "$t_ui" ] && break
    alive "$app" || break
    sleep 0.02
  done
  if [ -z "$t_window" ] || [ -z "$t_ui" ]; then
    echo "FAIL: run $run: the installed program did not map its window and start its UI within 30 s; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  window_ms+=($(( t_window - t_start ))); ui_ms+=($(( t_ui - t_start )))
  say "run $run: window mapped after ${window_ms[-1]} ms, UI up after ${ui_ms[-1]} ms"
  # Quit as a user would (SIGTERM is the app's Quit) and wait until it is gone,
  # so the next launch is not handed to this one by the single-instance lock.
  kill -TERM "$app" 2>/dev/null || true
  for _ in $(seq 200); do alive "$app" || break; sleep 0.05; done
  kill -KILL -- "-$app" 2>/dev/null || true
  wait "$app" 2>/dev/null || true
  app=""
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "time_to_first_window_ms: ${window_ms[*]} (median $(median "${window_ms[@]}"))"
echo "time_to_ui_ms: ${ui_ms[*]} (median $(median "${ui_ms[@]}"))"
say "installed $(basename "$deb"): $prog is the release build"
