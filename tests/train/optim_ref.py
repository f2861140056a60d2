#!/usr/bin/python3
"""optim_ref.py - an independent PyTorch reference of forja's optimizer step (float64).

    optim_ref.py CASE_DIR OUT_DIR --steps K --lr LR --warmup W --total S --wd WD

CASE_DIR is a case written by tests/reference/make_case.py (model/, batch.safetensors and,
for a LoRA case, adapter/). Every optimizer step s = 0..K-1, on the same batch:

  loss    = sum(mask * cross_entropy(logits, targets)) / sum(mask) over the whole batch
            (ref_models.masked_loss; forja splits the batch into micro-batches, the
            gradient is still that of the whole batch)
  clip    torch.nn.utils.clip_grad_norm_(trainable, max_norm=1.0): total L2 norm over
          every trainable tensor, grads *= min(1, 1 / (norm + 1e-6))
  AdamW   torch.optim.AdamW, betas (0.9, 0.999), eps 1e-8, two parameter groups: weight
          decay WD for tensors with ndim == 2 (matrices, embeddings), 0 for the rest
          (biases, norm weights); torch's decoupled decay p *= 1 - lr * wd
  lr      LambdaLR: lr(s) = LR * f(s), f(s) = (s+1)/W for s < W, else (S-s)/(S-W);
          the scheduler is stepped after every optimizer.step()

Trainable: without adapter/ every tensor of model.safetensors (a tied embedding is one
tensor: the file holds it once); with adapter/ only the lora_A / lora_B tensors (the base
is frozen), under their PEFT keys.

Writes (F64):
  OUT_DIR/ref-step-K.safetensors  step0.<name> (the start), and for s = 1..K
                                  step<s>.<name>       the tensor after step s
                                  step<s>.grad.<name>  the UNclipped gradient of step s
  OUT_DIR/ref.json                per step: loss (before the update), lr, grad_norm
                                  (pre-clip), clip_coef; the trainable names, which of them
                                  get weight decay, and the arguments

Before writing, self-checks (AssertionError on failure): the lr against the formula written
as min((s+1)/W, (S-s)/(S-W)); grad_norm against the recorded gradients; step 1's loss and
gradients against the case's expected.safetensors; the whole trajectory against an AdamW
written out in numpy from the recorded gradients; and Adam's first step being exactly
p*(1 - lr*wd) - lr * g/(|g| + eps) (= lr * sign(g) where |g| >> eps).
"""
import argparse
import json
import math
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import ref_models as rm  # noqa: E402
import st  # noqa: E402

BETAS = (0.9, 0.999)
EPS = 1e-8
MAX_NORM = 1.0


class Case:
    """A make_case.py case as the reference needs it."""

    def __init__(self, case_dir):
        self.dir = case_dir
        with open(os.path.join(case_dir, "model", "config.json")) as f:
            self.config = json.load(f)
        self.cfg = rm.config_from_hf(self.config)
        self.W, _ = st.read(os.path.join(case_dir, "model", "model.safetensors"))
        b, _ = st.read(os.path.join(case_dir, "batch.safetensors"))
        self.tokens, self.targets, self.mask = b["tokens"], b["targets"], b["mask"]
        ad = os.path.join(case_dir, "adapter")
        self.lora = os.path.isdir(ad)
        self.lora_w = None
        self.scaling = None
        if self.lora:
            with open(os.path.join(ad, "adapter_config.json")) as f:
                self.adapter_config = json.load(f)
            self.lora_w, _ = st.read(os.path.join(ad, "adapter_model.safetensors"))
            # LoraLayer.update_layer with use_rslora false
            self.scaling = self.adapter_config["lora_alpha"] / self.adapter_config["r"]
        exp = os.path.join(case_dir, "expected.safetensors")
        self.expected = st.read(exp)[0] if os.path.exists(exp) else None

    def trainable_init(self):
        return dict(self.lora_w) if self.lora else dict(self.W)


def lr_factor(s, warmup, total):
    """f(s) of the schedule (s = 0 for the first optimizer step)."""
    if s < warmup:
        return (s + 1) / warmup
    return (total - s) / (total - warmup)


def loss_of(case, P, lora, dtype, rows=None):
    """sum(mask * ce) over `rows` (all when None) divided by the WHOLE batch's sum(mask):
    the whole batch's loss is the sum of these over a partition of the rows."""
    tok, tgt, msk = case.tokens, case.targets, case.mask
    if rows is not None:
        tok, tgt, msk = tok[rows], tgt[rows], msk[rows]
    logits = rm.forward(case.cfg, P, torch.tensor(tok, dtype=torch.long), lora)
    B, T, V = logits.shape
    ce = torch.nn.functional.cross_entropy(logits.reshape(B * T, V),
                                           torch.tensor(tgt, dtype=torch.long).reshape(-1),
                                           reduction="none").view(B, T)
    total = float(case.mask.astype(np.float64).sum())
    return (ce * torch.tensor(msk, dtype=dtype)).sum() / total


