#!/usr/bin/env bash
# End-to-end tests of `forja chat`.
#   test_chat.sh FORJA_BINARY
# In process, answers are checked against `forja generate` (greedy decoding with the model's
# own KV cache, not the inference engine) on the prompt `forja render --generation-prompt`
# makes of the same conversation, so the history, the system message and /reset are seen to
# reach the model. Fine-tuned names come from a real `forja serve` job (LoRA and full), and
# --url mode is checked against a scripted HTTP server (chunked and plain SSE, errors) and,
# when the server answers chat completions, against `forja serve` itself.
set -u
forja=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=${FORJA_SHARED:-$root/../shared}
train=$shared/data/clippy/training_set.jsonl
work=$(mktemp -d /tmp/forja-chat-test.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null && wait "$p" 2> /dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
unset FORJA_URL FORJA_API_KEY OPENAI_API_KEY FORJA_DATA_DIR
export FORJA_HOME=$work/data
py=/usr/bin/python3
. "$here/lib.sh"

# same NAME FILE_A FILE_B
same() { if cmp -s "$2" "$3"; then ok "$1"; else bad "$1" "$(diff "$2" "$3" | head -8)"; fi; }

# expect MESSAGES_JSON MAX_TOKENS [generate options...]: the greedy answer to the
# conversation as `forja generate` gives it, on the prompt `forja render` makes (with the
# same --model; an --adapter does not change the prompt).
expect() {
  local msgs=$1 n=$2; shift 2
  $py - "$forja" "$msgs" "$n" "$@" <<'PY'
import json, subprocess, sys
forja, msgs, n, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
line = json.dumps({"messages": json.loads(msgs)})
model = extra if extra[:1] == ["--model"] else []
r = subprocess.run([forja, "render", "--generation-prompt", "--json", *model], input=line.encode(),
                   capture_output=True, check=True)
text = json.loads(r.stdout)["text"]
r = subprocess.run([forja, "generate", "--prompt", text, "--max-tokens", n, *extra],
                   capture_output=True, check=True)
sys.stdout.buffer.write(r.stdout)
PY
}

# --- in process: the built-in model ---------------------------------------------------------
run "chat --once" 0 "$forja" chat forja-base --once "hi" --max-tokens 8
[ -s "$work/out" ] && ok "chat --once prints an answer" || bad "chat --once prints nothing"
cp "$work/out" "$work/once1"
run "chat --once again" 0 "$forja" chat forja-base --once "hi" --max-tokens 8
same "temperature 0: the same answer twice" "$work/out" "$work/once1"
expect '[{"role":"user","content":"hi"}]' 8 > "$work/want" &&
  same "the answer is forja generate's greedy continuation" "$work/once1" "$work/want"

run "chat --once --system" 0 "$forja" chat forja-base --system "Be brief" --once "hello" --max-tokens 8
cp "$work/out" "$work/brief"
expect '[{"role":"system","content":"Be brief"},{"role":"user","content":"hello"}]' 8 > "$work/want" &&
  same "--system reaches the model" "$work/brief" "$work/want"

printf '/system Be brief\nhello\n/reset\nhello\n/exit\nnot read\n' |
  "$forja" chat forja-base --max-tokens 8 > "$work/out" 2> "$work/err"
rc=$?
[ $rc -eq 0 ] && ok "interactive: exits 0 at /exit" || bad "interactive exit" "exit $rc" "$(cat "$work/err")"
[ "$(wc -l < "$work/out")" -eq 2 ] && ok "interactive: two answers, nothing after /exit" ||
  bad "interactive answers" "$(cat "$work/out")"
sed -n 1p "$work/out" > "$work/a1"
sed -n 2p "$work/out" > "$work/a2"
same "interactive: the answers before and after /reset are identical" "$work/a1" "$work/a2"
same "interactive: /system set the system message" "$work/a1" "$work/brief"

# without /reset the second answer sees the first turn
printf 'hello\n\nhello\n' | "$forja" chat forja-base --max-tokens 8 > "$work/out" 2> "$work/err"
rc=$?
first=$(sed -n 1p "$work/out")
sed -n 2p "$work/out" > "$work/a2"
msgs=$($py -c 'import json,sys; print(json.dumps([{"role":"user","content":"hello"},
  {"role":"assistant","content":sys.argv[1]},{"role":"user","content":"hello"}]))' "$first")
expect "$msgs" 8 > "$work/want"
[ $rc -eq 0 ] && [ "$(wc -l < "$work/out")" -eq 2 ] && same "interactive: the second turn sees the first" "$work/a2" "$work/want" ||
  bad "interactive conversation" "exit $rc" "$(cat "$work/out" "$work/err")"

