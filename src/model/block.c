/* block.c - one transformer block, forward and backward, shared by training (model_run)
 * and KV-cache inference (model_kv), plus the LoRA branch of a linear layer.
 *
 * A block is (pre-norm residual):
 *   ln1 = norm1(x);  qkv = ln1 @ Wqkv^T + b (+ LoRA);  rope(q, k);  a = attention(q, k, v)
 *   mid = x + a @ Wo^T + bo (+ LoRA)
 *   ln2 = norm2(mid); hid = ln2 @ Wup^T + bup (+ LoRA);  act = swiglu(hid) | gelu(hid)
 *   out = mid + act @ Wdown^T + bdown (+ LoRA)
 * norm is RMSNorm (Llama, Qwen2) or LayerNorm (GPT-2); rope only for Llama and Qwen2.
 */
#include <omp.h>
#include <string.h>

#include "core/rng.h"
#include "model/block.h"
#include "nn/nn.h"

uint64_t block_site_seed(uint64_t seed, size_t site)
{
    return fj_splitmix64(seed ^ fj_splitmix64(site + 1));
}

static void norm_forward(const struct model *m, float *out, float *mean, float *rstd,
                         const float *x, const float *w, const float *b, int N)
{
    const struct model_config *c = &m->cfg;
    if (c->arch == MODEL_ARCH_GPT2)
        nn_layernorm_forward(out, mean, rstd, x, w, b, N, c->n_embd, c->norm_eps);
    else
        nn_rmsnorm_forward(out, rstd, x, w, N, c->n_embd, c->norm_eps);
}

static void norm_backward(const struct model *m, float *dx, const float *dout, const float *x,
                          const float *w, const float *b, const float *mean, const float *rstd,
                          int N)
{
    const struct model_config *c = &m->cfg;
    if (c->arch == MODEL_ARCH_GPT2)
        nn_layernorm_backward(dx, model_grad_of(m, w), model_grad_of(m, b), dout, x, w, mean, rstd,
                              N, c->n_embd);
    else
        nn_rmsnorm_backward(dx, model_grad_of(m, w), dout, x, w, rstd, N, c->n_embd);
}

void block_norm_forward(const struct model *m, float *out, float *mean, float *rstd, const float *x,
                        int N)
{
    norm_forward(m, out, mean, rstd, x, m->lnf_w, m->lnf_b, N);
}

void block_norm_backward(const struct model *m, float *dx, const float *dout, const float *x,
                         const float *mean, const float *rstd, int N)
{
    norm_backward(m, dx, dout, x, m->lnf_w, m->lnf_b, mean, rstd, N);
}

/* ---- LoRA --------------------------------------------------------------------------- */

/* out[:, col:] += scale * (dropout(x) @ A^T) @ B^T for site si of m's attached adapter. */
static void lora_forward(const struct model *m, size_t si, float *out, int ldo, const float *x,
                         int N, const struct block_bufs *bb, bool train, uint64_t seed)
{
    const struct model_lora_site *s = &m->sites[si];
    int r = m->lora.r;
    float *h = bb->lora_h + si * bb->lora_h_stride;
    const float *xin = x;
    if (train && m->lora.dropout > 0) {
        float *xd = bb->lora_xd + si * bb->lora_xd_stride;
        nn_dropout_forward(xd, x, (size_t)N * s->in, m->lora.dropout, block_site_seed(seed, si));
        xin = xd;
    }
    /* h (N, r) = xin (N, in) @ A^T;  out[:, col:] += scale * h @ B^T */
    nn_gemm(false, true, N, r, s->in, 1.0f, xin, s->in, s->A, s->in, 0.0f, h, r);
    nn_gemm(false, true, N, s->width, r, m->lora_scale, h, r, s->B, r, 1.0f, out + s->col, ldo);
}

/* The same for a detached adapter on N rows (inference: no dropout); h holds N * r. */
static void adapter_forward(const struct model_adapter *a, const struct model_lora_site *s,
                            float *out, int ldo, const float *x, int N, float *h)
{
    int r = a->lora.r;
    nn_gemm(false, true, N, r, s->in, 1.0f, x, s->in, s->A, s->in, 0.0f, h, r);
    nn_gemm(false, true, N, s->width, r, a->scale, h, r, s->B, r, 1.0f, out + s->col, ldo);
}

