#!/usr/bin/python3
"""bench/finetune/prepare.py - the inputs of bench/finetune: a GPT-2-shaped model folder with
random weights and a JSONL file of synthetic conversations of about --tokens tokens each.

    prepare.py model --out DIR --tok-dump BUILD/tests/tok_dump [--layers 12 --embd 768
               --heads 12 --vocab 50257 --n-ctx 1024 --seed 0]
    prepare.py data --out FILE.jsonl --forja BUILD/forja --model DIR [--rendered OUT.jsonl]
               [--conversations 32 --tokens 256 --jitter 8 --seed 0]

model: config.json as transformers writes GPT-2's (GPT2LMHeadModel, gelu_new, eps 1e-5,
dropout 0.0 since neither side models it), generation_config.json, model.safetensors (F32,
HF's names, written with tests/reference/st.py; matrices and embeddings N(0, 0.02),
LayerNorm weights 1, biases 0), tokenizer.json = tiktoken's r50k_base as forja writes it
(tests/tok/tok_dump --write-hf). No tokenizer_config.json: no chat template, so forja renders
ChatML as plain text.

data: lines {"messages": [system, user, assistant]} of random words (a fixed made-up word
list, numpy PCG64 from --seed). Each conversation gets a target length drawn uniformly from
tokens +- jitter; its assistant turn is then grown or cut, re-rendered with `forja render
--json --mask` each time, until the rendered sequence is within 4 tokens of the target.
--rendered keeps the last rendering of each line, {"ids": [..], "mask": [..]}: the exact
token ids and loss masks forja trains on (bench/finetune/reference.py reads them). Prints one
JSON line of statistics.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import ref_models as rm  # noqa: E402
import st  # noqa: E402


def hf_config(a):
    """GPT2Config.to_json_file(): every key, sorted, as transformers 4.45 writes it."""
    return {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.0,
        "bos_token_id": 50256,
        "embd_pdrop": 0.0,
        "eos_token_id": 50256,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_ctx": a.n_ctx,
        "n_embd": a.embd,
        "n_head": a.heads,
        "n_inner": None,
        "n_layer": a.layers,
        "n_positions": a.n_ctx,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.0,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.0,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "torch_dtype": "float32",
        "transformers_version": "4.45.2",
        "use_cache": True,
        "vocab_size": a.vocab,
    }


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def make_model(a):
    os.makedirs(a.out, exist_ok=True)
    d = hf_config(a)
    cfg = rm.config_from_hf(d)
    rng = np.random.default_rng(a.seed)
    tensors = {}
    for name, shape in rm.param_shapes(cfg).items():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            t = np.ones(shape, np.float32)
        elif len(shape) == 1:
            t = np.zeros(shape, np.float32)
        else:
            t = rng.standard_normal(shape, dtype=np.float32)
            t *= np.float32(0.02)
        tensors[name] = t
    st.write(os.path.join(a.out, "model.safetensors"), tensors, {"format": "pt"})
    n = sum(t.size for t in tensors.values())
    del tensors
    write_json(os.path.join(a.out, "config.json"), d)
    write_json(os.path.join(a.out, "generation_config.json"),
               {"bos_token_id": 50256, "eos_token_id": 50256,
                "transformers_version": "4.45.2"})
    subprocess.run([a.tok_dump, "--write-hf", "r50k_base", os.path.join(a.out, "tokenizer.json")],
                   check=True, stdout=subprocess.DEVNULL)
    print(json.dumps({"model": a.out, "params": int(n)}))


# ---------------------------------------------------------------------------------------
# synthetic conversations

SYLLABLES = ["ka", "lo", "mi", "ter", "ran", "su", "vel", "dor", "pi", "en", "ash", "qua",
             "bri", "mon", "tel", "zu", "or", "fen", "gal", "hu", "ix", "jor", "ne", "pol",
             "sta", "rin", "cu", "da", "vo", "wen"]


def word_list(rng, n=3000):
    words = set()
    while len(words) < n:
        k = int(rng.integers(1, 4))
        words.add("".join(rng.choice(SYLLABLES, k)))
    return sorted(words)


def sentence(rng, words, n):
    w = list(rng.choice(words, n))
    w[0] = w[0].capitalize()
    return " ".join(w) + "."


def render(forja, model, conv):
    p = subprocess.run([forja, "render", "--model", model, "--json", "--mask"],
                       input=json.dumps(conv), capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit("forja render failed: " + p.stderr.strip())
    return json.loads(p.stdout)


def make_data(a):
    rng = np.random.default_rng(a.seed)
    words = word_list(rng)
    lines, rendered, lengths, counted = [], [], [], []
    ratio = 2.5  # tokens per word of the assistant turn, refined as they are rendered
    per_char = 0.3  # the fixed part's tokens per character of system + user, likewise
    renders = 0
    for i in range(a.conversations):
        target = int(rng.integers(a.tokens - a.jitter, a.tokens + a.jitter + 1))
        system = sentence(rng, words, int(rng.integers(6, 12)))
        user = " ".join(sentence(rng, words, int(rng.integers(5, 12))) for _ in range(3))
        # an assistant turn of n words: grow or cut until the rendering is near the target
        pool = [sentence(rng, words, 10) for _ in range(200)]
        text = " ".join(pool)
        alltok = text.split(" ")
        # the first rendering tells this conversation's fixed part (the unmasked tokens)
        # and its tokens per word, the second is usually within a few tokens of the target
        n = max(1, int((target - per_char * (len(system) + len(user))) / ratio))
        for _ in range(8):
            conv = {"messages": [{"role": "system", "content": system},
                                 {"role": "user", "content": user},
                                 {"role": "assistant", "content": " ".join(alltok[:n])}]}
            r = render(a.forja, a.model, conv)
            renders += 1
            got = len(r["ids"])
            if abs(got - target) <= 4:
                break
            ratio = max(1.0, sum(r["mask"]) / n)
            per_char = (got - sum(r["mask"])) / (len(system) + len(user))
            n = max(1, int(round((target - (got - sum(r["mask"]))) / ratio)))
        lines.append(json.dumps(conv))
        rendered.append(json.dumps({"ids": r["ids"], "mask": r["mask"]}))
        lengths.append(got)
        counted.append(sum(r["mask"]))
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    if a.rendered:
        with open(a.rendered, "w") as f:
            f.write("\n".join(rendered) + "\n")
    print(json.dumps({"data": a.out, "conversations": len(lines), "tokens": int(sum(lengths)),
                      "min": min(lengths), "max": max(lengths),
                      "mean": sum(lengths) / len(lengths), "counted": int(sum(counted)),
                      "renders": renders}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    m = sub.add_parser("model")
    m.add_argument("--out", required=True)
    m.add_argument("--tok-dump", required=True)
    m.add_argument("--layers", type=int, default=12)
    m.add_argument("--embd", type=int, default=768)
    m.add_argument("--heads", type=int, default=12)
    m.add_argument("--vocab", type=int, default=50257)
    m.add_argument("--n-ctx", type=int, default=1024)
    m.add_argument("--seed", type=int, default=0)
    d = sub.add_parser("data")
    d.add_argument("--out", required=True)
    d.add_argument("--forja", required=True)
    d.add_argument("--model", required=True)
    d.add_argument("--rendered", help="also write each line's final rendering (ids, mask)")
    d.add_argument("--conversations", type=int, default=32)
    d.add_argument("--tokens", type=int, default=256)
    d.add_argument("--jitter", type=int, default=8)
    d.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.what == "model":
        make_model(a)
    else:
        make_data(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
