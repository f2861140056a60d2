#!/bin/sh
# arch_case.sh TEST_ARCH OUT_DIR MAKE_CASE_ARGS... - writes one reference case with
# tests/reference/make_case.py (PyTorch) and checks forja against it (test_arch).
set -e
test_arch=$1
out=$2
shift 2
rm -rf "$out"
/usr/bin/python3 "$(dirname "$0")/../reference/make_case.py" --out "$out" "$@" > "$out.log" 2>&1 ||
  { cat "$out.log"; exit 1; }
exec "$test_arch" "$out"
