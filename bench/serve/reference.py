#!/usr/bin/python3
"""bench/serve/reference.py - PyTorch's speed at serving one stream: the reference for
forja's inference engine (bench/serve/run).

    reference.py decode --model DIR --prompts FILE.json [--threads N] [--max-tokens 128]
                        [--reps 3] [--decode-reps 2] [--formulations linear,matvec]
                        [--min-s 1] [--no-check]

Loads DIR's config.json and *.safetensors (F32, or BF16/F16 widened: everything is
computed in float32) and runs, with torch.set_num_threads(N) under torch.inference_mode():
  - prefill: the "prefill" ids of FILE.json (prompts.py: a 512-token rendered chat prompt)
    through the model in one forward that fills a preallocated KV cache, logits for the
    last position only; the best of --reps runs (more until --min-s seconds, 1, are
    spent: a small model's figures are short and noisy) after a warm-up -> prompt tokens/s;
  - decode: the "decode" ids (a short prompt), then greedy steps of one token each with the
    KV cache (argmax) up to --max-tokens tokens, stopping early only at FILE.json's "stop"
    ids (the model's end-of-turn ids, where forja's server stops too). Generated tokens/s
    counts the tokens after the first (which the prompt's forward gives): (n - 1) / the
    time of those n - 1 one-token forwards, the best of --decode-reps runs (more until
    --min-s seconds are spent); the end-to-end rate, n / (prompt forward + steps), is
    printed too.
libgomp's wait policy is set to passive unless OMP_WAIT_POLICY says otherwise (see below).
The math is tests/reference/ref_models.py's (the oracle of the parity tests), its pieces
reused (RMSNorm, RoPE, gelu_new, F.layer_norm, nn.Linear / Conv1D conventions), with a
cache written in place and GQA by broadcasting each kv head over its query group (no
repeat_kv copy). The one-token steps come in two formulations, each printed:
  linear  F.linear / torch.addmm as transformers runs nn.Linear and GPT-2's Conv1D: a gemm
          with M = 1 (what a transformers generate() loop does);
  matvec  torch.mv / torch.addmv: BLAS gemv, PyTorch's fastest product of a matrix and one
          vector (about 3x faster per step here with Debian's OpenBLAS).
Unless --no-check, each decoding is checked against ref_models.forward over the whole
sequence, no cache (teacher forcing): every generated token must be that forward's argmax
at its position (or within 1e-4 of its top logit) and the last logits must agree to 1e-3;
exit status 1 otherwise.

Prints one JSON line per formulation (the prefill figures are the same in both).
"""
import argparse
import json
import os
import sys
import time

# Debian's torch runs its own OpenMP threads and OpenBLAS's pthreads side by side; with
# libgomp's default (spinning) wait policy the two pools fight over the cores: on 2 cores
# the 512-token prefill took 35-260 ms from run to run and decoding was up to 2x slower.
# Passive waiting is PyTorch's best here (set before torch loads libgomp; an explicit
# OMP_WAIT_POLICY in the environment is kept).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import ref_models as rm  # noqa: E402
import st  # noqa: E402


