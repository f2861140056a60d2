/* config.c - Hugging Face config.json for LlamaForCausalLM, MistralForCausalLM,
 * Qwen2ForCausalLM and GPT2LMHeadModel (see config.h; docs/model-files.md).
 *
 * Keys and defaults are those of transformers' configuration_llama.py,
 * configuration_mistral.py, configuration_qwen2.py and configuration_gpt2.py: a key that is
 * absent takes the class default. The sizes (vocab, width, layers, heads, MLP width,
 * context) have no default here: a config.json without them is refused, since a silent
 * 4096-wide default would only fail later, confusingly. Rules:
 *   1. Integers must be JSON integers (4096.0 is refused); floats may be either.
 *   2. null means "absent" (the default, or "computed" for num_key_value_heads, head_dim and
 *      n_inner), except for bos_token_id / eos_token_id, where null means "none", as
 *      transformers reads it.
 *   3. Mistral's sliding_window (transformers' default 4096) is not implemented. Attention
 *      over at most sliding_window tokens is the same with or without the window, so a
 *      window shorter than max_position_embeddings becomes the context limit: n_ctx =
 *      min(max_position_embeddings, sliding_window). Qwen2's use_sliding_window must be false.
 *   4. A default bos/eos id outside the vocabulary (a small test model) means none; an id
 *      the file gives must be below vocab_size.
 *   5. Things that change the math and are not implemented are refused by name: rope types
 *      other than llama3, Qwen2 sliding windows, GPT-2's scale_attn_by_inverse_layer_idx,
 *      scale_attn_weights false and add_cross_attention.
 * Error messages name the key; model_config_load prefixes the file.
 */
#include "model/config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

/* The four architectures. Mistral is Llama without biases, with its own defaults. */
enum family { FAM_LLAMA, FAM_MISTRAL, FAM_QWEN2, FAM_GPT2 };

static const struct {
    const char *architecture;
    const char *model_type;
    enum family family;
    enum model_arch arch;
} families[] = {
    {"LlamaForCausalLM", "llama", FAM_LLAMA, MODEL_ARCH_LLAMA},
    {"MistralForCausalLM", "mistral", FAM_MISTRAL, MODEL_ARCH_LLAMA},
    {"Qwen2ForCausalLM", "qwen2", FAM_QWEN2, MODEL_ARCH_QWEN2},
    {"GPT2LMHeadModel", "gpt2", FAM_GPT2, MODEL_ARCH_GPT2},
};
#define N_FAMILIES (sizeof families / sizeof families[0])

#define SUPPORTED "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel"

/* Bounds not in config.h: the MLP width and one attention head. */
#define MAX_FF       (1 << 20)
#define MAX_HEAD_DIM MODEL_MAX_EMBD

/* config.json and generation_config.json are small; anything bigger is not one. */
#define MAX_CONFIG_BYTES (16u << 20)

