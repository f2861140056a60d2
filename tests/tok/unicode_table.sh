#!/usr/bin/env bash
# The committed src/tok/unicode_table.c must be exactly what the generator writes from the
# Unicode 16.0 data in node_modules (so nobody edits it by hand or forgets to regenerate it).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
fresh=$(mktemp)
trap 'rm -f "$fresh"' EXIT
node "$root/scripts/gen-unicode-table.mjs" > "$fresh"
if cmp -s "$fresh" "$root/src/tok/unicode_table.c"; then
  echo "unicode_table.c is current (Unicode $(grep -o '"[0-9.]*"' "$root/src/tok/unicode_table.c" | head -1))"
else
  echo "src/tok/unicode_table.c differs from scripts/gen-unicode-table.mjs's output:" >&2
  diff "$fresh" "$root/src/tok/unicode_table.c" | head -20 >&2
  exit 1
fi
