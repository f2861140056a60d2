#!/usr/bin/python3
"""self_check.py - validates the oracle itself (exit status 0 when every check passes).

1. st.py: round trip of every dtype; BF16 rounding equals torch's .to(torch.bfloat16)
   (ties to even, subnormals, inf, NaN) and F16 equals torch's .half().
2. RoPE: ref_models.apply_rope (rotate_half layout) equals a direct complex-number
   rotation of the half-split pairs (x[j], x[j + d/2]) by exp(i * pos * inv_freq[j]).
3. llama3 scaling: ref_models.rope_llama3 equals the formula of transformers'
   _compute_llama3_parameters written out per frequency with plain `math`, and the
   llama3_scaled preset lands frequencies in all three bands.
4. Forward: ref_models.forward equals an independent loop-by-loop numpy implementation
   (explicit heads, kv head h // n_rep, complex RoPE, explicit softmax, RMSNorm,
   LayerNorm, gelu_new written out, Conv1D as x @ W + b, LoRA as x A^T B^T * alpha/r) on
   tiny Llama (GQA, biases, head_dim != C/NH, llama3 RoPE), Qwen2 and GPT-2 models.
5. Gradients: torch.autograd.gradcheck (float64, central differences) of the masked loss
   with respect to every parameter of tiny Llama / Qwen2 / GPT-2 models, and to the LoRA
   tensors with the base frozen.
6. PEFT conventions: target suffix matching ("c_proj" takes attn.c_proj and mlp.c_proj),
   lora_A (r, in) / lora_B (out, r) for Linear and Conv1D, saved key names.
7. Files: a case written by make_case.py reads back and reproduces expected.safetensors.
"""
import math
import os
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_case  # noqa: E402
import ref_models as rm  # noqa: E402
import st  # noqa: E402

FAILS = []


def check(name, ok, detail=""):
    print("%-4s %s%s" % ("ok" if ok else "FAIL", name, (": " + detail) if detail else ""))
    if not ok:
        FAILS.append(name)


# ---------------------------------------------------------------------------------------
# 1. safetensors


def check_st():
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.safetensors")
        t = {
            "f32": rng.standard_normal((3, 5)).astype(np.float32),
            "f64": rng.standard_normal((2,)).astype(np.float64),
            "f16": rng.standard_normal((4, 2)).astype(np.float16),
            "i32": rng.integers(-2**31, 2**31 - 1, (7,)).astype(np.int32),
            "i64": rng.integers(-2**62, 2**62, (2, 2)).astype(np.int64),
            "scalar": np.array(3.5, dtype=np.float32),
            "empty": np.zeros((0, 3), dtype=np.float32),
            "bf16": rng.standard_normal((6,)).astype(np.float32),
        }
        st.write(path, t, metadata={"format": "pt"}, dtypes={"bf16": "BF16"})
        back, meta = st.read(path)
        ok = meta == {"format": "pt"} and set(back) == set(t)
        for k, v in t.items():
            want = st.round_to(v, "BF16") if k == "bf16" else v
            ok = ok and back[k].dtype == (np.float32 if k == "bf16" else v.dtype)
            ok = ok and back[k].shape == v.shape and np.array_equal(back[k], want)
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
        check("st round trip (F64 F32 F16 BF16 I32 I64, scalar, empty)", ok and n % 8 == 0)

    x = np.concatenate([
        rng.standard_normal(200000).astype(np.float32) * 10.0 ** rng.integers(-40, 38, 200000),
        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3.4028235e38,
                  1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, 1.0 + 2.0 ** -8 + 2.0 ** -20,
                  2.0 ** -126, 2.0 ** -133 * 3], dtype=np.float32),
        # every bit pattern around rounding boundaries of a few exponents
        (np.arange(0x3F800000, 0x3F820000, dtype=np.uint32)).view(np.float32),
        (np.arange(0x00000000, 0x00020000, dtype=np.uint32)).view(np.float32),
        (np.arange(0x7F7E0000, 0x7F800000, dtype=np.uint32)).view(np.float32),
    ])
    mine = st.to_bf16_bits(x)
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    # NaN: any NaN pattern will do (torch's scalar path gives 0x7FC0, its vector path 0xFFFF)
    nan = np.isnan(x)
    same = np.array_equal(mine[~nan], theirs[~nan]) and bool(
        np.all(np.isnan(st.bf16_bits_to_f32(mine[nan]))))
    check("BF16 rounding == torch .to(bfloat16) on %d values" % x.size, same,
          "%d differ" % int((mine[~nan] != theirs[~nan]).sum()))
    back = st.bf16_bits_to_f32(theirs)
    tb = torch.from_numpy(theirs.view(np.int16)).view(torch.bfloat16).float().numpy()
    check("BF16 widening == torch .float()",
          np.array_equal(back.view(np.uint32), tb.view(np.uint32)))
    y = x[np.isfinite(x)]
    h16 = st.round_to(y, "F16")
    th = torch.from_numpy(y).half().float().numpy()
    check("F16 rounding == torch .half()", np.array_equal(h16.view(np.uint32), th.view(np.uint32)))