printf '/nonsense\nhello\n' | "$forja" chat forja-base --max-tokens 4 > "$work/out" 2> "$work/err"
rc=$?
[ $rc -eq 2 ] && grep -q "unknown command" "$work/err" && [ "$(wc -l < "$work/out")" -eq 1 ] &&
  ok "an unknown command is reported, the session goes on, exit 2" || bad "unknown command" "exit $rc" "$(cat "$work/err")"

run "temperature 1 with a seed" 0 "$forja" chat forja-base --once hi --max-tokens 8 --temperature 1 --seed 5
cp "$work/out" "$work/s1"
run "temperature 1 with the seed again" 0 "$forja" chat forja-base --once hi --max-tokens 8 --temperature 1 --seed 5
same "the same seed samples the same answer" "$work/out" "$work/s1"

# --- errors ---------------------------------------------------------------------------------
run "unknown model" 2 "$forja" chat no-such-model --once hi && has "unknown model: says so" "no-such-model"
[ -e "$work/data/forja.db" ] && bad "an unknown name creates no database" || ok "an unknown name creates no database"
run "an alias in process" 2 "$forja" chat gpt-4o --once hi && has "an alias: says to use --url" "--url"
run "no model" 2 "$forja" chat --once hi && ok "no model: exit 2"
run "bad temperature" 2 "$forja" chat forja-base --once hi --temperature 3 && has "bad temperature: exit 2" "temperature"
run "max-tokens 0" 2 "$forja" chat forja-base --once hi --max-tokens 0 && has "max-tokens 0: exit 2" "max-tokens"
run "https url" 2 "$forja" chat forja-base --once hi --url https://example.com && has "https: says so" "https"
run "nothing listening" 3 "$forja" chat forja-base --once hi --url http://127.0.0.1:1 && has "connection refused: says so" "cannot connect"

# --- --url against a scripted server --------------------------------------------------------
# Each model name selects a reply; every request is logged (headers and body) for the checks.
cat > "$work/mock.py" <<'PY'
import json, socket, sys
port_file, log_file = sys.argv[1], sys.argv[2]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(8)
open(port_file, "w").write(str(srv.getsockname()[1]))

def ev(obj):
    return "data: " + json.dumps(obj) + "\n\n"

def chunk(content=None, role=None, finish=None):
    d = {}
    if role: d["role"] = role
    if content is not None: d["content"] = content
    return ev({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d, "finish_reason": finish}]})

def stream(words):
    return (chunk(role="assistant", content="") + ": a comment line\n\n" +
            "".join(chunk(w) for w in words) + chunk(finish="stop") + "data: [DONE]\n\n")

while True:
    c, _ = srv.accept()
    f = c.makefile("rb")
    request_line = f.readline().decode()
    headers = {}
    while True:
        l = f.readline().decode().rstrip("\r\n")
        if not l: break
        k, v = l.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = json.loads(f.read(int(headers["content-length"])))
    with open(log_file, "a") as lf:
        lf.write(json.dumps({"line": request_line.strip(), "headers": headers, "body": body}) + "\n")
    model = body["model"]
    turn = sum(1 for m in body["messages"] if m["role"] == "user")
    words = ["Hel", "lo, ", "w\u00f6rld", " #%d" % turn]
    sse = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    if model == "mock-chunked":
        data = stream(words).encode()
        out = (sse + "Transfer-Encoding: chunked\r\n\r\n").encode()
        for i in range(0, len(data), 7):  # chunks that cut events, lines and UTF-8 apart
            out += b"%x\r\n" % len(data[i:i + 7]) + data[i:i + 7] + b"\r\n"
        out += b"0\r\n\r\n"
    elif model == "mock-plain":  # no framing: the body ends when the connection does
        out = (sse + "\r\n" + stream(words).replace("\n", "\r\n")).encode()
    elif model == "mock-length":
        data = stream(words).encode()
        out = (sse + "Content-Length: %d\r\n\r\n" % len(data)).encode() + data
    elif model == "mock-cut":
        out = (sse + "\r\n" + chunk("half")).encode()
    elif model == "mock-failing":
        out = (sse + "\r\n" + chunk("par") + ev({"error": {"message": "the engine failed"}})).encode()
    else:
        status = {"mock-400": "400 Bad Request", "mock-401": "401 Unauthorized"}.get(model, "404 Not Found")
        err = json.dumps({"error": {"message": "scripted error for %s" % model, "type": "invalid_request_error"}}).encode()
        out = ("HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (status, len(err))).encode() + err
    c.sendall(out)
    f.close()
    c.close()
PY
$py "$work/mock.py" "$work/mock.port" "$work/mock.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/mock.port" ] && break; sleep 0.05; done
mock=http://127.0.0.1:$(cat "$work/mock.port")
printf 'Hello, w\303\266rld #1\n' > "$work/want"
for m in chunked plain length; do
  run "--url: $m stream" 0 env FORJA_API_KEY=fj-test "$forja" chat mock-$m --url "$mock" --once "hi"
  same "--url: $m stream printed as it came" "$work/out" "$work/want"
