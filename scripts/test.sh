#!/usr/bin/env bash
# Runs every check and test of StoryCore Engine, installing what is missing first:
# formatting, clippy, the .deb package (built, installed, started), then unit,
# integration and end-to-end tests (real webview through WebDriver, under a
# private Xvfb display and D-Bus session per test), then the chaos soak.
# Nothing it starts may outlive it: the run fails, naming what was left.
#
# Usage: scripts/test.sh [--timings] [filters for cargo nextest, e.g. a test name]
#   --timings  prints where the time went: not only each step (printed always)
#              but each test binary, the slowest tests and the slowest crates
#              to compile (scripts/timings.py; the data stays in
#              target/test-timings/, target/nextest/ and target/cargo-timings/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

timings=""
filters=()
for a in "$@"; do
  case "$a" in
    --timings) timings=1 ;;
    *) filters+=("$a") ;;
  esac
done

# Each step's wall time goes to target/test-timings/steps.tsv (the setup's
# too, written before the re-exec below).
TIMES="$ROOT/target/test-timings"
step_name=""; step_t0=0
t0=${STORYCORE_TEST_T0:-$(date +%s)}
export STORYCORE_TEST_T0=$t0
end_step() {
  if [ -n "$step_name" ]; then
    printf '%s\t%s\n' "$step_name" "$(( $(date +%s) - step_t0 ))" >>"$TIMES/steps.tsv"
  fi
  step_name=""
}
step() {
  end_step
  step_name="$1"; step_t0=$(date +%s)
  printf '\n\033[1;32m==> %s\033[0m (%ss)\n' "$*" "$(( step_t0 - t0 ))" >&2
}

if [ -z "${STORYCORE_UNDER_LEFTOVER_CHECK:-}" ]; then
  mkdir -p "$TIMES"
  printf 'step\tseconds\n' >"$TIMES/steps.tsv"
  step "setup: system packages and pinned tools"
  scripts/setup.sh --tests
  end_step
  # Everything from here runs under a subreaper that fails the run if any
  # process it started (stand-in, app, WebKitWebDriver, Xvfb, D-Bus) outlives it.
  export STORYCORE_UNDER_LEFTOVER_CHECK=1
  exec python3 scripts/no-leftovers.py "$0" "$@"
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "UI: Leptos to WASM"
scripts/build-ui.sh

# Clippy and the test build share one compilation: clippy-driver wraps rustc
# for the workspace's own crates (cargo clippy does the same, but for a
# `cargo check` whose dependencies would be compiled a second time, as
# metadata only). The lints are those of
# `cargo clippy --workspace --all-targets -- -D warnings`: the targets a test
# build compiles are all of them (lib, bins, tests, examples; there are no
# benches). Exported, so the .deb's build and the chaos soak's `cargo run`
# find everything fresh.
RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)"
export RUSTC_WORKSPACE_WRAPPER
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
step "build, with clippy's lints as errors (clippy --workspace --all-targets -D warnings)"
cargo test --workspace --no-run --quiet ${timings:+--timings}

# Every target is built: the .deb packages the program the tests run, and the
# tests take the stand-in and the examples as they are (tests/README.md).
export STORYCORE_TESTS_PREBUILT=1
step ".deb package: the tests' program packaged, installed, started"
scripts/test-deb.sh

step "tests: unit, integration, end-to-end (cargo nextest), and beside them the chaos soak"
# The soak (one minute of crashes, freezes and app kills under a job stream)
# waits on its clock, not on the CPU (about 10 s of CPU in its minute): it
# runs beside the tests, its report printed after theirs.
soak_log="$TIMES/chaos-soak.log"
(
  s=$(date +%s)
  # The example as the build above made it: a `cargo run -p storycore-core`
  # would resolve features for that package alone, build its own variant
  # and put it where the running soak re-runs itself from.
  "${CARGO_TARGET_DIR:-target}/debug/examples/chaos_soak" --minutes 1 >"$soak_log" 2>&1
  printf 'chaos soak (ran beside the tests)\t%s\n' "$(( $(date +%s) - s ))" >>"$TIMES/steps.tsv"
) &
soak_pid=$!
tests_status=0
cargo nextest run --workspace --no-fail-fast ${STORYCORE_TEST_THREADS:+--test-threads "$STORYCORE_TEST_THREADS"} \
  "${filters[@]}" || tests_status=$?
soak_status=0
wait "$soak_pid" || soak_status=$?
printf '\n\033[1;32m==> chaos soak: one minute of crashes, freezes and app kills under a job stream (ran beside the tests)\033[0m\n' >&2
cat "$soak_log" >&2
end_step
printf 'total\t%s\n' "$(( $(date +%s) - t0 ))" >>"$TIMES/steps.tsv"
# Each step's time, always; with --timings, the tests' and crates' too.
if [ -n "$timings" ]; then python3 scripts/timings.py >&2 || true; else python3 scripts/timings.py --steps >&2 || true; fi
if [ "$tests_status" -ne 0 ] || [ "$soak_status" -ne 0 ]; then
  [ "$tests_status" -eq 0 ] || echo "FAILED: the tests (exit status $tests_status; their summary is above)" >&2
  [ "$soak_status" -eq 0 ] || echo "FAILED: the chaos soak (exit status $soak_status; its report is above)" >&2
  exit 1
fi
step "all checks passed"
