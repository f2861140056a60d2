#!/usr/bin/python3
"""config_cross.py - forja's config.json reading against PyTorch modules.

    config_cross.py ST_TOOL CONFIGS_DIR WORKDIR

For the published configs in CONFIGS_DIR and a few synthetic ones (every optional bias,
untied heads, a head_dim that does not divide the width, defaulted keys), this script reads
config.json as transformers' config classes do, builds the model's modules on PyTorch's
"meta" device with the layer structure and names of transformers' modeling_llama.py,
modeling_mistral.py, modeling_qwen2.py and modeling_gpt2.py, and counts their parameters
(tied weights once). forja's model_config_n_params must give the same count, and the
config.json forja writes back must carry the same values for every key the input set.
"""
import json
import os
import shutil
import subprocess
import sys

import torch
from torch import nn

TOOL, CONFIGS, WORK = sys.argv[1:4]
failures = 0
META = torch.device("meta")


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)


def linear(i, o, bias):
    return nn.Linear(i, o, bias=bias, device=META)


class Norm(nn.Module):
    def __init__(self, c, bias=False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(c, device=META))
        if bias:
            self.bias = nn.Parameter(torch.empty(c, device=META))


class LlamaLayer(nn.Module):
    def __init__(self, h):
        super().__init__()
        c, q, kv = h["C"], h["NH"] * h["HS"], h["NKV"] * h["HS"]
        self.self_attn = nn.Module()
        self.self_attn.q_proj = linear(c, q, h["qkv_bias"])
        self.self_attn.k_proj = linear(c, kv, h["qkv_bias"])
        self.self_attn.v_proj = linear(c, kv, h["qkv_bias"])
        self.self_attn.o_proj = linear(q, c, h["o_bias"])
        self.mlp = nn.Module()
        self.mlp.gate_proj = linear(c, h["FF"], h["mlp_bias"])
        self.mlp.up_proj = linear(c, h["FF"], h["mlp_bias"])
        self.mlp.down_proj = linear(h["FF"], c, h["mlp_bias"])
        self.input_layernorm = Norm(c)
        self.post_attention_layernorm = Norm(c)


class Conv1D(nn.Module):  # GPT-2's transposed linear
    def __init__(self, nf, nx):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(nx, nf, device=META))
        self.bias = nn.Parameter(torch.empty(nf, device=META))


class GPT2Block(nn.Module):
    def __init__(self, h):
        super().__init__()
        c = h["C"]
        self.ln_1 = Norm(c, bias=True)
        self.attn = nn.Module()
        self.attn.c_attn = Conv1D(3 * c, c)
        self.attn.c_proj = Conv1D(c, c)
        self.ln_2 = Norm(c, bias=True)
        self.mlp = nn.Module()
        self.mlp.c_fc = Conv1D(h["FF"], c)
        self.mlp.c_proj = Conv1D(c, h["FF"])