/* ---------------------------------------------------------------------------------------
 * typed reads: each names its key (with prefix, e.g. "rope_scaling.") in errors
 */

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a non-integer number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* The value of key, or NULL if absent or null. */
static const json_t *get(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

/* An integer in [lo, hi]; def when absent unless required. */
static int read_int(const json_t *o, const char *prefix, const char *key, bool required, int def,
                    int lo, int hi, int *out, struct fj_err *err)
{
    const json_t *v = get(o, key);
    if (v == NULL) {
        if (required)
            return fj_err_set(err, FJ_ERR_FORMAT, "\"%s%s\" is missing", prefix, key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v))
        return fj_err_set(err, FJ_ERR_FORMAT, "\"%s%s\" must be an integer, not %s", prefix, key,
                          type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return fj_err_set(err, FJ_ERR_RANGE, "\"%s%s\" is %lld; it must be between %d and %d",
                          prefix, key, (long long)x, lo, hi);
    *out = (int)x;
    return 0;
}

/* A finite number in (lo, hi) (open bounds); def when absent unless required. */
static int read_float(const json_t *o, const char *prefix, const char *key, bool required,
                      float def, double lo, double hi, float *out, struct fj_err *err)
{
    const json_t *v = get(o, key);
    if (v == NULL) {
        if (required)
            return fj_err_set(err, FJ_ERR_FORMAT, "\"%s%s\" is missing", prefix, key);
        *out = def;
        return 0;
    }
    if (!json_is_number(v))
        return fj_err_set(err, FJ_ERR_FORMAT, "\"%s%s\" must be a number, not %s", prefix, key,
                          type_name(v));
    double x = json_number_value(v);
    if (!(x > lo && x < hi) || !isfinite((float)x))
        return fj_err_set(err, FJ_ERR_RANGE, "\"%s%s\" is %g; it must be above %g and below %g",
                          prefix, key, x, lo, hi);
    *out = (float)x;
    return 0;
}

static int read_bool(const json_t *o, const char *key, bool def, bool *out, struct fj_err *err)
{
    const json_t *v = get(o, key);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return fj_err_set(err, FJ_ERR_FORMAT, "\"%s\" must be true or false, not %s", key,
                          type_name(v));
    *out = json_is_true(v);
    return 0;
}

/* A string, or NULL when absent (def then). */
static int read_str(const json_t *o, const char *key, const char *def, const char **out,
                    struct fj_err *err)
{
    const json_t *v = get(o, key);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (!json_is_string(v))
        return fj_err_set(err, FJ_ERR_FORMAT, "\"%s\" must be a string, not %s", key, type_name(v));
    *out = json_string_value(v);
    return 0;
}

/* A token id: absent keeps *out (the default); null is none (-1). */
static int read_id(const json_t *o, const char *key, int vocab, int *out, struct fj_err *err)
{
    const json_t *v = json_object_get(o, key);
    if (v == NULL)
        return 0;
    if (json_is_null(v)) {
        *out = -1;
        return 0;
    }
    if (!json_is_integer(v))
        return fj_err_set(err, FJ_ERR_FORMAT, "\"%s\" must be an integer or null, not %s", key,
                          type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < 0 || x >= vocab)
        return fj_err_set(err, FJ_ERR_RANGE,
                          "\"%s\" is %lld; it must be a token id below "
                          "vocab_size %d",
                          key, (long long)x, vocab);
    *out = (int)x;
    return 0;
}

/* eos_token_id: an id, a list of ids, or null (none); absent keeps the current list. */
static int read_eos(const json_t *o, int vocab, struct model_config *cfg, struct fj_err *err)
{
    const json_t *v = json_object_get(o, "eos_token_id");
    if (v == NULL)
        return 0;
    if (json_is_null(v)) {
        cfg->n_eos = 0;
        return 0;
    }
    if (json_is_integer(v)) {
        int id = -1;
        int rc = read_id(o, "eos_token_id", vocab, &id, err);
        if (rc != 0)
            return rc;
        cfg->eos_ids[0] = id;
        cfg->n_eos = 1;
        return 0;
    }
    if (!json_is_array(v))
        return fj_err_set(err, FJ_ERR_FORMAT,
                          "\"eos_token_id\" must be an integer, a list of integers or null, "
                          "not %s",
                          type_name(v));
    size_t n = json_array_size(v);
    if (n > MODEL_MAX_EOS)
        return fj_err_set(err, FJ_ERR_RANGE,
                          "\"eos_token_id\" lists %zu ids; forja keeps at most %d", n,
                          MODEL_MAX_EOS);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) >= vocab)
            return fj_err_set(err, json_is_integer(e) ? FJ_ERR_RANGE : FJ_ERR_FORMAT,
                              "\"eos_token_id\"[%zu] is not a token id below vocab_size %d", i,
                              vocab);
        cfg->eos_ids[i] = (int)json_integer_value(e);
    }
    memset(cfg->eos_ids + n, 0, (MODEL_MAX_EOS - n) * sizeof cfg->eos_ids[0]);
    cfg->n_eos = (int)n;
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * parsing
 */

static int find_family(const json_t *root, struct model_config *cfg, enum family *fam,
                       struct fj_err *err)
{
    const json_t *archs = get(root, "architectures");
    const char *name = NULL;
    if (archs != NULL) {
        if (!json_is_array(archs) || json_array_size(archs) == 0 ||
            !json_is_string(json_array_get(archs, 0)))
            return fj_err_set(err, FJ_ERR_FORMAT,
                              "\"architectures\" must be a non-empty list of strings");
        name = json_string_value(json_array_get(archs, 0));
        for (size_t i = 0; i < N_FAMILIES; i++)
            if (strcmp(name, families[i].architecture) == 0) {
                *fam = families[i].family;
                cfg->arch = families[i].arch;
                snprintf(cfg->architecture, sizeof cfg->architecture, "%s", name);
                return 0;
            }
        return fj_err_set(err, FJ_ERR_INVALID,
                          "unsupported architecture \"%.200s\" (forja runs " SUPPORTED ")", name);
    }
    /* No architectures list: transformers' Auto classes go by model_type. */
    const char *type = NULL;
    int rc = read_str(root, "model_type", NULL, &type, err);
    if (rc != 0)
        return rc;
    if (type == NULL)
        return fj_err_set(err, FJ_ERR_FORMAT,
                          "neither \"architectures\" nor \"model_type\" is set");
    for (size_t i = 0; i < N_FAMILIES; i++)
        if (strcmp(type, families[i].model_type) == 0) {
            *fam = families[i].family;
            cfg->arch = families[i].arch;
            snprintf(cfg->architecture, sizeof cfg->architecture, "%s", families[i].architecture);
            return 0;
        }
    return fj_err_set(err, FJ_ERR_INVALID,
                      "unsupported model_type \"%.200s\" (forja runs " SUPPORTED ")", type);
}

