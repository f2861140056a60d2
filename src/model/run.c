/* run.c - training: activations for a (B, T) batch, the forward pass with the masked loss,
 * and the backward pass into the trainable tensors' gradients.
 *
 * All activations of a run are one allocation sized from (B, T) when the run is created;
 * forward and backward allocate nothing. Backward overwrites the logits with their gradient
 * (the largest buffer of a step) instead of keeping a second (B, T, V) array.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/block.h"
#include "nn/nn.h"

struct model_run {
    struct model *m;
    int B, T, N;
    int B_max;                        /* rows the buffers were sized for; B <= B_max */
    int32_t *tokens, *targets, *pos;  /* (N) */
    int32_t *kstart;                  /* (N) first key of each row's segment, when packed */
    bool packed;                      /* the last forward had positions (kstart valid) */
    float *mask;                      /* (N) */
    float *cos_t, *sin_t;             /* (T, HS/2) */
    float *res;                       /* (L + 1, N, C) residual stream at each block's input */
    struct block_bufs *bufs;          /* (L) */
    float *lnf, *lnf_mean, *lnf_rstd; /* (N, C), (N), (N) */
    float *logits;                    /* (N, V), then dlogits after backward */
    float *losses;                    /* (N) */
    float *dres;                      /* (N, C) */
    struct block_grads gb;
    float *block; /* the one allocation */
    int32_t *ints;
    bool train, have_forward;
    uint64_t seed;
    double n_tokens;
};

static void run_layout(struct model_run *r, struct model_carver *cv)
{
    const struct model *m = r->m;
    const struct model_config *c = &m->cfg;
    size_t N = r->N, C = c->n_embd, L = c->n_layer, T = r->T;
    size_t r_lora = m->has_lora ? (size_t)m->lora.r : 0, in_max = 0;
    for (size_t s = 0; s < m->n_sites; s++)
        in_max = (size_t)m->sites[s].in > in_max ? (size_t)m->sites[s].in : in_max;
    bool drop = m->has_lora && m->lora.dropout > 0;

    r->cos_t = model_carve(cv, T * c->head_dim / 2);
    r->sin_t = model_carve(cv, T * c->head_dim / 2);
    r->res = model_carve(cv, (L + 1) * N * C);
    for (size_t l = 0; l < L; l++) {
        struct block_bufs *b = &r->bufs[l];
        b->ln1 = model_carve(cv, N * C);
        b->ln1_mean = model_carve(cv, N);
        b->ln1_rstd = model_carve(cv, N);
        b->qkv = model_carve(cv, N * m->QKV);
        b->att = model_carve(cv, (size_t)r->B * c->n_head * T * T);
        b->atty = model_carve(cv, N * m->AH);
        b->mid = model_carve(cv, N * C);
        b->ln2 = model_carve(cv, N * C);
        b->ln2_mean = model_carve(cv, N);
        b->ln2_rstd = model_carve(cv, N);
        b->hid = model_carve(cv, N * m->HID);
        b->actv = model_carve(cv, N * c->n_ff);
        /* LoRA buffers: every site of every layer, indexed by site number */
        b->lora_h_stride = N * r_lora;
        b->lora_xd_stride = drop ? N * in_max : 0;
        if (l == 0) {
            b->lora_h = model_carve(cv, m->n_sites * b->lora_h_stride);
            b->lora_xd = model_carve(cv, m->n_sites * b->lora_xd_stride);
        } else {
            b->lora_h = r->bufs[0].lora_h;
            b->lora_xd = r->bufs[0].lora_xd;
        }
    }
    r->lnf = model_carve(cv, N * C);
    r->lnf_mean = model_carve(cv, N);
    r->lnf_rstd = model_carve(cv, N);
    r->logits = model_carve(cv, N * c->vocab_size);
    r->losses = model_carve(cv, N);
    r->mask = model_carve(cv, N);
    r->dres = model_carve(cv, N * C);
    r->gb.dln = model_carve(cv, N * C);
    r->gb.dqkv = model_carve(cv, N * m->QKV);
    r->gb.datty = model_carve(cv, N * m->AH);
    r->gb.dhid = model_carve(cv, N * m->HID);
    r->gb.dact = model_carve(cv, N * c->n_ff);
    r->gb.att_scratch = model_carve(cv, (size_t)nn_threads() * T * T);
    r->gb.lora_dh = model_carve(cv, N * r_lora);
    r->gb.lora_dx = model_carve(cv, drop ? N * in_max : 0);
}

