/* train_steps.c - K optimizer steps of forja's trainer on a reference case, for
 * optim_parity.py to compare with torch.optim.AdamW (tests/train/optim_ref.py).
 *
 *   train_steps CASE_DIR OUT_DIR --steps K --lr LR --warmup W --total S --wd WD --micro M
 *
 * CASE_DIR is a tests/reference/make_case.py case (model/, batch.safetensors, adapter/ for a
 * LoRA case). Every step uses the case's whole batch, split into micro-batches of M rows
 * that run one after another exactly as a training step does (src/train/loop.c): gradient of
 * each micro-batch alone, scaled by the step's counted tokens (model_backward), summed with
 * train_grads_sum, clipped at 1.0 (train_clip_grads), then train_adamw_step at
 * LR * train_lr_factor(s, S, W). Rows are given positions (packed layout, one sequence a
 * row) as the trainer gives them. Writes OUT_DIR/step-K/ (model folder or PEFT adapter) and
 * OUT_DIR/steps.json.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/file.h"
#include "model/model.h"
#include "train/train.h"

static int32_t *ints_of(const struct model_st *st, const char *name, int *B, int *T)
{
    const struct model_st_tensor *t = model_st_find(st, name);
    if (!t || t->ndim != 2 || strcmp(t->dtype_name, "I32") != 0)
        return NULL;
    *B = (int)t->shape[0];
    *T = (int)t->shape[1];
    int32_t *out = malloc((size_t)t->numel * sizeof *out);
    memcpy(out, t->data, (size_t)t->numel * sizeof *out);
    return out;
}

static double arg(int argc, char **argv, const char *name, double dflt)
{
    for (int i = 3; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return atof(argv[i + 1]);
    return dflt;
}

static int fail(const char *what, const struct fj_err *err)
{
    fprintf(stderr, "train_steps: %s: %s\n", what, err->msg);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: train_steps CASE_DIR OUT_DIR --steps K --lr LR --warmup W "
                        "--total S --wd WD --micro M\n");
        return 2;
    }
    int K = (int)arg(argc, argv, "--steps", 3), W = (int)arg(argc, argv, "--warmup", 1);
    int S = (int)arg(argc, argv, "--total", K), M = (int)arg(argc, argv, "--micro", 1);
    double lr = arg(argc, argv, "--lr", 1e-3), wd = arg(argc, argv, "--wd", 0);
    char path[4200];
    struct fj_err err = {0};
    snprintf(path, sizeof path, "%s/model", argv[1]);
    struct model *m = model_load(path, &err);
    if (!m)
        return fail("model", &err);
    snprintf(path, sizeof path, "%s/adapter", argv[1]);
    bool lora = fj_file_exists(path);
    if ((lora ? model_lora_load(m, path, &err) : model_train_full(m, &err)) != 0)
        return fail("setup", &err);
    snprintf(path, sizeof path, "%s/batch.safetensors", argv[1]);
    struct model_st *bst = model_st_open_file(path, &err);
    if (!bst)
        return fail("batch", &err);
    int B, T;
    int32_t *tokens = ints_of(bst, "tokens", &B, &T), *targets = ints_of(bst, "targets", &B, &T);
    const struct model_st_tensor *mt = model_st_find(bst, "mask");
    float *mask = malloc((size_t)B * T * sizeof *mask);
    int32_t *pos = malloc((size_t)B * T * sizeof *pos);
    if (!tokens || !targets || !mt || model_st_to_f32(mt, mask, &err) != 0)
        return fail("batch tensors", &err);
    double counted = 0;
    for (int i = 0; i < B * T; i++) {
        pos[i] = i % T;
        counted += mask[i];
    }
    if (M < 1 || M > B)
        M = B;
    struct model_run *run = model_run_new(m, M, T, &err);
    struct train_adamw *opt = train_adamw_new(m, 0.9, 0.999, 1e-8, wd, &err);
    float *data, *grad;
    size_t n = model_trainable_block(m, &data, &grad);
    float *acc = malloc(n * sizeof *acc);
    if (!run || !opt || !acc)
        return fail("setup", &err);
    json_t *steps = json_array();
    for (int s = 0; s < K; s++) {
        double loss_sum = 0;
        int n_mb = (B + M - 1) / M;
        for (int k = 0; k < n_mb; k++) {
            int rows = B - k * M < M ? B - k * M : M;
            size_t off = (size_t)k * M * T;
            struct model_loss loss;
            model_zero_grad(m);
            if (model_run_set_batch(run, rows, &err) != 0 ||
                model_forward(run, tokens + off, targets + off, mask + off, pos + off, true, 0,
                              &loss, &err) != 0)
                return fail("forward", &err);
            model_backward(run, counted);
            train_grads_sum(acc, grad, n, k == 0);
            loss_sum += loss.loss * (double)loss.n_tokens;
        }
        double norm = train_clip_grads(acc, n, 1.0);
        double step_lr = lr * train_lr_factor(s, S, W);
        train_adamw_step(opt, acc, step_lr);
        json_array_append_new(steps,
                              json_pack("{s:i, s:f, s:f, s:f}", "step", s + 1, "loss",
                                        loss_sum / counted, "lr", step_lr, "grad_norm", norm));
        snprintf(path, sizeof path, "%s/step-%d", argv[2], s + 1);
        if ((lora ? model_lora_save(m, path, "case", &err)
                  : model_save(m, path, MODEL_DTYPE_F32, &err)) != 0)
            return fail("save", &err);
    }
    snprintf(path, sizeof path, "%s/steps.json", argv[2]);
    char *text = json_dumps(steps, JSON_INDENT(1));
    if (fj_file_write_atomic(path, text, strlen(text), &err) != 0)
        return fail("steps.json", &err);
    free(text);
    json_decref(steps);
    model_st_close(bst);
    train_adamw_free(opt);
    model_run_free(run);
    model_free(m);
    free(tokens), free(targets), free(mask), free(pos), free(acc);
    return 0;
}
