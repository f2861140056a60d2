#!/usr/bin/env bash
# End-to-end tests of `forja tokens`, `forja tokenize` and `forja detokenize`.
#   test_tokens.sh FORJA_BINARY
# Expected reports come from the lab's own expected output (shared/data/clippy) and from
# tests/cli/lab_reference.js (npm tiktoken + numpy, the notebook's procedure), never from
# forja. Needs node with the repository's node_modules, /usr/bin/python3 with numpy, and
# GNU time.
set -u
forja=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=${FORJA_SHARED:-$root/../shared}
clippy=$shared/data/clippy
work=$(mktemp -d /tmp/forja-cli-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
export NODE_PATH=$root/node_modules
. "$here/lib.sh"

# --- the lab's report, byte for byte -----------------------------------------------------
(cd "$clippy" && "$forja" tokens training_set.jsonl validation_set.jsonl) > "$work/cl100k.txt"
if cmp -s "$work/cl100k.txt" "$clippy/expected_tokens_cl100k_base.txt"; then ok "clippy cl100k_base report is the lab's"; else bad "clippy cl100k_base report" "$(diff "$work/cl100k.txt" "$clippy/expected_tokens_cl100k_base.txt" | head)"; fi
(cd "$clippy" && "$forja" tokens --encoding o200k_base training_set.jsonl --validation validation_set.jsonl) > "$work/o200k.txt"
if cmp -s "$work/o200k.txt" "$clippy/expected_tokens_o200k_base.txt"; then ok "clippy o200k_base report is the lab's"; else bad "clippy o200k_base report" "$(diff "$work/o200k.txt" "$clippy/expected_tokens_o200k_base.txt" | head)"; fi

# --- larger generated files against the lab's procedure run by tiktoken + numpy ----------
node "$here/gen_dataset.js" 3000 11 > "$work/gen_a.jsonl"
node "$here/gen_dataset.js" 1500 12 > "$work/gen_b.jsonl"
for enc in cl100k_base o200k_base; do
  (cd "$work" && ENCODING=$enc node "$here/lab_reference.js" gen_a.jsonl gen_b.jsonl > "ref_$enc.txt")
  for threads in 1 2; do
    (cd "$work" && "$forja" tokens --encoding $enc --threads $threads gen_a.jsonl gen_b.jsonl > "forja_$enc.txt")
    if cmp -s "$work/forja_$enc.txt" "$work/ref_$enc.txt"; then ok "generated files, $enc, $threads thread(s): same as tiktoken + numpy"
    else bad "generated files, $enc, $threads thread(s)" "$(diff "$work/forja_$enc.txt" "$work/ref_$enc.txt" | head)"; fi
  done
done

# CRLF line endings and a byte order mark change nothing in the numbers.
sed 's/$/\r/' "$work/gen_a.jsonl" > "$work/crlf.jsonl"
printf '\xEF\xBB\xBF' | cat - "$work/gen_a.jsonl" > "$work/bom.jsonl"
(cd "$work" && "$forja" tokens gen_a.jsonl | tail -n +2) > "$work/lf.txt"
for f in crlf bom; do
  (cd "$work" && "$forja" tokens $f.jsonl | tail -n +2) > "$work/$f.txt"
  if cmp -s "$work/lf.txt" "$work/$f.txt"; then ok "$f file counts like the plain one"; else bad "$f file" "$(diff "$work/lf.txt" "$work/$f.txt" | head)"; fi
done

# --- bad input: a clear message naming file and line, never a crash ------------------------
cd "$work"
run "missing file" 1 "$forja" tokens missing.jsonl && has "missing file" "missing.jsonl: error: cannot open: No such file or directory"
mkdir -p adir
run "directory" 1 "$forja" tokens adir && has "directory" "adir: error: is a directory"
: > empty.jsonl
run "empty file" 1 "$forja" tokens empty.jsonl && has "empty file" "empty.jsonl: error: file is empty"
head -n 12 gen_a.jsonl > latin1.jsonl
printf '{"messages":[{"role":"user","content":"caf\xe9"},{"role":"assistant","content":"x"}]}\n' >> latin1.jsonl
run "not UTF-8" 1 "$forja" tokens latin1.jsonl && has "not UTF-8" "latin1.jsonl:13:43: error: invalid UTF-8 (byte 0xE9 at byte offset 42)"
{ head -n 11 gen_a.jsonl; echo '[{"messages":[]}]'; } > array.jsonl
run "JSON array line" 1 "$forja" tokens array.jsonl && has "JSON array line" "array.jsonl:12: error: expected a JSON object, found an array"
{ head -n 11 gen_a.jsonl; printf '{"messages":[{"role":"user","content":"cut off'; } > truncated.jsonl
run "truncated last line" 1 "$forja" tokens truncated.jsonl && has "truncated last line" "truncated.jsonl:12:46: error: invalid JSON: premature end of input"
head -n 9 gen_a.jsonl > nine.jsonl
run "9 training examples" 1 "$forja" tokens nine.jsonl && has "9 training examples" "nine.jsonl: error: 9 valid examples; a training file needs at least 10"
run "9 validation examples" 0 "$forja" tokens --validation nine.jsonl && ok "9 validation examples are fine"
{ head -n 10 gen_a.jsonl; echo '{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"a <|endoftext|>"}]}'; } > special.jsonl
run "special token text" 1 "$forja" tokens special.jsonl && has "special token text" "special.jsonl:11: error: messages[1].content: text contains the special token <|endoftext|> at byte 2"
run "special token allowed" 0 "$forja" tokens --allow-special special.jsonl && ok "special token allowed"
run "context warning keeps exit 0" 0 "$forja" tokens --context 60 gen_a.jsonl && has "context warning keeps exit 0" "warning: "
run "no files" 2 "$forja" tokens && ok "no files is a usage error"
run "bad option value" 2 "$forja" tokens --context many gen_a.jsonl && has "bad option value" "--context expects a whole number"

# --- prompt/completion and preference files ------------------------------------------------
# The counts come from the cookbook's tokenization of "tiktoken is great!" (6 tokens in
# cl100k_base) and one-token words: a completion example counts prompt + completion (6 + 1),
# a preference one the lab's formula over input and preferred output, (3+1+1) + (3+1+1) + 3.
stars='***************************************************************************'
for i in $(seq 10); do echo '{"prompt":"tiktoken is great!","completion":"a"}'; done > comp.jsonl
printf 'File: comp.jsonl\nFormat: prompt/completion\n\n##### Distribution of total tokens:\nmin / max: 7, 7\nmean / median: 7.0, 7.0\n\n##### Distribution of assistant tokens:\nmin / max: 1, 1\nmean / median: 1.0, 1.0\n%s\n' "$stars" > comp_expected.txt
run "prompt/completion file" 0 "$forja" tokens comp.jsonl &&
  if cmp -s out comp_expected.txt; then ok "prompt/completion file"; else bad "prompt/completion file" "$(diff out comp_expected.txt | head)"; fi
pref='{"input":{"messages":[{"role":"user","content":"q"}]},"preferred_output":[{"role":"assistant","content":"a"}],"non_preferred_output":[{"role":"assistant","content":"tiktoken is great!"}]}'
for i in $(seq 10); do echo "$pref"; done > pref.jsonl
printf 'File: pref.jsonl\nFormat: preference\n\n##### Distribution of total tokens:\nmin / max: 13, 13\nmean / median: 13.0, 13.0\n\n##### Distribution of assistant tokens:\nmin / max: 1, 1\nmean / median: 1.0, 1.0\n%s\n' "$stars" > pref_expected.txt
run "preference file" 0 "$forja" tokens pref.jsonl &&
  if cmp -s out pref_expected.txt; then ok "preference file"; else bad "preference file" "$(diff out pref_expected.txt | head)"; fi
{ cat comp.jsonl; echo '{"prompt":"q","completion":""}'; } > comp_bad.jsonl
run "empty completion" 1 "$forja" tokens comp_bad.jsonl && has "empty completion" 'comp_bad.jsonl:11: error: "completion" is empty'
{ cat pref.jsonl; echo "${pref/\"preferred_output\":[{\"role\":\"assistant\"/\"preferred_output\":[{\"role\":\"user\"}"; } > pref_bad.jsonl
run "preferred output not assistant" 1 "$forja" tokens pref_bad.jsonl && has "preferred output not assistant" 'pref_bad.jsonl:11: error: preferred_output[0].role must be "assistant"'
{ cat comp.jsonl; head -n 1 gen_a.jsonl; } > mixed.jsonl
run "mixed formats" 1 "$forja" tokens mixed.jsonl && has "mixed formats" "mixed.jsonl:11: error: a chat example, but the file's first example (line 1) is prompt/completion: a file holds one format"
"$forja" tokens --json comp.jsonl pref.jsonl gen_a.jsonl > formats.json
if node -e '
  const r = JSON.parse(require("fs").readFileSync("formats.json", "utf8"));
  process.exit(r.files.map(f => f.format).join() === "prompt/completion,preference,chat" && r.ok ? 0 : 1);'
then ok "--json names each file's format"; else bad "--json format" "$(head -c 600 formats.json)"; fi

# A 2 GB line, from a pipe: reported, skipped, in bounded memory; the next lines still count.
{ printf '{"messages":[{"role":"user","content":"'; head -c 2200000000 /dev/zero | tr '\0' a; printf '"}]}\n'; cat gen_a.jsonl; } |
  /usr/bin/time -f '%M' -o rss.txt "$forja" tokens - > out 2>&1
rc=$?
rss_kb=$(tail -n 1 rss.txt)
if [ "$rc" -eq 1 ] && grep -qF -- "-:1: error: line is 2200000043 bytes, longer than the limit of 67108864 bytes" out &&
   grep -qF "min / max:" out && [ "$rss_kb" -lt 300000 ]; then
  ok "2 GB line: reported, skipped, peak memory ${rss_kb} KB"
else bad "2 GB line" "exit $rc, peak ${rss_kb} KB" "$(head -c 600 out)"; fi

# --- --json: the same numbers, for programs ------------------------------------------------
"$forja" tokens --json gen_a.jsonl nine.jsonl > report.json
if node -e '
  const r = JSON.parse(require("fs").readFileSync("report.json", "utf8"));
  const f = r.files[0];
  const ok = r.encoding === "cl100k_base" && r.ok === false && r.errors === 1 && f.examples === 3000 &&
    f.total_tokens.min > 0 && f.total_tokens.max >= f.total_tokens.min && r.files[1].problems[0].line === 0;
  process.exit(ok ? 0 : 1);'; then ok "--json report"; else bad "--json report" "$(head -c 600 report.json)"; fi
mean=$(node -e 'console.log(JSON.parse(require("fs").readFileSync("report.json","utf8")).files[0].total_tokens.mean)')
text_mean=$(grep -m1 "mean / median" ref_cl100k_base.txt | sed 's/mean \/ median: \([^,]*\),.*/\1/')
if [ "$(node -e "console.log($mean === $text_mean)")" = true ]; then ok "--json mean equals the reference's"; else bad "--json mean" "$mean vs $text_mean"; fi

# --- tokenize / detokenize -------------------------------------------------------------------
run "tokenize ids" 0 "$forja" tokenize --text "tiktoken is great!" && has "tokenize ids" "83 1609 5963 374 2294 0"
run "tokenize count" 0 "$forja" tokenize --count --encoding o200k_base --text "hello world" && has "tokenize count" "2"
run "tokenize pieces" 0 "$forja" tokenize --pieces --text "a é😀" && has "tokenize pieces" '"\xf0\x9f\x98"'
run "tokenize special" 1 "$forja" tokenize --text "<|endoftext|>" && has "tokenize special" "use --allow-special"
run "tokenize allow-special" 0 "$forja" tokenize --allow-special --text "<|endoftext|>" && has "tokenize allow-special" "100257"
printf 'caf\xe9' > latin1.txt
run "tokenize invalid UTF-8" 1 "$forja" tokenize < latin1.txt && has "tokenize invalid UTF-8" "invalid UTF-8 at byte 3"
"$forja" tokenize --encoding p50k_base < gen_b.jsonl | "$forja" detokenize --encoding p50k_base > round.jsonl
if cmp -s round.jsonl gen_b.jsonl; then ok "tokenize | detokenize round trip"; else bad "tokenize | detokenize round trip"; fi
run "detokenize unknown id" 1 "$forja" detokenize --ids "15339 100256" && has "detokenize unknown id" "100256 is not a token of cl100k_base"
run "detokenize junk" 1 "$forja" detokenize --ids "12 abc" && has "detokenize junk" "'abc' is not a token id"

# --- help, version, docs ---------------------------------------------------------------------
run "version" 0 "$forja" --version && has "version" "forja "
run "tokens --help" 0 "$forja" tokens --help && has "tokens --help" "--encoding NAME"
run "unknown command" 2 "$forja" frobnicate && has "unknown command" "no command 'frobnicate'"
run "unknown option" 2 "$forja" tokens --frob x && has "unknown option" "unknown option '--frob'"
"$forja" help --markdown > cli.md
if cmp -s cli.md "$root/docs/cli.md"; then ok "docs/cli.md is current"; else bad "docs/cli.md is stale: run 'forja help --markdown > docs/cli.md'"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
