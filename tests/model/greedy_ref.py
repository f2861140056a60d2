#!/usr/bin/python3
"""greedy_ref.py - the PyTorch reference's greedy continuation, to check `forja generate`.

    greedy_ref.py MODEL_DIR --prompt-ids 1,2,3 --max-tokens N [--stop 297,298]
    greedy_ref.py MODEL_DIR --add-tokenizer

--add-tokenizer gives a model folder written by tests/reference/make_case.py (vocabulary
V <= 300) a tokenizer that forja and transformers can load: byte-level BPE with no merges,
ordered so that token id == byte value (bytes 0..255), and the last three ids special:
<|im_start|>, <|im_end|>, <|endoftext|>; plus a tokenizer_config.json with ChatML and
eos_token <|im_end|>. A prompt's ids are then its UTF-8 bytes, which this script knows
without any tokenizer.

The continuation is computed in float64 with the full forward at every step (no cache), by
tests/reference/ref_models.py. Prints one JSON line: {"ids": [...], "min_margin": m}, where
min_margin is the smallest gap between the best and second-best logit over the steps (a
near-tie could flip between float64 and forja's fp32).
"""
import argparse
import json
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "reference"))
import ref_models as rm  # noqa: E402
import st  # noqa: E402

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt "
          "%}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def byte_to_unicode():
    """GPT-2's printable stand-ins for the 256 bytes (as in its encoder.py)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
          list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def add_tokenizer(model_dir):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    V = cfg["vocab_size"]
    assert V >= 259, "needs room for 256 bytes and 3 specials"
    b2u = byte_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    first = V - 3
    added = [{"id": first + i, "content": s, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True}
             for i, s in enumerate(SPECIALS)]
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "",
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": []},
    }
    with open(os.path.join(model_dir, "tokenizer.json"), "w") as f:
        json.dump(tok, f, ensure_ascii=False)
    tc = {"chat_template": CHATML, "bos_token": None, "eos_token": "<|im_end|>",
          "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": cfg.get(
              "max_position_embeddings", cfg.get("n_positions"))}
    with open(os.path.join(model_dir, "tokenizer_config.json"), "w") as f:
        json.dump(tc, f, indent=2)


def greedy(model_dir, prompt, max_tokens, stop):
    hf = json.load(open(os.path.join(model_dir, "config.json")))
    cfg = rm.config_from_hf(hf)
    W = st.read(os.path.join(model_dir, "model.safetensors"))[0]
    P = {k: torch.tensor(v, dtype=torch.float64) for k, v in W.items()}
    ids = list(prompt)
    out, margin = [], float("inf")
    with torch.no_grad():
        for _ in range(max_tokens):
            logits = rm.forward(cfg, P, torch.tensor([ids]))[0, -1]
            top = torch.topk(logits, 2)
            margin = min(margin, float(top.values[0] - top.values[1]))
            nxt = int(top.indices[0])
            if nxt in stop:
                break
            out.append(nxt)
            ids.append(nxt)
    return out, margin


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--add-tokenizer", action="store_true")
    ap.add_argument("--prompt-ids", default="")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--stop", default="")
    a = ap.parse_args()
    if a.add_tokenizer:
        add_tokenizer(a.model_dir)
        return
    prompt = [int(x) for x in a.prompt_ids.split(",") if x]
    stop = {int(x) for x in a.stop.split(",") if x}
    ids, margin = greedy(a.model_dir, prompt, a.max_tokens, stop)
    print(json.dumps({"ids": ids, "min_margin": margin}))


if __name__ == "__main__":
    main()