# ---------------------------------------------------------------------------------------
# 2-3. RoPE


def tiny_cfg(**kw):
    base = dict(arch="llama", L=1, C=8, NH=2, NKV=1, HS=4, FF=12, V=11, n_ctx=32, eps=1e-5,
                tied=False, qkv_bias=False, o_bias=False, mlp_bias=False, rope_theta=10000.0,
                rope_scaling=None)
    base.update(kw)
    return rm.Cfg(**base)


def check_rope():
    rng = np.random.default_rng(1)
    for HS, theta, scaling in [(16, 10000.0, None), (24, 1e6, None),
                               (32, 500000.0, make_case.PRESETS["llama3_scaled"]["rope_scaling"])]:
        cfg = tiny_cfg(HS=HS, rope_theta=theta, rope_scaling=scaling)
        T = 64
        x = torch.tensor(rng.standard_normal((2, 3, T, HS)))
        cos, sin = rm.rope_cos_sin(cfg, T, torch.float64)
        got = rm.apply_rope(x, cos, sin)
        inv = rm.rope_inv_freq(cfg).numpy()
        xn = x.numpy()
        h = HS // 2
        z = xn[..., :h] + 1j * xn[..., h:]
        ang = np.arange(T)[:, None] * inv[None, :]
        zr = z * np.exp(1j * ang)
        want = np.concatenate([zr.real, zr.imag], axis=-1)
        err = np.abs(got.numpy() - want).max()
        check("RoPE rotate_half == complex rotation of (x[j], x[j+d/2]) (head_dim %d%s)"
              % (HS, ", llama3" if scaling else ""), err < 1e-12, "max err %.1e" % err)

    # the rotation is an isometry per pair and position 0 is the identity
    check("RoPE position 0 is the identity", torch.equal(got[:, :, 0], x[:, :, 0]))

    # llama3, written out per frequency with plain floats, from _compute_llama3_parameters
    for theta, dim, factor, lo, hi, old in [(500000.0, 32, 8.0, 1.0, 4.0, 32),
                                           (500000.0, 128, 8.0, 1.0, 4.0, 8192),
                                           (500000.0, 64, 32.0, 1.0, 4.0, 8192),
                                           (10000.0, 16, 4.0, 2.0, 8.0, 64)]:
        want = []
        for i in range(0, dim, 2):
            f = 1.0 / theta ** (i / dim)
            wavelen = 2 * math.pi / f
            if wavelen < old / hi:
                want.append(f)
            elif wavelen > old / lo:
                want.append(f / factor)
            else:
                smooth = (old / wavelen - lo) / (hi - lo)
                want.append((1 - smooth) * f / factor + smooth * f)
        got = rm.rope_llama3(rm.rope_default_inv_freq(dim, theta), factor, lo, hi, float(old))
        err = np.max(np.abs(got.numpy() - np.array(want)) / np.array(want))
        check("llama3 inv_freq == _compute_llama3_parameters formula (theta %g dim %d factor %g "
              "old %d)" % (theta, dim, factor, old), err < 1e-13, "max rel err %.1e" % err)

    p = make_case.PRESETS["llama3_scaled"]
    cfg = rm.config_from_hf(make_case.hf_config(p, "f32"))
    ratio = (rm.rope_default_inv_freq(cfg.HS, cfg.rope_theta) / rm.rope_inv_freq(cfg)).numpy()
    kept = int(np.sum(np.abs(ratio - 1) < 1e-12))
    div = int(np.sum(np.abs(ratio - 8) < 1e-9))
    check("llama3_scaled preset: frequencies kept / smoothed / divided = %d / %d / %d"
          % (kept, len(ratio) - kept - div, div),
          kept > 0 and div > 0 and len(ratio) - kept - div > 0)

    # how far HF's float32 rotary tables are from the float64 ones the oracle uses
    inv32 = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.HS, 2, dtype=torch.int64).float() / cfg.HS))
    inv32 = rm.rope_llama3(inv32, 8.0, 1.0, 4.0, 32.0)
    pos = torch.arange(128).float()
    emb32 = torch.cat([torch.outer(pos, inv32)] * 2, -1)
    c64, s64 = rm.rope_cos_sin(cfg, 128, torch.float64)
    d = max((emb32.cos().double() - c64).abs().max().item(),
            (emb32.sin().double() - s64).abs().max().item())
    check("HF's fp32 cos/sin tables within 1e-4 of float64 up to position 127", d < 1e-4,
          "max diff %.1e (the oracle uses float64)" % d)