done
$py - "$work/mock.log" > "$work/req" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).readline())
b = r["body"]
print(r["line"], r["headers"].get("authorization"), b["model"], b["stream"], b["max_tokens"],
      b["temperature"], "seed" in b, json.dumps(b["messages"]))
PY
echo 'POST /v1/chat/completions HTTP/1.1 Bearer fj-test mock-chunked True 256 0.0 False [{"role": "user", "content": "hi"}]' > "$work/want"
same "--url: the request (path, key, model, stream, defaults, messages)" "$work/req" "$work/want"

: > "$work/mock.log"
printf 'one\n/system S\ntwo\n' | FORJA_URL=$mock/v1/ OPENAI_API_KEY=sk-x "$forja" chat mock-chunked \
  --max-tokens 9 --seed 4 > "$work/out" 2>&1
rc=$?
$py - "$work/mock.log" > "$work/req" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    b = r["body"]
    print(r["line"].split()[1], r["headers"].get("authorization"), b["max_tokens"], b["seed"],
          json.dumps(b["messages"]))
PY
cat > "$work/want" <<'EOF'
/v1/chat/completions Bearer sk-x 9 4 [{"role": "user", "content": "one"}]
/v1/chat/completions Bearer sk-x 9 4 [{"role": "system", "content": "S"}, {"role": "user", "content": "one"}, {"role": "assistant", "content": "Hello, w\u00f6rld #1"}, {"role": "user", "content": "two"}]
EOF
[ $rc -eq 0 ] && same "--url: \$FORJA_URL (a /v1 base), \$OPENAI_API_KEY, the conversation sent back" "$work/req" "$work/want" ||
  bad "--url conversation" "exit $rc" "$(cat "$work/out")"

run "--url: 404" 2 "$forja" chat mock-gone --url "$mock" --once hi && has "--url: 404 prints the server's message" "scripted error for mock-gone"
run "--url: 400" 1 "$forja" chat mock-400 --url "$mock" --once hi && has "--url: 400 prints the server's message" "scripted error for mock-400"
run "--url: 401 without a key" 3 "$forja" chat mock-401 --url "$mock" --once hi && has "--url: 401 says to set a key" "FORJA_API_KEY"
run "--url: a stream cut short" 3 "$forja" chat mock-cut --url "$mock" --once hi && has "--url: cut short: says so" "ended before"
run "--url: an error event" 3 "$forja" chat mock-failing --url "$mock" --once hi && has "--url: an error event: its message" "the engine failed"
printf 'a\nb\n' | "$forja" chat mock-gone --url "$mock" > "$work/out" 2>&1
rc=$?
[ $rc -eq 2 ] && [ "$(grep -c "scripted error" "$work/out")" -eq 1 ] &&
  ok "--url: an unknown model ends the session" || bad "--url: unknown model, interactive" "exit $rc" "$(cat "$work/out")"

# --- fine-tuned models from forja serve -----------------------------------------------------
"$forja" serve --data-dir "$work/data" --port 0 --max-jobs 2 --quiet > "$work/serve.out" 2> "$work/serve.err" &
pids+=($!)
for _ in $(seq 1 200); do grep -q "listening on" "$work/serve.out" && break; sleep 0.05; done
url=$(grep -o 'http://[0-9.]*:[0-9]*' "$work/serve.out" | head -n 1)
key=$(awk '/^API key:/ {print $3}' "$work/serve.out")
fid=
if [ -z "$url" ] || [ -z "$key" ]; then
  bad "forja serve starts" "$(cat "$work/serve.out" "$work/serve.err")"
else
  auth=(-H "Authorization: Bearer $key")
  fid=$(curl -s "${auth[@]}" -F purpose=fine-tune -F "file=@$train" "$url/v1/files" |
    $py -c 'import json,sys; print(json.load(sys.stdin)["id"])' 2> /dev/null)
fi
if [ -z "$url" ] || [ -z "$key" ] || [ -z "$fid" ]; then
  [ -z "$url" ] || bad "forja serve takes the training file ($train)"
