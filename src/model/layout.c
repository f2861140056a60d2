/* layout.c - a model's tensors: sizes, the one weight block, and the HF-named parameter
 * table pointing into it (model_new, model_free, lookups, full fine-tuning gradients).
 *
 * The table is the single description of the layout: loading, saving, the optimizer and the
 * tests all walk it. See docs/engine.md for the fused q/k/v and gate/up layout.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

/* Tensors are placed at multiples of 16 floats (64 bytes) for the kernels' loads. */
#define MODEL_ALIGN 16

static size_t align_up(size_t n)
{
    return (n + MODEL_ALIGN - 1) / MODEL_ALIGN * MODEL_ALIGN;
}

/* The layout pass runs twice: first to count (base == NULL), then to point. */
struct layout {
    struct model *m;
    float *base; /* NULL while counting */
    size_t used; /* floats */
    size_t n_params;
};

static float *take(struct layout *lo, size_t n)
{
    float *p = lo->base ? lo->base + lo->used : NULL;
    lo->used += align_up(n);
    return p;
}

static void add_param(struct layout *lo, float *data, bool transposed, int64_t d0, int64_t d1,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void add_param(struct layout *lo, float *data, bool transposed, int64_t d0, int64_t d1,
                      const char *fmt, ...)
{
    if (lo->base) {
        struct model_param *p = &lo->m->params[lo->n_params];
        memset(p, 0, sizeof *p);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->name, sizeof p->name, fmt, ap);
        va_end(ap);
        p->ndim = d1 ? 2 : 1;
        p->shape[0] = d0;
        p->shape[1] = d1;
        p->numel = (size_t)d0 * (size_t)(d1 ? d1 : 1);
        p->transposed = transposed;
        p->data = data;
    }
    lo->n_params++;
}

/* A tensor that is a run of rows of a fused block (q of qkv, up of gate/up). */
static float *rows(float *block, size_t row0, size_t C)
{
    return block ? block + row0 * C : NULL;
}

static void layout_llama(struct layout *lo)
{
    struct model *m = lo->m;
    const struct model_config *c = &m->cfg;
    size_t C = c->n_embd, V = c->vocab_size, FF = c->n_ff, HS = c->head_dim;
    size_t QR = (size_t)c->n_head * HS, KR = (size_t)c->n_kv_head * HS;
    m->wte = take(lo, V * C);
    add_param(lo, m->wte, false, V, C, "model.embed_tokens.weight");
    for (int l = 0; l < c->n_layer; l++) {
        struct model_layer *y = &m->layers[l];
        const char *pre = "model.layers";
        y->wqkv = take(lo, (QR + 2 * KR) * C);
        add_param(lo, rows(y->wqkv, 0, C), false, QR, C, "%s.%d.self_attn.q_proj.weight", pre, l);
        add_param(lo, rows(y->wqkv, QR, C), false, KR, C, "%s.%d.self_attn.k_proj.weight", pre, l);
        add_param(lo, rows(y->wqkv, QR + KR, C), false, KR, C, "%s.%d.self_attn.v_proj.weight", pre,
                  l);
        if (c->qkv_bias) {
            y->bqkv = take(lo, QR + 2 * KR);
            add_param(lo, rows(y->bqkv, 0, 1), false, QR, 0, "%s.%d.self_attn.q_proj.bias", pre, l);
            add_param(lo, rows(y->bqkv, QR, 1), false, KR, 0, "%s.%d.self_attn.k_proj.bias", pre,
                      l);
            add_param(lo, rows(y->bqkv, QR + KR, 1), false, KR, 0, "%s.%d.self_attn.v_proj.bias",
                      pre, l);
        }
        y->wo = take(lo, C * QR);
        add_param(lo, y->wo, false, C, QR, "%s.%d.self_attn.o_proj.weight", pre, l);
        if (c->o_bias) {
            y->bo = take(lo, C);
            add_param(lo, y->bo, false, C, 0, "%s.%d.self_attn.o_proj.bias", pre, l);
        }
        y->wup = take(lo, 2 * FF * C);
        add_param(lo, rows(y->wup, 0, C), false, FF, C, "%s.%d.mlp.gate_proj.weight", pre, l);
        add_param(lo, rows(y->wup, FF, C), false, FF, C, "%s.%d.mlp.up_proj.weight", pre, l);
        if (c->mlp_bias) {
            y->bup = take(lo, 2 * FF);
            add_param(lo, rows(y->bup, 0, 1), false, FF, 0, "%s.%d.mlp.gate_proj.bias", pre, l);
            add_param(lo, rows(y->bup, FF, 1), false, FF, 0, "%s.%d.mlp.up_proj.bias", pre, l);
        }
        y->wdown = take(lo, C * FF);
        add_param(lo, y->wdown, false, C, FF, "%s.%d.mlp.down_proj.weight", pre, l);
        if (c->mlp_bias) {
            y->bdown = take(lo, C);
            add_param(lo, y->bdown, false, C, 0, "%s.%d.mlp.down_proj.bias", pre, l);
        }
        y->ln1_w = take(lo, C);
        add_param(lo, y->ln1_w, false, C, 0, "%s.%d.input_layernorm.weight", pre, l);
        y->ln2_w = take(lo, C);
        add_param(lo, y->ln2_w, false, C, 0, "%s.%d.post_attention_layernorm.weight", pre, l);
    }
    m->lnf_w = take(lo, C);
    add_param(lo, m->lnf_w, false, C, 0, "model.norm.weight");
    if (c->tie_embeddings) {
        m->wlm = m->wte;
    } else {
        m->wlm = take(lo, V * C);
        add_param(lo, m->wlm, false, V, C, "lm_head.weight");
    }
}