# ---------------------------------------------------------------------------------------
# 4. an independent loop-by-loop forward in numpy


def np_rmsnorm(x, w, eps):
    return w * (x / np.sqrt(np.mean(x * x) + eps))


def np_layernorm(x, w, b, eps):
    mu = np.mean(x)
    var = np.mean((x - mu) ** 2)
    return (x - mu) / np.sqrt(var + eps) * w + b


def np_gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def np_silu(x):
    return x / (1.0 + np.exp(-x))


def np_linear(x, W, b, lora, path, conv1d):
    """x: (in,). Linear: W (out, in); Conv1D: W (in, out)."""
    y = x @ W if conv1d else W @ x
    if b is not None:
        y = y + b
    if lora is not None and path in lora:
        A, Bm, s = lora[path]
        y = y + s * (Bm @ (A @ x))
    return y


def np_forward(cfg, P, tokens, lora=None):
    """Row by row, position by position; attention with explicit loops over heads."""
    B, T = tokens.shape
    out = np.zeros((B, T, cfg.V))
    gpt2 = cfg.arch == "gpt2"
    if not gpt2:
        inv = rm.rope_inv_freq(cfg).numpy()

    def lin(x, path):
        return np_linear(x, P[path + ".weight"], P.get(path + ".bias"), lora, path, gpt2)

    def rope(vec, t):
        h = cfg.HS // 2
        z = (vec[:h] + 1j * vec[h:]) * np.exp(1j * t * inv)
        return np.concatenate([z.real, z.imag])

    for b in range(B):
        if gpt2:
            hs = [P["transformer.wte.weight"][tokens[b, t]] + P["transformer.wpe.weight"][t]
                  for t in range(T)]
        else:
            hs = [P["model.embed_tokens.weight"][tokens[b, t]].copy() for t in range(T)]
        for i in range(cfg.L):
            if gpt2:
                p = "transformer.h.%d." % i
                xs = [np_layernorm(h, P[p + "ln_1.weight"], P[p + "ln_1.bias"], cfg.eps) for h in hs]
                qkv = [lin(x, p + "attn.c_attn") for x in xs]
                C = cfg.C
                qs = [v[:C] for v in qkv]
                ks = [v[C:2 * C] for v in qkv]
                vs = [v[2 * C:] for v in qkv]
            else:
                p = "model.layers.%d." % i
                xs = [np_rmsnorm(h, P[p + "input_layernorm.weight"], cfg.eps) for h in hs]
                qs = [lin(x, p + "self_attn.q_proj") for x in xs]
                ks = [lin(x, p + "self_attn.k_proj") for x in xs]
                vs = [lin(x, p + "self_attn.v_proj") for x in xs]
            n_rep = cfg.NH // cfg.NKV
            HS = cfg.HS
            ys = []
            for t in range(T):
                y = np.zeros(cfg.NH * HS)
                for hd in range(cfg.NH):
                    kvh = hd // n_rep
                    q = qs[t][hd * HS:(hd + 1) * HS]
                    if not gpt2:
                        q = rope(q, t)
                    scores = np.zeros(t + 1)
                    for s in range(t + 1):
                        k = ks[s][kvh * HS:(kvh + 1) * HS]
                        if not gpt2:
                            k = rope(k, s)
                        scores[s] = np.dot(q, k) / math.sqrt(HS)
                    w = np.exp(scores - scores.max())
                    w /= w.sum()
                    for s in range(t + 1):
                        y[hd * HS:(hd + 1) * HS] += w[s] * vs[s][kvh * HS:(kvh + 1) * HS]
                ys.append(y)
            if gpt2:
                hs = [h + lin(y, p + "attn.c_proj") for h, y in zip(hs, ys)]
                xs = [np_layernorm(h, P[p + "ln_2.weight"], P[p + "ln_2.bias"], cfg.eps) for h in hs]
                hs = [h + lin(np_gelu_new(lin(x, p + "mlp.c_fc")), p + "mlp.c_proj")
                      for h, x in zip(hs, xs)]
            else:
                hs = [h + lin(y, p + "self_attn.o_proj") for h, y in zip(hs, ys)]
                xs = [np_rmsnorm(h, P[p + "post_attention_layernorm.weight"], cfg.eps) for h in hs]
                hs = [h + lin(np_silu(lin(x, p + "mlp.gate_proj")) * lin(x, p + "mlp.up_proj"),
                              p + "mlp.down_proj") for h, x in zip(hs, xs)]
        for t in range(T):
            if gpt2:
                x = np_layernorm(hs[t], P["transformer.ln_f.weight"], P["transformer.ln_f.bias"],
                                 cfg.eps)
                out[b, t] = P["transformer.wte.weight"] @ x
            else:
                x = np_rmsnorm(hs[t], P["model.norm.weight"], cfg.eps)
                head = P["model.embed_tokens.weight"] if cfg.tied else P["lm_head.weight"]
                out[b, t] = head @ x
    return out


