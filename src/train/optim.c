/* optim.c - the optimizer step: gradient norm and clipping, the micro-batch gradient sum,
 * AdamW and the learning-rate schedule.
 *
 * AdamW follows torch.optim.AdamW (torch 1.13, _single_tensor_adamw) operation by
 * operation, in fp32 like torch's fp32 parameters:
 *     p *= 1 - lr * wd                         (decoupled decay; matrices only)
 *     m = beta1 m + (1 - beta1) g
 *     v = beta2 v + (1 - beta2) g^2
 *     p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * Every loop is elementwise or reduces over fixed chunks in a fixed order, so the result does
 * not depend on the number of threads. tests/train/optim_parity.py checks three steps
 * against torch.optim.AdamW.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "train/train.h"

/* Elements per chunk of the norm's partial sums. */
#define NORM_CHUNK 65536

double train_grad_norm(const float *g, size_t n)
{
    size_t chunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double *part = malloc((chunks ? chunks : 1) * sizeof *part);
    double total = 0;
    if (!part) { /* the same sums, one chunk after another */
        for (size_t c = 0; c < chunks; c++) {
            double s = 0;
            for (size_t i = c * NORM_CHUNK; i < n && i < (c + 1) * NORM_CHUNK; i++)
                s += (double)g[i] * g[i];
            total += s;
        }
        return sqrt(total);
    }
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t c = 0; c < chunks; c++) {
        double s = 0;
        size_t end = (c + 1) * NORM_CHUNK < n ? (c + 1) * NORM_CHUNK : n;
        for (size_t i = c * NORM_CHUNK; i < end; i++)
            s += (double)g[i] * g[i];
        part[c] = s;
    }
    for (size_t c = 0; c < chunks; c++)
        total += part[c];
    free(part);
    return sqrt(total);
}

double train_clip_grads(float *g, size_t n, double max_norm)
{
    double norm = train_grad_norm(g, n);
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        float c = (float)coef;
#pragma omp parallel for schedule(static) if (n > 100000)
        for (size_t i = 0; i < n; i++)
            g[i] *= c;
    }
    return norm;
}

void train_grads_sum(float *acc, const float *g, size_t n, bool first)
{
    if (first) {
        memcpy(acc, g, n * sizeof *acc);
        return;
    }
#pragma omp parallel for schedule(static) if (n > 100000)
    for (size_t i = 0; i < n; i++)
        acc[i] += g[i];
}

double train_lr_factor(int64_t s, int64_t total, int64_t warmup)
{
    if (s < warmup)
        return (double)(s + 1) / (double)warmup;
    if (total <= warmup)
        return 1.0;
    return (double)(total - s) / (double)(total - warmup);
}

struct train_adamw {
    size_t n;
    float *p;       /* the model's trainable block (borrowed) */
    float *m, *v;   /* (n) first and second moments */
    uint8_t *decay; /* (n) 1 where weight decay applies */
    double beta1, beta2, eps, wd;
    int64_t t; /* steps taken */
};

struct train_adamw *train_adamw_new(struct model *m, double beta1, double beta2, double eps,
                                    double weight_decay, struct fj_err *err)
{
    struct train_adamw *o = calloc(1, sizeof *o);
    float *grad;
    if (!o) {
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        return NULL;
    }
    o->n = model_trainable_block(m, &o->p, &grad);
    if (o->n == 0) {
        free(o);
        fj_err_set(err, FJ_ERR_INVALID, "the model has nothing trainable");
        return NULL;
    }
    o->m = calloc(o->n, sizeof *o->m);
    o->v = calloc(o->n, sizeof *o->v);
    o->decay = calloc(o->n, 1);
    if (!o->m || !o->v || !o->decay) {
        train_adamw_free(o);
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory for the optimizer state");
        return NULL;
    }
    for (size_t i = 0; i < model_n_params(m); i++) {
        const struct model_param *p = model_param_at(m, i);
        if (p->grad && p->ndim == 2)
            memset(o->decay + (p->data - o->p), 1, p->numel);
    }
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->wd = weight_decay;
    return o;
}

void train_adamw_free(struct train_adamw *o)
{
    if (!o)
        return;
    free(o->m);
    free(o->v);
    free(o->decay);
    free(o);
}

void train_adamw_step(struct train_adamw *o, const float *g, double lr)
{
    o->t++;
    double bc1 = 1.0 - pow(o->beta1, (double)o->t), bc2 = 1.0 - pow(o->beta2, (double)o->t);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)o->eps;
    /* 1 - beta in double, then rounded, as torch passes these scalars to its kernels: (1.0f -
     * (float)0.999) is 6.4e-6 off and would bias every update by as much */
    float b1 = (float)o->beta1, b2 = (float)o->beta2, decay = (float)(1.0 - lr * o->wd);
    float one_b1 = (float)(1.0 - o->beta1), one_b2 = (float)(1.0 - o->beta2);
    float *p = o->p, *m = o->m, *v = o->v;
    const uint8_t *dm = o->decay;
#pragma omp parallel for schedule(static) if (o->n > 100000)
    for (size_t i = 0; i < o->n; i++) {
        if (dm[i])
            p[i] *= decay;
        m[i] = b1 * m[i] + one_b1 * g[i];
        v[i] = b2 * v[i] + one_b2 * g[i] * g[i];
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        p[i] -= step_size * (m[i] / denom);
    }
}

size_t train_adamw_state(struct train_adamw *o, float **exp_avg, float **exp_avg_sq, int64_t **t)
{
    *exp_avg = o->m;
    *exp_avg_sq = o->v;
    *t = &o->t;
    return o->n;
}