static void layout_gpt2(struct layout *lo)
{
    struct model *m = lo->m;
    const struct model_config *c = &m->cfg;
    size_t C = c->n_embd, V = c->vocab_size, FF = c->n_ff;
    m->wte = take(lo, V * C);
    add_param(lo, m->wte, false, V, C, "transformer.wte.weight");
    m->wpe = take(lo, (size_t)c->n_ctx * C);
    add_param(lo, m->wpe, false, c->n_ctx, C, "transformer.wpe.weight");
    for (int l = 0; l < c->n_layer; l++) {
        struct model_layer *y = &m->layers[l];
        const char *pre = "transformer.h";
        y->ln1_w = take(lo, C);
        add_param(lo, y->ln1_w, false, C, 0, "%s.%d.ln_1.weight", pre, l);
        y->ln1_b = take(lo, C);
        add_param(lo, y->ln1_b, false, C, 0, "%s.%d.ln_1.bias", pre, l);
        /* Conv1D weights: HF shape (in, out), held (out, in) */
        y->wqkv = take(lo, 3 * C * C);
        add_param(lo, y->wqkv, true, C, 3 * C, "%s.%d.attn.c_attn.weight", pre, l);
        y->bqkv = take(lo, 3 * C);
        add_param(lo, y->bqkv, false, 3 * C, 0, "%s.%d.attn.c_attn.bias", pre, l);
        y->wo = take(lo, C * C);
        add_param(lo, y->wo, true, C, C, "%s.%d.attn.c_proj.weight", pre, l);
        y->bo = take(lo, C);
        add_param(lo, y->bo, false, C, 0, "%s.%d.attn.c_proj.bias", pre, l);
        y->ln2_w = take(lo, C);
        add_param(lo, y->ln2_w, false, C, 0, "%s.%d.ln_2.weight", pre, l);
        y->ln2_b = take(lo, C);
        add_param(lo, y->ln2_b, false, C, 0, "%s.%d.ln_2.bias", pre, l);
        y->wup = take(lo, FF * C);
        add_param(lo, y->wup, true, C, FF, "%s.%d.mlp.c_fc.weight", pre, l);
        y->bup = take(lo, FF);
        add_param(lo, y->bup, false, FF, 0, "%s.%d.mlp.c_fc.bias", pre, l);
        y->wdown = take(lo, C * FF);
        add_param(lo, y->wdown, true, FF, C, "%s.%d.mlp.c_proj.weight", pre, l);
        y->bdown = take(lo, C);
        add_param(lo, y->bdown, false, C, 0, "%s.%d.mlp.c_proj.bias", pre, l);
    }
    m->lnf_w = take(lo, C);
    add_param(lo, m->lnf_w, false, C, 0, "transformer.ln_f.weight");
    m->lnf_b = take(lo, C);
    add_param(lo, m->lnf_b, false, C, 0, "transformer.ln_f.bias");
    m->wlm = m->wte; /* GPT2LMHeadModel ties lm_head to wte */
}

static void layout_run(struct layout *lo)
{
    if (lo->m->cfg.arch == MODEL_ARCH_GPT2)
        layout_gpt2(lo);
    else
        layout_llama(lo);
}

void *model_alloc_floats(size_t n, struct fj_err *err)
{
    void *p = NULL;
    if (n > SIZE_MAX / sizeof(float) / 2 ||
        posix_memalign(&p, 64, (n ? n : 1) * sizeof(float)) != 0) {
        fj_err_set(err, FJ_ERR_NOMEM, "cannot allocate %zu MiB", n * sizeof(float) >> 20);
        return NULL;
    }
    memset(p, 0, n * sizeof(float));
    return p;
}

/* The config and the widths derived from it. */
static void set_shape(struct model *m, const struct model_config *cfg)
{
    m->cfg = *cfg;
    m->AH = cfg->n_head * cfg->head_dim;
    m->QKV = (cfg->n_head + 2 * cfg->n_kv_head) * cfg->head_dim;
    m->HID = cfg->arch == MODEL_ARCH_GPT2 ? cfg->n_ff : 2 * cfg->n_ff;
}

size_t model_weight_bytes(const struct model_config *cfg)
{
    /* the layout's counting pass, on a model that has its shape and no weights */
    struct model m = {0};
    set_shape(&m, cfg);
    m.layers = calloc((size_t)cfg->n_layer, sizeof *m.layers);
    if (!m.layers)
        return SIZE_MAX;
    struct layout lo = {.m = &m};
    layout_run(&lo);
    free(m.layers);
    return lo.used * sizeof(float);
}

