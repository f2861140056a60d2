#!/bin/sh
# arch_case.sh TEST_ARCH OUT_DIR MAKE_CASE_ARGS... - writes one reference case with
# tests/reference/make_case.py (PyTorch), checks forja against it (test_arch), and checks
# the folders forja saves against the case's own (saved_check.py).
set -e
test_arch=$1
out=$2
shift 2
rm -rf "$out"
mkdir -p "$(dirname "$out")"
/usr/bin/python3 "$(dirname "$0")/../reference/make_case.py" --out "$out" "$@" > "$out.log" 2>&1 ||
  { cat "$out.log"; exit 1; }
"$test_arch" "$out" "$out/saved"
/usr/bin/python3 "$(dirname "$0")/saved_check.py" "$out" "$out/saved"
