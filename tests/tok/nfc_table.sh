#!/usr/bin/env bash
# The committed src/tok/nfc_table.c must be exactly what tests/tok/gen_nfc_table.mjs writes
# with this machine's Node (its normalize() is the reference's). A Node with another Unicode
# version writes another table: then regenerate it deliberately and rerun tok_hf_parity.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
fresh=$(mktemp)
trap 'rm -f "$fresh"' EXIT
node "$root/tests/tok/gen_nfc_table.mjs" > "$fresh"
if cmp -s "$fresh" "$root/src/tok/nfc_table.c"; then
  echo "nfc_table.c is current (Unicode $(node -p process.versions.unicode))"
else
  echo "src/tok/nfc_table.c differs from tests/tok/gen_nfc_table.mjs's output:" >&2
  diff "$fresh" "$root/src/tok/nfc_table.c" | head -20 >&2
  exit 1
fi