size_t model_run_bytes(const struct model *m, int B, int T)
{
    struct block_bufs *bufs = calloc((size_t)m->cfg.n_layer, sizeof *bufs);
    struct model_run r = {.m = (struct model *)m, .B = B, .T = T, .N = B * T, .bufs = bufs};
    struct model_carver cv = {0};
    if (!bufs)
        return SIZE_MAX;
    run_layout(&r, &cv);
    free(bufs);
    return cv.used * sizeof(float) + 4 * (size_t)B * T * sizeof(int32_t);
}

struct model_run *model_run_new(struct model *m, int B, int T, struct fj_err *err)
{
    const struct model_config *c = &m->cfg;
    if (B < 1 || T < 1 || T > c->n_ctx || (int64_t)B * T > INT32_MAX / 4) {
        fj_err_set(err, FJ_ERR_RANGE, "batch %d x %d tokens is out of range (context %d)", B, T,
                   c->n_ctx);
        return NULL;
    }
    struct model_run *r = calloc(1, sizeof *r);
    if (!r || !(r->bufs = calloc((size_t)c->n_layer, sizeof *r->bufs)) ||
        !(r->ints = malloc(4 * (size_t)B * T * sizeof(int32_t)))) {
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        model_run_free(r);
        return NULL;
    }
    r->m = m;
    r->B = B;
    r->T = T;
    r->N = B * T;
    r->tokens = r->ints;
    r->targets = r->ints + r->N;
    r->pos = r->ints + 2 * r->N;
    r->kstart = r->ints + 3 * r->N;
    r->B_max = B;
    struct model_carver cv = {0};
    run_layout(r, &cv);
    r->block = model_alloc_floats(cv.used, err);
    if (!r->block) {
        model_run_free(r);
        return NULL;
    }
    cv = (struct model_carver){.base = r->block};
    run_layout(r, &cv);
    if (c->arch != MODEL_ARCH_GPT2)
        nn_rope_tables(r->cos_t, r->sin_t, m->inv_freq, T, c->head_dim);
    return r;
}

void model_run_free(struct model_run *r)
{
    if (!r)
        return;
    free(r->block);
    free(r->bufs);
    free(r->ints);
    free(r);
}

const float *model_run_logits(const struct model_run *r)
{
    return r->logits;
}

int model_run_set_batch(struct model_run *r, int B, struct fj_err *err)
{
    if (B < 1 || B > r->B_max)
        return fj_err_set(err, FJ_ERR_RANGE, "batch of %d rows; the run holds 1 to %d", B,
                          r->B_max);
    r->B = B;
    r->N = B * r->T;
    r->have_forward = false;
    return 0;
}

static struct block_attn run_attn(const struct model_run *r)
{
    return (struct block_attn){.pos = r->pos,
                               .kstart = r->packed ? r->kstart : NULL,
                               .cos_t = r->cos_t,
                               .sin_t = r->sin_t,
                               .B = r->B,
                               .T = r->T};
}

/* Takes the rows' positions: each row is segments whose positions count 0, 1, 2, ... from
 * their first token, which is also the first key the segment's tokens may see. NULL: every
 * row is one sequence (positions 0 .. T-1). */
static int set_positions(struct model_run *r, const int32_t *pos, struct fj_err *err)
{
    r->packed = pos != NULL;
    for (int b = 0; b < r->B; b++)
        for (int t = 0; t < r->T; t++) {
            int n = b * r->T + t;
            if (!pos) {
                r->pos[n] = t;
                continue;
            }
            if (pos[n] != 0 && (t == 0 || pos[n] != pos[n - 1] + 1))
                return fj_err_set(err, FJ_ERR_RANGE,
                                  "position %d at row %d column %d: a position is 0 (a new "
                                  "sequence) or one more than the one before",
                                  pos[n], b, t);
            r->pos[n] = pos[n];
            r->kstart[n] = t - pos[n];
        }
    return 0;
}

