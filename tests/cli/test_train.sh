#!/usr/bin/env bash
# End-to-end tests of `forja train` on the built-in model and the lab's Clippy data.
#   test_train.sh FORJA_BINARY
# Properties that can fail, each against an independent expectation:
#   - quality: with the auto settings the fine-tuned model's token accuracy on the training
#     set is >= 0.95, and greedy generation answers a training question with the training
#     answer, stopping by itself (the answer is the lab's file, read here with Python);
#   - reproducibility: the same seed and threads give the same bytes; another seed does not;
#   - resume: runs stopped by SIGTERM or killed with SIGKILL at several points and resumed
#     give the uninterrupted run's weights and results.csv byte for byte;
#   - bad data: errors name the file and line, exit status 1; resume refuses other settings;
#   - results.csv has OpenAI's columns; checkpoints keep the newest three.
set -u
forja=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=${FORJA_SHARED:-$root/../shared}
clippy=$shared/data/clippy
work=$(mktemp -d /tmp/forja-train-test.XXXXXX)
trap 'kill $(jobs -p) 2> /dev/null; rm -rf "$work"' EXIT
export FORJA_DATA_DIR=$work/data
py=/usr/bin/python3
. "$here/lib.sh"
train=$clippy/training_set.jsonl
valid=$clippy/validation_set.jsonl
T=(--threads 2)

same() { # same NAME FILE_A FILE_B
  if cmp -s "$2" "$3"; then ok "$1"; else bad "$1" "$2 and $3 differ"; fi
}

# --- quality: the lab's data, auto settings --------------------------------------------------
# The training file is also given as the validation file: full_valid_* is then the token
# accuracy over the whole training set after each epoch.
run "train with auto settings" 0 "$forja" train --train "$train" --valid "$train" --out "$work/q" \
  --seed 105 --no-checkpoints "${T[@]}"
has "prints where the model is" "$work/q/model"
acc=$($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["final_metrics"]["full_valid_mean_token_accuracy"])' "$work/q/train.json")
$py -c "import sys; sys.exit(0 if float('$acc') >= 0.95 else 1)" &&
  ok "token accuracy on the training set $acc >= 0.95" || bad "token accuracy on the training set" "$acc"
$py - "$work/q/train.json" <<'PY' && ok "auto plan: full, 10 epochs x 10 steps, batch 1; loss fell" || bad "auto plan"
import json, sys
t = json.load(open(sys.argv[1]))
h = t["hyperparameters"]
assert h["method"] == "full" and h["n_epochs"] == 10 and h["batch_size"] == 1, h
assert t["steps"] == 100 and h["total_steps"] == 100, t
assert t["final_metrics"]["full_valid_loss"] < t["initial_full_valid_loss"] / 4, t
assert t["trained_tokens"] % 10 == 0 and t["trained_tokens"] > 0
PY
# every training question, greedily: the trained answer, then the end of the turn
$py - "$train" > "$work/qa" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    m = json.loads(line)["messages"]
    print(json.dumps([m[0]["content"], m[1]["content"], m[2]["content"]]))
PY
right=0
while IFS= read -r qa; do
  sys=$($py -c 'import json,sys; print(json.loads(sys.argv[1])[0])' "$qa")
  q=$($py -c 'import json,sys; print(json.loads(sys.argv[1])[1])' "$qa")
  a=$($py -c 'import json,sys; print(json.loads(sys.argv[1])[2])' "$qa")
  got=$("$forja" generate --model "$work/q/model" --chat --system "$sys" --prompt "$q" --max-tokens 80)
  n=$("$forja" generate --model "$work/q/model" --chat --system "$sys" --prompt "$q" --max-tokens 80 --ids | wc -w)
  [ "$got" = "$a" ] && [ "$n" -lt 80 ] && right=$((right + 1))
done < "$work/qa"
[ "$right" -ge 9 ] && ok "greedy answers equal the trained ones and stop ($right of 10)" ||
  bad "greedy answers" "$right of 10 right"

# --- results.csv ------------------------------------------------------------------------------
head -n 1 "$work/q/results.csv" > "$work/header"
echo "step,train_loss,train_mean_token_accuracy,valid_loss,valid_mean_token_accuracy,full_valid_loss,full_valid_mean_token_accuracy" > "$work/want_header"
same "results.csv has OpenAI's columns" "$work/header" "$work/want_header"
[ "$(wc -l < "$work/q/results.csv")" -eq 101 ] && ok "results.csv: a row per step" || bad "results.csv rows"

# --- reproducibility and resume --------------------------------------------------------------
common=(--train "$train" --valid "$valid" --seed 7 --epochs 3 --checkpoint-every 4 "${T[@]}")
run "reference run" 0 "$forja" train "${common[@]}" --out "$work/r1"
run "same run again" 0 "$forja" train "${common[@]}" --out "$work/r2"
same "same seed: same weights" "$work/r1/model/model.safetensors" "$work/r2/model/model.safetensors"
same "same seed: same results.csv" "$work/r1/results.csv" "$work/r2/results.csv"
run "another seed" 0 "$forja" train --train "$train" --valid "$valid" --seed 8 --epochs 3 \
  --no-checkpoints "${T[@]}" --out "$work/r3"
cmp -s "$work/r1/model/model.safetensors" "$work/r3/model/model.safetensors" &&
  bad "another seed gives other weights" || ok "another seed gives other weights"
