/* block.h - one transformer block's forward and backward (block.c), used by training
 * (run.c) and KV-cache inference (kv.c). Internal to model/. */
#ifndef FJ_MODEL_BLOCK_H
#define FJ_MODEL_BLOCK_H

#include "model/model_internal.h"

/* Where a block keeps its activations for N rows (training: one set per layer, kept for
 * backward; inference: one set reused by every layer). */
struct block_bufs {
    float *ln1, *ln1_mean, *ln1_rstd; /* (N, C), (N), (N); mean only for LayerNorm */
    float *qkv;                       /* (N, QKV) after bias, LoRA and rotation */
    float *att;                       /* (B, NH, Tq, Tk) attention probabilities */
    float *atty;                      /* (N, AH) attention output */
    float *mid;                       /* (N, C) residual after attention */
    float *ln2, *ln2_mean, *ln2_rstd; /* (N, C), (N), (N) */
    float *hid;                       /* (N, HID) MLP pre-activation */
    float *actv;                      /* (N, FF) MLP activation */
    float *lora_h;                    /* site s uses lora_h + s * lora_h_stride: (N, r) */
    size_t lora_h_stride;
    float *lora_xd; /* site s: lora_xd + s * lora_xd_stride: (N, in), LoRA dropout's output */
    size_t lora_xd_stride;
};

/* Backward scratch, shared by all layers. */
struct block_grads {
    float *dln;         /* (N, C) */
    float *dqkv;        /* (N, QKV) */
    float *datty;       /* (N, AH) */
    float *dhid;        /* (N, HID) */
    float *dact;        /* (N, FF) */
    float *att_scratch; /* nn_threads() * T * T */
    float *lora_dh;     /* (N, r) */
    float *lora_dx;     /* (N, max LoRA input width) */
};

/* One sequence of an inference batch: rows row0 .. row0 + n - 1 are its new tokens, which
 * come after the `past` tokens already in its caches (max_T, NKV*HS) per layer. */
struct block_seg {
    int row0, n, past;
    float *k_cache, *v_cache;            /* this layer's */
    const struct model_adapter *adapter; /* LoRA applied to these rows, or NULL */
};

/* Positions and attention inputs. Training: B rows of T tokens, k/v taken from qkv, LoRA
 * from the model's attached adapter. Inference: segs, each attending to its own cache, with
 * its own adapter; att_scratch holds NH * max_rows * max_T floats per thread. */
struct block_attn {
    const int32_t *pos;         /* (N) position of each row */
    const int32_t *kstart;      /* (N) first key each row sees (packed rows), or NULL: 0 */
    const float *cos_t, *sin_t; /* rotary tables (positions, HS/2) */
    int B, T;
    const struct block_seg *segs;
    int n_segs;
    float *att_scratch;
    size_t att_stride; /* floats per thread */
};

/* out (N, C) = the block's output for input x (N, C). out must not alias x. */
void block_forward(const struct model *m, int l, float *out, const float *x,
                   const struct block_bufs *bb, const struct block_attn *at, int N, bool train,
                   uint64_t seed);

/* dres (N, C): on entry the gradient of the block's output, on return the gradient of its
 * input x. Adds into the trainable weights' gradients. */
void block_backward(const struct model *m, int l, float *dres, const float *x,
                    const struct block_bufs *bb, const struct block_grads *gb,
                    const struct block_attn *at, int N, bool train, uint64_t seed);

/* The final norm (model.norm / ln_f). */
void block_norm_forward(const struct model *m, float *out, float *mean, float *rstd, const float *x,
                        int N);
void block_norm_backward(const struct model *m, float *dx, const float *dout, const float *x,
                         const float *mean, const float *rstd, int N);

/* The dropout seed of LoRA site `site` for a step seeded with seed. */
uint64_t block_site_seed(uint64_t seed, size_t site);

#endif