static void lora_backward(const struct model *m, size_t si, float *dx, const float *dout, int ldo,
                          const float *x, int N, const struct block_bufs *bb,
                          const struct block_grads *gb, bool train, uint64_t seed)
{
    const struct model_lora_site *s = &m->sites[si];
    int r = m->lora.r;
    const float *h = bb->lora_h + si * bb->lora_h_stride;
    bool drop = train && m->lora.dropout > 0;
    const float *xin = drop ? bb->lora_xd + si * bb->lora_xd_stride : x;
    const float *ds = dout + s->col;
    float *dh = gb->lora_dh;
    /* dB (width, r) += scale * ds^T (width, N) @ h (N, r) */
    nn_gemm(true, false, s->width, r, N, m->lora_scale, ds, ldo, h, r, 1.0f, s->dB, r);
    /* dh (N, r) = scale * ds (N, width) @ B (width, r) */
    nn_gemm(false, false, N, r, s->width, m->lora_scale, ds, ldo, s->B, r, 0.0f, dh, r);
    /* dA (r, in) += dh^T (r, N) @ xin (N, in) */
    nn_gemm(true, false, r, s->in, N, 1.0f, dh, r, xin, s->in, 1.0f, s->dA, s->in);
    /* dx (N, in) += dropout'(dh @ A) */
    if (drop) {
        nn_gemm(false, false, N, s->in, r, 1.0f, dh, r, s->A, s->in, 0.0f, gb->lora_dx, s->in);
        nn_dropout_backward(dx, gb->lora_dx, (size_t)N * s->in, m->lora.dropout,
                            block_site_seed(seed, si));
    } else {
        nn_gemm(false, false, N, s->in, r, 1.0f, dh, r, s->A, s->in, 1.0f, dx, s->in);
    }
}

/* Runs the LoRA sites of layer l on linear `lin`: the model's attached adapter on every
 * row, or in an inference batch each segment's adapter on its rows (runs of segments with
 * the same adapter in one product). */
static void lora_sites_forward(const struct model *m, int l, enum model_linear lin, float *out,
                               int ldo, const float *x, int ldx, int N, const struct block_bufs *bb,
                               const struct block_attn *at, bool train, uint64_t seed)
{
    if (!at->segs) {
        for (size_t si = 0; si < m->n_sites; si++)
            if (m->sites[si].layer == l && m->sites[si].linear == lin)
                lora_forward(m, si, out, ldo, x, N, bb, train, seed);
        return;
    }
    for (int i = 0; i < at->n_segs;) {
        const struct model_adapter *a = at->segs[i].adapter;
        int j = i + 1;
        while (j < at->n_segs && at->segs[j].adapter == a)
            j++;
        int row0 = at->segs[i].row0, rows = at->segs[j - 1].row0 + at->segs[j - 1].n - row0;
        for (size_t si = 0; a && si < a->n_sites; si++)
            if (a->sites[si].layer == l && a->sites[si].linear == lin)
                adapter_forward(a, &a->sites[si], out + (size_t)row0 * ldo, ldo,
                                x + (size_t)row0 * ldx, rows, bb->lora_h);
        for (size_t si = 0; !a && si < m->n_sites; si++) /* the model's attached adapter */
            if (m->sites[si].layer == l && m->sites[si].linear == lin)
                lora_forward(m, si, out + (size_t)row0 * ldo, ldo, x + (size_t)row0 * ldx, rows, bb,
                             false, 0);
        i = j;
    }
}

/* Inference attention: each segment appends its rows' k, v to its cache and attends over
 * it. Segments run in parallel (each on one thread) when there are several. */
