/* batch.c - batched inference: several sequences, each with its own KV cache and LoRA
 * adapter, advanced together in one forward pass.
 *
 * The rows of a batch are the new tokens of every sequence one after another (a prompt
 * chunk, or the one token just sampled). Linear layers run once over all rows, so decoding
 * B sequences reads the weights once instead of B times; attention runs per sequence over
 * its own cache (block.c's segments); each sequence's adapter is applied to its rows only.
 * A one-sequence batch is what model_kv (kv.c) runs, so every KV-cache path is this one.
 */
#include <stdlib.h>
#include <string.h>

#include "model/block.h"
#include "nn/nn.h"

struct model_cache {
    const struct model *m;
    int max_T, len;
    float *k, *v; /* (L, max_T, NKV * HS) */
};

struct model_batch {
    const struct model *m;
    int max_rows, max_seg, n_threads, lora_r; /* lora_r: the rank lora_h has room for */
    int32_t *tokens, *pos;                    /* (max_rows) */
    struct block_seg *segs;                   /* (max_rows) */
    float *x, *y, *lnf, *lnf_mean, *lnf_rstd;
    float *cos_t, *sin_t; /* (n_ctx, HS/2) */
    float *att;           /* n_threads * NH * max_seg * n_ctx */
    struct block_bufs bb;
    float *block;
};

static size_t kv_width(const struct model *m)
{
    return (size_t)m->cfg.n_kv_head * m->cfg.head_dim;
}

size_t model_cache_bytes(const struct model *m, int max_T)
{
    return 2 * (size_t)m->cfg.n_layer * (size_t)max_T * kv_width(m) * sizeof(float);
}

struct model_cache *model_cache_new(const struct model *m, int max_T, struct fj_err *err)
{
    if (max_T < 1 || max_T > m->cfg.n_ctx) {
        fj_err_set(err, FJ_ERR_RANGE, "a cache of %d tokens is out of range (context %d)", max_T,
                   m->cfg.n_ctx);
        return NULL;
    }
    struct model_cache *c = calloc(1, sizeof *c);
    size_t n = (size_t)m->cfg.n_layer * (size_t)max_T * kv_width(m);
    /* not zeroed: every position is written before it is read */
    if (!c || posix_memalign((void **)&c->k, 64, 2 * n * sizeof(float)) != 0) {
        free(c);
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory for a cache of %d tokens", max_T);
        return NULL;
    }
    c->v = c->k + n;
    c->m = m;
    c->max_T = max_T;
    return c;
}

void model_cache_free(struct model_cache *c)
{
    if (!c)
        return;
    free(c->k);
    free(c);
}

int model_cache_len(const struct model_cache *c)
{
    return c->len;
}

int model_cache_capacity(const struct model_cache *c)
{
    return c->max_T;
}

void model_cache_reset(struct model_cache *c)
{
    c->len = 0;
}

/* Carves the batch's buffers out of base (or counts them when base is NULL). */
static size_t batch_layout(struct model_batch *b, float *base)
{
    const struct model *m = b->m;
    const struct model_config *c = &m->cfg;
    size_t n = (size_t)b->max_rows, C = (size_t)c->n_embd;
    struct model_carver cv = {.base = base};
    b->x = model_carve(&cv, n * C);
    b->y = model_carve(&cv, n * C);
    b->lnf = model_carve(&cv, n * C);
    b->lnf_mean = model_carve(&cv, n);
    b->lnf_rstd = model_carve(&cv, n);
    b->cos_t = model_carve(&cv, (size_t)c->n_ctx * c->head_dim / 2);
    b->sin_t = model_carve(&cv, (size_t)c->n_ctx * c->head_dim / 2);
    b->att = model_carve(&cv, (size_t)b->n_threads * c->n_head * b->max_seg * c->n_ctx);
    struct block_bufs *bb = &b->bb;
    bb->ln1 = model_carve(&cv, n * C);
    bb->ln1_mean = model_carve(&cv, n);
    bb->ln1_rstd = model_carve(&cv, n);
    bb->qkv = model_carve(&cv, n * m->QKV);
    bb->atty = model_carve(&cv, n * m->AH);
    bb->mid = model_carve(&cv, n * C);
    bb->ln2 = model_carve(&cv, n * C);
    bb->ln2_mean = model_carve(&cv, n);
    bb->ln2_rstd = model_carve(&cv, n);
    bb->hid = model_carve(&cv, n * m->HID);
    bb->actv = model_carve(&cv, n * c->n_ff);
    bb->att = NULL; /* attention probabilities go to the per-thread scratch */
    bb->lora_h_stride = 0;
    return cv.used;
}

