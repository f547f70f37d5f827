#!/usr/bin/env bash
# Builds the Leptos UI to WASM and lays it out in ui/dist, which the app embeds.
# Files whose content did not change are left untouched, so the app crate is not
# rebuilt for nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

cargo build -p storycore-ui --lib --target wasm32-unknown-unknown --release --quiet
stage="$ROOT/target/ui-stage"
wasm="$ROOT/target/wasm32-unknown-unknown/release/storycore_ui.wasm"
# wasm-bindgen runs again only when its input or the static files changed.
stamp="$(wasm-bindgen --version) $(cat "$wasm" ui/static/* | sha256sum)"
if [ "$(cat "$stage.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -d "$stage" ]; then
  rm -rf "$stage" "$stage.stamp" && mkdir -p "$stage"
  wasm-bindgen --target web --no-typescript --out-dir "$stage" "$wasm"
  cp ui/static/* "$stage/"
  echo "$stamp" >"$stage.stamp"
fi

mkdir -p ui/dist
for f in "$stage"/*; do
  dest="ui/dist/$(basename "$f")"
  cmp -s "$f" "$dest" 2>/dev/null || cp "$f" "$dest"
done
# drop files that no longer belong to the build
for f in ui/dist/*; do
  [ -e "$stage/$(basename "$f")" ] || rm -f "$f"
done
echo "UI built into ui/dist ($(du -sh ui/dist | cut -f1))" >&2
