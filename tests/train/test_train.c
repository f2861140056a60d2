/* test_train.c - the trainer's pieces (src/train) by properties that can fail:
 *   1. packing: examples packed several to a row give the loss, counts and gradients they
 *      give one to a row (Llama with RoPE, GPT-2 with learned positions), and the layout
 *      puts each example where it belongs;
 *   2. micro-batches: a step split into micro-batches (model_backward scaled by the step's
 *      counted tokens, summed by train_grads_sum) gives the one-batch gradient;
 *   3. the optimizer's parts against naive formulas: the gradient norm (any thread count:
 *      the same bits), clipping, the learning-rate schedule, one AdamW step element by
 *      element against the torch formula written out in double;
 *   4. the plan's auto rules (OpenAI's epoch rule, the batch size rule, the method default).
 * The optimizer's three-step parity with torch.optim.AdamW is tests/train/optim_parity.py.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "nn/nn.h"
#include "test.h"
#include "train/train.h"

static void tiny_config(struct model_config *c, enum model_arch arch)
{
    memset(c, 0, sizeof *c);
    c->arch = arch;
    snprintf(c->architecture, sizeof c->architecture, "%s",
             arch == MODEL_ARCH_GPT2 ? "GPT2LMHeadModel" : "LlamaForCausalLM");
    c->n_layer = 2;
    c->n_embd = 32;
    c->n_head = 4;
    c->n_kv_head = arch == MODEL_ARCH_GPT2 ? 4 : 2;
    c->head_dim = 8;
    c->n_ff = arch == MODEL_ARCH_GPT2 ? 128 : 48;
    c->vocab_size = 61;
    c->n_ctx = 256;
    c->norm_eps = 1e-5f;
    c->act = arch == MODEL_ARCH_GPT2 ? MODEL_ACT_GELU_TANH : MODEL_ACT_SILU;
    c->tie_embeddings = true;
    c->rope_theta = 10000.0f;
    c->bos_id = -1;
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "float32");
}

static struct model *tiny_model(enum model_arch arch, uint64_t seed)
{
    struct model_config c;
    tiny_config(&c, arch);
    struct fj_err err = {0};
    struct model *m = model_new(&c, &err);
    if (!m || model_train_full(m, &err) != 0) {
        fprintf(stderr, "tiny model: %s\n", err.msg);
        exit(2);
    }
    uint64_t s = seed;
    for (size_t i = 0; i < model_n_params(m); i++) {
        struct model_param *p = model_param_at(m, i);
        for (size_t k = 0; k < p->numel; k++)
            p->data[k] = p->ndim == 1 ? (float)(1.0 + 0.1 * (fj_rng_uniform(&s) - 0.5))
                                      : (float)((fj_rng_uniform(&s) - 0.5) * 0.6);
    }
    return m;
}

/* A dataset of n examples with lengths len[i], random ids and masks (mask 0 on the first
 * third of each, like a prompt). */
static void tiny_dataset(struct train_dataset *ds, const int *len, size_t n, uint64_t seed)
{
    memset(ds, 0, sizeof *ds);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += (size_t)len[i];
    ds->ex = calloc(n, sizeof *ds->ex);
    ds->ids = malloc(total * sizeof *ds->ids);
    ds->mask = malloc(total);
    ds->n = ds->cap = n;
    uint64_t s = seed;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        ds->ex[i] = (struct train_example){.line = i + 1, .n = len[i], .off = off};
        for (int t = 0; t < len[i]; t++) {
            ds->ids[off + t] = (int32_t)(fj_rng_next(&s) % 61);
            ds->mask[off + t] = t >= len[i] / 3 && fj_rng_next(&s) % 5 != 0;
            ds->ex[i].counted += t > 0 && ds->mask[off + t];
        }
        off += (size_t)len[i];
        ds->n_tokens += (uint64_t)len[i];
        ds->longest = len[i] > ds->longest ? len[i] : ds->longest;
    }
    ds->n_ids = ds->cap_ids = total;
}

/* Loss, hits and gradient of examples idx laid out by train_batch_fill (packed or not), in
 * micro-batches of `micro` rows. grad_out gets a copy of the summed gradient. */