def train(case, steps, lr, warmup, total, wd, dtype=torch.float64, micro=None,
          decay_1d=False, betas=BETAS, max_norm=MAX_NORM, per_micro_mean=False):
    """Runs `steps` optimizer steps. Returns (init, records): init = name -> float64 numpy
    start value; records[s-1] = {"loss", "lr", "grad_norm", "clip_coef",
    "params": name -> numpy after step s, "grads": name -> unclipped numpy gradient}.

    micro: rows per micro-batch (None: the whole batch at once; the gradient is the same
    up to rounding). decay_1d (weight decay on 1-D tensors too), betas, max_norm and
    per_micro_mean (each micro-batch's loss divided by its own sum(mask), then averaged over
    the micro-batches: the classic accumulation bug) exist only so that optim_parity.py's
    self-test can build deliberately wrong references."""
    if not 1 <= warmup <= total:
        raise ValueError("need 1 <= warmup <= total")
    init = {k: np.asarray(v, dtype=np.float64) for k, v in case.trainable_init().items()}
    names = sorted(init)
    T = {k: torch.tensor(init[k], dtype=dtype, requires_grad=True) for k in names}
    if case.lora:
        P = {k: torch.tensor(v, dtype=dtype) for k, v in case.W.items()}  # frozen base
        lora = {}
        for k in names:
            if k.endswith(".lora_A.weight"):
                path = k[len("base_model.model."):-len(".lora_A.weight")]
                lora[path] = (T[k], T[rm.peft_key(path, "B")], case.scaling)
        if 2 * len(lora) != len(names):
            raise ValueError("adapter: lora_A / lora_B keys do not pair up")
    else:
        P, lora = T, None
    decay = [k for k in names if T[k].dim() == 2 or decay_1d]
    no_decay = [k for k in names if k not in decay]
    groups = [{"params": [T[k] for k in decay], "weight_decay": wd},
              {"params": [T[k] for k in no_decay], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=EPS)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, total))
    params = [T[k] for k in names]
    B = case.tokens.shape[0]
    records = []
    for s in range(steps):
        opt.zero_grad(set_to_none=True)
        parts = [None] if micro is None else [list(range(i, min(i + micro, B)))
                                              for i in range(0, B, micro)]
        loss = 0.0
        for rows in parts:
            l = loss_of(case, P, lora, dtype, rows)
            if per_micro_mean:
                msk = case.mask if rows is None else case.mask[rows]
                l = l * (float(case.mask.sum()) / float(msk.sum()) / len(parts))
            l.backward()  # accumulates into .grad
            loss += l.item()
        grads = {k: T[k].grad.detach().to(torch.float64).numpy().copy() for k in names}
        step_lr = opt.param_groups[0]["lr"]
        assert opt.param_groups[1]["lr"] == step_lr
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=max_norm).item()
        opt.step()
        sched.step()
        records.append({"loss": loss, "lr": step_lr, "grad_norm": norm,
                        "clip_coef": min(1.0, max_norm / (norm + 1e-6)),
                        "params": {k: T[k].detach().to(torch.float64).numpy().copy()
                                   for k in names},
                        "grads": grads})
    return init, records, decay


# ---------------------------------------------------------------------------------------
# self-checks


def numpy_adamw(init, records, decay, wd):
    """AdamW written out from its definition (Loshchilov & Hutter; torch's
    _single_tensor_adamw order: decay, moments, bias-corrected step), driven by the
    recorded unclipped gradients, clipped here again from their own norm."""
    b1, b2 = BETAS
    p = {k: v.copy() for k, v in init.items()}
    m = {k: np.zeros_like(v) for k, v in init.items()}
    v2 = {k: np.zeros_like(v) for k, v in init.items()}
    out = []
    for t, r in enumerate(records, start=1):
        norm = math.sqrt(sum(float((g * g).sum()) for g in r["grads"].values()))
        coef = min(1.0, MAX_NORM / (norm + 1e-6))
        lr = r["lr"]
        for k in p:
            g = r["grads"][k] * coef
            p[k] = p[k] * (1.0 - lr * (wd if k in decay else 0.0))
            m[k] = b1 * m[k] + (1 - b1) * g
            v2[k] = b2 * v2[k] + (1 - b2) * g * g
            mhat = m[k] / (1 - b1 ** t)
            vhat = v2[k] / (1 - b2 ** t)
            p[k] = p[k] - lr * mhat / (np.sqrt(vhat) + EPS)
        out.append({k: x.copy() for k, x in p.items()})
    return out


