#!/usr/bin/env bash
# Runs every check and test of StoryCore Engine, installing what is missing first:
# formatting, clippy, the .deb package (built, installed, started), then unit,
# integration and end-to-end tests (real webview through WebDriver, under a
# private Xvfb display and D-Bus session per test).
# Nothing it starts may outlive it: the run fails, naming what was left.
# Usage: scripts/test.sh [extra arguments for cargo test, e.g. a test name filter]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

t0=$(date +%s)
step() { printf '\n\033[1;32m==> %s\033[0m (%ss)\n' "$*" "$(( $(date +%s) - t0 ))" >&2; }

if [ -z "${STORYCORE_UNDER_LEFTOVER_CHECK:-}" ]; then
  step "setup: system packages and pinned tools"
  scripts/setup.sh
  # Everything from here runs under a subreaper that fails the run if any
  # process it started (stand-in, app, WebKitWebDriver, Xvfb, D-Bus) outlives it.
  export STORYCORE_UNDER_LEFTOVER_CHECK=1
  exec python3 scripts/no-leftovers.py "$0" "$@"
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "UI: Leptos to WASM"
scripts/build-ui.sh

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step ".deb package: build, install, start"
scripts/test-deb.sh

step "tests: unit, integration, end-to-end"
# End-to-end tests each start a webview: two at a time is what 2 cores carry.
cargo test --workspace --no-fail-fast "$@" -- --test-threads="${STORYCORE_TEST_THREADS:-2}"
step "chaos soak: one minute of crashes, freezes and app kills under a job stream"
cargo run --quiet -p storycore-core --example chaos_soak -- --minutes 1
step "all checks passed"