else
  job() { # job SUFFIX TYPE: a job id
    curl -s "${auth[@]}" -H 'Content-Type: application/json' "$url/v1/fine_tuning/jobs" -d \
      "{\"model\":\"forja-base\",\"training_file\":\"$fid\",\"seed\":3,\"suffix\":\"$1\",\"method\":{\"type\":\"supervised\",\"supervised\":{\"hyperparameters\":{\"n_epochs\":2,\"training_type\":\"$2\"}}}}" |
      $py -c 'import json,sys; print(json.load(sys.stdin)["id"])'
  }
  lora=$(job lora lora)
  full=$(job full full)
  status() { curl -s "${auth[@]}" "$url/v1/fine_tuning/jobs/$1" | $py -c 'import json,sys; d=json.load(sys.stdin); print(d["status"], d["fine_tuned_model"])'; }
  for _ in $(seq 1 600); do
    [ "$(status "$lora" | cut -d' ' -f1)" = succeeded ] && [ "$(status "$full" | cut -d' ' -f1)" = succeeded ] && break
    sleep 0.2
  done
  lora_ft=$(status "$lora" | cut -d' ' -f2)
  full_ft=$(status "$full" | cut -d' ' -f2)
  q="Who discovered Antarctica?"
  sys="Clippy is a factual chatbot that is also sarcastic."
  msgs=$($py -c 'import json,sys; print(json.dumps([{"role":"system","content":sys.argv[1]},{"role":"user","content":sys.argv[2]}]))' "$sys" "$q")
  jobs_dir=$work/data/jobs
  # name | the folders forja generate is given
  case "$lora_ft $full_ft" in
  ft:*" ft:"*) ok "forja serve: a LoRA and a full fine-tuning job succeed" ;;
  *) bad "forja serve: fine-tuning jobs" "$(status "$lora") / $(status "$full")" ;;
  esac
  while IFS='|' read -r name gen; do
    run "in process: $name" 0 "$forja" chat "$name" --system "$sys" --once "$q" --max-tokens 24
    cp "$work/out" "$work/got"
    # shellcheck disable=SC2086
    expect "$msgs" 24 $gen > "$work/want"
    same "in process: $name answers as forja generate with its folders" "$work/got" "$work/want"
  done <<EOF
$lora_ft|--adapter $jobs_dir/$lora/adapter
$lora_ft:ckpt-step-10|--adapter $jobs_dir/$lora/checkpoints/ckpt-step-10/adapter
$full_ft|--model $jobs_dir/$full/model
$full_ft:ckpt-step-10|--model $jobs_dir/$full/checkpoints/ckpt-step-10/model
EOF
  expect "$msgs" 24 > "$work/base"
  cmp -s "$work/base" "$work/got" && bad "the fine-tunes answer otherwise than the base" ||
    ok "the fine-tunes answer otherwise than the base"

  # --url against forja serve, when it answers chat completions
  code=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" -H 'Content-Type: application/json' \
    -d '{"model":"forja-base","messages":[{"role":"user","content":"hi"}],"max_tokens":1}' \
    "$url/v1/chat/completions")
  if [ "$code" != 200 ]; then
    echo "skip --url against forja serve: POST /v1/chat/completions answers $code"
  else
    for name in forja-base "$lora_ft" "$full_ft:ckpt-step-10"; do
      run "in process: $name" 0 "$forja" chat "$name" --system "$sys" --once "$q" --max-tokens 24
      cp "$work/out" "$work/local"
      run "--url: $name" 0 env FORJA_API_KEY="$key" "$forja" chat "$name" --url "$url" --system "$sys" --once "$q" --max-tokens 24
      same "--url: $name answers as in process" "$work/out" "$work/local"
    done
    printf '/system Be brief\nhello\n/reset\nhello\n' | FORJA_API_KEY=$key "$forja" chat forja-base --url "$url" --max-tokens 8 > "$work/out" 2>&1
    printf '/system Be brief\nhello\n/reset\nhello\n' | "$forja" chat forja-base --max-tokens 8 > "$work/local" 2>&1
    same "--url: an interactive session answers as in process" "$work/out" "$work/local"
    run "--url: gpt-4o (an alias)" 0 env FORJA_API_KEY="$key" "$forja" chat gpt-4o --url "$url" --once hi --max-tokens 8
    same "--url: an alias answers as its model" "$work/out" "$work/once1"
    run "--url: an unknown model" 2 env FORJA_API_KEY="$key" "$forja" chat no-such-model --url "$url" --once hi
    has "--url: an unknown model: the server's message" "no-such-model"
    run "--url: a wrong key" 3 env FORJA_API_KEY=fj-wrong "$forja" chat forja-base --url "$url" --once hi &&
      has "--url: a wrong key: exit 3 with the server's status" "answered 401"
  fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
