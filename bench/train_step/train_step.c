/* train_step.c - times one full fine-tuning step (forward + backward, no optimizer) of a
 * GPT-2-124M-shaped model with forja's engine, and OpenBLAS's sgemm on a large square
 * matrix as the machine's fp32 limit. Prints JSON lines; bench/train_step/run compares them
 * with the PyTorch reference (reference.py) measured in the same run.
 *
 *     train_step [--threads N] [--steps K] [--batch B] [--seq T] [--lora R]
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model.h"
#include "nn/nn.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* sgemm GFLOP/s on an n x n product, best of 3, with OpenBLAS using `threads` threads. */
static double sgemm_gflops(int n, int threads)
{
    float *a = malloc((size_t)n * n * sizeof *a), *b = malloc((size_t)n * n * sizeof *b);
    float *c = malloc((size_t)n * n * sizeof *c);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    openblas_set_num_threads(threads);
    double best = 1e30;
    for (int r = 0; r < 4; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        double dt = now() - t0;
        if (r > 0 && dt < best)
            best = dt;
    }
    free(a), free(b), free(c);
    return 2.0 * n * n * (double)n / best / 1e9;
}

int main(int argc, char **argv)
{
    int threads = 2, steps = 5, B = 4, T = 256, lora_r = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--threads"))
            threads = v;
        else if (!strcmp(argv[i], "--steps"))
            steps = v;
        else if (!strcmp(argv[i], "--batch"))
            B = v;
        else if (!strcmp(argv[i], "--seq"))
            T = v;
        else if (!strcmp(argv[i], "--lora"))
            lora_r = v;
    }
    double peak = sgemm_gflops(2048, threads);
    printf("{\"impl\":\"openblas-sgemm\",\"n\":2048,\"threads\":%d,\"gflops\":%.1f}\n", threads,
           peak);
    fflush(stdout);

    nn_set_threads(threads);
    struct model_config cfg = {.arch = MODEL_ARCH_GPT2,
                               .n_layer = 12,
                               .n_embd = 768,
                               .n_head = 12,
                               .n_kv_head = 12,
                               .head_dim = 64,
                               .n_ff = 3072,
                               .vocab_size = 50304,
                               .n_ctx = 1024,
                               .norm_eps = 1e-5f,
                               .act = MODEL_ACT_GELU_TANH,
                               .tie_embeddings = true,
                               .qkv_bias = true,
                               .o_bias = true,
                               .mlp_bias = true,
                               .bos_id = 50256,
                               .n_eos = 1,
                               .eos_ids = {50256}};
    snprintf(cfg.architecture, sizeof cfg.architecture, "GPT2LMHeadModel");
    struct fj_err err = {0};
    struct model *m = model_new(&cfg, &err);
    if (!m) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    uint64_t s = 1;
    for (size_t i = 0; i < model_n_params(m); i++) {
        struct model_param *p = model_param_at(m, i);
        for (size_t k = 0; k < p->numel; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            p->data[k] = (float)((double)(s >> 40) / 16777216.0 - 0.5) * 0.04f;
        }
    }
    int rc = 0;
    if (lora_r > 0) {
        struct model_lora_config lc = {.r = lora_r,
                                       .alpha = 2.0f * lora_r,
                                       .dropout = 0,
                                       .targets =
                                           MODEL_LORA_C_ATTN | MODEL_LORA_C_PROJ | MODEL_LORA_C_FC};
        rc = model_lora_attach(m, &lc, 7, &err);
    } else {
        rc = model_train_full(m, &err);
    }
    struct model_run *run = rc == 0 ? model_run_new(m, B, T, &err) : NULL;
    if (!run) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int N = B * T;
    int32_t *tokens = malloc((size_t)N * sizeof *tokens), *targets = malloc((size_t)N * 4);
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int32_t)((s >> 33) % 50257);
    }
    for (int i = 0; i < N; i++)
        targets[i] = i + 1 < N ? tokens[i + 1] : 0;
    double *times = malloc((size_t)(steps + 1) * sizeof *times);
    struct model_loss loss = {0};
    for (int k = 0; k <= steps; k++) { /* step 0 warms up */
        double t0 = now();
        model_zero_grad(m);
        if (model_forward(run, tokens, targets, NULL, NULL, true, (uint64_t)k, &loss, &err) != 0) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        model_backward(run, 0);
        times[k] = now() - t0;
    }
    qsort(times + 1, (size_t)steps, sizeof *times, cmp_double);
    double step = times[1 + steps / 2];
    /* model FLOPs: 6 per parameter per token (4 with LoRA, whose base weights get no
     * gradient; the position table is a lookup, not counted), plus attention's QK^T and PV
     * over the full square, forward and backward: 12 L T C */
    double n_params = (double)model_count_params(m) - (double)cfg.n_ctx * cfg.n_embd;
    double flops_tok = (lora_r ? 4.0 : 6.0) * n_params + 12.0 * cfg.n_layer * T * cfg.n_embd;
    double tok_s = N / step;
    printf("{\"impl\":\"forja\",\"mode\":\"%s\",\"threads\":%d,\"batch\":%d,\"seq\":%d,"
           "\"step_s\":%.4f,\"tokens_per_s\":%.1f,\"gflops\":%.1f,\"params\":%.0f,"
           "\"loss\":%.4f}\n",
           lora_r ? "lora" : "full", threads, B, T, step, tok_s, tok_s * flops_tok / 1e9,
           (double)model_count_params(m), loss.loss);
    free(times), free(tokens), free(targets);
    model_run_free(run);
    model_free(m);
    return 0;
}