def self_check(case, init, records, decay, lr, warmup, total, wd, verbose=True):
    msgs = []
    # the trainable set
    if case.lora:
        assert set(init) == set(case.lora_w)
        assert not any(k.startswith(("model.", "transformer.")) for k in init)
    else:
        assert set(init) == set(case.W)
    assert set(decay) == {k for k in init if init[k].ndim == 2}
    # 1. lr against the formula, written differently: for s < W, (s+1)/W <= 1 <= (S-s)/(S-W);
    # for s >= W the other way round, so f(s) is the smaller of the two
    for s, r in enumerate(records):
        f = (s + 1) / warmup if total == warmup else min((s + 1) / warmup,
                                                         (total - s) / (total - warmup))
        assert abs(r["lr"] - lr * f) <= 1e-15 * lr, (s, r["lr"], lr * f)
        assert r["lr"] > 0
    msgs.append("lr = %s" % ", ".join("%.6g" % r["lr"] for r in records))
    # 2. grad_norm is the L2 norm over every trainable tensor
    for r in records:
        n = math.sqrt(sum(float((g * g).sum()) for g in r["grads"].values()))
        assert abs(n - r["grad_norm"]) <= 1e-12 * n, (n, r["grad_norm"])
    # 3. step 1 against the oracle's own file (F32-rounded there)
    if case.expected is not None:
        e = case.expected
        assert abs(records[0]["loss"] - float(e["loss"][0])) <= 1e-6 * abs(float(e["loss"][0]))
        worst = 0.0
        for k, g in records[0]["grads"].items():
            want = e["grad." + k].astype(np.float64)
            d = np.abs(g - want).max() / np.abs(want).max()
            worst = max(worst, d)
        assert worst <= 1e-6, worst
        msgs.append("step 1 = expected.safetensors (grad %.1e of max)" % worst)
    # 4. the trajectory against AdamW in numpy
    manual = numpy_adamw(init, records, decay, wd)
    worst = 0.0
    for r, mp in zip(records, manual):
        for k in init:
            worst = max(worst, float(np.abs(r["params"][k] - mp[k]).max()))
    assert worst <= 1e-13, worst
    msgs.append("torch AdamW = numpy AdamW (%.1e)" % worst)
    # 5. Adam's first step: p1 = p0 (1 - lr wd) - lr g / (|g| + eps), g the clipped gradient;
    # where |g| >> eps that is lr * sign(g), where g == 0 nothing but the decay
    r = records[0]
    lr0 = r["lr"]
    n_sign = 0
    for k in init:
        g = r["grads"][k] * r["clip_coef"]
        dec = init[k] * (1.0 - lr0 * (wd if k in decay else 0.0))
        step = dec - r["params"][k]
        exact = lr0 * g / (np.abs(g) + EPS)
        assert np.abs(step - exact).max() <= 1e-12 * lr0 + 1e-15, k
        big = np.abs(g) > 1e-4
        assert np.all(np.abs(step[big] - lr0 * np.sign(g[big])) <= 1e-4 * lr0 + 1e-15), k
        assert np.all(step[g == 0] == 0) or np.all(np.abs(step[g == 0]) <= 1e-15), k
        n_sign += int(big.sum())
    msgs.append("first step = lr*sign(g) on %d elements" % n_sign)
    if verbose:
        print("optim_ref self-check ok: " + "; ".join(msgs))


def write_outputs(out_dir, case, init, records, decay, args):
    os.makedirs(out_dir, exist_ok=True)
    T = {"step0." + k: v for k, v in init.items()}
    for s, r in enumerate(records, start=1):
        for k, v in r["params"].items():
            T["step%d.%s" % (s, k)] = v
            T["step%d.grad.%s" % (s, k)] = r["grads"][k]
    st.write(os.path.join(out_dir, "ref-step-%d.safetensors" % len(records)), T,
             metadata={"format": "pt", "reference": "float64"})
    info = {
        "args": args,
        "lora": case.lora,
        "trainable": sorted(init),
        "weight_decay_applied_to": sorted(decay),
        "betas": list(BETAS), "eps": EPS, "max_norm": MAX_NORM,
        "steps": [{"step": s, "loss": r["loss"], "lr": r["lr"], "grad_norm": r["grad_norm"],
                   "clip_coef": r["clip_coef"]} for s, r in enumerate(records, start=1)],
    }
    with open(os.path.join(out_dir, "ref.json"), "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
        f.write("\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("case_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--warmup", type=int, required=True)
    ap.add_argument("--total", type=int, required=True)
    ap.add_argument("--wd", type=float, required=True)
    a = ap.parse_args(argv)
    if a.steps < 1 or not 1 <= a.warmup <= a.total or a.steps > a.total:
        raise SystemExit("need steps >= 1, 1 <= warmup <= total, steps <= total")
    torch.set_num_threads(1)
    case = Case(a.case_dir)
    init, records, decay = train(case, a.steps, a.lr, a.warmup, a.total, a.wd)
    self_check(case, init, records, decay, a.lr, a.warmup, a.total, a.wd)
    write_outputs(a.out_dir, case, init, records, decay, vars(a))
    for s, r in enumerate(records, start=1):
        print("step %d: loss %.9f lr %.6g grad_norm %.6g clip_coef %.6g"
              % (s, r["loss"], r["lr"], r["grad_norm"], r["clip_coef"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
