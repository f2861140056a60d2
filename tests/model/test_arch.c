/* test_arch.c - forja's model math against the PyTorch reference (tests/reference/).
 *
 *     test_arch CASE_DIR [SAVE_DIR]
 *
 * CASE_DIR is written by tests/reference/make_case.py: a Hugging Face model folder with
 * random weights (model/), a batch (batch.safetensors: tokens, targets, mask), optionally a
 * PEFT adapter (adapter/), and what the reference computed in float64 (expected.safetensors:
 * logits, loss, n_tokens, n_correct, grad.<tensor name>). This program loads the folder the
 * way forja does, runs forward and backward, and compares:
 *   - logits of the full forward, and of KV-cache decoding (a prompt chunk, then one token
 *     at a time), elementwise: |got - want| <= TOL_LOGITS_ABS + TOL_LOGITS_REL * |want|;
 *   - the masked mean loss: |got - want| <= TOL_LOSS * |want|; the counted and correctly
 *     predicted tokens exactly (the reference drops near-ties from the batch's mask);
 *   - the gradient of every trainable tensor (every base tensor for full fine-tuning, every
 *     lora_A / lora_B with an adapter), per tensor: max|got - want| <= TOL_GRAD * max|want|.
 * With SAVE_DIR, the model (and adapter) are then written there as forja saves them, for
 * tests/model/saved_check.py to compare with the case's own files.
 * The tolerances are fp32's: the C code computes in float32, the oracle in float64; what is
 * printed is the measured error, so a regression shows before it fails.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "nn/nn.h"

#define TOL_LOGITS_ABS 2e-5
#define TOL_LOGITS_REL 2e-5
#define TOL_LOSS       1e-6
#define TOL_GRAD       2e-5

static int failures;

static float *tensor_f32(const struct model_st *st, const char *name, size_t *n)
{
    const struct model_st_tensor *t = model_st_find(st, name);
    if (!t) {
        fprintf(stderr, "missing tensor %s\n", name);
        exit(2);
    }
    float *out = malloc((size_t)t->numel * sizeof(float) + 1);
    struct fj_err err = {0};
    if (t->dtype == MODEL_DTYPE_OTHER) { /* I32 */
        const int32_t *src = t->data;
        for (int64_t i = 0; i < t->numel; i++) {
            int32_t v;
            memcpy(&v, src + i, sizeof v);
            out[i] = (float)v;
        }
    } else if (model_st_to_f32(t, out, &err) != 0) {
        fprintf(stderr, "%s: %s\n", name, err.msg);
        exit(2);
    }
    if (n)
        *n = (size_t)t->numel;
    return out;
}