static double step_loss(struct model *m, const struct train_dataset *ds, const size_t *idx,
                        size_t n, int T, bool pack, int micro, int64_t *correct, int *rows,
                        float *grad_out)
{
    struct train_batch b = {0};
    struct fj_err err = {0};
    CHECK(train_batch_fill(&b, ds, idx, n, T, pack, &err) == 0);
    *rows = b.rows;
    struct model_run *run = model_run_new(m, micro, T, &err);
    float *data, *grad;
    size_t ng = model_trainable_block(m, &data, &grad);
    double sum = 0;
    *correct = 0;
    for (int k = 0; k * micro < b.rows; k++) {
        int r = b.rows - k * micro < micro ? b.rows - k * micro : micro;
        size_t off = (size_t)k * micro * T;
        struct model_loss loss;
        model_zero_grad(m);
        CHECK(model_run_set_batch(run, r, &err) == 0);
        CHECK(model_forward(run, b.tokens + off, b.targets + off, b.mask + off, b.pos + off, true,
                            0, &loss, &err) == 0);
        model_backward(run, (double)b.counted);
        train_grads_sum(grad_out, grad, ng, k == 0);
        sum += loss.loss * (double)loss.n_tokens;
        *correct += loss.n_correct;
    }
    double mean = sum / (double)b.counted;
    model_run_free(run);
    train_batch_free(&b);
    return mean;
}

static double max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

static void check_packing(enum model_arch arch)
{
    static const int len[] = {9, 40, 3, 17, 25, 2, 60, 11};
    enum { NEX = sizeof len / sizeof len[0], T = 64 };
    struct train_dataset ds;
    tiny_dataset(&ds, len, NEX, 5 + arch);
    size_t idx[NEX];
    for (size_t i = 0; i < NEX; i++)
        idx[i] = i;
    struct model *m = tiny_model(arch, 11 + arch);
    float *data, *grad;
    size_t ng = model_trainable_block(m, &data, &grad);
    float *g_one = malloc(ng * sizeof *g_one), *g_packed = malloc(ng * sizeof *g_packed);
    float *g_micro = malloc(ng * sizeof *g_micro);
    int64_t c_one, c_packed, c_micro;
    int rows_one, rows_packed, rows_micro;
    double l_one = step_loss(m, &ds, idx, NEX, T, false, NEX, &c_one, &rows_one, g_one);
    double l_packed = step_loss(m, &ds, idx, NEX, T, true, NEX, &c_packed, &rows_packed, g_packed);
    double l_micro = step_loss(m, &ds, idx, NEX, T, true, 1, &c_micro, &rows_micro, g_micro);
    CHECK(rows_one == NEX);
    CHECK(rows_packed < NEX); /* something was packed */
    CHECK(fabs(l_packed - l_one) <= 1e-6 * fabs(l_one));
    CHECK(fabs(l_micro - l_one) <= 1e-6 * fabs(l_one));
    CHECK(c_packed == c_one && c_micro == c_one);
    double scale = max_abs(g_one, ng), e_packed = 0, e_micro = 0;
    for (size_t i = 0; i < ng; i++) {
        e_packed = fmax(e_packed, fabs(g_packed[i] - g_one[i]));
        e_micro = fmax(e_micro, fabs(g_micro[i] - g_one[i]));
    }
    printf("  %s: %d rows packed into %d; loss %.9f vs %.9f; grad diff %.2g / %.2g of max %.3g\n",
           arch == MODEL_ARCH_GPT2 ? "gpt2" : "llama", rows_one, rows_packed, l_packed, l_one,
           e_packed, e_micro, scale);
    CHECK(scale > 0);
    CHECK(e_packed <= 1e-5 * scale);
    CHECK(e_micro <= 1e-5 * scale);
    /* a planted bug - positions not restarting at each sequence - changes the loss */
    struct train_batch b = {0};
    struct fj_err err = {0};
    CHECK(train_batch_fill(&b, &ds, idx, NEX, T, true, &err) == 0);
    for (int r = 0; r < b.rows; r++)
        for (int t = 0; t < T; t++)
            b.pos[r * T + t] = t;
    struct model_run *run = model_run_new(m, b.rows, T, &err);
    struct model_loss bad;
    CHECK(model_forward(run, b.tokens, b.targets, b.mask, b.pos, false, 0, &bad, &err) == 0);
    CHECK(fabs(bad.loss - l_one) > 1e-4);
    model_run_free(run);
    train_batch_free(&b);
    free(g_one), free(g_packed), free(g_micro);
    model_free(m);
    train_dataset_free(&ds);
}