size_t model_batch_bytes(const struct model *m, int max_rows, int max_seg)
{
    struct model_batch b = {
        .m = m, .max_rows = max_rows, .max_seg = max_seg, .n_threads = nn_threads()};
    return batch_layout(&b, NULL) * sizeof(float);
}

/* Makes room in lora_h for rank r adapters (and the model's own). */
static int batch_lora_room(struct model_batch *b, int r, struct fj_err *err)
{
    if (r <= b->lora_r)
        return 0;
    float *h = model_alloc_floats((size_t)b->max_rows * (size_t)r, err);
    if (!h)
        return FJ_ERR_NOMEM;
    free(b->bb.lora_h);
    b->bb.lora_h = h;
    b->lora_r = r;
    return 0;
}

struct model_batch *model_batch_new(const struct model *m, int max_rows, int max_seg,
                                    struct fj_err *err)
{
    if (max_rows < 1 || max_seg < 1 || max_seg > max_rows || max_rows > (1 << 20)) {
        fj_err_set(err, FJ_ERR_RANGE, "a batch of %d rows (%d per sequence) is out of range",
                   max_rows, max_seg);
        return NULL;
    }
    struct model_batch *b = calloc(1, sizeof *b);
    if (!b) {
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        return NULL;
    }
    b->m = m;
    b->max_rows = max_rows;
    b->max_seg = max_seg;
    b->n_threads = nn_threads();
    b->tokens = malloc((size_t)max_rows * sizeof *b->tokens);
    b->pos = malloc((size_t)max_rows * sizeof *b->pos);
    b->segs = malloc((size_t)max_rows * sizeof *b->segs);
    if (!b->tokens || !b->pos || !b->segs) {
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        model_batch_free(b);
        return NULL;
    }
    b->block = model_alloc_floats(batch_layout(b, NULL), err);
    if (!b->block || batch_lora_room(b, m->has_lora ? m->lora.r : 0, err) != 0) {
        model_batch_free(b);
        return NULL;
    }
    batch_layout(b, b->block);
    if (m->cfg.arch != MODEL_ARCH_GPT2)
        nn_rope_tables(b->cos_t, b->sin_t, m->inv_freq, m->cfg.n_ctx, m->cfg.head_dim);
    return b;
}

void model_batch_free(struct model_batch *b)
{
    if (!b)
        return;
    free(b->block);
    free(b->bb.lora_h);
    free(b->tokens);
    free(b->pos);
    free(b->segs);
    free(b);
}

