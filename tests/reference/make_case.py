#!/usr/bin/python3
"""make_case.py - write one test case for forja's model math: a random Hugging Face model
folder, a batch, optionally a PEFT LoRA adapter, and the expected logits, loss and
gradients computed by ref_models.py.

    make_case.py --arch {llama,qwen2,gpt2} --preset NAME --seed S --out DIR
                 [--lora R,ALPHA,target1+target2...] [--dtype f32|bf16|f16]
                 [--batch B --seq T]

The oracle runs in float64 from the stored weights (bf16/f16 values widened exactly), and
its results are stored as F32: the reference is then far more accurate than the fp32 C code
under test, so the tolerance in case.json is all forja's rounding. case.json also records
how far the same computation done by PyTorch in float32 lands from the oracle (the
"fp32_torch_error" block), which is what the tolerances are sized from.

See README.md for the file contract.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_models as rm  # noqa: E402
import st  # noqa: E402

TRANSFORMERS_VERSION = "4.45.2"
PEFT_VERSION = "0.13.2"

# ---------------------------------------------------------------------------------------
# presets: small enough that a case takes a second or two

_LLAMA_BASE = dict(L=2, C=64, NH=4, NKV=2, HS=None, FF=160, V=300, n_ctx=128, eps=1e-6,
                   tied=False, theta=10000.0, rope_scaling=None, attention_bias=False,
                   mlp_bias=False, bos=1, eos=2, B=2, T=24, arch="llama",
                   model_type="llama", architectures="LlamaForCausalLM")

PRESETS = {
    "llama_gqa": dict(_LLAMA_BASE),
    "llama_tied_mha": dict(_LLAMA_BASE, NKV=4, tied=True, eps=1e-5),
    # head_dim 32 (C=64, NH=2) so that theta 500000 puts rotary pairs in all three llama3
    # bands for original_max_position_embeddings 32: wavelengths 6.3 (kept), 14.3
    # (smoothed), 32.4 and up (divided by the factor)
    "llama3_scaled": dict(_LLAMA_BASE, NH=2, NKV=1, tied=True, eps=1e-5, theta=500000.0,
                          rope_scaling={"factor": 8.0, "low_freq_factor": 1.0,
                                        "high_freq_factor": 4.0,
                                        "original_max_position_embeddings": 32,
                                        "rope_type": "llama3"},
                          T=64, bos=297, eos=[298, 299]),
    "llama_bias": dict(_LLAMA_BASE, attention_bias=True, mlp_bias=True),
    "llama_headdim": dict(_LLAMA_BASE, HS=24),
    "mistral": dict(_LLAMA_BASE, theta=1000000.0, eps=1e-5, model_type="mistral",
                    architectures="MistralForCausalLM"),
    "qwen2": dict(_LLAMA_BASE, tied=True, theta=1000000.0, arch="qwen2",
                  model_type="qwen2", architectures="Qwen2ForCausalLM", bos=298, eos=299),
    "gpt2": dict(L=2, C=64, NH=4, V=300, n_ctx=64, eps=1e-5, bos=299, eos=299, B=2, T=32,
                 arch="gpt2", model_type="gpt2", architectures="GPT2LMHeadModel"),
}

# Recommended tolerances (sized from the fp32_torch_error that every preset records, with
# a margin of 20x or more for a different summation order in C). Gradients are compared per
# tensor, normwise: max|got - want| <= rtol * max|want| + atol.
TOLERANCE = {
    "logits": {"atol": 1e-4, "rtol": 1e-4,
               "rule": "|got - want| <= atol + rtol * |want| elementwise"},
    "loss": {"atol": 1e-5, "rtol": 1e-5, "rule": "|got - want| <= atol + rtol * |want|"},
    "n_tokens": {"exact": True},
    "n_correct": {"exact": True,
                  "note": "positions whose top-2 logit margin is under 1e-3 are masked out"},
    "grad": {"rtol": 1e-4, "atol": 1e-7,
             "rule": "per tensor: max|got - want| <= rtol * max|want| + atol"},
}


def hf_config(p, dtype):
    torch_dtype = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}[dtype]
    if p["arch"] == "gpt2":
        return {
            "activation_function": "gelu_new",
            "architectures": ["GPT2LMHeadModel"],
            "attn_pdrop": 0.0,
            "bos_token_id": p["bos"],
            "embd_pdrop": 0.0,
            "eos_token_id": p["eos"],
            "initializer_range": 0.02,
            "layer_norm_epsilon": p["eps"],
            "model_type": "gpt2",
            "n_embd": p["C"],
            "n_head": p["NH"],
            "n_inner": None,
            "n_layer": p["L"],
            "n_positions": p["n_ctx"],
            "reorder_and_upcast_attn": False,
            "resid_pdrop": 0.0,
            "scale_attn_by_inverse_layer_idx": False,
            "scale_attn_weights": True,
            "summary_activation": None,
            "summary_first_dropout": 0.1,
            "summary_proj_to_labels": True,
            "summary_type": "cls_index",
            "summary_use_proj": True,
            "torch_dtype": torch_dtype,
            "transformers_version": TRANSFORMERS_VERSION,
            "use_cache": True,
            "vocab_size": p["V"],
        }
    c = {
        "architectures": [p["architectures"]],
        "attention_dropout": 0.0,
        "bos_token_id": p["bos"],
        "eos_token_id": p["eos"],
        "hidden_act": "silu",
        "hidden_size": p["C"],
        "initializer_range": 0.02,
        "intermediate_size": p["FF"],
        "max_position_embeddings": p["n_ctx"],
        "model_type": p["model_type"],
        "num_attention_heads": p["NH"],
        "num_hidden_layers": p["L"],
        "num_key_value_heads": p["NKV"],
        "rms_norm_eps": p["eps"],
        "rope_scaling": p["rope_scaling"],
        "rope_theta": p["theta"],
        "tie_word_embeddings": p["tied"],
        "torch_dtype": torch_dtype,
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": p["V"],
    }
    hs = p["HS"] or p["C"] // p["NH"]
    if p["model_type"] == "llama":
        # LlamaConfig (4.45): attention_bias, mlp_bias, head_dim, pretraining_tp
        c.update(attention_bias=p["attention_bias"], mlp_bias=p["mlp_bias"], head_dim=hs,
                 pretraining_tp=1)
    elif p["model_type"] == "mistral":
        # MistralConfig (4.45): head_dim, sliding_window (null: full attention)
        c.update(head_dim=hs, sliding_window=None)
    elif p["model_type"] == "qwen2":
        # Qwen2Config (4.45): no head_dim key; sliding_window null unless use_sliding_window
        if p["HS"]:
            raise ValueError("qwen2 has no head_dim key")
        c.update(max_window_layers=p["L"], sliding_window=None, use_sliding_window=False)
    return c


def generation_config(p):
    return {"_from_model_config": True, "bos_token_id": p["bos"], "eos_token_id": p["eos"],
            "transformers_version": TRANSFORMERS_VERSION}


def adapter_config(r, alpha, targets, fan_in_fan_out):
    """LoraConfig.save_pretrained's JSON (PEFT 0.13): every field of LoraConfig, keys
    sorted, target_modules as a list. For GPT-2's Conv1D PEFT forces fan_in_fan_out=True
    (dispatch_default: "fan_in_fan_out is set to False but the target module is
    `Conv1D`")."""
    return {
        "alpha_pattern": {},
        "auto_mapping": None,
        "base_model_name_or_path": "../model",
        "bias": "none",
        "fan_in_fan_out": fan_in_fan_out,
        "inference_mode": True,
        "init_lora_weights": True,
        "layer_replication": None,
        "layers_pattern": None,
        "layers_to_transform": None,
        "loftq_config": {},
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "megatron_config": None,
        "megatron_core": "megatron.core",
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": r,
        "rank_pattern": {},
        "revision": None,
        "target_modules": sorted(targets),
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": False,
    }


# ---------------------------------------------------------------------------------------
# random weights


def init_weights(cfg, rng):
    """float32 weights. Matrices are scaled like nn.Linear (std 1/sqrt(fan_in)) rather than
    GPT-2's 0.02 so that attention is neither uniform nor saturated and every term of the
    math moves the logits; norm weights 1 + 0.1 N(0,1); biases 0.1 N(0,1)."""
    W = {}
    for name, shape in rm.param_shapes(cfg).items():
        if name.endswith(("embed_tokens.weight", "wte.weight")):
            a = rng.normal(0.0, 0.3, shape)
        elif name.endswith("wpe.weight"):
            a = rng.normal(0.0, 0.1, shape)
        elif name == "lm_head.weight":
            a = rng.normal(0.0, 1.5 / math.sqrt(shape[1]), shape)
        elif len(shape) == 2:
            fan_in = shape[0] if cfg.arch == "gpt2" else shape[1]
            a = rng.normal(0.0, 1.0 / math.sqrt(fan_in), shape)
        elif name.endswith("norm.weight") or ".ln_" in name and name.endswith(".weight"):
            a = 1.0 + 0.1 * rng.standard_normal(shape)
        else:  # every bias, LayerNorm's included
            a = 0.1 * rng.standard_normal(shape)
        W[name] = a.astype(np.float32)
    return W


def init_lora(cfg, rng, r, targets):
    """lora_A as PEFT's reset_lora_parameters (kaiming_uniform_(a=sqrt(5)) on an (r, in)
    weight: U(-1/sqrt(in), 1/sqrt(in))); lora_B random NONZERO N(0, 0.1^2) instead of PEFT's
    zeros, so that the gradient of A is not zero."""
    mods = rm.lora_modules(cfg, targets)
    if not mods:
        raise SystemExit("--lora: no module matches %r" % (targets,))
    A = {}
    for path in sorted(mods):
        fin, fout = mods[path]
        bound = 1.0 / math.sqrt(fin)
        A[rm.peft_key(path, "A")] = rng.uniform(-bound, bound, (r, fin)).astype(np.float32)
        A[rm.peft_key(path, "B")] = rng.normal(0.0, 0.1, (fout, r)).astype(np.float32)
    return mods, A


# ---------------------------------------------------------------------------------------
# the oracle


def run_model(cfg, W, tokens, targets, mask, lora_w, lora_scaling, dtype):
    """Forward + backward in `dtype`. Returns logits, loss, n, correct and the gradient of
    every trainable tensor (all of W without LoRA; only the LoRA tensors with it)."""
    P = {k: torch.tensor(v, dtype=dtype, requires_grad=lora_w is None) for k, v in W.items()}
    lora = None
    leaves = P
    if lora_w is not None:
        L = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in lora_w.items()}
        lora = {}
        for k in L:
            if k.endswith(".lora_A.weight"):
                path = k[len("base_model.model."):-len(".lora_A.weight")]
                lora[path] = (L[k], L[rm.peft_key(path, "B")], lora_scaling)
        leaves = L
    tok = torch.tensor(tokens, dtype=torch.long)
    logits = rm.forward(cfg, P, tok, lora)
    loss, n, correct = rm.masked_loss(logits, torch.tensor(targets), torch.tensor(mask))
    names = sorted(leaves)
    grads = torch.autograd.grad(loss, [leaves[k] for k in names])
    return (logits.detach(), loss.detach(), n.detach(), correct,
            {k: g for k, g in zip(names, grads)})