static void attend_cached(const struct model *m, const struct block_bufs *bb,
                          const struct block_attn *at)
{
    const struct model_config *c = &m->cfg;
    int HS = c->head_dim, NH = c->n_head, NKV = c->n_kv_head;
    int QKV = m->QKV, AH = m->AH, KVW = NKV * HS;
#pragma omp parallel for schedule(dynamic, 1) if (at->n_segs > 1)
    for (int i = 0; i < at->n_segs; i++) {
        const struct block_seg *sg = &at->segs[i];
        const float *qkv = bb->qkv + (size_t)sg->row0 * QKV;
        for (int n = 0; n < sg->n; n++) {
            memcpy(sg->k_cache + (size_t)(sg->past + n) * KVW, qkv + (size_t)n * QKV + AH,
                   (size_t)KVW * sizeof(float));
            memcpy(sg->v_cache + (size_t)(sg->past + n) * KVW, qkv + (size_t)n * QKV + AH + KVW,
                   (size_t)KVW * sizeof(float));
        }
        float *att = at->att_scratch + (size_t)omp_get_thread_num() * at->att_stride;
        nn_attention_forward(bb->atty + (size_t)sg->row0 * AH, AH, att, qkv, QKV, sg->k_cache, KVW,
                             sg->v_cache, KVW, NULL, 1, sg->n, sg->past + sg->n, NH, NKV, HS);
    }
}

static void lora_sites_backward(const struct model *m, int l, enum model_linear lin, float *dx,
                                const float *dout, int ldo, const float *x, int N,
                                const struct block_bufs *bb, const struct block_grads *gb,
                                bool train, uint64_t seed)
{
    for (size_t si = 0; si < m->n_sites; si++)
        if (m->sites[si].layer == l && m->sites[si].linear == lin)
            lora_backward(m, si, dx, dout, ldo, x, N, bb, gb, train, seed);
}

/* ---- the block ----------------------------------------------------------------------- */

void block_forward(const struct model *m, int l, float *out, const float *x,
                   const struct block_bufs *bb, const struct block_attn *at, int N, bool train,
                   uint64_t seed)
{
    const struct model_config *c = &m->cfg;
    const struct model_layer *y = &m->layers[l];
    int C = c->n_embd, HS = c->head_dim, NH = c->n_head, NKV = c->n_kv_head, FF = c->n_ff;
    int QKV = m->QKV, AH = m->AH, HID = m->HID, KVW = NKV * HS;

    norm_forward(m, bb->ln1, bb->ln1_mean, bb->ln1_rstd, x, y->ln1_w, y->ln1_b, N);
    nn_linear_forward(bb->qkv, QKV, bb->ln1, y->wqkv, y->bqkv, N, C, QKV, false);
    lora_sites_forward(m, l, MODEL_LINEAR_QKV, bb->qkv, QKV, bb->ln1, C, N, bb, at, train, seed);
    if (c->arch != MODEL_ARCH_GPT2) {
        nn_rope_forward(bb->qkv, QKV, at->pos, at->cos_t, at->sin_t, N, NH, HS);
        nn_rope_forward(bb->qkv + AH, QKV, at->pos, at->cos_t, at->sin_t, N, NKV, HS);
    }
    if (at->segs)
        attend_cached(m, bb, at);
    else
        nn_attention_forward(bb->atty, AH, bb->att, bb->qkv, QKV, bb->qkv + AH, QKV,
                             bb->qkv + AH + KVW, QKV, at->kstart, at->B, at->T, at->T, NH, NKV, HS);
    memcpy(bb->mid, x, (size_t)N * C * sizeof(float));
    nn_linear_forward(bb->mid, C, bb->atty, y->wo, y->bo, N, AH, C, true);
    lora_sites_forward(m, l, MODEL_LINEAR_O, bb->mid, C, bb->atty, AH, N, bb, at, train, seed);

    norm_forward(m, bb->ln2, bb->ln2_mean, bb->ln2_rstd, bb->mid, y->ln2_w, y->ln2_b, N);
    nn_linear_forward(bb->hid, HID, bb->ln2, y->wup, y->bup, N, C, HID, false);
    lora_sites_forward(m, l, MODEL_LINEAR_UP, bb->hid, HID, bb->ln2, C, N, bb, at, train, seed);
    if (c->arch == MODEL_ARCH_GPT2)
        nn_gelu_forward(bb->actv, bb->hid, (size_t)N * FF, c->act == MODEL_ACT_GELU_TANH);
    else
        nn_swiglu_forward(bb->actv, bb->hid, N, FF);
    if (out != bb->mid)
        memcpy(out, bb->mid, (size_t)N * C * sizeof(float));
    nn_linear_forward(out, C, bb->actv, y->wdown, y->bdown, N, FF, C, true);
    lora_sites_forward(m, l, MODEL_LINEAR_DOWN, out, C, bb->actv, FF, N, bb, at, train, seed);
}

