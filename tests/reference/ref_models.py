"""ref_models.py - an independent PyTorch reference of the model math forja implements in C.

Written to follow Hugging Face transformers (the 4.45-4.50 line) and PEFT's LoRA; the
function or class each piece follows is named where it is implemented. The models are
plain functions of a parameter dictionary keyed by the exact names transformers saves
(`model.layers.0.self_attn.q_proj.weight`, `transformer.h.0.attn.c_attn.weight`, ...), so
gradients come from torch.autograd on the dictionary's leaves and line up with the
safetensors names one to one.

Everything runs in the dtype of the parameters it is given: make_case.py gives float64
copies of the stored weights (the oracle), bench/train_step/reference.py gives float32.

  config_from_hf(d)            config.json dict -> Cfg
  param_shapes(cfg)            HF tensor name -> shape, every tensor the checkpoint holds
  lora_modules(cfg, targets)   module path -> (in_features, out_features) PEFT would wrap
  peft_key(path, "A"|"B")      the key PEFT saves for that module's lora_A / lora_B weight
  rope_inv_freq(cfg)           inverse frequencies (with llama3 scaling when configured)
  forward(cfg, P, tokens, lora=None) -> logits (B, T, V)
  masked_loss(logits, targets, mask) -> (loss, n_tokens, n_correct)
"""
import math

import torch
import torch.nn.functional as F

LLAMA_TYPES = ("llama", "mistral")