struct model *model_new(const struct model_config *cfg, struct fj_err *err)
{
    struct model *m = calloc(1, sizeof *m);
    if (!m) {
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        return NULL;
    }
    set_shape(m, cfg);
    m->layers = calloc((size_t)cfg->n_layer, sizeof *m->layers);
    m->inv_freq = calloc((size_t)cfg->head_dim / 2 + 1, sizeof *m->inv_freq);
    if (!m->layers || !m->inv_freq) {
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        model_free(m);
        return NULL;
    }
    struct layout lo = {.m = m};
    layout_run(&lo); /* count */
    m->n_w = lo.used;
    m->w = model_alloc_floats(m->n_w, err);
    m->params = calloc(lo.n_params, sizeof *m->params);
    if (!m->w || !m->params) {
        fj_err_set(err, FJ_ERR_NOMEM, "cannot allocate %zu MiB of weights",
                   m->n_w * sizeof(float) >> 20);
        model_free(m);
        return NULL;
    }
    lo = (struct layout){.m = m, .base = m->w};
    layout_run(&lo); /* point */
    m->n_params = m->n_base_params = lo.n_params;
    model_rope_init(m);
    return m;
}

void model_free(struct model *m)
{
    if (!m)
        return;
    free(m->w);
    free(m->g);
    free(m->layers);
    free(m->inv_freq);
    free(m->params);
    free(m->sites);
    free(m->lora_w);
    free(m->lora_g);
    free(m);
}

const struct model_config *model_get_config(const struct model *m)
{
    return &m->cfg;
}

size_t model_n_params(const struct model *m)
{
    return m->n_params;
}

struct model_param *model_param_at(struct model *m, size_t i)
{
    return i < m->n_params ? &m->params[i] : NULL;
}

struct model_param *model_param_find(struct model *m, const char *name)
{
    for (size_t i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0)
            return &m->params[i];
    return NULL;
}

int64_t model_count_params(const struct model *m)
{
    int64_t n = 0;
    for (size_t i = 0; i < m->n_base_params; i++)
        n += (int64_t)m->params[i].numel;
    return n;
}

int64_t model_count_trainable(const struct model *m)
{
    int64_t n = 0;
    for (size_t i = 0; i < m->n_params; i++)
        if (m->params[i].grad)
            n += (int64_t)m->params[i].numel;
    return n;
}

int model_train_full(struct model *m, struct fj_err *err)
{
    if (m->has_lora)
        return fj_err_set(err, FJ_ERR_INVALID,
                          "full fine-tuning is not possible with a LoRA adapter attached");
    if (m->g)
        return 0;
    m->g = model_alloc_floats(m->n_w, err);
    if (!m->g)
        return FJ_ERR_NOMEM;
    for (size_t i = 0; i < m->n_base_params; i++)
        m->params[i].grad = model_grad_of(m, m->params[i].data);
    return 0;
}

size_t model_trainable_block(struct model *m, float **data, float **grad)
{
    *data = *grad = NULL;
    if (m->has_lora) {
        size_t n = 0;
        for (size_t i = m->n_base_params; i < m->n_params; i++)
            n += m->params[i].numel;
        *data = m->lora_w;
        *grad = m->lora_g;
        return n;
    }
    if (!m->g)
        return 0;
    *data = m->w;
    *grad = m->g;
    return m->n_w;
}

void model_zero_grad(struct model *m)
{
    if (m->g)
        memset(m->g, 0, m->n_w * sizeof(float));
    for (size_t i = m->n_base_params; i < m->n_params; i++)
        if (m->params[i].grad)
            memset(m->params[i].grad, 0, m->params[i].numel * sizeof(float));
}

/* transformers' default RoPE (1 / theta^(2i/HS)) and _compute_llama3_parameters:
 * wavelengths longer than original_ctx / low_freq_factor are divided by factor, shorter than
 * original_ctx / high_freq_factor are kept, and the band between is interpolated. */
void model_rope_init(struct model *m)
{
    const struct model_config *c = &m->cfg;
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        /* as torch: exponent (2i / HS) and the power in fp32 */
        float expo = (float)(2 * i) / (float)c->head_dim;
        float f = 1.0f / powf(c->rope_theta, expo);
        double inv = f;
        if (c->rope_scaling == MODEL_ROPE_LLAMA3) {
            double old = c->rope_original_n_ctx;
            double low_wavelen = old / c->rope_low_freq_factor;
            double high_wavelen = old / c->rope_high_freq_factor;
            double wavelen = 2 * M_PI / inv;
            if (wavelen > low_wavelen) {
                inv = inv / c->rope_factor;
            } else if (wavelen >= high_wavelen) {
                double smooth = (old / wavelen - c->rope_low_freq_factor) /
                                (c->rope_high_freq_factor - c->rope_low_freq_factor);
                inv = (1 - smooth) * inv / c->rope_factor + smooth * inv;
            }
        }
        m->inv_freq[i] = inv;
    }
}