static int parse_act(const char *key, const char *s, enum family fam, struct model_config *cfg,
                     struct fj_err *err)
{
    if (fam != FAM_GPT2 && (strcmp(s, "silu") == 0 || strcmp(s, "swish") == 0)) {
        cfg->act = MODEL_ACT_SILU;
        return 0;
    }
    if (fam == FAM_GPT2 && (strcmp(s, "gelu_new") == 0 || strcmp(s, "gelu_pytorch_tanh") == 0 ||
                            strcmp(s, "gelu_fast") == 0)) {
        cfg->act = MODEL_ACT_GELU_TANH;
        return 0;
    }
    if (fam == FAM_GPT2 && strcmp(s, "gelu") == 0) {
        cfg->act = MODEL_ACT_GELU;
        return 0;
    }
    return fj_err_set(err, FJ_ERR_FORMAT, "\"%s\" \"%.64s\" is not supported (forja runs %s)", key,
                      s,
                      fam == FAM_GPT2 ? "gelu_new, gelu_pytorch_tanh, gelu_fast and gelu" : "silu");
}

/* rope_scaling (or transformers 5's rope_parameters): none, "default" or "llama3". */
static int parse_rope(const json_t *root, struct model_config *cfg, struct fj_err *err)
{
    const char *key = "rope_scaling";
    const json_t *rs = get(root, key);
    const json_t *params = get(root, "rope_parameters");
    if (rs == NULL && params != NULL) {
        key = "rope_parameters";
        rs = params;
    }
    int rc = read_float(root, "", "rope_theta", false, 10000.0f, 0.0, 1e30, &cfg->rope_theta, err);
    if (rc != 0)
        return rc;
    if (rs == NULL)
        return 0;
    if (!json_is_object(rs))
        return fj_err_set(err, FJ_ERR_FORMAT, "\"%s\" must be an object or null, not %s", key,
                          type_name(rs));
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s.", key);
    if (rs == params && get(root, "rope_theta") == NULL) {
        rc =
            read_float(rs, prefix, "rope_theta", false, 10000.0f, 0.0, 1e30, &cfg->rope_theta, err);
        if (rc != 0)
            return rc;
    }
    const json_t *type = get(rs, "rope_type");
    if (type == NULL)
        type = get(rs, "type");
    if (!json_is_string(type))
        return fj_err_set(err, FJ_ERR_FORMAT, "\"%srope_type\" must be a string", prefix);
    const char *t = json_string_value(type);
    if (strcmp(t, "default") == 0)
        return 0;
    if (strcmp(t, "llama3") != 0)
        return fj_err_set(err, FJ_ERR_FORMAT,
                          "\"%srope_type\" \"%.64s\" is not supported (forja implements "
                          "\"default\" and \"llama3\")",
                          prefix, t);
    cfg->rope_scaling = MODEL_ROPE_LLAMA3;
    if ((rc = read_float(rs, prefix, "factor", true, 0, 0.0, 1e9, &cfg->rope_factor, err)) ||
        (rc = read_float(rs, prefix, "low_freq_factor", true, 0, 0.0, 1e9,
                         &cfg->rope_low_freq_factor, err)) ||
        (rc = read_float(rs, prefix, "high_freq_factor", true, 0, 0.0, 1e9,
                         &cfg->rope_high_freq_factor, err)) ||
        (rc = read_int(rs, prefix, "original_max_position_embeddings", true, 0, 1,
                       MODEL_MAX_CONTEXT, &cfg->rope_original_n_ctx, err)))
        return rc;
    if (cfg->rope_factor < 1.0f)
        return fj_err_set(err, FJ_ERR_RANGE, "\"%sfactor\" is %g; it must be at least 1", prefix,
                          (double)cfg->rope_factor);
    /* The smoothing between the two wavelengths divides by high - low. */
    if (!(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor))
        return fj_err_set(err, FJ_ERR_RANGE,
                          "\"%shigh_freq_factor\" (%g) must be greater than low_freq_factor (%g)",
                          prefix, (double)cfg->rope_high_freq_factor,
                          (double)cfg->rope_low_freq_factor);
    return 0;
}