static void test_packing(void)
{
    check_packing(MODEL_ARCH_LLAMA);
    check_packing(MODEL_ARCH_GPT2);
}

static void test_batch_layout(void)
{
    static const int len[] = {5, 4, 8, 2};
    struct train_dataset ds;
    tiny_dataset(&ds, len, 4, 1);
    size_t idx[] = {0, 1, 2, 3};
    struct train_batch b = {0};
    struct fj_err err = {0};
    /* T = 8: 4 + 3 positions in row 0, 7 in row 1, then 1 fills row 0's last column */
    CHECK(train_batch_fill(&b, &ds, idx, 4, 8, true, &err) == 0);
    CHECK(b.rows == 2);
    static const int want_pos[16] = {0, 1, 2, 3, 0, 1, 2, 0, 0, 1, 2, 3, 4, 5, 6, 0};
    for (int i = 0; i < 16; i++)
        CHECK(b.pos[i] == want_pos[i]);
    /* example 2 (8 tokens) in row 1: tokens ids[0..7), targets ids[1..8), masks of targets */
    const int32_t *ids = ds.ids + ds.ex[2].off;
    for (int t = 0; t < 7; t++) {
        CHECK(b.tokens[8 + t] == ids[t]);
        CHECK(b.targets[8 + t] == ids[t + 1]);
        CHECK(b.mask[8 + t] == ds.mask[ds.ex[2].off + t + 1]);
    }
    CHECK(b.mask[15] == 0); /* padding */
    CHECK(b.tokens_in == 19);
    /* an example longer than a row is refused */
    CHECK(train_batch_fill(&b, &ds, idx, 4, 6, true, &err) == FJ_ERR_RANGE);
    train_batch_free(&b);
    train_dataset_free(&ds);
}

static void test_optim_parts(void)
{
    enum { N = 200003 };
    float *g = malloc(N * sizeof *g);
    uint64_t s = 3;
    double naive = 0;
    for (size_t i = 0; i < N; i++) {
        g[i] = (float)(fj_rng_uniform(&s) - 0.5);
        naive += (double)g[i] * g[i];
    }
    double norm = train_grad_norm(g, N);
    CHECK(fabs(norm - sqrt(naive)) <= 1e-12 * sqrt(naive));
    nn_set_threads(1);
    double norm1 = train_grad_norm(g, N);
    nn_set_threads(2);
    double norm2 = train_grad_norm(g, N);
    nn_set_threads(0);
    CHECK(memcmp(&norm1, &norm2, sizeof norm1) == 0);
    float before = g[7];
    double pre = train_clip_grads(g, N, 1.0);
    CHECK(pre == norm);
    CHECK(fabs(train_grad_norm(g, N) - 1.0) < 1e-5);
    CHECK(fabsf(g[7] - before * (float)(1.0 / (norm + 1e-6))) <= 1e-7f);
    /* below the limit nothing changes */
    float keep = g[11];
    train_clip_grads(g, N, 10.0);
    CHECK(g[11] == keep);
    free(g);
    /* schedule: warm-up (s+1)/W then (S - s)/(S - W) */
    CHECK(train_lr_factor(0, 10, 4) == 0.25);
    CHECK(train_lr_factor(3, 10, 4) == 1.0);
    CHECK(train_lr_factor(4, 10, 4) == 1.0);
    CHECK(fabs(train_lr_factor(9, 10, 4) - 1.0 / 6) < 1e-15);
    CHECK(train_lr_factor(0, 1, 1) == 1.0);
}