class Cfg:
    """The hyperparameters the math needs, read as transformers reads config.json."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __repr__(self):
        return "Cfg(%s)" % ", ".join("%s=%r" % kv for kv in sorted(self.__dict__.items()))


def config_from_hf(d):
    mt = d["model_type"]
    if mt == "gpt2":
        C = d["n_embd"]
        NH = d["n_head"]
        act = d.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError("reference supports GPT-2 activation gelu_new only, got %r" % act)
        return Cfg(arch="gpt2", L=d["n_layer"], C=C, NH=NH, NKV=NH, HS=C // NH,
                   FF=d.get("n_inner") or 4 * C, V=d["vocab_size"], n_ctx=d["n_positions"],
                   eps=d.get("layer_norm_epsilon", 1e-5), tied=True, qkv_bias=True,
                   o_bias=True, mlp_bias=True, rope_theta=None, rope_scaling=None)
    if mt in LLAMA_TYPES or mt == "qwen2":
        C = d["hidden_size"]
        NH = d["num_attention_heads"]
        NKV = d.get("num_key_value_heads") or NH
        # LlamaAttention / MistralAttention / Qwen2Attention:
        #   head_dim = getattr(config, "head_dim", hidden_size // num_attention_heads)
        HS = d.get("head_dim") or C // NH
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError("reference supports hidden_act silu only")
        if NH % NKV:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if d.get("use_sliding_window"):
            raise ValueError("sliding-window attention is not part of the reference")
        if mt == "qwen2":
            # Qwen2Attention: q/k/v with bias=True, o_proj bias=False; Qwen2MLP no bias
            qkv_bias, o_bias, mlp_bias = True, False, False
        else:
            # LlamaAttention: every projection bias=config.attention_bias;
            # LlamaMLP: bias=config.mlp_bias. Mistral has neither key (no biases).
            qkv_bias = o_bias = bool(d.get("attention_bias", False))
            mlp_bias = bool(d.get("mlp_bias", False))
        rs = d.get("rope_scaling")
        if rs is not None:
            rtype = rs.get("rope_type", rs.get("type"))
            if rtype == "default":
                rs = None
            elif rtype != "llama3":
                raise ValueError("reference supports rope_scaling llama3 only, got %r" % rtype)
        return Cfg(arch="qwen2" if mt == "qwen2" else "llama", L=d["num_hidden_layers"], C=C,
                   NH=NH, NKV=NKV, HS=HS, FF=d["intermediate_size"], V=d["vocab_size"],
                   n_ctx=d["max_position_embeddings"], eps=d.get("rms_norm_eps", 1e-6),
                   tied=bool(d.get("tie_word_embeddings", False)), qkv_bias=qkv_bias,
                   o_bias=o_bias, mlp_bias=mlp_bias, rope_theta=float(d.get("rope_theta", 10000.0)),
                   rope_scaling=rs)
    raise ValueError("unknown model_type %r" % mt)


# ---------------------------------------------------------------------------------------
# names and shapes


def param_shapes(cfg):
    """Every tensor of the checkpoint, as transformers' save_pretrained names it.

    Linear weights are (out_features, in_features) (torch.nn.Linear); GPT-2's Conv1D
    weights are (in_features, out_features) (transformers.pytorch_utils.Conv1D)."""
    s = {}
    L, C, V, FF = cfg.L, cfg.C, cfg.V, cfg.FF
    if cfg.arch == "gpt2":
        s["transformer.wte.weight"] = (V, C)
        s["transformer.wpe.weight"] = (cfg.n_ctx, C)
        for i in range(L):
            p = "transformer.h.%d." % i
            s[p + "ln_1.weight"] = (C,)
            s[p + "ln_1.bias"] = (C,)
            s[p + "attn.c_attn.weight"] = (C, 3 * C)
            s[p + "attn.c_attn.bias"] = (3 * C,)
            s[p + "attn.c_proj.weight"] = (C, C)
            s[p + "attn.c_proj.bias"] = (C,)
            s[p + "ln_2.weight"] = (C,)
            s[p + "ln_2.bias"] = (C,)
            s[p + "mlp.c_fc.weight"] = (C, FF)
            s[p + "mlp.c_fc.bias"] = (FF,)
            s[p + "mlp.c_proj.weight"] = (FF, C)
            s[p + "mlp.c_proj.bias"] = (C,)
        s["transformer.ln_f.weight"] = (C,)
        s["transformer.ln_f.bias"] = (C,)
        return s
    NH, NKV, HS = cfg.NH, cfg.NKV, cfg.HS
    s["model.embed_tokens.weight"] = (V, C)
    for i in range(L):
        p = "model.layers.%d." % i
        s[p + "self_attn.q_proj.weight"] = (NH * HS, C)
        s[p + "self_attn.k_proj.weight"] = (NKV * HS, C)
        s[p + "self_attn.v_proj.weight"] = (NKV * HS, C)
        s[p + "self_attn.o_proj.weight"] = (C, NH * HS)
        if cfg.qkv_bias:
            s[p + "self_attn.q_proj.bias"] = (NH * HS,)
            s[p + "self_attn.k_proj.bias"] = (NKV * HS,)
            s[p + "self_attn.v_proj.bias"] = (NKV * HS,)
        if cfg.o_bias:
            s[p + "self_attn.o_proj.bias"] = (C,)
        s[p + "mlp.gate_proj.weight"] = (FF, C)
        s[p + "mlp.up_proj.weight"] = (FF, C)
        s[p + "mlp.down_proj.weight"] = (C, FF)
        if cfg.mlp_bias:
            s[p + "mlp.gate_proj.bias"] = (FF,)
            s[p + "mlp.up_proj.bias"] = (FF,)
            s[p + "mlp.down_proj.bias"] = (C,)
        s[p + "input_layernorm.weight"] = (C,)
        s[p + "post_attention_layernorm.weight"] = (C,)
    s["model.norm.weight"] = (C,)
    if not cfg.tied:
        s["lm_head.weight"] = (V, C)
    return s


def linear_modules(cfg):
    """module path -> (in_features, out_features) for every linear layer LoRA may target
    (the lm_head excluded). For Conv1D the features come from weight.shape = (in, out), as
    PEFT's LoraLayer.__init__ reads them."""
    m = {}
    for name, shape in param_shapes(cfg).items():
        if not name.endswith(".weight") or len(shape) != 2:
            continue
        path = name[: -len(".weight")]
        if path.endswith(("embed_tokens", "wte", "wpe")) or path == "lm_head":
            continue
        if cfg.arch == "gpt2":
            m[path] = (shape[0], shape[1])
        else:
            m[path] = (shape[1], shape[0])
    return m


def lora_modules(cfg, targets):
    """The modules PEFT wraps for a list of target_modules: check_target_module_exists
    (peft/tuners/tuners_utils.py) takes a module when its full name equals a target or
    ends with "." + target, so "c_proj" takes both attn.c_proj and mlp.c_proj."""
    out = {}
    for path, io in linear_modules(cfg).items():
        if path in targets or any(path.endswith("." + t) for t in targets):
            out[path] = io
    return out


def peft_key(path, which):
    """get_peft_model_state_dict's key: 'base_model.model.' + module path, the adapter
    name ('default') removed: ...q_proj.lora_A.weight."""
    return "base_model.model.%s.lora_%s.weight" % (path, which)


# ---------------------------------------------------------------------------------------
# pieces


def rms_norm(x, w, eps):
    """LlamaRMSNorm.forward: the statistics in (at least) fp32, then weight *."""
    xf = x if x.dtype == torch.float64 else x.float()
    var = xf.pow(2).mean(-1, keepdim=True)
    return w * (xf * torch.rsqrt(var + eps)).to(x.dtype)