void block_backward(const struct model *m, int l, float *dres, const float *x,
                    const struct block_bufs *bb, const struct block_grads *gb,
                    const struct block_attn *at, int N, bool train, uint64_t seed)
{
    const struct model_config *c = &m->cfg;
    const struct model_layer *y = &m->layers[l];
    int C = c->n_embd, HS = c->head_dim, NH = c->n_head, NKV = c->n_kv_head, FF = c->n_ff;
    int QKV = m->QKV, AH = m->AH, HID = m->HID, KVW = NKV * HS;

    /* out = mid + down(act): dres flows to mid unchanged, and into the MLP */
    nn_linear_backward(gb->dact, model_grad_of(m, y->wdown), model_grad_of(m, y->bdown), dres, C,
                       bb->actv, y->wdown, N, FF, C, true);
    lora_sites_backward(m, l, MODEL_LINEAR_DOWN, gb->dact, dres, C, bb->actv, N, bb, gb, train,
                        seed);
    memset(gb->dhid, 0, (size_t)N * HID * sizeof(float));
    if (c->arch == MODEL_ARCH_GPT2)
        nn_gelu_backward(gb->dhid, gb->dact, bb->hid, (size_t)N * FF,
                         c->act == MODEL_ACT_GELU_TANH);
    else
        nn_swiglu_backward(gb->dhid, gb->dact, bb->hid, N, FF);
    nn_linear_backward(gb->dln, model_grad_of(m, y->wup), model_grad_of(m, y->bup), gb->dhid, HID,
                       bb->ln2, y->wup, N, C, HID, true);
    lora_sites_backward(m, l, MODEL_LINEAR_UP, gb->dln, gb->dhid, HID, bb->ln2, N, bb, gb, train,
                        seed);
    norm_backward(m, dres, gb->dln, bb->mid, y->ln2_w, y->ln2_b, bb->ln2_mean, bb->ln2_rstd, N);

    /* mid = x + o(atty): dres now holds d(mid) and flows on to x */
    nn_linear_backward(gb->datty, model_grad_of(m, y->wo), model_grad_of(m, y->bo), dres, C,
                       bb->atty, y->wo, N, AH, C, true);
    lora_sites_backward(m, l, MODEL_LINEAR_O, gb->datty, dres, C, bb->atty, N, bb, gb, train, seed);
    memset(gb->dqkv, 0, (size_t)N * QKV * sizeof(float));
    nn_attention_backward(gb->dqkv, gb->dqkv + AH, gb->dqkv + AH + KVW, gb->datty, AH, bb->att,
                          bb->qkv, QKV, bb->qkv + AH, QKV, bb->qkv + AH + KVW, QKV, at->kstart,
                          at->B, at->T, NH, NKV, HS, gb->att_scratch);
    if (c->arch != MODEL_ARCH_GPT2) {
        nn_rope_backward(gb->dqkv, QKV, at->pos, at->cos_t, at->sin_t, N, NH, HS);
        nn_rope_backward(gb->dqkv + AH, QKV, at->pos, at->cos_t, at->sin_t, N, NKV, HS);
    }
    nn_linear_backward(gb->dln, model_grad_of(m, y->wqkv), model_grad_of(m, y->bqkv), gb->dqkv, QKV,
                       bb->ln1, y->wqkv, N, C, QKV, true);
    lora_sites_backward(m, l, MODEL_LINEAR_QKV, gb->dln, gb->dqkv, QKV, bb->ln1, N, bb, gb, train,
                        seed);
    norm_backward(m, dres, gb->dln, x, y->ln1_w, y->ln1_b, bb->ln1_mean, bb->ln1_rstd, N);
}
