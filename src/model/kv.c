/* kv.c - inference with a KV cache: prompt chunks and then one token at a time.
 *
 * The keys and values of every layer (after rotation) are kept for up to max_T positions;
 * a new chunk of n tokens runs through the same block code as training with its queries
 * attending to the cached keys. One set of activation buffers, sized for a chunk, serves
 * every layer. The logits equal the full forward's (tests/model checks it).
 */
#include <stdlib.h>
#include <string.h>

#include "model/block.h"
#include "nn/nn.h"

/* Prompt tokens run in chunks of at most this many (bounds the scratch memory). */
#define MODEL_KV_CHUNK 64

struct model_kv {
    const struct model *m;
    int max_T, len;
    float *k, *v;         /* (L, max_T, NKV * HS) */
    float *cos_t, *sin_t; /* (max_T, HS/2) */
    struct block_bufs bb;
    float *x, *y; /* (CHUNK, C) */
    float *lnf, *lnf_mean, *lnf_rstd;
    float *block;
    int32_t pos[MODEL_KV_CHUNK];
};

static size_t kv_layout(struct model_kv *kv, float *base)
{
    const struct model *m = kv->m;
    const struct model_config *c = &m->cfg;
    size_t used = 0, n = MODEL_KV_CHUNK, C = c->n_embd;
    size_t kvw = (size_t)c->n_kv_head * c->head_dim;
#define KV_TAKE(ptr, count)                                                                        \
    do {                                                                                           \
        (ptr) = base ? base + used : NULL;                                                         \
        used += ((size_t)(count) + 15) / 16 * 16;                                                  \
    } while (0)
    KV_TAKE(kv->k, (size_t)c->n_layer * kv->max_T * kvw);
    KV_TAKE(kv->v, (size_t)c->n_layer * kv->max_T * kvw);
    KV_TAKE(kv->cos_t, (size_t)kv->max_T * c->head_dim / 2);
    KV_TAKE(kv->sin_t, (size_t)kv->max_T * c->head_dim / 2);
    KV_TAKE(kv->x, n * C);
    KV_TAKE(kv->y, n * C);
    KV_TAKE(kv->lnf, n * C);
    KV_TAKE(kv->lnf_mean, n);
    KV_TAKE(kv->lnf_rstd, n);
    struct block_bufs *b = &kv->bb;
    KV_TAKE(b->ln1, n * C);
    KV_TAKE(b->ln1_mean, n);
    KV_TAKE(b->ln1_rstd, n);
    KV_TAKE(b->qkv, n * m->QKV);
    KV_TAKE(b->att, (size_t)c->n_head * n * kv->max_T);
    KV_TAKE(b->atty, n * m->AH);
    KV_TAKE(b->mid, n * C);
    KV_TAKE(b->ln2, n * C);
    KV_TAKE(b->ln2_mean, n);
    KV_TAKE(b->ln2_rstd, n);
    KV_TAKE(b->hid, n * m->HID);
    KV_TAKE(b->actv, n * c->n_ff);
    KV_TAKE(b->lora_h, m->has_lora ? n * m->lora.r : 0);
    b->lora_h_stride = 0; /* one scratch for every site */
#undef KV_TAKE
    return used;
}

struct model_kv *model_kv_new(const struct model *m, int max_T, struct fj_err *err)
{
    if (max_T < 1 || max_T > m->cfg.n_ctx) {
        fj_err_set(err, FJ_ERR_RANGE, "a cache of %d tokens is out of range (context %d)", max_T,
                   m->cfg.n_ctx);
        return NULL;
    }
    struct model_kv *kv = calloc(1, sizeof *kv);
    if (!kv) {
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        return NULL;
    }
    kv->m = m;
    kv->max_T = max_T;
    kv->block = model_alloc_floats(kv_layout(kv, NULL), err);
    if (!kv->block) {
        free(kv);
        return NULL;
    }
    kv_layout(kv, kv->block);
    if (m->cfg.arch != MODEL_ARCH_GPT2)
        nn_rope_tables(kv->cos_t, kv->sin_t, m->inv_freq, max_T, m->cfg.head_dim);
    return kv;
}

void model_kv_free(struct model_kv *kv)
{
    if (!kv)
        return;
    free(kv->block);
    free(kv);
}

void model_kv_reset(struct model_kv *kv)
{
    kv->len = 0;
}

int model_kv_len(const struct model_kv *kv)
{
    return kv->len;
}

/* Runs n <= MODEL_KV_CHUNK tokens; the final hidden states are left in kv->x. */
static void kv_chunk(struct model_kv *kv, const int32_t *tokens, int n)
{
    const struct model *m = kv->m;
    const struct model_config *c = &m->cfg;
    size_t kvw = (size_t)c->n_kv_head * c->head_dim, C = c->n_embd;
    for (int i = 0; i < n; i++)
        kv->pos[i] = kv->len + i;
    nn_embedding_forward(kv->x, tokens, kv->pos, m->wte, m->wpe, n, (int)C);
    for (int l = 0; l < c->n_layer; l++) {
        struct block_attn at = {.pos = kv->pos,
                                .cos_t = kv->cos_t,
                                .sin_t = kv->sin_t,
                                .B = 1,
                                .T = n,
                                .k_cache = kv->k + (size_t)l * kv->max_T * kvw,
                                .v_cache = kv->v + (size_t)l * kv->max_T * kvw,
                                .past = kv->len};
        block_forward(m, l, kv->y, kv->x, &kv->bb, &at, n, false, 0);
        float *t = kv->x;
        kv->x = kv->y;
        kv->y = t;
    }
    kv->len += n;
}

int model_kv_forward(struct model_kv *kv, const int32_t *tokens, int n, bool all_logits,
                     float *logits, struct fj_err *err)
{
    const struct model *m = kv->m;
    int C = m->cfg.n_embd, V = m->cfg.vocab_size;
    if (n < 1 || n > kv->max_T - kv->len)
        return fj_err_set(err, FJ_ERR_RANGE, "%d more tokens do not fit the cache (%d of %d used)",
                          n, kv->len, kv->max_T);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return fj_err_set(err, FJ_ERR_RANGE, "token id %d is outside the vocabulary (%d)",
                              tokens[i], V);
    for (int done = 0; done < n;) {
        int k = n - done < MODEL_KV_CHUNK ? n - done : MODEL_KV_CHUNK;
        kv_chunk(kv, tokens + done, k);
        if (all_logits) {
            block_norm_forward(m, kv->lnf, kv->lnf_mean, kv->lnf_rstd, kv->x, k);
            nn_linear_forward(logits + (size_t)done * V, V, kv->lnf, m->wlm, NULL, k, C, V, false);
        } else if (done + k == n) {
            const float *last = kv->x + (size_t)(k - 1) * C;
            block_norm_forward(m, kv->lnf, kv->lnf_mean, kv->lnf_rstd, last, 1);
            nn_linear_forward(logits, V, kv->lnf, m->wlm, NULL, 1, C, V, false);
        }
        done += k;
    }
    return 0;
}