def rope_default_inv_freq(dim, theta, dtype=torch.float64):
    """_compute_default_rope_parameters: 1 / theta^(arange(0, dim, 2) / dim)."""
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).to(dtype) / dim))


def rope_llama3(inv_freq, factor, low_freq_factor, high_freq_factor, old_context_len):
    """_compute_llama3_parameters (modeling_rope_utils.py), the same expression:

    wavelen = 2*pi / inv_freq
    wavelen < old/high_freq_factor              -> unchanged (high frequencies)
    wavelen > old/low_freq_factor               -> inv_freq / factor (low frequencies)
    otherwise, with smooth = (old/wavelen - low) / (high - low):
                   (1 - smooth) * inv_freq / factor + smooth * inv_freq
    """
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_freq_llama)


def rope_inv_freq(cfg, dtype=torch.float64):
    """The rotary dimension is head_dim (transformers >= 4.46 reads config.head_dim here;
    4.45's rope init used hidden_size // num_attention_heads, which only agrees when
    head_dim is not set explicitly)."""
    inv = rope_default_inv_freq(cfg.HS, cfg.rope_theta, dtype)
    rs = cfg.rope_scaling
    if rs is not None:
        inv = rope_llama3(inv, float(rs["factor"]), float(rs["low_freq_factor"]),
                          float(rs["high_freq_factor"]),
                          float(rs["original_max_position_embeddings"]))
    return inv