def load(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        d = json.load(f)
    cfg = rm.config_from_hf(d)
    P = {}
    files = sorted(n for n in os.listdir(model_dir) if n.endswith(".safetensors"))
    if not files:
        raise SystemExit("reference.py: no .safetensors in %s" % model_dir)
    for fn in files:
        tensors, _ = st.read(os.path.join(model_dir, fn))
        for name, arr in tensors.items():
            P[name] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        del tensors
    # files saved with a "model." prefix missing etc. are not handled: forja writes HF names
    missing = [n for n in rm.param_shapes(cfg) if n not in P]
    if missing:
        raise SystemExit("reference.py: %s lacks %s" % (model_dir, ", ".join(missing[:4])))
    return cfg, P


class Cached:
    """A decoder with a preallocated KV cache: forward(ids) appends len(ids) positions and
    returns the logits of the last one."""

    def __init__(self, cfg, P, n_ctx, matvec=False):
        self.cfg, self.P = cfg, P
        self.matvec = matvec
        L, NKV, HS = cfg.L, cfg.NKV, cfg.HS
        self.k = torch.zeros(L, NKV, n_ctx, HS)
        self.v = torch.zeros(L, NKV, n_ctx, HS)
        self.pos = 0
        self.n_ctx = n_ctx
        if cfg.arch != "gpt2":
            inv = rm.rope_inv_freq(cfg, torch.float64)
            freqs = torch.outer(torch.arange(n_ctx, dtype=torch.float64), inv)
            emb = torch.cat((freqs, freqs), dim=-1)
            self.cos, self.sin = emb.cos().float(), emb.sin().float()
        self.head = P["transformer.wte.weight"] if cfg.arch == "gpt2" else (
            P["model.embed_tokens.weight"] if cfg.tied else P["lm_head.weight"])

    def reset(self):
        self.pos = 0

    def lin(self, x, path):
        """nn.Linear (W (out, in)) as ref_models.linear, or for one row with --matvec as a
        matrix-vector product (torch.addmv / torch.mv: BLAS gemv instead of a gemm with
        M = 1)."""
        if self.matvec and x.shape[0] == 1:
            W, b = self.P[path + ".weight"], self.P.get(path + ".bias")
            y = torch.mv(W, x[0]) if b is None else torch.addmv(b, W, x[0])
            return y[None]
        return rm.linear(x, self.P, path)

    def conv(self, x, path):
        """GPT-2's Conv1D (W (in, out)): addmm(bias, x, W) as transformers, or for one row
        with --matvec addmv(bias, W^T, x) (a transposed view, no copy)."""
        W, b = self.P[path + ".weight"], self.P[path + ".bias"]
        if self.matvec and x.shape[0] == 1:
            return torch.addmv(b, W.t(), x[0])[None]
        return torch.addmm(b, x, W)

    def _attend(self, i, q, k, v):
        """q (NH, T, HS), k/v (NKV, T, HS) of the new positions -> (T, NH*HS)."""
        cfg = self.cfg
        NH, NKV, HS = cfg.NH, cfg.NKV, cfg.HS
        T = q.shape[1]
        p0, p1 = self.pos, self.pos + T
        self.k[i, :, p0:p1] = k
        self.v[i, :, p0:p1] = v
        K = self.k[i, :, :p1]  # (NKV, p1, HS)
        V = self.v[i, :, :p1]
        # query head h reads kv head h // n_rep (repeat_kv), by broadcasting the groups
        qg = q.reshape(NKV, NH // NKV, T, HS)
        att = torch.matmul(qg, K.unsqueeze(1).transpose(-1, -2)) * (HS ** -0.5)
        if T > 1:  # causal within the new positions; every cached one is visible
            mask = torch.ones(T, p1, dtype=torch.bool).triu(p0 + 1)
            att = att.masked_fill(mask, float("-inf"))
        att = torch.softmax(att, dim=-1)
        y = torch.matmul(att, V.unsqueeze(1))  # (NKV, n_rep, T, HS)
        return y.reshape(NH, T, HS).transpose(0, 1).reshape(T, NH * HS)

    def forward(self, ids):
        cfg, P = self.cfg, self.P
        T = len(ids)
        if self.pos + T > self.n_ctx:
            raise ValueError("past the cache")
        tok = torch.tensor(ids, dtype=torch.long)
        NH, NKV, HS, C = cfg.NH, cfg.NKV, cfg.HS, cfg.C
        if cfg.arch == "gpt2":
            h = F.embedding(tok, P["transformer.wte.weight"]) + \
                P["transformer.wpe.weight"][self.pos:self.pos + T]
            for i in range(cfg.L):
                p = "transformer.h.%d." % i
                x = F.layer_norm(h, (C,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], cfg.eps)
                qkv = self.conv(x, p + "attn.c_attn")
                q, k, v = qkv.split(C, dim=1)
                y = self._attend(i, q.view(T, NH, HS).transpose(0, 1),
                                 k.view(T, NH, HS).transpose(0, 1),
                                 v.view(T, NH, HS).transpose(0, 1))
                h = h + self.conv(y, p + "attn.c_proj")
                x = F.layer_norm(h, (C,), P[p + "ln_2.weight"], P[p + "ln_2.bias"], cfg.eps)
                u = rm.gelu_new(self.conv(x, p + "mlp.c_fc"))
                h = h + self.conv(u, p + "mlp.c_proj")
            h = h[-1:]  # only the last position's logits are needed
            h = F.layer_norm(h, (C,), P["transformer.ln_f.weight"], P["transformer.ln_f.bias"],
                             cfg.eps)
        else:
            h = F.embedding(tok, P["model.embed_tokens.weight"])
            cos = self.cos[self.pos:self.pos + T]
            sin = self.sin[self.pos:self.pos + T]
            for i in range(cfg.L):
                p = "model.layers.%d." % i
                x = rm.rms_norm(h, P[p + "input_layernorm.weight"], cfg.eps)
                q = self.lin(x, p + "self_attn.q_proj").view(T, NH, HS).transpose(0, 1)
                k = self.lin(x, p + "self_attn.k_proj").view(T, NKV, HS).transpose(0, 1)
                v = self.lin(x, p + "self_attn.v_proj").view(T, NKV, HS).transpose(0, 1)
                y = self._attend(i, rm.apply_rope(q, cos, sin), rm.apply_rope(k, cos, sin), v)
                h = h + self.lin(y, p + "self_attn.o_proj")
                x = rm.rms_norm(h, P[p + "post_attention_layernorm.weight"], cfg.eps)
                g = self.lin(x, p + "mlp.gate_proj")
                u = self.lin(x, p + "mlp.up_proj")
                h = h + self.lin(F.silu(g) * u, p + "mlp.down_proj")
            h = rm.rms_norm(h[-1:], P["model.norm.weight"], cfg.eps)
        self.pos += T
        if self.matvec:
            return torch.mv(self.head, h[0])
        return F.linear(h, self.head)[0]


def cmd_decode(a):
    torch.set_num_threads(a.threads)
    with open(a.prompts) as f:
        prompts = json.load(f)
    prefill, short = prompts["prefill"], prompts["decode"]
    stop = set(prompts.get("stop", []))
    t0 = time.perf_counter()
    cfg, P = load(a.model)
    load_s = time.perf_counter() - t0
    n_ctx = min(cfg.n_ctx, max(len(prefill), len(short) + a.max_tokens) + 1)
    base = {"impl": "pytorch", "torch": torch.__version__, "threads": a.threads,
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "model": os.path.basename(os.path.normpath(a.model)), "arch": cfg.arch,
            "load_s": load_s}
    ok = True
    with torch.inference_mode():
        # prefill: one forward of the whole prompt (a gemm per projection in every
        # formulation), the best of --reps after a warm-up
        m = Cached(cfg, P, n_ctx)
        m.forward(prefill)  # the first full-length forward is slower (allocations)
        m.reset()
        m.forward(prefill[:64])
        m.forward([prefill[64]])
        times = []
        while len(times) < a.reps or (sum(times) < a.min_s and len(times) < 50):
            m.reset()
            t = time.perf_counter()
            m.forward(prefill)
            times.append(time.perf_counter() - t)
        base.update(prompt_tokens=len(prefill), prefill_s=min(times), prefill_s_all=times,
                    prompt_tok_s=len(prefill) / min(times))

        for form in a.formulations.split(","):
            if form not in ("linear", "matvec"):
                raise SystemExit("reference.py: unknown formulation %r" % form)
            m = Cached(cfg, P, n_ctx, matvec=form == "matvec")
            m.forward(short[:8])  # warm-up
            m.forward([short[8]])
            best, all_steps = None, []
            while len(all_steps) < a.decode_reps or (sum(all_steps) < a.min_s and
                                                     len(all_steps) < 20):
                m.reset()
                t = time.perf_counter()
                logits = m.forward(short)
                t1 = time.perf_counter()
                ids = [int(torch.argmax(logits))]
                while len(ids) < a.max_tokens and ids[-1] not in stop:
                    logits = m.forward([ids[-1]])
                    ids.append(int(torch.argmax(logits)))
                t2 = time.perf_counter()
                all_steps.append(t2 - t1)
                run = dict(first_s=t1 - t, steps_s=t2 - t1, ids=ids, last_logits=logits)
                if best is None or run["steps_s"] < best["steps_s"]:
                    best = run
            n = len(best["ids"])
            out = dict(base, formulation=form, decode_prompt_tokens=len(short),
                       completion_tokens=n,
                       gen_tok_s=(n - 1) / best["steps_s"] if n > 1 else float("nan"),
                       gen_e2e_tok_s=n / (best["first_s"] + best["steps_s"]),
                       steps_s_all=all_steps, ttft_s=best["first_s"], ids=best["ids"])
            if not a.no_check:
                seq = torch.tensor([short + best["ids"]])
                full = rm.forward(cfg, P, seq)[0]  # (T, V), float32, no cache
                T0 = len(short)
                bad = sum(1 for j, tok in enumerate(best["ids"])
                          if float(full[T0 - 1 + j].max() - full[T0 - 1 + j][tok]) > 1e-4)
                diff = float((full[T0 + n - 2] - best["last_logits"]).abs().max())
                out.update(check_tokens_off=bad, check_last_logits_maxdiff=diff,
                           check_ok=bad == 0 and diff < 1e-3)
                ok = ok and out["check_ok"]
            print(json.dumps(out), flush=True)
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    d = sub.add_parser("decode")
    d.add_argument("--model", required=True)
    d.add_argument("--prompts", required=True)
    d.add_argument("--threads", type=int, default=os.cpu_count())
    d.add_argument("--max-tokens", type=int, default=128)
    d.add_argument("--reps", type=int, default=3)
    d.add_argument("--decode-reps", type=int, default=2)
    d.add_argument("--formulations", default="linear,matvec")
    d.add_argument("--min-s", type=float, default=1.0)
    d.add_argument("--no-check", action="store_true")
    a = ap.parse_args()
    return cmd_decode(a)


if __name__ == "__main__":
    sys.exit(main())