/* Llama, Mistral and Qwen2. */
static int parse_llama(const json_t *root, enum family fam, struct model_config *cfg,
                       struct fj_err *err)
{
    int rc;
    if ((rc = read_int(root, "", "vocab_size", true, 0, 1, MODEL_MAX_VOCAB, &cfg->vocab_size,
                       err)) ||
        (rc = read_int(root, "", "hidden_size", true, 0, 1, MODEL_MAX_EMBD, &cfg->n_embd, err)) ||
        (rc = read_int(root, "", "intermediate_size", true, 0, 1, MAX_FF, &cfg->n_ff, err)) ||
        (rc = read_int(root, "", "num_hidden_layers", true, 0, 1, MODEL_MAX_LAYERS, &cfg->n_layer,
                       err)) ||
        (rc = read_int(root, "", "num_attention_heads", true, 0, 1, MODEL_MAX_HEADS, &cfg->n_head,
                       err)) ||
        (rc = read_int(root, "", "max_position_embeddings", true, 0, 1, MODEL_MAX_CONTEXT,
                       &cfg->n_ctx, err)))
        return rc;
    /* transformers: an absent num_key_value_heads is 8 for Mistral and 32 for Qwen2 (their
     * signatures' defaults), a null one is num_attention_heads. */
    const json_t *kv = json_object_get(root, "num_key_value_heads");
    int kv_default = fam == FAM_MISTRAL && kv == NULL ? 8
                     : fam == FAM_QWEN2 && kv == NULL ? 32
                                                      : cfg->n_head;
    if ((rc = read_int(root, "", "num_key_value_heads", false, kv_default, 1, MODEL_MAX_HEADS,
                       &cfg->n_kv_head, err)))
        return rc;
    if (cfg->n_kv_head > cfg->n_head || cfg->n_head % cfg->n_kv_head != 0)
        return fj_err_set(err, FJ_ERR_RANGE,
                          "\"num_attention_heads\" (%d) is not a multiple of "
                          "\"num_key_value_heads\" (%d)",
                          cfg->n_head, cfg->n_kv_head);
    if (get(root, "head_dim") == NULL && cfg->n_embd % cfg->n_head != 0)
        return fj_err_set(err, FJ_ERR_RANGE,
                          "\"num_attention_heads\" (%d) does not divide \"hidden_size\" (%d)",
                          cfg->n_head, cfg->n_embd);
    if ((rc = read_int(root, "", "head_dim", false, cfg->n_embd / cfg->n_head, 1, MAX_HEAD_DIM,
                       &cfg->head_dim, err)))
        return rc;
    if (cfg->head_dim % 2 != 0)
        return fj_err_set(err, FJ_ERR_RANGE, "\"head_dim\" (%d) must be even for rotary embeddings",
                          cfg->head_dim);
    if ((int64_t)cfg->n_head * cfg->head_dim > MODEL_MAX_EMBD)
        return fj_err_set(err, FJ_ERR_RANGE,
                          "\"num_attention_heads\" * \"head_dim\" is %lld; the limit is %d",
                          (long long)cfg->n_head * cfg->head_dim, MODEL_MAX_EMBD);
    const char *act;
    if ((rc = read_str(root, "hidden_act", "silu", &act, err)) ||
        (rc = parse_act("hidden_act", act, fam, cfg, err)) ||
        (rc = read_float(root, "", "rms_norm_eps", false, 1e-6f, 0.0, 1.0, &cfg->norm_eps, err)) ||
        (rc = read_bool(root, "tie_word_embeddings", false, &cfg->tie_embeddings, err)) ||
        (rc = parse_rope(root, cfg, err)))
        return rc;
    if (fam == FAM_LLAMA) {
        bool attention_bias;
        if ((rc = read_bool(root, "attention_bias", false, &attention_bias, err)) ||
            (rc = read_bool(root, "mlp_bias", false, &cfg->mlp_bias, err)))
            return rc;
        cfg->qkv_bias = cfg->o_bias = attention_bias;
    } else if (fam == FAM_QWEN2) {
        bool sliding;
        if ((rc = read_bool(root, "use_sliding_window", false, &sliding, err)))
            return rc;
        if (sliding)
            return fj_err_set(err, FJ_ERR_FORMAT,
                              "\"use_sliding_window\" is true; forja does not implement "
                              "sliding-window attention");
        cfg->qkv_bias = true; /* Qwen2Attention: q/k/v always have biases, o_proj never */
    } else {
        /* Mistral: an absent sliding_window is 4096 in transformers; see rule 3. */
        int window = 4096;
        if (json_is_null(json_object_get(root, "sliding_window")))
            window = 0;
        else if ((rc = read_int(root, "", "sliding_window", false, 4096, 1, INT32_MAX, &window,
                                err)))
            return rc;
        if (window > 0 && window < cfg->n_ctx)
            cfg->n_ctx = window;
    }
    /* Ids: transformers' defaults are 1 and 2 for Llama and Mistral, none for Qwen2. */
    cfg->bos_id = fam == FAM_QWEN2 ? -1 : 1;
    cfg->n_eos = fam == FAM_QWEN2 ? 0 : 1;
    cfg->eos_ids[0] = fam == FAM_QWEN2 ? 0 : 2;
    return 0;
}

