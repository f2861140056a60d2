#!/usr/bin/python3
"""bench/serve/prompts.py - the chat requests of bench/serve, with their token ids as forja
renders them, so that forja (over HTTP) and the PyTorch reference work on the same ids.

    prompts.py --forja BUILD/forja --data-dir DIR --model NAME|PATH --out FILE.json
               [--prompt-tokens 512] [--streams 64] [--seed 0]

Writes FILE.json:
  prefill_messages   one user message whose rendering (`forja render --generation-prompt`,
                     what the server does with a chat request) is --prompt-tokens ids
  prefill            those ids
  decode_messages    a short user message (the single-stream decoding prompt), and decode:
                     its ids
  stream_messages    --streams different short user messages (one per concurrent stream)
  stop               the model's end-of-turn / end-of-sequence ids (`forja models show`)
Messages are random common English words (numpy PCG64 from --seed): the models have random
weights, so what the words say does not matter, only how many tokens they make.
"""
import argparse
import json
import re
import subprocess
import sys

import numpy as np

WORDS = (
    "the of and to in is was for on that with as by at from his her they this are be had "
    "not but which one all were when we there can an their has more will would about if "
    "time so up out into than them some could other new first two people may over only "
    "its also after most where made many before must through back years much way well "
    "down should because each just those how too little state good very make world still "
    "own see men work long here between both life under never day same another know while "
    "last might great old year off come since against go came right used take three "
    "house water river stone cloud light green small large city road field music window "
    "garden letter paper table market winter summer morning evening bread coffee mountain "
    "ocean forest animal number story family country school report answer problem power"
).split()


def render(a, messages):
    p = subprocess.run([a.forja, "render", "--generation-prompt", "--json", "--model", a.model,
                        "--data-dir", a.data_dir], input=json.dumps(messages),
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit("prompts.py: forja render failed: " + p.stderr.strip())
    return json.loads(p.stdout)["ids"]


def user(text):
    return [{"role": "user", "content": text}]


def stop_ids(a):
    p = subprocess.run([a.forja, "models", "show", a.model, "--data-dir", a.data_dir],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit("prompts.py: forja models show failed: " + p.stderr.strip())
    for line in p.stdout.splitlines():
        if line.startswith("end of turn:"):
            return [int(x) for x in re.findall(r"\((\d+)\)", line)]
    return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--forja", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    words = [str(w) for w in rng.choice(WORDS, 4 * a.prompt_tokens)]

    # the prompt of exactly --prompt-tokens ids: the template's own tokens are fixed, and
    # every appended word adds one token or more; home in on the count, then pad with " a"
    # (one token in both cl100k_base and GPT-2's r50k_base)
    target = a.prompt_tokens
    overhead = len(render(a, user("")))
    n = max(1, target - overhead)
    best = None
    for _ in range(12):
        text = " ".join(words[:n])
        ids = render(a, user(text))
        if len(ids) <= target and (best is None or len(ids) > len(best[1])):
            best = (text, ids)
        if len(ids) == target:
            break
        n = max(1, n + (target - len(ids)) if len(ids) < target else n - max(1, (len(ids) - target)))
    text, ids = best
    for _ in range(4):
        if len(ids) >= target:
            break
        text = text + " a" * (target - len(ids))
        ids = render(a, user(text))
    prefill_messages = user(text)

    def short(k):
        w = [str(x) for x in rng.choice(WORDS, 24)]
        return user("Request %d: %s." % (k, " ".join(w)))

    decode_messages = user("Tell me a story about " + " ".join(
        str(x) for x in rng.choice(WORDS, 20)) + ".")
    out = {"model": a.model, "prefill_messages": prefill_messages, "prefill": ids,
           "decode_messages": decode_messages, "decode": render(a, decode_messages),
           "stream_messages": [short(k) for k in range(a.streams)], "stop": stop_ids(a)}
    with open(a.out, "w") as f:
        json.dump(out, f)
    print(json.dumps({"model": a.model, "prefill_tokens": len(ids),
                      "decode_prompt_tokens": len(out["decode"]), "stop": out["stop"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
