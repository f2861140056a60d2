/* config.h - a model's hyperparameters, read from a Hugging Face config.json.
 *
 * One struct covers the architectures forja runs: the Llama family (Llama 2/3, Mistral,
 * SmolLM2, TinyLlama), Qwen2 (Llama plus q/k/v biases) and GPT-2. Field names follow
 * llm.c's letters where they exist; each comment names the config.json key it comes from.
 * Parsing validates every size (positive, bounded, consistent), so code that sizes
 * buffers from a config may trust it.
 */
#ifndef FJ_MODEL_CONFIG_H
#define FJ_MODEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

enum model_arch {
    MODEL_ARCH_LLAMA, /* LlamaForCausalLM, MistralForCausalLM */
    MODEL_ARCH_QWEN2, /* Qwen2ForCausalLM */
    MODEL_ARCH_GPT2,  /* GPT2LMHeadModel */
};

enum model_rope_scaling {
    MODEL_ROPE_NONE,
    MODEL_ROPE_LLAMA3, /* rope_scaling.rope_type (or .type) == "llama3" */
};

enum model_act {
    MODEL_ACT_SILU,      /* hidden_act "silu" (Llama, Qwen2: SwiGLU MLP) */
    MODEL_ACT_GELU_TANH, /* activation_function "gelu_new" / "gelu_pytorch_tanh" (GPT-2) */
    MODEL_ACT_GELU,      /* activation_function "gelu" (exact, erf) */
};

#define MODEL_MAX_EOS 8

/* Limits that make a config "absurd": anything beyond them is refused at parse time. */
#define MODEL_MAX_LAYERS  1024
#define MODEL_MAX_EMBD    65536
#define MODEL_MAX_HEADS   1024
#define MODEL_MAX_VOCAB   (1 << 22)
#define MODEL_MAX_CONTEXT (1 << 22)

struct model_config {
    enum model_arch arch;
    char architecture[64]; /* architectures[0] as written, e.g. "MistralForCausalLM" */
    int n_layer;           /* L: num_hidden_layers | n_layer */
    int n_embd;            /* C: hidden_size | n_embd */
    int n_head;            /* NH: num_attention_heads | n_head */
    int n_kv_head;         /* num_key_value_heads (default n_head); GPT-2: n_head */
    int head_dim;          /* HS: head_dim (default n_embd / n_head) */
    int n_ff;              /* intermediate_size | n_inner (GPT-2 default 4 * n_embd) */
    int vocab_size;        /* V: vocab_size */
    int n_ctx;             /* max_position_embeddings | n_positions */
    float norm_eps;        /* rms_norm_eps | layer_norm_epsilon */
    enum model_act act;    /* hidden_act | activation_function */
    bool tie_embeddings;   /* tie_word_embeddings (default: true for GPT-2, false otherwise) */
    bool qkv_bias;         /* Qwen2: always; Llama: attention_bias (also gives o_proj a bias) */
    bool o_bias;           /* Llama attention_bias; false for Qwen2 */
    bool mlp_bias;         /* Llama mlp_bias (default false) */
    /* rotary embeddings (Llama, Qwen2) */
    float rope_theta; /* rope_theta (default 10000) */
    enum model_rope_scaling rope_scaling;
    float rope_factor;           /* rope_scaling.factor */
    float rope_low_freq_factor;  /* rope_scaling.low_freq_factor */
    float rope_high_freq_factor; /* rope_scaling.high_freq_factor */
    int rope_original_n_ctx;     /* rope_scaling.original_max_position_embeddings */
    /* special ids: config.json, overridden by generation_config.json when present */
    int bos_id;                 /* bos_token_id, -1 if none */
    int eos_ids[MODEL_MAX_EOS]; /* eos_token_id (an int or a list) */
    int n_eos;
    char torch_dtype[16]; /* torch_dtype as written ("bfloat16", ...), "" if absent */
};

/* Parses config.json text into cfg (fully overwritten). Unknown architectures fail with
 * FJ_ERR_INVALID naming the architecture; missing or out-of-range sizes, a head count that
 * does not divide the width, n_head not a multiple of n_kv_head, an unsupported activation
 * or rope_scaling type, or use_sliding_window true fail with FJ_ERR_FORMAT/FJ_ERR_RANGE
 * naming the key. */
int model_config_parse(struct model_config *cfg, const char *json, size_t len, struct fj_err *err);

/* Reads dir/config.json, then dir/generation_config.json if present (its bos/eos ids win).
 * Errors name the file. */
int model_config_load(struct model_config *cfg, const char *dir, struct fj_err *err);

/* Appends a config.json that transformers loads as the same model (and that
 * model_config_parse reads back to an equal struct). Returns 0, FJ_ERR_NOMEM, or
 * FJ_ERR_INVALID for a struct no config.json can express (e.g. a Llama with q/k/v biases
 * but no o_proj bias, or an architecture string that contradicts arch). */
int model_config_to_json(const struct model_config *cfg, struct fj_buf *out, struct fj_err *err);

/* The number of parameters the architecture has for cfg (tied head counted once). */
int64_t model_config_n_params(const struct model_config *cfg);

#endif