/* One AdamW step on a tiny model, element by element against torch's formula in double. */
static void test_adamw_step(void)
{
    struct model *m = tiny_model(MODEL_ARCH_LLAMA, 9);
    float *p, *grad;
    size_t n = model_trainable_block(m, &p, &grad);
    float *p0 = malloc(n * sizeof *p0), *g = malloc(n * sizeof *g);
    uint64_t s = 17;
    for (size_t i = 0; i < n; i++)
        g[i] = (float)((fj_rng_uniform(&s) - 0.5) * 1e-2);
    struct fj_err err = {0};
    struct train_adamw *o = train_adamw_new(m, 0.9, 0.999, 1e-8, 0.1, &err);
    CHECK(o != NULL);
    double lr = 1e-2, worst = 0;
    for (int step = 1; step <= 2; step++) {
        memcpy(p0, p, n * sizeof *p0);
        float *em, *ev;
        int64_t *t;
        train_adamw_state(o, &em, &ev, &t);
        double *m_prev = malloc(n * sizeof *m_prev), *v_prev = malloc(n * sizeof *v_prev);
        for (size_t i = 0; i < n; i++)
            m_prev[i] = em[i], v_prev[i] = ev[i];
        train_adamw_step(o, g, lr);
        CHECK(*t == step);
        for (size_t i = 0; i < model_n_params(m); i++) {
            const struct model_param *pp = model_param_at(m, i);
            double wd = pp->ndim == 2 ? 0.1 : 0.0;
            for (size_t k = 0; k < pp->numel; k++) {
                size_t j = (size_t)(pp->data - p) + k;
                double mm = 0.9 * m_prev[j] + 0.1 * g[j];
                double vv = 0.999 * v_prev[j] + 0.001 * (double)g[j] * g[j];
                double want =
                    p0[j] * (1 - lr * wd) -
                    lr / (1 - pow(0.9, step)) * mm / (sqrt(vv) / sqrt(1 - pow(0.999, step)) + 1e-8);
                worst = fmax(worst, fabs(want - p[j]) / lr);
            }
        }
        free(m_prev), free(v_prev);
    }
    printf("  adamw: worst |got - torch formula| = %.2g lr\n", worst);
    CHECK(worst < 1e-4);
    train_adamw_free(o);
    free(p0), free(g);
    model_free(m);
}

static void test_plan(void)
{
    struct model *m = tiny_model(MODEL_ARCH_LLAMA, 1);
    struct train_hparams hp = {.lora_dropout = -1, .weight_decay = -1, .warmup_steps = -1};
    struct train_plan p;
    struct fj_err err = {0};
    /* OpenAI's epochs: 10 examples -> 100 // 10 = 10; 20 -> 5; 40 -> 3; 3 -> 25; 10000 -> 2 */
    static const size_t ex[] = {10, 20, 40, 3, 10000};
    static const int ep[] = {10, 5, 3, 25, 2};
    for (int i = 0; i < 5; i++) {
        CHECK(train_plan_resolve(&hp, m, ex[i], 30, (size_t)1 << 30, &p, &err) == 0);
        CHECK(p.n_epochs == ep[i]);
    }
    CHECK(p.batch_size == 20); /* 0.2% of 10000 */
    CHECK(p.method == TRAIN_METHOD_FULL && p.weight_decay == 0.01);
    CHECK(train_plan_resolve(&hp, m, 10, 30, (size_t)1 << 30, &p, &err) == 0);
    CHECK(p.batch_size == 1 && p.total_steps == 100 && p.warmup_steps == 5);
    hp.method = TRAIN_METHOD_LORA;
    CHECK(train_plan_resolve(&hp, m, 10, 30, (size_t)1 << 30, &p, &err) == 0);
    CHECK(p.lora_rank == 8 && p.lora_alpha == 16 && p.weight_decay == 0);
    CHECK(strcmp(p.lora_target_names, "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj") ==
          0);
    hp.n_epochs = 51;
    CHECK(train_plan_resolve(&hp, m, 10, 30, (size_t)1 << 30, &p, &err) == FJ_ERR_RANGE);
    model_free(m);
}

int main(void)
{
    RUN(test_batch_layout);
    RUN(test_packing);
    RUN(test_optim_parts);
    RUN(test_adamw_step);
    RUN(test_plan);
    return TEST_DONE();
}
