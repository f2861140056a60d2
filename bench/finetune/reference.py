#!/usr/bin/python3
"""bench/finetune/reference.py - PyTorch's time and memory for one fine-tuning epoch, the
reference of bench/finetune (forja train on the same data).

    reference.py --model DIR --rendered FILE [--method full|lora] [--batch 4] [--threads 2]
                 [--lora-rank 8 --lora-alpha 16 --lora-targets c_attn,c_proj,c_fc]
                 [--lr X] [--seed 0] [--pad global|batch]

DIR: a GPT-2 model folder (config.json, model.safetensors in F32); FILE: one JSON object per
line with "ids" and "mask", what `forja render --json --mask` prints for each conversation,
so both sides train on the same token ids and loss masks. An example of n tokens takes n - 1
positions (token i predicts token i + 1, which counts in the loss when its mask is 1);
batches of --batch examples in forja train's order for --seed (forja_order), right-padded
(mask 0) to the longest example of the whole file (--pad global, the row length forja uses)
or of the batch.

One optimizer step per batch: the masked mean cross-entropy sum(mask * CE) / sum(mask) over
the batch, backward, torch.nn.utils.clip_grad_norm_(1.0), torch.optim.AdamW (betas 0.9,
0.999, eps 1e-8; weight decay 0.01 on 2-D tensors and 0 on 1-D ones for full fine-tuning,
0 for LoRA) with forja's schedule (linear warm-up over ceil(5%) of the steps, at least 1,
then linear decay) and forja's rates (2e-5 full for models of >= 50M parameters, 2e-4
LoRA). float32, torch.set_num_threads(--threads). The model is the GPT-2 of
tests/reference/ref_models.py (the fast torch formulation bench/train_step/reference.py
uses); LoRA as PEFT: A (r, in) kaiming-uniform, B (out, r) zeros, scaling alpha / r, the
base frozen.

Only the epoch loop is timed (not loading). Prints one JSON line:
  {"impl":"pytorch","method":..,"tokens":..,"positions":..,"padded_positions":..,
   "steps":..,"train_seconds":..,"tokens_per_s":..,"step_s":[..],"losses":[..],
   "params":..,"trainable_params":..,"seq":T,"maxrss_kib":..}
tokens = the sum of the examples' n (forja's count in train.json), positions = sum of n - 1.
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import ref_models as rm  # noqa: E402


def load_safetensors_f32(path):
    """name -> float32 torch tensor, read tensor by tensor (no whole-file buffer, no mmap,
    so resident memory is the weights once, as a PyTorch user loading a checkpoint gets)."""
    out = {}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        for name, h in header.items():
            if name == "__metadata__":
                continue
            if h["dtype"] != "F32":
                raise SystemExit("%s: %s, this reference reads F32 only" % (name, h["dtype"]))
            b, e = h["data_offsets"]
            f.seek(base + b)
            a = np.fromfile(f, dtype="<f4", count=(e - b) // 4).reshape(h["shape"])
            out[name] = torch.from_numpy(a)
    return out


M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def _mix64(x):
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def forja_order(n, seed, epoch=0):
    """The epoch order forja train uses (src/train/loop.c shuffle(): Fisher-Yates driven by
    splitmix64 from (seed, 0-based epoch), src/core/rng.h), so that step k trains on the
    same examples on both sides and the first step's loss (same weights, same examples) can
    be compared. If forja changes its shuffle, only that comparison is affected."""
    state = _mix64((seed ^ _mix64((0x73687566666C65 + epoch + GOLDEN) & M64)) + GOLDEN & M64)
    perm = list(range(n))
    for i in range(n, 1, -1):
        state = (state + GOLDEN) & M64
        j = _mix64(state) % i
        perm[i - 1], perm[j] = perm[j], perm[i - 1]
    return perm


def lr_factor(s, total, warmup):
    """forja's train_lr_factor: (s + 1) / warmup, then (total - s) / (total - warmup)."""
    if s < warmup:
        return (s + 1) / warmup
    if total <= warmup:
        return 1.0
    return (total - s) / (total - warmup)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--rendered", required=True)
    ap.add_argument("--method", choices=("full", "lora"), default="full")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=16.0)
    ap.add_argument("--lora-targets", default="c_attn,c_proj,c_fc")
    ap.add_argument("--lr", type=float, default=0.0, help="0: forja's rule")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pad", choices=("global", "batch"), default="global")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = rm.config_from_hf(json.load(f))
    P = load_safetensors_f32(os.path.join(a.model, "model.safetensors"))
    n_params = sum(t.numel() for t in P.values())
    full = a.method == "full"

    if full:
        for t in P.values():
            t.requires_grad_(True)
        decay = [t for t in P.values() if t.dim() >= 2]
        no_decay = [t for t in P.values() if t.dim() < 2]
        groups = [{"params": decay, "weight_decay": 0.01},
                  {"params": no_decay, "weight_decay": 0.0}]
        trainable = decay + no_decay
        lora = None
        base_lr = 2e-5 if n_params >= 50_000_000 else 2e-3
    else:
        lora = {}
        trainable = []
        scaling = a.lora_alpha / a.lora_rank
        targets = [t for t in a.lora_targets.split(",") if t]
        for path, (fin, fout) in rm.lora_modules(cfg, targets).items():
            bound = 1.0 / math.sqrt(fin)  # kaiming_uniform_(a=sqrt(5)) on (r, in)
            A = (torch.rand(a.lora_rank, fin) * 2 - 1).mul_(bound).requires_grad_(True)
            B = torch.zeros(fout, a.lora_rank, requires_grad=True)
            lora[path] = (A, B, scaling)
            trainable += [A, B]
        groups = [{"params": trainable, "weight_decay": 0.0}]
        base_lr = 2e-4
    lr = a.lr if a.lr > 0 else base_lr
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    n_trainable = sum(t.numel() for t in trainable)

    with open(a.rendered) as f:
        examples = [json.loads(line) for line in f if line.strip()]
    longest = max(len(e["ids"]) for e in examples) - 1
    order = forja_order(len(examples), a.seed)
    batches = []
    for s in range(0, len(order), a.batch):
        ex = [examples[i] for i in order[s:s + a.batch]]
        T = longest if a.pad == "global" else max(len(e["ids"]) for e in ex) - 1
        tok = torch.zeros(len(ex), T, dtype=torch.long)
        tgt = torch.zeros(len(ex), T, dtype=torch.long)
        msk = torch.zeros(len(ex), T, dtype=torch.float32)
        for r, e in enumerate(ex):
            n = len(e["ids"]) - 1
            tok[r, :n] = torch.tensor(e["ids"][:-1])
            tgt[r, :n] = torch.tensor(e["ids"][1:])
            msk[r, :n] = torch.tensor(e["mask"][1:], dtype=torch.float32)
        batches.append((tok, tgt, msk, sum(len(e["ids"]) for e in ex)))
    total = len(batches)
    warmup = max(1, math.ceil(0.05 * total))

    step_s, losses = [], []
    t_start = time.perf_counter()
    for s, (tok, tgt, msk, _) in enumerate(batches):
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr * lr_factor(s, total, warmup)
        opt.zero_grad(set_to_none=True)
        logits = rm.forward(cfg, P, tok, lora)
        B, T, V = logits.shape
        ce = F.cross_entropy(logits.view(B * T, V), tgt.view(-1), reduction="none")
        loss = (ce * msk.view(-1)).sum() / msk.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        losses.append(loss.item())
        step_s.append(time.perf_counter() - t0)
    train_seconds = time.perf_counter() - t_start

    tokens = sum(b[3] for b in batches)
    positions = sum(len(e["ids"]) - 1 for e in examples)
    padded = sum(b[0].numel() for b in batches)
    print(json.dumps({"impl": "pytorch", "method": a.method, "tokens": tokens,
                      "positions": positions, "padded_positions": padded, "steps": total,
                      "train_seconds": train_seconds, "tokens_per_s": tokens / train_seconds,
                      "step_s": step_s, "losses": losses, "lr": lr, "params": n_params,
                      "trainable_params": n_trainable, "seq": longest, "threads": a.threads,
                      "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