static void check_logits(const char *what, const float *got, const float *want, size_t n)
{
    double worst = 0, max_err = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        double bound = TOL_LOGITS_ABS + TOL_LOGITS_REL * fabs(want[i]);
        max_err = e > max_err ? e : max_err;
        worst = e / bound > worst ? e / bound : worst;
    }
    bool ok = worst <= 1.0;
    printf("%-4s %-32s max abs err %.3g (%.2f of tolerance)\n", ok ? "ok" : "FAIL", what, max_err,
           worst);
    failures += !ok;
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: test_arch CASE_DIR [SAVE_DIR]\n");
        return 2;
    }
    const char *dir = argv[1];
    char path[4096];
    struct fj_err err = {0};

    snprintf(path, sizeof path, "%s/model", dir);
    struct model *m = model_load(path, &err);
    if (!m) {
        fprintf(stderr, "FAIL load: %s\n", err.msg);
        return 1;
    }
    snprintf(path, sizeof path, "%s/adapter", dir);
    FILE *probe = fopen(path, "r");
    bool lora = probe != NULL;
    if (probe)
        fclose(probe);
    int rc = lora ? model_lora_load(m, path, &err) : model_train_full(m, &err);
    if (rc != 0) {
        fprintf(stderr, "FAIL %s: %s\n", lora ? "adapter" : "gradients", err.msg);
        return 1;
    }

    snprintf(path, sizeof path, "%s/batch.safetensors", dir);
    struct model_st *batch = model_st_open_file(path, &err);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    struct model_st *want = model_st_open_file(path, &err);
    if (!batch || !want) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 1;
    }
    const struct model_st_tensor *tt = model_st_find(batch, "tokens");
    int B = (int)tt->shape[0], T = (int)tt->shape[1], N = B * T;
    const struct model_config *cfg = model_get_config(m);
    int V = cfg->vocab_size;
    float *tokf = tensor_f32(batch, "tokens", NULL), *tgtf = tensor_f32(batch, "targets", NULL);
    float *mask = tensor_f32(batch, "mask", NULL);
    int32_t *tokens = malloc((size_t)N * sizeof *tokens), *targets = malloc((size_t)N * 4);
    for (int i = 0; i < N; i++) {
        tokens[i] = (int32_t)tokf[i];
        targets[i] = (int32_t)tgtf[i];
    }
    printf("case %s: %s, B=%d T=%d, %s, %lld trainable of %lld parameters\n", dir,
           cfg->architecture, B, T, lora ? "LoRA" : "full fine-tuning",
           (long long)model_count_trainable(m), (long long)model_count_params(m));

    struct model_run *run = model_run_new(m, B, T, &err);
    struct model_loss loss;
    if (!run || model_forward(run, tokens, targets, mask, NULL, false, 0, &loss, &err) != 0) {
        fprintf(stderr, "FAIL forward: %s\n", err.msg);
        return 1;
    }
    float *want_logits = tensor_f32(want, "logits", NULL);
    check_logits("logits (full forward)", model_run_logits(run), want_logits, (size_t)N * V);

    float *wl = tensor_f32(want, "loss", NULL), *wn = tensor_f32(want, "n_tokens", NULL);
    float *wc = tensor_f32(want, "n_correct", NULL);
    double le = fabs(loss.loss - wl[0]);
    bool loss_ok = le <= TOL_LOSS * fabs(wl[0]);
    printf("%-4s %-32s %.9g vs %.9g (err %.3g)\n", loss_ok ? "ok" : "FAIL", "loss", loss.loss,
           (double)wl[0], le);
    failures += !loss_ok;
    bool count_ok = loss.n_tokens == (int64_t)wn[0] && loss.n_correct == (int64_t)wc[0];
    printf("%-4s %-32s %lld counted, %lld correct (reference %lld, %lld)\n",
           count_ok ? "ok" : "FAIL", "token counts", (long long)loss.n_tokens,
           (long long)loss.n_correct, (long long)wn[0], (long long)wc[0]);
    failures += !count_ok;

    model_zero_grad(m);
    model_backward(run, 0);
    int n_grads = 0;
    double worst_grad = 0;
    for (size_t i = 0; i < model_n_params(m); i++) {
        struct model_param *p = model_param_at(m, i);
        if (!p->grad)
            continue;
        char name[160];
        snprintf(name, sizeof name, "grad.%s", p->name);
        size_t n;
        float *g = tensor_f32(want, name, &n);
        if (n != p->numel) {
            printf("FAIL %s: %zu elements, reference %zu\n", name, p->numel, n);
            failures++;
            continue;
        }
        double max_ref = 0, max_err = 0;
        for (size_t k = 0; k < n; k++) {
            /* p->grad is held transposed for GPT-2 Conv1D weights */
            size_t src = k;
            if (p->transposed) {
                size_t r = k / (size_t)p->shape[1], c = k % (size_t)p->shape[1];
                src = c * (size_t)p->shape[0] + r;
            }
            max_ref = fabs(g[k]) > max_ref ? fabs(g[k]) : max_ref;
            double e = fabs((double)p->grad[src] - g[k]);
            max_err = e > max_err ? e : max_err;
        }
        double rel = max_ref > 0 ? max_err / max_ref : max_err;
        bool ok = max_err <= TOL_GRAD * max_ref + 1e-12 && max_ref > 0;
        worst_grad = rel > worst_grad ? rel : worst_grad;
        if (!ok)
            printf("FAIL %-40s max err %.3g, max |grad| %.3g (rel %.3g)\n", name, max_err, max_ref,
                   rel);
        failures += !ok;
        n_grads++;
        free(g);
    }
    printf("%-4s %d gradients, worst relative error %.3g (tolerance %.1g)\n",
           worst_grad <= TOL_GRAD ? "ok" : "FAIL", n_grads, worst_grad, TOL_GRAD);

    /* KV cache: the first rows of each sequence as one prompt chunk, then one at a time */
    struct model_kv *kv = model_kv_new(m, T, &err);
    float *kv_logits = malloc((size_t)N * V * sizeof(float));
    for (int b = 0; b < B && kv; b++) {
        model_kv_reset(kv);
        int prompt = T / 3;
        const int32_t *seq = tokens + (size_t)b * T;
        float *out = kv_logits + (size_t)b * T * V;
        rc = model_kv_forward(kv, seq, prompt, true, out, &err);
        for (int t = prompt; rc == 0 && t < T; t++)
            rc = model_kv_forward(kv, seq + t, 1, false, out + (size_t)t * V, &err);
        if (rc != 0) {
            fprintf(stderr, "FAIL kv: %s\n", err.msg);
            return 1;
        }
    }
    check_logits("logits (KV-cache decoding)", kv_logits, want_logits, (size_t)N * V);

    if (argc == 3) {
        /* save what was loaded: the weights are unchanged by forward/backward */
        snprintf(path, sizeof path, "%s/model", argv[2]);
        rc = model_save(m, path, MODEL_DTYPE_F32, &err);
        snprintf(path, sizeof path, "%s/model-bf16", argv[2]);
        if (rc == 0)
            rc = model_save(m, path, MODEL_DTYPE_BF16, &err);
        snprintf(path, sizeof path, "%s/adapter", argv[2]);
        if (rc == 0 && lora)
            rc = model_lora_save(m, path, "base", &err);
        printf("%-4s %-32s %s\n", rc == 0 ? "ok" : "FAIL", "saved", rc == 0 ? argv[2] : err.msg);
        failures += rc != 0;
    }

    model_kv_free(kv);
    model_run_free(run);
    model_st_close(batch);
    model_st_close(want);
    model_free(m);
    free(kv_logits);
    free(want_logits);
    free(tokf);
    free(tgtf);
    free(mask);
    free(tokens);
    free(targets);
    free(wl);
    free(wn);
    free(wc);
    printf("%s\n", failures ? "FAILED" : "passed");
    return failures ? 1 : 0;
}
