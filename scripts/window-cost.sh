#!/usr/bin/env bash
# What the window costs with 50 instances each updated once a second: CPU and
# memory of the backend and of its WebKit processes (read from /proc over
# 60 s), and the UI's update latency from the backend's event to the rendered
# frame (p50/p95, printed, not asserted). See tests/window_cost.rs.
#
# Builds the UI and a release app (the binary embeds the UI), then runs the
# measurement under a private Xvfb and D-Bus session with 50 ComfyUI
# stand-ins, all inside scripts/no-leftovers.py: whatever it started is
# stopped at the end, on failure and on Ctrl+C too.
#
# Usage: scripts/window-cost.sh
#   WINDOW_COST_APP=/path/to/storycore-engine  measure that binary instead
#                                              (nothing is built but the test)
#   WINDOW_COST_INSTANCES=50 WINDOW_COST_SECONDS=60 WINDOW_COST_LATENCY_SECONDS=30
#   WINDOW_COST_LABEL=word                     printed with the figures
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

for tool in tauri-driver wasm-bindgen Xvfb WebKitWebDriver dbus-daemon; do
  command -v "$tool" >/dev/null || { echo "window-cost: $tool is missing: run scripts/setup.sh" >&2; exit 2; }
done

if [ -z "${WINDOW_COST_APP:-}" ]; then
  scripts/build-ui.sh
  echo "window-cost: building the release app (6-8 min cold on 2 cores)" >&2
  cargo build --release --quiet --bin storycore-engine
  WINDOW_COST_APP="$ROOT/target/release/storycore-engine"
fi
[ -x "$WINDOW_COST_APP" ] || { echo "window-cost: no app at $WINDOW_COST_APP" >&2; exit 2; }
# The harness itself (and the stand-in) build as debug: only the app is measured.
cargo build --quiet -p comfyui-standin
cargo test --quiet --no-run --test app

export STORYCORE_E2E_APP="$WINDOW_COST_APP"
exec python3 scripts/no-leftovers.py \
  cargo test --quiet --test app window_cost -- --ignored --nocapture --test-threads=1