def random_params(cfg, rng):
    W = make_case.init_weights(cfg, rng)
    return {k: v.astype(np.float64) for k, v in W.items()}


def random_lora(cfg, rng, r, targets):
    mods = rm.lora_modules(cfg, targets)
    lo = {}
    for path, (fin, fout) in mods.items():
        lo[path] = (rng.uniform(-1, 1, (r, fin)) / math.sqrt(fin), rng.normal(0, 0.2, (fout, r)),
                    1.5)
    return lo


TINY = {
    "llama gqa+bias+mlp_bias+head_dim 6": dict(arch="llama", L=2, C=8, NH=4, NKV=2, HS=6, FF=12,
                                               V=13, qkv_bias=True, o_bias=True, mlp_bias=True),
    "llama mha tied llama3 rope": dict(arch="llama", L=1, C=8, NH=2, NKV=2, HS=4, FF=10, V=13,
                                       tied=True, rope_theta=500000.0,
                                       rope_scaling=dict(factor=8.0, low_freq_factor=1.0,
                                                         high_freq_factor=4.0,
                                                         original_max_position_embeddings=16)),
    "qwen2 gqa tied q/k/v bias": dict(arch="qwen2", L=2, C=8, NH=4, NKV=1, HS=2, FF=12, V=13,
                                      tied=True, qkv_bias=True, o_bias=False),
    "gpt2": dict(arch="gpt2", L=2, C=8, NH=2, NKV=2, HS=4, FF=32, V=13, tied=True,
                 qkv_bias=True, o_bias=True, mlp_bias=True, rope_theta=None),
}

LORA_TARGETS = {"llama": ["q_proj", "v_proj", "o_proj", "down_proj"],
                "qwen2": ["k_proj", "gate_proj", "up_proj"],
                "gpt2": ["c_attn", "c_proj", "c_fc"]}


def check_forward():
    rng = np.random.default_rng(2)
    for name, kw in TINY.items():
        cfg = tiny_cfg(**kw)
        P = random_params(cfg, rng)
        tokens = rng.integers(0, cfg.V, (2, 7))
        for with_lora in (False, True):
            lora = random_lora(cfg, rng, 3, LORA_TARGETS[cfg.arch]) if with_lora else None
            want = np_forward(cfg, P, tokens, lora)
            tl = None if lora is None else {k: tuple(torch.tensor(a) if isinstance(a, np.ndarray)
                                                     else a for a in v) for k, v in lora.items()}
            got = rm.forward(cfg, {k: torch.tensor(v) for k, v in P.items()},
                             torch.tensor(tokens), tl).numpy()
            err = np.abs(got - want).max()
            check("forward == loop-by-loop numpy: %s%s" % (name, " + LoRA" if with_lora else ""),
                  err < 1e-10, "max err %.1e, logit scale %.2f" % (err, np.abs(want).max()))

    # the masked loss against a direct log-softmax
    logits = torch.tensor(rng.standard_normal((2, 5, 7)) * 3)
    targets = torch.tensor(rng.integers(0, 7, (2, 5)))
    mask = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 0, 1, 0]], dtype=torch.float64)
    loss, n, correct = rm.masked_loss(logits, targets, mask)
    L = logits.numpy()
    tot = 0.0
    cor = 0
    for b in range(2):
        for t in range(5):
            if mask[b, t]:
                row = L[b, t]
                lse = row.max() + math.log(np.exp(row - row.max()).sum())
                tot += lse - row[targets[b, t]]
                cor += int(np.argmax(row) == targets[b, t])
    check("masked loss, n_tokens, n_correct == direct computation",
          abs(loss.item() - tot / 6) < 1e-12 and n.item() == 6 and int(correct) == cor)

    x = torch.linspace(-8, 8, 2001, dtype=torch.float64)
    err = (rm.gelu_new(x) - torch.tensor(np_gelu_new(x.numpy()))).abs().max().item()
    check("F.gelu(approximate='tanh') == NewGELUActivation formula", err < 1e-14, "%.1e" % err)
    w = torch.tensor(rng.standard_normal(8))
    xx = torch.tensor(rng.standard_normal((3, 8)))
    err = (rm.rms_norm(xx, w, 1e-5) - torch.tensor(np.stack([np_rmsnorm(r, w.numpy(), 1e-5)
                                                              for r in xx.numpy()]))).abs().max()
    check("rms_norm == w * x / sqrt(mean(x^2) + eps)", err.item() < 1e-14)