def make_batch(cfg, W, p, rng, B, T, lora_w, lora_scaling):
    """tokens: random, except that about 40% of positions take the float64 model's greedy
    choice (so that n_correct is not trivially 0); targets = tokens shifted left; mask: 0 on
    a prompt prefix, on one hole inside the row, on the last position and wherever the top-2
    logit margin is under 1e-3 (so argmax is not decided by rounding)."""
    V = cfg.V
    tokens = rng.integers(0, V, size=(B, T)).astype(np.int64)
    tokens[:, 0] = p["bos"]
    greedy = rng.random((B, T)) < 0.4
    P = {k: torch.tensor(v, dtype=torch.float64) for k, v in W.items()}
    lora = None
    if lora_w is not None:
        lora = {}
        for k in lora_w:
            if k.endswith(".lora_A.weight"):
                path = k[len("base_model.model."):-len(".lora_A.weight")]
                lora[path] = (torch.tensor(lora_w[k], dtype=torch.float64),
                              torch.tensor(lora_w[rm.peft_key(path, "B")], dtype=torch.float64),
                              lora_scaling)
    with torch.no_grad():
        for t in range(1, T):
            if not greedy[:, t].any():
                continue
            lg = rm.forward(cfg, P, torch.tensor(tokens[:, :t]), lora)[:, -1]
            am = lg.argmax(-1).numpy()
            tokens[greedy[:, t], t] = am[greedy[:, t]]
        logits = rm.forward(cfg, P, torch.tensor(tokens), lora)
    targets = np.empty_like(tokens)
    targets[:, :-1] = tokens[:, 1:]
    eos = p["eos"][0] if isinstance(p["eos"], list) else p["eos"]
    targets[:, -1] = eos
    mask = np.ones((B, T), dtype=np.float32)
    for b in range(B):
        prompt = int(rng.integers(1, max(2, T // 4)))
        mask[b, :prompt] = 0
        hole = int(rng.integers(1, max(2, T // 6)))
        start = int(rng.integers(prompt + 1, T - hole - 1))
        mask[b, start:start + hole] = 0
        mask[b, T - 1] = 0
    top2 = torch.topk(logits, 2, dim=-1).values
    margin = (top2[..., 0] - top2[..., 1]).numpy()
    mask[margin < 1e-3] = 0
    for b in range(B):
        if mask[b].sum() == 0:
            raise SystemExit("row %d fully masked; choose another seed" % b)
    kept = margin[mask > 0]
    return tokens.astype(np.int32), targets.astype(np.int32), mask, float(kept.min())


def err_report(ref, got):
    """max |got - ref| and that divided by max |ref|."""
    d = (got.double() - ref.double()).abs().max().item()
    m = ref.double().abs().max().item()
    return {"max_abs": d, "max_rel_to_max": d / m if m else d}


# ---------------------------------------------------------------------------------------


def parse_lora(s):
    parts = s.split(",")
    if len(parts) != 3:
        raise SystemExit("--lora wants R,ALPHA,target1+target2...")
    r = int(parts[0])
    alpha = float(parts[1])
    if alpha == int(alpha):
        alpha = int(alpha)
    targets = [t for t in parts[2].split("+") if t]
    if r <= 0 or not targets:
        raise SystemExit("--lora: r must be positive and at least one target given")
    return r, alpha, targets


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", required=True, choices=["llama", "qwen2", "gpt2"])
    ap.add_argument("--preset", required=True, choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--lora", default=None)
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16", "f16"])
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    a = ap.parse_args(argv)

    p = PRESETS[a.preset]
    if p["arch"] != a.arch:
        raise SystemExit("preset %s is arch %s, not %s" % (a.preset, p["arch"], a.arch))
    B = a.batch or p["B"]
    T = a.seq or p["T"]
    if B < 1 or T < 8:
        raise SystemExit("--batch >= 1 and --seq >= 8")
    if T > p["n_ctx"]:
        raise SystemExit("--seq %d exceeds the preset's context %d" % (T, p["n_ctx"]))
    torch.set_num_threads(1)

    config = hf_config(p, a.dtype)
    cfg = rm.config_from_hf(config)
    st_dtype = {"f32": "F32", "bf16": "BF16", "f16": "F16"}[a.dtype]
    rng = np.random.default_rng(a.seed)
    W = {k: st.round_to(v, st_dtype) for k, v in init_weights(cfg, rng).items()}

    lora_info = None
    lora_w = None
    scaling = None
    if a.lora:
        r, alpha, targets = parse_lora(a.lora)
        mods, lora_w = init_lora(cfg, rng, r, targets)
        scaling = alpha / r  # LoraLayer.update_layer, use_rslora False
        lora_info = {"r": r, "lora_alpha": alpha, "scaling": scaling,
                     "target_modules": sorted(targets), "modules": sorted(mods),
                     "fan_in_fan_out": cfg.arch == "gpt2", "dtype": "F32"}

    tokens, targets_, mask, min_margin = make_batch(cfg, W, p, rng, B, T, lora_w, scaling)

    logits, loss, n, correct, grads = run_model(cfg, W, tokens, targets_, mask, lora_w,
                                                scaling, torch.float64)
    # the same in float32, to size and report the tolerance
    l32, loss32, _, c32, g32 = run_model(cfg, W, tokens, targets_, mask, lora_w, scaling,
                                         torch.float32)
    grad_err = {k: err_report(grads[k], g32[k])["max_rel_to_max"] for k in grads}
    worst = max(grad_err, key=grad_err.get)
    lt = TOLERANCE["logits"]
    fp32_err = {
        "logits_max_abs": err_report(logits, l32)["max_abs"],
        "logits_fraction_of_tolerance": ((l32.double() - logits).abs()
                                         / (lt["atol"] + lt["rtol"] * logits.abs())).max().item(),
        "loss_rel": abs(loss.item() - loss32.item()) / abs(loss.item()),
        "loss_abs": abs(loss.item() - loss32.item()),
        "n_correct_fp32": int(c32),
        "grad_worst_rel_to_max": grad_err[worst],
        "grad_worst_tensor": worst,
    }
    zero_grads = [k for k, g in grads.items() if not torch.any(g != 0)]
    if zero_grads:
        raise SystemExit("gradient identically zero for %s" % zero_grads)

    out = a.out
    os.makedirs(os.path.join(out, "model"), exist_ok=True)
    with open(os.path.join(out, "model", "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(out, "model", "generation_config.json"), "w") as f:
        json.dump(generation_config(p), f, indent=2, sort_keys=True)
        f.write("\n")
    st.write(os.path.join(out, "model", "model.safetensors"), W, metadata={"format": "pt"},
             dtypes={k: st_dtype for k in W})
    if a.lora:
        os.makedirs(os.path.join(out, "adapter"), exist_ok=True)
        with open(os.path.join(out, "adapter", "adapter_config.json"), "w") as f:
            json.dump(adapter_config(lora_info["r"], lora_info["lora_alpha"],
                                     lora_info["target_modules"], cfg.arch == "gpt2"),
                      f, indent=2, sort_keys=True)
            f.write("\n")
        st.write(os.path.join(out, "adapter", "adapter_model.safetensors"), lora_w,
                 metadata={"format": "pt"})
    st.write(os.path.join(out, "batch.safetensors"),
             {"tokens": tokens, "targets": targets_, "mask": mask})
    exp = {"logits": logits.float().numpy(),
           "loss": np.array([loss.item()], dtype=np.float32),
           "n_tokens": np.array([n.item()], dtype=np.float32),
           "n_correct": np.array([int(correct)], dtype=np.float32)}
    for k, g in grads.items():
        exp["grad." + k] = g.float().numpy()
    st.write(os.path.join(out, "expected.safetensors"), exp,
             metadata={"format": "pt", "reference": "float64"})

    case = {
        "arch": cfg.arch,
        "model_type": config["model_type"],
        "preset": a.preset,
        "seed": a.seed,
        "B": B,
        "T": T,
        "dtype": a.dtype,
        "lora": lora_info,
        "n_params": int(sum(int(np.prod(s)) for s in rm.param_shapes(cfg).values())),
        "n_trainable_tensors": len(grads),
        "reference_precision": "float64 forward and backward from the stored weights; "
                               "results stored as F32",
        "loss": loss.item(),
        "n_tokens": int(n.item()),
        "n_correct": int(correct),
        "min_top2_margin_kept": min_margin,
        "tolerance": TOLERANCE,
        "fp32_torch_error": fp32_err,
    }
    if cfg.rope_scaling is not None:
        base = rm.rope_default_inv_freq(cfg.HS, cfg.rope_theta)
        scaled = rm.rope_inv_freq(cfg)
        ratio = (base / scaled).tolist()
        case["rope_llama3"] = {
            "inv_freq_ratio_unscaled_over_scaled": ratio,
            "n_kept": sum(1 for x in ratio if abs(x - 1) < 1e-12),
            "n_divided": sum(1 for x in ratio if abs(x - cfg.rope_scaling["factor"]) < 1e-9),
        }
        case["rope_llama3"]["n_smoothed"] = (len(ratio) - case["rope_llama3"]["n_kept"]
                                             - case["rope_llama3"]["n_divided"])
        if case["rope_llama3"]["n_kept"] == len(ratio):
            raise SystemExit("llama3 scaling changes no frequency")
        # and the logits do change with it
        P = {k: torch.tensor(v, dtype=torch.float64) for k, v in W.items()}
        with torch.no_grad():
            cfg0 = rm.Cfg(**dict(cfg.__dict__, rope_scaling=None))
            lora = None
            if lora_w is not None:
                lora = {path: (torch.tensor(lora_w[rm.peft_key(path, "A")], dtype=torch.float64),
                               torch.tensor(lora_w[rm.peft_key(path, "B")], dtype=torch.float64),
                               scaling) for path in lora_info["modules"]}
            l0 = rm.forward(cfg0, P, torch.tensor(tokens), lora)
        case["rope_llama3"]["logits_max_abs_change_vs_unscaled"] = (l0 - logits).abs().max().item()
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump(case, f, indent=2, sort_keys=True)
        f.write("\n")
    print("%s: %s/%s seed %d B=%d T=%d dtype %s%s loss %.6f n_tokens %d n_correct %d; "
          "fp32 torch vs oracle: logits %.1e, grad %.1e (%s)"
          % (out, cfg.arch, a.preset, a.seed, B, T, a.dtype,
             " lora r=%d" % lora_info["r"] if lora_info else "", loss.item(), int(n.item()),
             int(correct), fp32_err["logits_max_abs"], fp32_err["grad_worst_rel_to_max"], worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