static int parse_gpt2(const json_t *root, struct model_config *cfg, struct fj_err *err)
{
    int rc;
    if ((rc = read_int(root, "", "vocab_size", true, 0, 1, MODEL_MAX_VOCAB, &cfg->vocab_size,
                       err)) ||
        (rc = read_int(root, "", "n_embd", true, 0, 1, MODEL_MAX_EMBD, &cfg->n_embd, err)) ||
        (rc = read_int(root, "", "n_layer", true, 0, 1, MODEL_MAX_LAYERS, &cfg->n_layer, err)) ||
        (rc = read_int(root, "", "n_head", true, 0, 1, MODEL_MAX_HEADS, &cfg->n_head, err)) ||
        (rc = read_int(root, "", "n_positions", true, 0, 1, MODEL_MAX_CONTEXT, &cfg->n_ctx, err)))
        return rc;
    if (cfg->n_embd % cfg->n_head != 0)
        return fj_err_set(err, FJ_ERR_RANGE, "\"n_head\" (%d) does not divide \"n_embd\" (%d)",
                          cfg->n_head, cfg->n_embd);
    cfg->n_kv_head = cfg->n_head;
    cfg->head_dim = cfg->n_embd / cfg->n_head;
    int ff_default = cfg->n_embd <= MAX_FF / 4 ? 4 * cfg->n_embd : MAX_FF + 1;
    if ((rc = read_int(root, "", "n_inner", false, ff_default, 1, MAX_FF, &cfg->n_ff, err)))
        return rc;
    if (cfg->n_ff > MAX_FF)
        return fj_err_set(err, FJ_ERR_RANGE, "4 * \"n_embd\" (the MLP width) is above %d", MAX_FF);
    const char *act;
    bool scale = true, inverse_layer = false, cross = false;
    if ((rc = read_str(root, "activation_function", "gelu_new", &act, err)) ||
        (rc = parse_act("activation_function", act, FAM_GPT2, cfg, err)) ||
        (rc = read_float(root, "", "layer_norm_epsilon", false, 1e-5f, 0.0, 1.0, &cfg->norm_eps,
                         err)) ||
        (rc = read_bool(root, "tie_word_embeddings", true, &cfg->tie_embeddings, err)) ||
        (rc = read_bool(root, "scale_attn_weights", true, &scale, err)) ||
        (rc = read_bool(root, "scale_attn_by_inverse_layer_idx", false, &inverse_layer, err)) ||
        (rc = read_bool(root, "add_cross_attention", false, &cross, err)))
        return rc;
    if (!scale || inverse_layer || cross)
        return fj_err_set(err, FJ_ERR_FORMAT, "\"%s\" is %s; forja does not implement it",
                          !scale          ? "scale_attn_weights"
                          : inverse_layer ? "scale_attn_by_inverse_layer_idx"
                                          : "add_cross_attention",
                          !scale ? "false" : "true");
    cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = true; /* GPT-2 has every bias */
    cfg->bos_id = 50256;
    cfg->eos_ids[0] = 50256;
    cfg->n_eos = 1;
    return 0;
}

static int parse_dtype(const json_t *root, struct model_config *cfg, struct fj_err *err)
{
    const char *key = get(root, "torch_dtype") != NULL ? "torch_dtype" : "dtype";
    const char *s;
    int rc = read_str(root, key, "", &s, err);
    if (rc != 0)
        return rc;
    size_t n = strlen(s);
    bool ok = n < sizeof cfg->torch_dtype;
    for (size_t i = 0; i < n && ok; i++)
        ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
             (s[i] >= '0' && s[i] <= '9') || s[i] == '_';
    if (!ok)
        return fj_err_set(err, FJ_ERR_FORMAT, "\"%s\" \"%.40s\" is not a dtype name", key, s);
    memcpy(cfg->torch_dtype, s, n + 1);
    return 0;
}

