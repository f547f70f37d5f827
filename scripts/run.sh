#!/usr/bin/env bash
# Launches StoryCore Engine, installing and building what is missing first.
# Extra arguments go to the app.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  echo "run.sh: no display (DISPLAY and WAYLAND_DISPLAY are unset): run it from a desktop session," >&2
  echo "        or under a virtual one: xvfb-run -a scripts/run.sh" >&2
  exit 2
fi
scripts/setup.sh
scripts/build-ui.sh
exec cargo run --quiet --bin storycore-engine -- "$@"
