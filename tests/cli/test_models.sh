#!/usr/bin/env bash
# End-to-end tests of `forja models`, `forja render` and `forja generate`.
#   test_models.sh FORJA_BINARY
# References, never forja itself: the built-in model's weights are counted by Python from
# the safetensors file; its tokenizer.json is loaded by npm @huggingface/transformers and
# compared with npm tiktoken; rendered examples are re-tokenized with npm tiktoken; greedy
# continuations come from the PyTorch reference (tests/model/greedy_ref.py) on model folders
# written by tests/reference/make_case.py.
set -u
forja=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=${FORJA_SHARED:-$root/../shared}
clippy=$shared/data/clippy
work=$(mktemp -d /tmp/forja-models-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
export NODE_PATH=$root/node_modules FORJA_DATA_DIR=$work/data
py=/usr/bin/python3
. "$here/lib.sh"

# --- the built-in model ------------------------------------------------------------------
base=$work/data/models/forja-base
run "models list" 0 "$forja" models list && has "models list creates and lists forja-base" "forja-base"
[ -f "$base/model.safetensors" ] && [ -f "$base/tokenizer.json" ] && ok "forja-base is a model folder" ||
  bad "forja-base folder" "$(ls "$base" 2>&1)"
ls -d "$work"/data/models/*.tmp-* > /dev/null 2>&1 && bad "no temporary folder left" || ok "no temporary folder left"
run "models show" 0 "$forja" models show forja-base
counted=$($py - "$base/model.safetensors" <<'PY'
import json, struct, sys
blob = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", blob[:8])[0]
total = 0
for k, v in json.loads(blob[8:8 + n]).items():
    if k != "__metadata__":
        p = 1
        for d in v["shape"]:
            p *= d
        total += p
print(total)
PY
)
has "models show: parameters = the tensors' elements counted by Python ($counted)" "parameters:     $counted "
has "models show: architecture" "architecture:   LlamaForCausalLM"
has "models show: end-of-turn tokens" "<|im_end|> (100265)"
cp "$work/out" "$work/show1"
run "models show again" 0 "$forja" models show forja-base
cmp -s "$work/out" "$work/show1" && ok "forja-base is created once (same on second use)" || bad "second show differs"
run "models init" 0 "$forja" models init && has "models init" "built-in model ready"
run "models list --json" 0 "$forja" models list --json
$py -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$work/out" && ok "models list --json is JSON lines" || bad "models list --json"
# the same seed gives the same weights in another data directory
FORJA_DATA_DIR=$work/data2 "$forja" models init > /dev/null
cmp -s "$base/model.safetensors" "$work/data2/models/forja-base/model.safetensors" &&
  ok "forja-base weights are deterministic" || bad "forja-base weights differ between creations"

# its tokenizer.json, loaded by transformers.js, tokenizes as tiktoken's cl100k + ChatML
node - "$base" "$clippy/training_set.jsonl" > "$work/out" 2>&1 <<'JS'
const fs = require('fs');
(async () => {
  const { env, AutoTokenizer } = await import('@huggingface/transformers');
  const { get_encoding } = require('tiktoken');
  const dir = process.argv[2];
  env.allowRemoteModels = false;
  env.localModelPath = require('path').dirname(dir) + '/';
  const hf = await AutoTokenizer.from_pretrained(require('path').basename(dir), { local_files_only: true });
  const tk = get_encoding('cl100k_base', { '<|im_start|>': 100264, '<|im_end|>': 100265 });
  let n = 0, bad = 0;
  const texts = fs.readFileSync(process.argv[3], 'utf8').split('\n').filter(Boolean)
    .flatMap((l) => JSON.parse(l).messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`));
  texts.push('naïve café 12345 ¿Qué? 🦀\r\n\n  tabs\t\there <|endoftext|>');
  for (const t of texts) {
    const a = Array.from(hf.encode(t, { add_special_tokens: false }));
    const b = Array.from(tk.encode(t, 'all'));
    n++;
    if (JSON.stringify(a) !== JSON.stringify(b)) { bad++; console.log('differ:', JSON.stringify(t)); }
  }
  console.log(`${n} texts, ${bad} differ`);
  process.exit(bad ? 1 : 0);
})().catch((e) => { console.log(String(e)); process.exit(1); });
JS
[ $? -eq 0 ] && ok "forja-base tokenizer.json == tiktoken cl100k + ChatML (transformers.js): $(tail -1 "$work/out")" ||
  bad "forja-base tokenizer.json" "$(head -c 600 "$work/out")"

# --- render ---------------------------------------------------------------------------------
# every lab example: ids are the spans' tiktoken encodings, and the counted tokens are the
# assistant's answer and its end of turn
node - "$forja" "$clippy/training_set.jsonl" > "$work/out" 2>&1 <<'JS'
const fs = require('fs'), { execFileSync } = require('child_process');
const { get_encoding } = require('tiktoken');
const tk = get_encoding('cl100k_base', { '<|im_start|>': 100264, '<|im_end|>': 100265 });
const lines = fs.readFileSync(process.argv[3], 'utf8').split('\n').filter(Boolean);
let bad = 0;
for (const line of lines) {
  const r = JSON.parse(execFileSync(process.argv[2], ['render', '--json', '--mask'], { input: line }));
  const msgs = JSON.parse(line).messages;
  const want = msgs.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join('');
  const answer = msgs[msgs.length - 1].content + '<|im_end|>\n';
  const head = want.slice(0, want.length - answer.length);
  const ids = [...tk.encode(head, 'all'), ...tk.encode(answer, 'all')];
  const counted = r.ids.filter((_, i) => r.mask[i] === 1);
  const text = new TextDecoder().decode(tk.decode(new Uint32Array(counted)));
  if (r.text !== want || JSON.stringify(r.ids) !== JSON.stringify(ids) || text !== answer) {
    bad++;
    console.log('differ:', line.slice(0, 80));
  }
}
console.log(`${lines.length} examples, ${bad} differ`);
process.exit(bad ? 1 : 0);
JS
[ $? -eq 0 ] && ok "render --mask on the lab's examples: $(tail -1 "$work/out")" || bad "render" "$(head -c 800 "$work/out")"
echo '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo", "weight": 0}]}' |
  "$forja" render --json --mask > "$work/out"
$py -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(1 if any(r["mask"]) else 0)' "$work/out" &&
  ok "render: weight 0 counts nothing" || bad "render weight 0" "$(cat "$work/out")"
echo '[{"role": "user", "content": "hi"}]' | "$forja" render --generation-prompt > "$work/out" 2>&1
has "render --generation-prompt ends with the assistant header" "<|im_start|>assistant"
run "render: bad JSON" 1 sh -c "echo '[{\"role\": ' | '$forja' render" && has "render: bad JSON message" "JSON array of messages"

# --- generate against the PyTorch reference --------------------------------------------------
check_generate() { # NAME MODEL_DIR PROMPT_IDS STOP FORJA_ARGS...
  local name=$1 dir=$2 pids=$3 stop=$4; shift 4
  local want got
  want=$($py "$root/tests/model/greedy_ref.py" "$dir" --prompt-ids "$pids" --max-tokens 24 --stop "$stop")
  got=$("$forja" generate --model "$dir" --ids --max-tokens 24 "$@" 2>&1)
  if $py - "$want" "$got" <<'PY'
import json, sys
want = json.loads(sys.argv[1]); got = [int(x) for x in sys.argv[2].split()]
# a near-tie (under 1e-4) could flip between float64 and fp32; none is expected
sys.exit(0 if got == want["ids"] and want["min_margin"] > 1e-4 else 1)
PY
  then ok "generate == PyTorch greedy ($name)"; else bad "generate ($name)" "forja:   $got" "pytorch: $want"; fi
}
bytes() { $py -c 'import sys; print(",".join(str(b) for b in sys.argv[1].encode()))' "$1"; }
for spec in "llama llama_gqa" "qwen2 qwen2" "gpt2 gpt2" "llama llama3_scaled"; do
  set -- $spec
  case=$work/case_$2
  $py "$root/tests/reference/make_case.py" --arch "$1" --preset "$2" --seed 21 --out "$case" > /dev/null 2>&1 &&
    $py "$root/tests/model/greedy_ref.py" "$case/model" --add-tokenizer || { bad "make case $2"; continue; }
  V=$($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$case/model/config.json")
  start=$((V - 3)) end=$((V - 2))
  eos=$($py -c 'import json,sys; e=json.load(open(sys.argv[1])).get("eos_token_id"); e=e if isinstance(e,list) else [e]; print(",".join(str(x) for x in e if x is not None))' "$case/model/generation_config.json")
  stop="$eos,$end"
  check_generate "$2, raw text" "$case/model" "$(bytes 'Hola, Clippy')" "$stop" --prompt 'Hola, Clippy'
  check_generate "$2, special token in the prompt" "$case/model" "$(bytes 'Hi ')",$start "$stop" --prompt 'Hi <|im_start|>'
  check_generate "$2, --no-special" "$case/model" "$(bytes 'Hi <|im_start|>')" "$stop" --prompt 'Hi <|im_start|>' --no-special
  check_generate "$2, --chat" "$case/model" "$start,$(bytes $'user\n¿Qué?'),$end,$(bytes $'\n'),$start,$(bytes $'assistant\n')" "$stop" --prompt '¿Qué?' --chat
done

# --- bad input ---------------------------------------------------------------------------
run "unknown model" 2 "$forja" generate --model no-such-model --prompt hi && has "unknown model message" "no model \"no-such-model\""
mkdir -p "$work/sp" && cp "$work/case_llama_gqa/model/config.json" "$work/sp/" && touch "$work/sp/tokenizer.model"
run "SentencePiece folder" 1 "$forja" models show "$work/sp" && has "SentencePiece refused clearly" "SentencePiece"
mkdir -p "$work/t5" && echo '{"architectures": ["T5ForConditionalGeneration"], "model_type": "t5"}' > "$work/t5/config.json"
run "unknown architecture" 1 "$forja" models show "$work/t5" && has "architecture named" "T5ForConditionalGeneration"
run "generate: empty prompt" 1 "$forja" generate --prompt '' && has "empty prompt message" "no tokens"
run "generate --max-tokens 3" 0 "$forja" generate --prompt hi --ids --max-tokens 3
n=$(wc -w < "$work/out"); [ "$n" -le 3 ] && ok "generate stops at --max-tokens ($n ids)" || bad "max-tokens" "$(cat "$work/out")"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