static int parse_root(struct model_config *cfg, const json_t *root, struct fj_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    if (!json_is_object(root))
        return fj_err_set(err, FJ_ERR_FORMAT, "not a JSON object");
    enum family fam = FAM_LLAMA;
    int rc = find_family(root, cfg, &fam, err);
    if (rc == 0)
        rc = fam == FAM_GPT2 ? parse_gpt2(root, cfg, err) : parse_llama(root, fam, cfg, err);
    if (rc != 0)
        return rc;
    /* A default id outside the vocabulary (a small test model) means none. */
    if (cfg->bos_id >= cfg->vocab_size)
        cfg->bos_id = -1;
    if (cfg->n_eos == 1 && cfg->eos_ids[0] >= cfg->vocab_size) {
        cfg->n_eos = 0;
        cfg->eos_ids[0] = 0;
    }
    if ((rc = read_id(root, "bos_token_id", cfg->vocab_size, &cfg->bos_id, err)) ||
        (rc = read_eos(root, cfg->vocab_size, cfg, err)))
        return rc;
    return parse_dtype(root, cfg, err);
}

int model_config_parse(struct model_config *cfg, const char *json, size_t len, struct fj_err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        memset(cfg, 0, sizeof *cfg);
        return fj_err_set(err, FJ_ERR_FORMAT, "not valid JSON: %s (line %d, column %d)", jerr.text,
                          jerr.line, jerr.column);
    }
    int rc = parse_root(cfg, root, err);
    json_decref(root);
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * loading a folder
 */

static int read_file(const char *path, char **text, size_t *len, struct fj_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fj_err_set(err, errno == ENOENT ? FJ_ERR_NOT_FOUND : FJ_ERR_IO, "cannot open: %s",
                          strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > MAX_CONFIG_BYTES) {
        close(fd);
        return fj_err_set(err, FJ_ERR_FORMAT, "not a regular file of at most %u bytes",
                          MAX_CONFIG_BYTES);
    }
    size_t size = (size_t)sb.st_size, got = 0;
    char *t = malloc(size + 1);
    if (t == NULL) {
        close(fd);
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    }
    while (got < size) {
        ssize_t r = read(fd, t + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int rc = fj_err_set(err, FJ_ERR_IO, "cannot read: %s",
                                r < 0 ? strerror(errno) : "the file shrank");
            free(t);
            close(fd);
            return rc;
        }
        got += (size_t)r;
    }
    close(fd);
    t[size] = '\0';
    *text = t;
    *len = size;
    return 0;
}

/* generation_config.json: its bos_token_id and eos_token_id, when present, win. */
static int apply_generation(struct model_config *cfg, const char *text, size_t len,
                            struct fj_err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return fj_err_set(err, FJ_ERR_FORMAT, "not valid JSON: %s (line %d, column %d)", jerr.text,
                          jerr.line, jerr.column);
    int rc = json_is_object(root) ? 0 : fj_err_set(err, FJ_ERR_FORMAT, "not a JSON object");
    struct model_config c = *cfg;
    if (rc == 0)
        rc = read_id(root, "bos_token_id", c.vocab_size, &c.bos_id, err);
    if (rc == 0)
        rc = read_eos(root, c.vocab_size, &c, err);
    if (rc == 0)
        *cfg = c;
    json_decref(root);
    return rc;
}

