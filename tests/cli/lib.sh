# lib.sh - what the end-to-end test scripts share; source it after setting $work (a
# scratch folder). Counts checks in $passed / $failed.
passed=0 failed=0

ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; shift; for l in "$@"; do echo "     $l"; done; }

# run NAME EXPECTED_RC CMD...: runs CMD, output in $work/out, checks the exit status.
run() {
  local name=$1 want=$2; shift 2
  "$@" > "$work/out" 2>&1
  local rc=$?
  if [ "$rc" -ne "$want" ]; then bad "$name" "exit $rc, expected $want" "$(head -c 600 "$work/out")"; return 1; fi
  return 0
}

# has NAME TEXT: the last run's output contains TEXT.
has() {
  if grep -qF -- "$2" "$work/out"; then ok "$1"; else bad "$1" "output lacks: $2" "$(head -c 600 "$work/out")"; fi
}
