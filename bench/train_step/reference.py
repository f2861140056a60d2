#!/usr/bin/python3
"""bench/train_step/reference.py - PyTorch's time for one fine-tuning step of a
GPT-2-124M-shaped model, the speed reference for forja's training step.

    bench/train_step/reference.py [--threads N] [--steps K] [--batch B] [--seq T]
                                  [--lora R] [--layers L --embd C --heads NH --vocab V]

One step = forward + backward of the mean cross-entropy over all B*T tokens (no optimizer,
no masking), in float32, with the GPT-2 of tests/reference/ref_models.py: the same code the
oracle runs, which is already the fast formulation torch 1.13 offers (F.linear / addmm for
the projections, F.layer_norm, F.gelu(approximate="tanh") for gelu_new, batched matmuls
for attention, F.cross_entropy). Default shape: 12 layers, 12 heads, C=768, V=50304,
n_ctx 1024, batch 4 x 256 tokens. --lora R puts LoRA (alpha = 2R) on every c_attn, c_proj
and c_fc and freezes the base, as PEFT would.

One warm-up step, then the median of K timed steps. Prints one JSON line:
  {"impl":"pytorch","mode":"full"|"lora","tokens_per_s":..,"step_s":..,"threads":N,
   "params":..,"trainable_params":..,"batch":B,"seq":T,"steps":K,"step_s_all":[..],"loss":..}
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import ref_models as rm  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--lora", type=int, default=0, help="LoRA rank (0: full fine-tuning)")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--embd", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--n-ctx", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = rm.config_from_hf({"model_type": "gpt2", "n_layer": a.layers, "n_embd": a.embd,
                             "n_head": a.heads, "vocab_size": a.vocab, "n_positions": a.n_ctx,
                             "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"})
    full = a.lora == 0
    P = {}
    for name, shape in rm.param_shapes(cfg).items():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            t = torch.ones(shape)
        elif len(shape) == 1:
            t = torch.zeros(shape)
        else:
            t = torch.randn(shape) * 0.02
        P[name] = t.requires_grad_(full)
    n_params = sum(t.numel() for t in P.values())

    lora = None
    trainable = list(P.values()) if full else []
    if not full:
        lora = {}
        for path, (fin, fout) in rm.lora_modules(cfg, ["c_attn", "c_proj", "c_fc"]).items():
            bound = 1.0 / math.sqrt(fin)
            A = (torch.rand(a.lora, fin) * 2 - 1).mul_(bound).requires_grad_(True)
            B = (torch.randn(fout, a.lora) * 0.01).requires_grad_(True)
            lora[path] = (A, B, 2.0)
            trainable += [A, B]
    n_trainable = sum(t.numel() for t in trainable)

    tokens = torch.randint(0, cfg.V, (a.batch, a.seq))
    targets = torch.randint(0, cfg.V, (a.batch, a.seq))

    def step():
        for t in trainable:
            t.grad = None
        logits = rm.forward(cfg, P, tokens, lora)
        loss = F.cross_entropy(logits.view(-1, cfg.V), targets.view(-1))
        loss.backward()
        return loss.item()

    loss = step()  # warm-up
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({"impl": "pytorch", "mode": "full" if full else "lora",
                      "tokens_per_s": a.batch * a.seq / med, "step_s": med,
                      "threads": a.threads, "params": n_params,
                      "trainable_params": n_trainable, "batch": a.batch, "seq": a.seq,
                      "steps": a.steps, "step_s_all": times, "loss": loss,
                      "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