int model_config_load(struct model_config *cfg, const char *dir, struct fj_err *err)
{
    static const char *const names[2] = {"config.json", "generation_config.json"};
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        size_t n = strlen(dir) + strlen(names[i]) + 2;
        char *path = malloc(n);
        if (path == NULL)
            return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        snprintf(path, n, "%s/%s", dir, names[i]);
        char *text = NULL;
        size_t len = 0;
        struct fj_err local = {0};
        if (i == 1 && access(path, F_OK) != 0) {
            free(path);
            break; /* generation_config.json is optional */
        }
        rc = read_file(path, &text, &len, &local);
        if (rc == 0)
            rc = i == 0 ? model_config_parse(cfg, text, len, &local)
                        : apply_generation(cfg, text, len, &local);
        if (rc != 0)
            fj_err_set(err, rc, "%s: %s", path, local.msg);
        free(text);
        free(path);
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * writing
 */

/* The shortest decimal that reads back (through a double, as parsing does) as x, as a JSON
 * real; written with JSON_REAL_PRECISION(9) it prints as that decimal. */
static json_t *float_json(float x)
{
    char s[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(s, sizeof s, "%.*g", p, (double)x);
        if ((float)strtod(s, NULL) == x)
            break;
    }
    return json_real(strtod(s, NULL));
}

static json_t *ids_json(const struct model_config *cfg)
{
    if (cfg->n_eos == 0)
        return json_null();
    if (cfg->n_eos == 1)
        return json_integer(cfg->eos_ids[0]);
    json_t *a = json_array();
    for (int i = 0; i < cfg->n_eos && a != NULL; i++)
        if (json_array_append_new(a, json_integer(cfg->eos_ids[i])) != 0) {
            json_decref(a);
            a = NULL;
        }
    return a;
}

/* Sets key to v (taken); false when v is NULL or setting fails. */
static bool put(json_t *o, const char *key, json_t *v)
{
    return v != NULL && json_object_set_new(o, key, v) == 0;
}

/* Which of the four a cfg is, or -1 when no config.json can express it. */
static int cfg_family(const struct model_config *cfg)
{
    for (size_t i = 0; i < N_FAMILIES; i++)
        if (strcmp(cfg->architecture, families[i].architecture) == 0)
            return families[i].arch == cfg->arch ? (int)families[i].family : -1;
    if (cfg->architecture[0] != '\0')
        return -1;
    return cfg->arch == MODEL_ARCH_GPT2    ? FAM_GPT2
           : cfg->arch == MODEL_ARCH_QWEN2 ? FAM_QWEN2
                                           : FAM_LLAMA;
}

static bool expressible(const struct model_config *cfg, enum family fam)
{
    switch (fam) {
    case FAM_LLAMA: return cfg->qkv_bias == cfg->o_bias && cfg->act == MODEL_ACT_SILU;
    case FAM_MISTRAL:
        return !cfg->qkv_bias && !cfg->o_bias && !cfg->mlp_bias && cfg->act == MODEL_ACT_SILU;
    case FAM_QWEN2:
        return cfg->qkv_bias && !cfg->o_bias && !cfg->mlp_bias && cfg->act == MODEL_ACT_SILU;
    case FAM_GPT2:
        return cfg->qkv_bias && cfg->o_bias && cfg->mlp_bias && cfg->act != MODEL_ACT_SILU &&
               cfg->n_kv_head == cfg->n_head && cfg->head_dim * cfg->n_head == cfg->n_embd &&
               cfg->rope_scaling == MODEL_ROPE_NONE;
    }
    return false;
}

static bool put_llama(json_t *o, const struct model_config *cfg, enum family fam)
{
    bool ok = put(o, "hidden_size", json_integer(cfg->n_embd)) &&
              put(o, "intermediate_size", json_integer(cfg->n_ff)) &&
              put(o, "num_hidden_layers", json_integer(cfg->n_layer)) &&
              put(o, "num_attention_heads", json_integer(cfg->n_head)) &&
              put(o, "num_key_value_heads", json_integer(cfg->n_kv_head)) &&
              put(o, "head_dim", json_integer(cfg->head_dim)) &&
              put(o, "hidden_act", json_string("silu")) &&
              put(o, "max_position_embeddings", json_integer(cfg->n_ctx)) &&
              put(o, "rms_norm_eps", float_json(cfg->norm_eps)) &&
              put(o, "rope_theta", float_json(cfg->rope_theta)) &&
              put(o, "attention_dropout", json_real(0.0)) &&
              put(o, "initializer_range", json_real(0.02)) && put(o, "use_cache", json_true());
    if (ok && cfg->rope_scaling == MODEL_ROPE_LLAMA3) {
        json_t *rs = json_object();
        ok = put(o, "rope_scaling", rs) && put(rs, "rope_type", json_string("llama3")) &&
             put(rs, "factor", float_json(cfg->rope_factor)) &&
             put(rs, "low_freq_factor", float_json(cfg->rope_low_freq_factor)) &&
             put(rs, "high_freq_factor", float_json(cfg->rope_high_freq_factor)) &&
             put(rs, "original_max_position_embeddings", json_integer(cfg->rope_original_n_ctx));
    } else if (ok) {
        ok = put(o, "rope_scaling", json_null());
    }
    if (ok && fam == FAM_LLAMA)
        ok = put(o, "attention_bias", json_boolean(cfg->qkv_bias)) &&
             put(o, "mlp_bias", json_boolean(cfg->mlp_bias)) &&
             put(o, "pretraining_tp", json_integer(1));
    if (ok && fam == FAM_MISTRAL)
        ok = put(o, "sliding_window", json_null()); /* n_ctx already holds any window */
    if (ok && fam == FAM_QWEN2)
        ok = put(o, "use_sliding_window", json_false()) && put(o, "sliding_window", json_null()) &&
             put(o, "max_window_layers", json_integer(cfg->n_layer));
    return ok;
}

static bool put_gpt2(json_t *o, const struct model_config *cfg)
{
    return put(o, "n_embd", json_integer(cfg->n_embd)) &&
           put(o, "n_layer", json_integer(cfg->n_layer)) &&
           put(o, "n_head", json_integer(cfg->n_head)) &&
           put(o, "n_positions", json_integer(cfg->n_ctx)) &&
           put(o, "n_ctx", json_integer(cfg->n_ctx)) &&
           put(o, "n_inner", json_integer(cfg->n_ff)) &&
           put(o, "activation_function",
               json_string(cfg->act == MODEL_ACT_GELU ? "gelu" : "gelu_new")) &&
           put(o, "layer_norm_epsilon", float_json(cfg->norm_eps)) &&
           put(o, "scale_attn_weights", json_true()) &&
           put(o, "initializer_range", json_real(0.02)) && put(o, "use_cache", json_true());
}

int model_config_to_json(const struct model_config *cfg, struct fj_buf *out, struct fj_err *err)
{
    int fam = cfg_family(cfg);
    if (fam < 0 || !expressible(cfg, (enum family)fam))
        return fj_err_set(err, FJ_ERR_INVALID,
                          "this configuration (%s) cannot be written as a config.json",
                          cfg->architecture[0] ? cfg->architecture : "no architecture");
    json_t *o = json_object();
    json_t *archs = json_array();
    bool ok =
        o != NULL && put(o, "architectures", archs) &&
        json_array_append_new(archs, json_string(families[fam].architecture)) == 0 &&
        put(o, "model_type", json_string(families[fam].model_type)) &&
        put(o, "vocab_size", json_integer(cfg->vocab_size)) &&
        put(o, "tie_word_embeddings", json_boolean(cfg->tie_embeddings)) &&
        put(o, "bos_token_id", cfg->bos_id < 0 ? json_null() : json_integer(cfg->bos_id)) &&
        put(o, "eos_token_id", ids_json(cfg)) &&
        put(o, "torch_dtype", json_string(cfg->torch_dtype[0] ? cfg->torch_dtype : "float32"));
    if (ok)
        ok = fam == FAM_GPT2 ? put_gpt2(o, cfg) : put_llama(o, cfg, (enum family)fam);
    char *text =
        ok ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(o);
    if (text == NULL)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory writing config.json");
    int rc = fj_buf_append(out, text, strlen(text));
    if (rc == 0)
        rc = fj_buf_append(out, "\n", 1);
    free(text);
    return rc != 0 ? fj_err_set(err, FJ_ERR_NOMEM, "out of memory") : 0;
}

/* ---------------------------------------------------------------------------------------
 * parameter count
 */

int64_t model_config_n_params(const struct model_config *cfg)
{
    int64_t V = cfg->vocab_size, C = cfg->n_embd, L = cfg->n_layer, FF = cfg->n_ff;
    int64_t head = cfg->tie_embeddings ? 0 : V * C;
    if (cfg->arch == MODEL_ARCH_GPT2) {
        int64_t layer = 2 * C               /* ln_1 weight, bias */
                        + C * 3 * C + 3 * C /* attn.c_attn */
                        + C * C + C         /* attn.c_proj */
                        + 2 * C             /* ln_2 */
                        + C * FF + FF       /* mlp.c_fc */
                        + FF * C + C;       /* mlp.c_proj */
        return V * C + (int64_t)cfg->n_ctx * C + L * layer + 2 * C + head;
    }
    int64_t Q = (int64_t)cfg->n_head * cfg->head_dim, KV = (int64_t)cfg->n_kv_head * cfg->head_dim;
    int64_t layer = C                                  /* input_layernorm */
                    + C * Q + 2 * C * KV + Q * C       /* q, k, v, o_proj */
                    + (cfg->qkv_bias ? Q + 2 * KV : 0) /* q, k, v biases */
                    + (cfg->o_bias ? C : 0)            /* o_proj bias */
                    + C                                /* post_attention_layernorm */
                    + 3 * C * FF                       /* gate, up, down_proj */
                    + (cfg->mlp_bias ? 2 * FF + C : 0);
    return V * C + L * layer + C + head;
}
