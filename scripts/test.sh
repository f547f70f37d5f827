#!/usr/bin/env bash
# Runs every check and test of StoryCore Engine, installing what is missing first:
# formatting, clippy, the .deb package (built, installed, started), then unit,
# integration and end-to-end tests (real webview through WebDriver, under a
# private Xvfb display and D-Bus session per test).
# Usage: scripts/test.sh [extra arguments for cargo test, e.g. a test name filter]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

t0=$(date +%s)
step() { printf '\n\033[1;32m==> %s\033[0m (%ss)\n' "$*" "$(( $(date +%s) - t0 ))" >&2; }

step "setup: system packages and pinned tools"
scripts/setup.sh

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
step "all checks passed"