# ---------------------------------------------------------------------------------------
# 5. gradients


def check_grads():
    rng = np.random.default_rng(3)
    T = 5
    for name, kw in TINY.items():
        cfg = tiny_cfg(**dict(kw, L=1))
        P = random_params(cfg, rng)
        names = sorted(P)
        tokens = torch.tensor(rng.integers(0, cfg.V, (2, T)))
        targets = torch.tensor(rng.integers(0, cfg.V, (2, T)))
        mask = torch.tensor([[0, 1, 1, 0, 1], [1, 0, 1, 1, 0]], dtype=torch.float64)

        def f(*tensors):
            logits = rm.forward(cfg, dict(zip(names, tensors)), tokens)
            return rm.masked_loss(logits, targets, mask)[0]

        inputs = tuple(torch.tensor(P[k], requires_grad=True) for k in names)
        n = sum(t.numel() for t in inputs)
        ok = torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5,
                                      raise_exception=False)
        check("gradcheck, every parameter (%d values): %s" % (n, name), ok)

        lora = random_lora(cfg, rng, 2, LORA_TARGETS[cfg.arch])
        paths = sorted(lora)
        Pt = {k: torch.tensor(v) for k, v in P.items()}

        def g(*tensors):
            lo = {p: (tensors[2 * j], tensors[2 * j + 1], lora[p][2]) for j, p in enumerate(paths)}
            return rm.masked_loss(rm.forward(cfg, Pt, tokens, lo), targets, mask)[0]

        inputs = []
        for p in paths:
            inputs += [torch.tensor(lora[p][0], requires_grad=True),
                       torch.tensor(lora[p][1], requires_grad=True)]
        ok = torch.autograd.gradcheck(g, tuple(inputs), eps=1e-6, atol=1e-7, rtol=1e-5,
                                      raise_exception=False)
        check("gradcheck, LoRA A and B with the base frozen (%d modules): %s" % (len(paths), name),
              ok)

    # tied embedding: its gradient is the sum of the lookup's and the head's
    cfg = tiny_cfg(**dict(TINY["qwen2 gqa tied q/k/v bias"], L=1))
    P = {k: torch.tensor(v, requires_grad=True) for k, v in random_params(cfg, rng).items()}
    tokens = torch.tensor(rng.integers(0, cfg.V, (1, T)))
    targets = torch.tensor(rng.integers(0, cfg.V, (1, T)))
    mask = torch.ones(1, T, dtype=torch.float64)
    E = P["model.embed_tokens.weight"]
    loss = rm.masked_loss(rm.forward(cfg, P, tokens), targets, mask)[0]
    (gE,) = torch.autograd.grad(loss, [E])
    E1 = E.detach().clone().requires_grad_(True)
    E2 = E.detach().clone().requires_grad_(True)
    cfg_u = rm.Cfg(**dict(cfg.__dict__, tied=False))
    P2 = dict(P, **{"model.embed_tokens.weight": E1, "lm_head.weight": E2})
    loss2 = rm.masked_loss(rm.forward(cfg_u, P2, tokens), targets, mask)[0]
    g1, g2 = torch.autograd.grad(loss2, [E1, E2])
    check("tied embedding gradient == lookup part + head part",
          (gE - (g1 + g2)).abs().max().item() < 1e-14 and g1.abs().max() > 0 and g2.abs().max() > 0)