int model_forward(struct model_run *r, const int32_t *tokens, const int32_t *targets,
                  const float *mask, const int32_t *pos, bool train, uint64_t dropout_seed,
                  struct model_loss *loss, struct fj_err *err)
{
    const struct model *m = r->m;
    const struct model_config *c = &m->cfg;
    int N = r->N, C = c->n_embd, V = c->vocab_size, L = c->n_layer;
    if (set_positions(r, pos, err) != 0)
        return FJ_ERR_RANGE;
    for (int n = 0; n < N; n++) {
        float w = mask ? mask[n] : 1.0f;
        if (tokens[n] < 0 || tokens[n] >= V)
            return fj_err_set(err, FJ_ERR_RANGE,
                              "token id %d at position %d is outside the "
                              "vocabulary (%d)",
                              tokens[n], n, V);
        if (w != 0.0f && (targets[n] < 0 || targets[n] >= V))
            return fj_err_set(err, FJ_ERR_RANGE,
                              "target id %d at position %d is outside the "
                              "vocabulary (%d)",
                              targets[n], n, V);
        r->mask[n] = w;
    }
    memcpy(r->tokens, tokens, (size_t)N * sizeof(int32_t));
    for (int n = 0; n < N; n++)
        r->targets[n] = r->mask[n] != 0.0f ? targets[n] : 0;
    r->train = train;
    r->seed = dropout_seed;

    struct block_attn at = run_attn(r);
    nn_embedding_forward(r->res, r->tokens, r->pos, m->wte, m->wpe, N, C);
    for (int l = 0; l < L; l++)
        block_forward(m, l, r->res + (size_t)(l + 1) * N * C, r->res + (size_t)l * N * C,
                      &r->bufs[l], &at, N, train, dropout_seed);
    block_norm_forward(m, r->lnf, r->lnf_mean, r->lnf_rstd, r->res + (size_t)L * N * C, N);
    nn_linear_forward(r->logits, V, r->lnf, m->wlm, NULL, N, C, V, false);

    int64_t correct = 0;
    nn_crossentropy_forward(r->losses, &correct, r->logits, r->targets, r->mask, N, V);
    double sum = 0, count = 0;
    for (int n = 0; n < N; n++) {
        sum += (double)r->losses[n] * r->mask[n];
        count += r->mask[n];
    }
    r->n_tokens = count;
    r->have_forward = true;
    if (loss) {
        loss->loss = count > 0 ? sum / count : 0.0;
        loss->n_tokens = (int64_t)count;
        loss->n_correct = correct;
    }
    return 0;
}

void model_backward(struct model_run *r, double n_tokens)
{
    const struct model *m = r->m;
    const struct model_config *c = &m->cfg;
    int N = r->N, C = c->n_embd, V = c->vocab_size, L = c->n_layer;
    if (!r->have_forward)
        return;
    r->have_forward = false; /* the logits become their gradient */
    double denom = n_tokens > 0 ? n_tokens : r->n_tokens;
    float dloss = denom > 0 ? (float)(1.0 / denom) : 0.0f;
    nn_crossentropy_backward(r->logits, r->targets, r->mask, dloss, N, V);

    struct block_attn at = run_attn(r);
    nn_linear_backward(r->gb.dln, model_grad_of(m, m->wlm), NULL, r->logits, V, r->lnf, m->wlm, N,
                       C, V, true);
    memset(r->dres, 0, (size_t)N * C * sizeof(float));
    block_norm_backward(m, r->dres, r->gb.dln, r->res + (size_t)L * N * C, r->lnf_mean, r->lnf_rstd,
                        N);
    for (int l = L - 1; l >= 0; l--)
        block_backward(m, l, r->dres, r->res + (size_t)l * N * C, &r->bufs[l], &r->gb, &at, N,
                       r->train, r->seed);
    nn_embedding_backward(model_grad_of(m, m->wte), model_grad_of(m, m->wpe), r->dres, r->tokens,
                          r->pos, N, C);
}