class CausalLM(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.model = nn.Module()
        if h["gpt2"]:
            self.model.wte = nn.Embedding(h["V"], h["C"], device=META)
            self.model.wpe = nn.Embedding(h["n_ctx"], h["C"], device=META)
            self.model.h = nn.ModuleList(GPT2Block(h) for _ in range(h["L"]))
            self.model.ln_f = Norm(h["C"], bias=True)
            embed = self.model.wte
        else:
            self.model.embed_tokens = nn.Embedding(h["V"], h["C"], device=META)
            self.model.layers = nn.ModuleList(LlamaLayer(h) for _ in range(h["L"]))
            self.model.norm = Norm(h["C"])
            embed = self.model.embed_tokens
        self.lm_head = linear(h["C"], h["V"], False)
        if h["tie"]:
            self.lm_head.weight = embed.weight


def hf_view(d):
    """What transformers' config classes make of config.json d."""
    mt = d["model_type"]
    if mt == "gpt2":
        c = d["n_embd"]
        return {"gpt2": True, "V": d["vocab_size"], "C": c, "L": d["n_layer"],
                "n_ctx": d["n_positions"], "FF": d.get("n_inner") or 4 * c,
                "tie": d.get("tie_word_embeddings", True)}
    nh = d["num_attention_heads"]
    nkv_default = {"llama": None, "mistral": 8, "qwen2": 32}[mt]
    nkv = d.get("num_key_value_heads", nkv_default) or nh
    attention_bias = d.get("attention_bias", False) if mt == "llama" else False
    return {"gpt2": False, "V": d["vocab_size"], "C": d["hidden_size"],
            "L": d["num_hidden_layers"], "NH": nh, "NKV": nkv,
            "HS": d.get("head_dim") or d["hidden_size"] // nh, "FF": d["intermediate_size"],
            "qkv_bias": attention_bias or mt == "qwen2", "o_bias": attention_bias,
            "mlp_bias": d.get("mlp_bias", False) if mt == "llama" else False,
            "tie": d.get("tie_word_embeddings", False)}


SYNTHETIC = {
    "llama-all-biases": {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                         "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 96,
                         "num_hidden_layers": 3, "num_attention_heads": 4,
                         "num_key_value_heads": 2, "head_dim": 24,
                         "max_position_embeddings": 512, "attention_bias": True,
                         "mlp_bias": True, "tie_word_embeddings": False, "rms_norm_eps": 1e-5,
                         "rope_theta": 250000.0, "torch_dtype": "float32"},
    "llama-defaults": {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                       "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 96,
                       "num_hidden_layers": 2, "num_attention_heads": 8,
                       "max_position_embeddings": 128},
    "qwen2-untied": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                     "vocab_size": 1000, "hidden_size": 96, "intermediate_size": 160,
                     "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 2,
                     "max_position_embeddings": 256, "tie_word_embeddings": False,
                     "use_sliding_window": False, "bos_token_id": 5, "eos_token_id": [6, 7]},
    "mistral-defaults": {"architectures": ["MistralForCausalLM"], "model_type": "mistral",
                         "vocab_size": 1000, "hidden_size": 128, "intermediate_size": 192,
                         "num_hidden_layers": 2, "num_attention_heads": 16,
                         "max_position_embeddings": 1024, "sliding_window": None},
    "gpt2-untied": {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
                    "vocab_size": 1000, "n_embd": 48, "n_layer": 2, "n_head": 4,
                    "n_positions": 64, "n_inner": 100, "tie_word_embeddings": False,
                    "activation_function": "gelu", "layer_norm_epsilon": 1e-6},
}

# Keys whose value forja's config.json must carry over unchanged.
KEPT = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta",
        "rope_scaling", "tie_word_embeddings", "attention_bias", "mlp_bias", "bos_token_id",
        "eos_token_id", "torch_dtype", "model_type", "architectures", "hidden_act",
        "max_position_embeddings", "n_embd", "n_layer", "n_head", "n_positions", "n_inner",
        "layer_norm_epsilon", "activation_function", "use_sliding_window"]


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    dirs = [os.path.join(CONFIGS, d) for d in sorted(os.listdir(CONFIGS))]
    for name, cfg in SYNTHETIC.items():
        d = os.path.join(WORK, name)
        os.makedirs(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        dirs.append(d)
    for d in dirs:
        name = os.path.basename(d)
        cfg = json.load(open(os.path.join(d, "config.json")))
        model = CausalLM(hf_view(cfg))
        want = sum(p.numel() for p in model.parameters())
        r = subprocess.run([TOOL, "config", d], capture_output=True, text=True)
        check(r.returncode == 0, "%s: st_tool config failed: %s" % (name, r.stderr))
        if r.returncode != 0:
            continue
        got = json.loads(r.stdout)
        check(got["n_params"] == want,
              "%s: forja counts %d parameters, PyTorch %d" % (name, got["n_params"], want))
        out = got["config"]
        # Written back, then read again as transformers would: the same modules.
        check(sum(p.numel() for p in CausalLM(hf_view(out)).parameters()) == want,
              name + ": the config.json forja writes builds a different model")
        for key in KEPT:
            if key not in cfg or (cfg["model_type"] == "mistral" and
                                  key == "max_position_embeddings"):
                continue
            if key == "rope_scaling" and cfg[key] is None:
                continue
            check(out.get(key) == cfg[key],
                  "%s: %s is %r in config.json, %r in forja's" % (name, key, cfg[key],
                                                                 out.get(key)))
        print("%-24s %14d parameters: same as PyTorch" % (name, want))
    print("config_cross: %s" % ("ok" if failures == 0 else "%d failures" % failures))
    sys.exit(1 if failures else 0)


main()