# ---------------------------------------------------------------------------------------
# 6. PEFT conventions


def check_peft():
    g = rm.config_from_hf(make_case.hf_config(make_case.PRESETS["gpt2"], "f32"))
    m = rm.lora_modules(g, ["c_proj"])
    want = sorted("transformer.h.%d.%s.c_proj" % (i, w) for i in range(g.L) for w in ("attn", "mlp"))
    check("'c_proj' matches attn.c_proj and mlp.c_proj", sorted(m) == want, str(sorted(m)))
    m = rm.lora_modules(g, ["c_attn", "c_fc"])
    ok = m["transformer.h.0.attn.c_attn"] == (64, 192) and m["transformer.h.0.mlp.c_fc"] == (64, 256)
    m2 = rm.lora_modules(g, ["c_proj"])
    ok = ok and m2["transformer.h.1.mlp.c_proj"] == (256, 64)
    check("Conv1D in/out features from weight.shape (in, out)", ok)
    lcfg = rm.config_from_hf(make_case.hf_config(make_case.PRESETS["llama_headdim"], "f32"))
    m = rm.lora_modules(lcfg, ["q_proj", "o_proj"])
    ok = (m["model.layers.0.self_attn.q_proj"] == (64, 96)
          and m["model.layers.1.self_attn.o_proj"] == (96, 64) and len(m) == 4)
    check("Linear in/out features (head_dim 24: q_proj 64->96, o_proj 96->64)", ok)
    check("lm_head and embeddings are never targets",
          not rm.lora_modules(lcfg, ["lm_head", "embed_tokens"]))
    check("PEFT saved key", rm.peft_key("transformer.h.0.attn.c_attn", "B")
          == "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight")


# ---------------------------------------------------------------------------------------
# 7. a case on disk reproduces its expected values


def check_case_files():
    with tempfile.TemporaryDirectory() as d:
        for args in (["--arch", "qwen2", "--preset", "qwen2", "--dtype", "bf16", "--lora",
                      "2,4,q_proj+down_proj", "--seq", "12"],
                     ["--arch", "gpt2", "--preset", "gpt2", "--seq", "12"]):
            out = os.path.join(d, args[3])
            make_case.main(args + ["--seed", "11", "--out", out])
            import json
            with open(os.path.join(out, "model", "config.json")) as f:
                cfg = rm.config_from_hf(json.load(f))
            W, _ = st.read(os.path.join(out, "model", "model.safetensors"))
            batch, _ = st.read(os.path.join(out, "batch.safetensors"))
            exp, _ = st.read(os.path.join(out, "expected.safetensors"))
            lora = None
            if os.path.exists(os.path.join(out, "adapter")):
                with open(os.path.join(out, "adapter", "adapter_config.json")) as f:
                    ac = json.load(f)
                A, _ = st.read(os.path.join(out, "adapter", "adapter_model.safetensors"))
                lora = {p: (torch.tensor(A[rm.peft_key(p, "A")], dtype=torch.float64),
                            torch.tensor(A[rm.peft_key(p, "B")], dtype=torch.float64),
                            ac["lora_alpha"] / ac["r"])
                        for p in rm.lora_modules(cfg, ac["target_modules"])}
            P = {k: torch.tensor(v, dtype=torch.float64) for k, v in W.items()}
            logits = rm.forward(cfg, P, torch.tensor(batch["tokens"]), lora)
            loss, n, c = rm.masked_loss(logits, torch.tensor(batch["targets"]),
                                        torch.tensor(batch["mask"]))
            ok = np.abs(logits.float().numpy() - exp["logits"]).max() == 0
            ok = ok and abs(np.float32(loss.item()) - exp["loss"][0]) == 0
            ok = ok and n.item() == exp["n_tokens"][0] and int(c) == exp["n_correct"][0]
            ok = ok and batch["mask"][:, -1].sum() == 0
            ok = ok and np.array_equal(batch["targets"][:, :-1], batch["tokens"][:, 1:])
            grads = sorted(k for k in exp if k.startswith("grad."))
            want = sorted("grad." + k for k in (A if lora else W))
            ok = ok and grads == want
            check("case %s reads back and reproduces expected.safetensors" % " ".join(args[:4]), ok)


def main():
    torch.set_num_threads(1)
    check_st()
    check_rope()
    check_forward()
    check_grads()
    check_peft()
    check_case_files()
    print("%d failure(s)" % len(FAILS))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