ls "$work/r1/checkpoints" > "$work/ckpts"
printf 'ckpt-step-24\nckpt-step-28\nckpt-step-30\n' > "$work/want_ckpts"
same "the newest three checkpoints are kept" "$work/ckpts" "$work/want_ckpts"

# wait_steps LOG N: until the --json log shows N steps
wait_steps() {
  for _ in $(seq 1 600); do
    [ "$(grep -c '"type": *"step"' "$1" 2> /dev/null)" -ge "$2" ] && return 0
    sleep 0.05
  done
  return 1
}

# stopped by SIGTERM after step 6, resumed
"$forja" train "${common[@]}" --out "$work/s" --json > "$work/s.log" 2>&1 &
pid=$!
wait_steps "$work/s.log" 6 && kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 4 ] && ok "SIGTERM stops at a step boundary (exit 4)" || bad "SIGTERM" "exit $rc" "$(tail -3 "$work/s.log")"
run "resume after SIGTERM" 0 "$forja" train "${common[@]}" --out "$work/s" --resume "$work/s"
has "resume names its checkpoint" "Resuming from"
same "resumed after SIGTERM: same weights" "$work/r1/model/model.safetensors" "$work/s/model/model.safetensors"
same "resumed after SIGTERM: same results.csv" "$work/r1/results.csv" "$work/s/results.csv"

# killed with SIGKILL twice (after steps 9 and 22: mid-epoch, perhaps mid-checkpoint), resumed
"$forja" train "${common[@]}" --out "$work/k" --json > "$work/k.log" 2>&1 &
pid=$!
wait_steps "$work/k.log" 9 && kill -KILL $pid
wait $pid 2> /dev/null
"$forja" train "${common[@]}" --out "$work/k" --resume "$work/k" --json > "$work/k2.log" 2>&1 &
pid=$!
wait_steps "$work/k2.log" 10 && kill -KILL $pid
wait $pid 2> /dev/null
ls -d "$work"/k/checkpoints/ckpt-step-* > /dev/null 2>&1 && ok "checkpoints survive kill -9" ||
  bad "checkpoints after kill -9" "$(ls "$work/k/checkpoints" 2>&1)"
run "resume after kill -9" 0 "$forja" train "${common[@]}" --out "$work/k" --resume "$work/k"
same "resumed after two kills: same weights" "$work/r1/model/model.safetensors" "$work/k/model/model.safetensors"
same "resumed after two kills: same results.csv" "$work/r1/results.csv" "$work/k/results.csv"

# resume from an explicit checkpoint folder, in a fresh output folder
run "resume from a checkpoint folder" 0 "$forja" train "${common[@]}" --out "$work/c" \
  --resume "$work/r1/checkpoints/ckpt-step-24"
same "resumed from step 24: same weights" "$work/r1/model/model.safetensors" "$work/c/model/model.safetensors"
run "resume with other settings is refused" 1 "$forja" train "${common[@]/--seed/--lr-multiplier}" \
  --out "$work/c2" --resume "$work/r1/checkpoints/ckpt-step-24"
has "names the difference" "hyperparameters differ"

run "an output folder with a run in it is refused" 1 "$forja" train "${common[@]}" --out "$work/r1"
has "says to resume" "--resume"

# --- LoRA -----------------------------------------------------------------------------------
run "LoRA run" 0 "$forja" train --train "$train" --method lora --epochs 1 --no-checkpoints \
  --lora-rank 4 "${T[@]}" --out "$work/l"
[ -f "$work/l/adapter/adapter_model.safetensors" ] && grep -q '"r": 4' "$work/l/adapter/adapter_config.json" &&
  ok "LoRA writes a PEFT adapter" || bad "LoRA adapter" "$(ls "$work/l" "$work/l/adapter" 2>&1)"
run "the adapter generates" 0 "$forja" generate --adapter "$work/l/adapter" --chat --prompt "hi" --max-tokens 3

# --- bad data -----------------------------------------------------------------------------------
head -n 9 "$train" > "$work/nine.jsonl"
run "nine examples" 1 "$forja" train --train "$work/nine.jsonl" --out "$work/b1" "${T[@]}"
has "says it needs 10" "at least 10"
{ head -n 2 "$train"; echo '{"messages": [{"role": "user", "content": "x"}'; tail -n 8 "$train"; } > "$work/broken.jsonl"
run "a truncated JSON line" 1 "$forja" train --train "$work/broken.jsonl" --out "$work/b2" "${T[@]}"
has "names file and line" "broken.jsonl:3"
{ cat "$train"; echo; printf '{"messages": [{"role": "user", "content": "caf\xe9"}, {"role": "assistant", "content": "x"}]}\n'; } > "$work/latin1.jsonl"
run "invalid UTF-8" 1 "$forja" train --train "$work/latin1.jsonl" --out "$work/b3" "${T[@]}"
has "names the line of the bad byte" "latin1.jsonl:11"
run "missing file" 1 "$forja" train --train "$work/none.jsonl" --out "$work/b4" "${T[@]}"
has "names the missing file" "none.jsonl"
run "epochs out of range" 2 "$forja" train --train "$train" --epochs 51 --out "$work/b5"
run "truncation is a warning" 0 "$forja" train --train "$train" --max-seq-len 40 --epochs 1 \
  --no-checkpoints "${T[@]}" --out "$work/b6"
has "names the truncated line" "training_set.jsonl:1: "
has "counts the truncated examples" "example(s) longer than the context"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
