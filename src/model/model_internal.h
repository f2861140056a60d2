/* model_internal.h - what the files of model/ share: the layout of struct model, its
 * layers and LoRA sites, and the activation buffers of a run. Not part of the API. */
#ifndef FJ_MODEL_INTERNAL_H
#define FJ_MODEL_INTERNAL_H

#include <jansson.h>

#include "model/model.h"

/* One transformer block's weights; pointers into model.w. NULL where the architecture or
 * config has no such tensor (biases). C = n_embd, QKV = (NH + 2 NKV) HS, AH = NH HS,
 * HID = 2 FF (Llama: gate rows then up rows) or FF (GPT-2). */
struct model_layer {
    float *ln1_w, *ln1_b; /* (C) attention norm; bias: GPT-2 only */
    float *wqkv, *bqkv;   /* (QKV, C), (QKV): q rows, then k, then v */
    float *wo, *bo;       /* (C, AH), (C) */
    float *ln2_w, *ln2_b; /* (C) MLP norm */
    float *wup, *bup;     /* (HID, C), (HID) */
    float *wdown, *bdown; /* (C, FF), (C) */
};

/* Which fused linear of a layer a LoRA site adds to. */
enum model_linear { MODEL_LINEAR_QKV, MODEL_LINEAR_O, MODEL_LINEAR_UP, MODEL_LINEAR_DOWN };

/* One LoRA pair on a slice of a layer's linear output: out[:, col : col + width] +=
 * scale * (dropout(x) @ A^T) @ B^T. */
struct model_lora_site {
    int layer;
    enum model_linear linear;
    int col, width; /* output columns of the fused linear this adapter covers */
    int in;         /* the linear's input width */
    float *A, *dA;  /* (r, in) */
    float *B, *dB;  /* (width, r) */
};

/* A LoRA adapter's weights: the model's own (training, model_lora_*), or one detached from
 * it (model_adapter_load) that inference applies to some rows of a batch. */
struct model_adapter {
    const struct model *base; /* the model it was loaded for */
    struct model_lora_config lora;
    float scale; /* alpha / r (alpha / sqrt(r) with rsLoRA) */
    struct model_lora_site *sites;
    size_t n_sites;
    float *w; /* all A and B matrices */
    size_t n_floats;
};

struct model {
    struct model_config cfg;
    int QKV, AH, HID; /* derived widths, see struct model_layer */
    float *w;         /* all base weights, one block of n_w floats */
    float *g;         /* their gradients (same offsets) for full fine-tuning, or NULL */
    size_t n_w;
    float *wte;                 /* (V, C) */
    float *wpe;                 /* (n_ctx, C) GPT-2, else NULL */
    struct model_layer *layers; /* (L) */
    float *lnf_w, *lnf_b;       /* (C) */
    float *wlm;                 /* (V, C); == wte when tied */
    double *inv_freq;           /* (HS / 2) rotary inverse frequencies (Llama, Qwen2) */
    struct model_param *params; /* base tensors, then LoRA */
    size_t n_params, n_base_params;
    /* LoRA */
    bool has_lora;
    struct model_lora_config lora;
    float lora_scale; /* alpha / r */
    struct model_lora_site *sites;
    size_t n_sites;
    float *lora_w, *lora_g; /* all A/B matrices and their gradients */
};

/* The gradient of weight pointer p (into m->w), or NULL when base weights are frozen. */
static inline float *model_grad_of(const struct model *m, const float *p)
{
    return (m->g && p) ? m->g + (p - m->w) : NULL;
}

/* Hands out consecutive 16-float-aligned pieces of one block; only counts when base is NULL
 * (a layout runs twice: count, allocate, then point). */
struct model_carver {
    float *base;
    size_t used;
};

static inline float *model_carve(struct model_carver *cv, size_t n)
{
    float *p = cv->base ? cv->base + cv->used : NULL;
    cv->used += (n + 15) / 16 * 16;
    return p;
}

/* posix_memalign'ed, zeroed floats; NULL + FJ_ERR_NOMEM. free() them. */
void *model_alloc_floats(size_t n, struct fj_err *err);

/* Reads safetensors tensor t into p, checking its shape is p's HF shape (weights.c). */
int model_param_read(struct model_param *p, const struct model_st_tensor *t, const char *where,
                     struct fj_err *err);

/* Fills entries[0..n) to write params[0..n) in dtype; transposed tensors are copied into
 * owned[i] (the caller frees every owned[i]). */
int model_params_entries(const struct model_param *params, size_t n, enum model_dtype dtype,
                         struct model_st_entry *entries, float **owned, struct fj_err *err);

/* Writes v as dir/name (indented, keys sorted, atomically) and releases v, which may be
 * NULL (a failed json_pack: FJ_ERR_NOMEM). */
int model_write_json(const char *dir, const char *name, json_t *v, struct fj_err *err);

/* Fills m->inv_freq from the config (rope_theta, llama3 scaling). */
void model_rope_init(struct model *m);

#endif