static int check_seqs(struct model_batch *b, const struct model_seq *seqs, int n_seqs,
                      struct fj_err *err)
{
    const struct model *m = b->m;
    int rows = 0, V = m->cfg.vocab_size;
    if (n_seqs < 1)
        return fj_err_set(err, FJ_ERR_RANGE, "a batch needs at least one sequence");
    if (nn_threads() > b->n_threads)
        return fj_err_set(err, FJ_ERR_RANGE, "the batch was made for %d threads, not %d",
                          b->n_threads, nn_threads());
    for (int i = 0; i < n_seqs; i++) {
        const struct model_seq *s = &seqs[i];
        if (s->cache->m != m || (s->adapter && s->adapter->base != m))
            return fj_err_set(err, FJ_ERR_INVALID, "sequence %d belongs to another model", i);
        if (s->adapter && m->has_lora)
            return fj_err_set(err, FJ_ERR_INVALID,
                              "the model has an adapter attached; it cannot take others");
        if (s->n < 1 || s->n > b->max_seg || s->n > s->cache->max_T - s->cache->len)
            return fj_err_set(err, FJ_ERR_RANGE,
                              "%d more tokens for sequence %d do not fit (%d of %d cached, "
                              "%d per step)",
                              s->n, i, s->cache->len, s->cache->max_T, b->max_seg);
        for (int t = 0; t < s->n; t++)
            if (s->tokens[t] < 0 || s->tokens[t] >= V)
                return fj_err_set(err, FJ_ERR_RANGE, "token id %d is outside the vocabulary (%d)",
                                  s->tokens[t], V);
        if (s->adapter && batch_lora_room(b, s->adapter->lora.r, err) != 0)
            return FJ_ERR_NOMEM;
        rows += s->n;
        if (rows > b->max_rows)
            return fj_err_set(err, FJ_ERR_RANGE, "the batch holds %d rows at most", b->max_rows);
    }
    return 0;
}

int model_batch_forward(struct model_batch *b, struct model_seq *seqs, int n_seqs, float *logits,
                        struct fj_err *err)
{
    const struct model *m = b->m;
    const struct model_config *c = &m->cfg;
    int C = c->n_embd, V = c->vocab_size;
    size_t kvw = kv_width(m);
    int rc = check_seqs(b, seqs, n_seqs, err);
    if (rc != 0)
        return rc;
    int N = 0;
    for (int i = 0; i < n_seqs; i++) {
        struct model_seq *s = &seqs[i];
        b->segs[i] =
            (struct block_seg){.row0 = N, .n = s->n, .past = s->cache->len, .adapter = s->adapter};
        for (int t = 0; t < s->n; t++) {
            b->tokens[N + t] = s->tokens[t];
            b->pos[N + t] = s->cache->len + t;
        }
        N += s->n;
    }
    nn_embedding_forward(b->x, b->tokens, b->pos, m->wte, m->wpe, N, C);
    struct block_attn at = {.pos = b->pos,
                            .cos_t = b->cos_t,
                            .sin_t = b->sin_t,
                            .B = 1,
                            .T = N,
                            .segs = b->segs,
                            .n_segs = n_seqs,
                            .att_scratch = b->att,
                            .att_stride = (size_t)c->n_head * b->max_seg * c->n_ctx};
    for (int l = 0; l < c->n_layer; l++) {
        for (int i = 0; i < n_seqs; i++) {
            const struct model_cache *kc = seqs[i].cache;
            b->segs[i].k_cache = kc->k + (size_t)l * kc->max_T * kvw;
            b->segs[i].v_cache = kc->v + (size_t)l * kc->max_T * kvw;
        }
        block_forward(m, l, b->y, b->x, &b->bb, &at, N, false, 0);
        float *t = b->x;
        b->x = b->y;
        b->y = t;
    }
    /* the rows whose logits are wanted, gathered, through the final norm and the head */
    int out = 0;
    for (int i = 0; i < n_seqs; i++) {
        struct model_seq *s = &seqs[i];
        s->cache->len += s->n;
        int first = s->logits == MODEL_LOGITS_ALL ? 0 : s->n - 1;
        if (s->logits == MODEL_LOGITS_NONE)
            continue;
        for (int t = first; t < s->n; t++, out++)
            memmove(b->y + (size_t)out * C, b->x + (size_t)(b->segs[i].row0 + t) * C,
                    (size_t)C * sizeof(float));
    }
    if (out > 0) {
        block_norm_forward(m, b->lnf, b->lnf_mean, b->lnf_rstd, b->y, out);
        nn_linear_forward(logits, V, b->lnf, m->wlm, NULL, out, C, V, false);
    }
    return 0;
}