def rope_cos_sin(cfg, T, dtype):
    """LlamaRotaryEmbedding.forward: freqs = positions x inv_freq, emb = cat(freqs, freqs),
    cos/sin of emb (attention_scaling is 1.0 for default and llama3). HF does this in
    float32; the reference does it in `dtype` (float64 for the oracle)."""
    inv = rope_inv_freq(cfg, torch.float64)
    pos = torch.arange(T, dtype=torch.float64)
    freqs = torch.outer(pos, inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    """modeling_llama.rotate_half: cat(-x2, x1) over the two halves of the last dim."""
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def apply_rope(x, cos, sin):
    """apply_rotary_pos_emb for one tensor: x * cos + rotate_half(x) * sin; x is
    (B, heads, T, head_dim), cos/sin (T, head_dim)."""
    return x * cos + rotate_half(x) * sin


def repeat_kv(x, n_rep):
    """modeling_llama.repeat_kv: (B, NKV, T, HS) -> (B, NKV*n_rep, T, HS); query head h
    reads kv head h // n_rep."""
    if n_rep == 1:
        return x
    B, NKV, T, HS = x.shape
    return x[:, :, None, :, :].expand(B, NKV, n_rep, T, HS).reshape(B, NKV * n_rep, T, HS)


def causal_attention(q, k, v):
    """eager_attention_forward with a causal mask: softmax(q k^T * head_dim^-0.5) v.
    q, k, v: (B, heads, T, HS) -> (B, T, heads*HS)."""
    B, H, T, HS = q.shape
    att = torch.matmul(q, k.transpose(-1, -2)) * (HS ** -0.5)
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    att = att.masked_fill(mask, float("-inf"))
    att = torch.softmax(att, dim=-1)
    y = torch.matmul(att, v)
    return y.transpose(1, 2).reshape(B, T, H * HS)


def gelu_new(x):
    """transformers' NewGELUActivation ("gelu_new"):
    0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))); F.gelu(approximate="tanh") is
    the same function (self_check.py compares them)."""
    return F.gelu(x, approximate="tanh")


def _lora_delta(x, lora, path):
    """PEFT lora.Linear.forward: result + lora_B(lora_A(dropout(x))) * scaling, with
    dropout 0 (identity); lora_A weight (r, in), lora_B weight (out, r), scaling =
    lora_alpha / r. The same for Conv1D targets (fan_in_fan_out only affects merging)."""
    A, Bw, s = lora[path]
    return F.linear(F.linear(x, A), Bw) * s


def linear(x, P, path, lora=None):
    """nn.Linear: x @ W^T + b, W (out, in)."""
    y = F.linear(x, P[path + ".weight"], P.get(path + ".bias"))
    if lora is not None and path in lora:
        y = y + _lora_delta(x, lora, path)
    return y


def conv1d(x, P, path, lora=None):
    """transformers.pytorch_utils.Conv1D.forward: addmm(bias, x, W), W (in, out)."""
    W = P[path + ".weight"]
    shp = x.shape[:-1] + (W.shape[1],)
    y = torch.addmm(P[path + ".bias"], x.reshape(-1, x.shape[-1]), W).view(shp)
    if lora is not None and path in lora:
        y = y + _lora_delta(x, lora, path)
    return y


# ---------------------------------------------------------------------------------------
# models


def _llama_forward(cfg, P, tokens, lora):
    """LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM (pre-norm decoder)."""
    B, T = tokens.shape
    NH, NKV, HS = cfg.NH, cfg.NKV, cfg.HS
    h = F.embedding(tokens, P["model.embed_tokens.weight"])
    cos, sin = rope_cos_sin(cfg, T, h.dtype)
    for i in range(cfg.L):
        p = "model.layers.%d." % i
        # LlamaDecoderLayer: residual + self_attn(input_layernorm(h))
        x = rms_norm(h, P[p + "input_layernorm.weight"], cfg.eps)
        q = linear(x, P, p + "self_attn.q_proj", lora).view(B, T, NH, HS).transpose(1, 2)
        k = linear(x, P, p + "self_attn.k_proj", lora).view(B, T, NKV, HS).transpose(1, 2)
        v = linear(x, P, p + "self_attn.v_proj", lora).view(B, T, NKV, HS).transpose(1, 2)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        k = repeat_kv(k, NH // NKV)
        v = repeat_kv(v, NH // NKV)
        y = causal_attention(q, k, v)
        h = h + linear(y, P, p + "self_attn.o_proj", lora)
        # residual + mlp(post_attention_layernorm(h)); LlamaMLP: down(silu(gate(x)) * up(x))
        x = rms_norm(h, P[p + "post_attention_layernorm.weight"], cfg.eps)
        g = linear(x, P, p + "mlp.gate_proj", lora)
        u = linear(x, P, p + "mlp.up_proj", lora)
        h = h + linear(F.silu(g) * u, P, p + "mlp.down_proj", lora)
    h = rms_norm(h, P["model.norm.weight"], cfg.eps)
    head = P["model.embed_tokens.weight"] if cfg.tied else P["lm_head.weight"]
    return F.linear(h, head)


def _gpt2_forward(cfg, P, tokens, lora):
    """GPT2LMHeadModel: wte + wpe, blocks of h + attn(ln_1(h)), h + mlp(ln_2(h)), ln_f,
    lm_head tied to wte (no bias)."""
    B, T = tokens.shape
    C, NH, HS = cfg.C, cfg.NH, cfg.HS
    if T > cfg.n_ctx:
        raise ValueError("sequence longer than n_positions")
    h = F.embedding(tokens, P["transformer.wte.weight"]) + P["transformer.wpe.weight"][:T]
    for i in range(cfg.L):
        p = "transformer.h.%d." % i
        x = F.layer_norm(h, (C,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], cfg.eps)
        qkv = conv1d(x, P, p + "attn.c_attn", lora)
        # GPT2Attention: split(split_size=C, dim=2) into q, k, v; _split_heads
        q, k, v = qkv.split(C, dim=2)
        q = q.view(B, T, NH, HS).transpose(1, 2)
        k = k.view(B, T, NH, HS).transpose(1, 2)
        v = v.view(B, T, NH, HS).transpose(1, 2)
        # _attn: q k^T / sqrt(head_dim) (scale_attn_weights), causal, softmax, @ v
        y = causal_attention(q, k, v)
        h = h + conv1d(y, P, p + "attn.c_proj", lora)
        x = F.layer_norm(h, (C,), P[p + "ln_2.weight"], P[p + "ln_2.bias"], cfg.eps)
        # GPT2MLP: c_proj(act(c_fc(x)))
        h = h + conv1d(gelu_new(conv1d(x, P, p + "mlp.c_fc", lora)), P, p + "mlp.c_proj", lora)
    h = F.layer_norm(h, (C,), P["transformer.ln_f.weight"], P["transformer.ln_f.bias"], cfg.eps)
    return F.linear(h, P["transformer.wte.weight"])


def forward(cfg, P, tokens, lora=None):
    """logits (B, T, V). P: HF name -> tensor; tokens: (B, T) integer tensor; lora: None or
    module path -> (A (r, in), B (out, r), scaling)."""
    tokens = tokens.long()
    if cfg.arch == "gpt2":
        return _gpt2_forward(cfg, P, tokens, lora)
    return _llama_forward(cfg, P, tokens, lora)


def masked_loss(logits, targets, mask):
    """sum(mask * cross_entropy(logits, targets)) / sum(mask), the token count and the
    number of mask-1 positions whose argmax is the target."""
    B, T, V = logits.shape
    ce = F.cross_entropy(logits.reshape(B * T, V), targets.reshape(-1).long(),
                         reduction="none").view(B, T)
    m = mask.to(logits.dtype)
    n = m.sum()
    loss = (ce * m).sum() / n
    correct = ((logits.argmax(-1) == targets.long()) & (mask > 0)).sum()
    return loss, n, correct
