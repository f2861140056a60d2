/* loop.c - a fine-tuning run: data, plan, epochs of optimizer steps, metrics, evaluation,
 * checkpoints, resume (train.h; docs/training.md).
 *
 * A step takes the next batch_size examples of the epoch's shuffled order, lays them out in
 * rows (pack.c) and runs the rows in micro-batches of plan.micro_batch_rows: each
 * micro-batch's gradient is computed alone (zeroed first), scaled to the step's mean loss
 * (model_backward with the step's counted tokens), and added to the step's gradient by
 * train_grads_sum in micro-batch order. Then the gradient is clipped and AdamW updates the
 * weights. Everything a step depends on - the order of the examples, dropout masks, the
 * validation batch - is a function of (seed, step), so a run resumed from a checkpoint
 * computes exactly what the uninterrupted run computes.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/file.h"
#include "core/fmt.h"
#include "core/rng.h"
#include "nn/nn.h"
#include "train/train_internal.h"

struct loop {
    const struct train_config *cfg;
    struct train_result *res;
    struct model_info info;
    bool have_info;
    struct train_dataset train, valid;
    struct model *m;
    struct train_plan plan;
    struct model_run *run;
    struct train_adamw *opt;
    struct train_batch batch;
    float *acc; /* the step's gradient when it has several micro-batches */
    float *grad;
    size_t n_train;
    size_t *perm;
    struct fj_buf csv;
    struct train_position pos;
    double t0, step_seconds;
    uint64_t tokens_in;
    char ckpt[4200]; /* the checkpoint resumed from */
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void emit(struct loop *L, struct train_event ev)
{
    if (!L->cfg->on_event)
        return;
    ev.plan = L->plan.total_steps ? &L->plan : NULL;
    ev.step = L->pos.step;
    ev.total_steps = L->plan.total_steps;
    ev.epoch = L->pos.epoch + 1;
    ev.elapsed_s = now() - L->t0;
    ev.tokens_per_s = L->step_seconds > 0 ? (double)L->tokens_in / L->step_seconds : 0;
    L->cfg->on_event(L->cfg->ctx, &ev);
}

static void message(struct loop *L, enum train_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void message(struct loop *L, enum train_level level, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    emit(L, (struct train_event){.kind = TRAIN_EVENT_MESSAGE, .level = level, .message = text});
}

/* ---- data --------------------------------------------------------------------------------- */

/* Loads one file; every problem becomes a message; the first error fails the run. */
static int load_file(struct loop *L, struct train_dataset *ds, const char *path, size_t min,
                     const char *param, struct fj_err *err)
{
    const struct model_config *c = &L->info.cfg;
    int hp_len = L->cfg->hp.max_seq_len;
    int max_len = hp_len > 0 && hp_len < c->n_ctx ? hp_len : c->n_ctx;
    struct data_problems probs = {.limit = 1000};
    struct fj_err e = {0};
    int rc = train_dataset_load(ds, path, &L->info, max_len, min, &probs, &e);
    if (rc != 0) /* the file cannot be read: the job's data is at fault unless memory is */
        rc = fj_err_set(err, rc == FJ_ERR_NOMEM ? rc : FJ_ERR_INVALID, "%s: %s: %s", param, path,
                        e.msg);
    char where[64];
    const struct data_problem *first = NULL;
    for (size_t i = 0; rc == 0 && i < probs.len; i++) {
        const struct data_problem *p = &probs.items[i];
        if (p->line)
            snprintf(where, sizeof where, ":%llu", (unsigned long long)p->line);
        else
            where[0] = '\0';
        message(L, p->severity == DATA_ERROR ? TRAIN_ERROR : TRAIN_WARN, "%s%s: %s", path, where,
                p->message);
        if (p->severity == DATA_ERROR && !first)
            first = p;
    }
    if (rc == 0 && ds->n_truncated)
        message(L, TRAIN_WARN,
                "%s: %llu example(s) longer than the context of %d positions were "
                "truncated",
                path, (unsigned long long)ds->n_truncated, max_len);
    if (rc == 0 && probs.errors) {
        if (first && first->line)
            snprintf(where, sizeof where, ":%llu", (unsigned long long)first->line);
        else
            where[0] = '\0';
        rc = fj_err_set(err, FJ_ERR_INVALID, "%s: %s%s: %s (%llu error(s) in all)", param, path,
                        where, first ? first->message : "invalid file",
                        (unsigned long long)probs.errors);
    }
    data_problems_free(&probs);
    return rc;
}

/* The epoch's order of the training examples: a Fisher-Yates shuffle from (seed, epoch). */
static void shuffle(struct loop *L, int epoch)
{
    uint64_t state =
        fj_splitmix64(L->plan.seed ^ fj_splitmix64(0x73687566666c65ull + (uint64_t)epoch));
    for (size_t i = 0; i < L->n_train; i++)
        L->perm[i] = i;
    for (size_t i = L->n_train; i > 1; i--) {
        size_t j = (size_t)(fj_rng_next(&state) % i);
        size_t t = L->perm[i - 1];
        L->perm[i - 1] = L->perm[j];
        L->perm[j] = t;
    }
}

/* ---- forward passes -------------------------------------------------------------------------- */

/* Runs the batch's rows in micro-batches. With backward, the gradients of the batch's mean
 * loss end up in the trainable block (one micro-batch) or in L->acc. Sums of losses and
 * hits go to *loss_sum and *correct. */
static int run_rows(struct loop *L, bool backward, uint64_t step, double *loss_sum,
                    int64_t *correct, bool *in_acc, struct fj_err *err)
{
    const struct train_batch *b = &L->batch;
    int R = L->plan.micro_batch_rows, n_mb = (b->rows + R - 1) / R;
    size_t n_grad = 0;
    float *data;
    if (backward)
        n_grad = model_trainable_block(L->m, &data, &L->grad);
    *in_acc = backward && n_mb > 1;
    for (int k = 0; k < n_mb; k++) {
        int rows = b->rows - k * R < R ? b->rows - k * R : R;
        size_t off = (size_t)k * R * b->T;
        struct model_loss loss;
        int rc = model_run_set_batch(L->run, rows, err);
        if (backward)
            model_zero_grad(L->m);
        uint64_t seed = fj_splitmix64(L->plan.seed ^ fj_splitmix64((step << 20) + (uint64_t)k));
        if (rc == 0)
            rc = model_forward(L->run, b->tokens + off, b->targets + off, b->mask + off,
                               b->pos + off, backward, seed, &loss, err);
        if (rc != 0)
            return rc;
        *loss_sum += loss.loss * (double)loss.n_tokens;
        *correct += loss.n_correct;
        if (backward) {
            model_backward(L->run, (double)b->counted);
            if (*in_acc)
                train_grads_sum(L->acc, L->grad, n_grad, k == 0);
        }
    }
    return 0;
}

/* Mean loss and token accuracy of examples idx[0..n) of ds, without gradients. */
static int evaluate(struct loop *L, const struct train_dataset *ds, const size_t *idx, size_t n,
                    double *loss, double *acc, struct fj_err *err)
{
    double sum = 0;
    int64_t correct = 0, counted = 0;
    bool in_acc;
    for (size_t i = 0; i < n; i += 64) {
        size_t k = n - i < 64 ? n - i : 64;
        int rc = train_batch_fill(&L->batch, ds, idx + i, k, L->plan.seq_len, L->plan.packing, err);
        if (rc == 0)
            rc = run_rows(L, false, 0, &sum, &correct, &in_acc, err);
        if (rc != 0)
            return rc;
        counted += L->batch.counted;
    }
    *loss = counted ? sum / (double)counted : 0;
    *acc = counted ? (double)correct / (double)counted : 0;
    return 0;
}

static int evaluate_all(struct loop *L, double *loss, double *acc, struct fj_err *err)
{
    size_t *idx = malloc(L->valid.n * sizeof *idx);
    if (!idx)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < L->valid.n; i++)
        idx[i] = i;
    int rc = evaluate(L, &L->valid, idx, L->valid.n, loss, acc, err);
    free(idx);
    return rc;
}

/* The validation batch of optimizer step s (1-based, a multiple of eval_interval): the next
 * batch_size validation examples, cyclically. */
static int evaluate_batch(struct loop *L, int64_t s, double *loss, double *acc, struct fj_err *err)
{
    size_t n = L->valid.n < (size_t)L->plan.batch_size ? L->valid.n : (size_t)L->plan.batch_size;
    size_t *idx = malloc(n * sizeof *idx);
    if (!idx)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    size_t first = (size_t)((s / L->plan.eval_interval - 1) * (int64_t)n) % L->valid.n;
    for (size_t i = 0; i < n; i++)
        idx[i] = (first + i) % L->valid.n;
    int rc = evaluate(L, &L->valid, idx, n, loss, acc, err);
    free(idx);
    return rc;
}

/* ---- one optimizer step ----------------------------------------------------------------- */

static int train_step(struct loop *L, const size_t *idx, size_t n, struct train_metrics *mt,
                      struct fj_err *err)
{
    double t = now(), sum = 0;
    int64_t correct = 0;
    bool in_acc;
    int rc = train_batch_fill(&L->batch, &L->train, idx, n, L->plan.seq_len, L->plan.packing, err);
    if (rc == 0)
        rc = run_rows(L, true, (uint64_t)L->pos.step, &sum, &correct, &in_acc, err);
    if (rc != 0)
        return rc;
    float *data, *grad;
    size_t n_grad = model_trainable_block(L->m, &data, &grad);
    float *g = in_acc ? L->acc : grad;
    train_clip_grads(g, n_grad, L->plan.max_grad_norm);
    double lr = L->plan.learning_rate *
                train_lr_factor(L->pos.step, L->plan.total_steps, L->plan.warmup_steps);
    train_adamw_step(L->opt, g, lr);
    int64_t counted = L->batch.counted;
    mt->step = L->pos.step + 1;
    mt->train_loss = counted ? sum / (double)counted : 0;
    mt->train_mean_token_accuracy = counted ? (double)correct / (double)counted : 0;
    L->step_seconds += now() - t;
    L->tokens_in += (uint64_t)L->batch.tokens_in;
    return 0;
}

/* ---- results.csv ------------------------------------------------------------------------- */

static const char csv_header[] = "step,train_loss,train_mean_token_accuracy,valid_loss,"
                                 "valid_mean_token_accuracy,full_valid_loss,"
                                 "full_valid_mean_token_accuracy\n";

static int csv_row(struct fj_buf *b, const struct train_metrics *mt)
{
    int rc = fj_buf_printf(b, "%lld,%.5f,%.5f,", (long long)mt->step, mt->train_loss,
                           mt->train_mean_token_accuracy);
    if (rc == 0)
        rc = mt->has_valid
                 ? fj_buf_printf(b, "%.5f,%.5f,", mt->valid_loss, mt->valid_mean_token_accuracy)
                 : fj_buf_printf(b, ",,");
    if (rc == 0)
        rc = mt->has_full_valid ? fj_buf_printf(b, "%.5f,%.5f\n", mt->full_valid_loss,
                                                mt->full_valid_mean_token_accuracy)
                                : fj_buf_printf(b, ",\n");
    return rc;
}

static int write_results(struct loop *L, struct fj_err *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/results.csv", L->cfg->out_dir);
    return fj_file_write_atomic(path, L->csv.data, L->csv.len, err);
}

/* ---- checkpoints and resume -------------------------------------------------------------- */

static json_t *metrics_json(const struct train_metrics *mt)
{
    json_t *o =
        json_pack("{s:I, s:f, s:f}", "step", (json_int_t)mt->step, "train_loss", mt->train_loss,
                  "train_mean_token_accuracy", mt->train_mean_token_accuracy);
    if (o && mt->has_valid)
        json_object_update_new(o, json_pack("{s:f, s:f}", "valid_loss", mt->valid_loss,
                                            "valid_mean_token_accuracy",
                                            mt->valid_mean_token_accuracy));
    if (o && mt->has_full_valid)
        json_object_update_new(o, json_pack("{s:f, s:f}", "full_valid_loss", mt->full_valid_loss,
                                            "full_valid_mean_token_accuracy",
                                            mt->full_valid_mean_token_accuracy));
    return o;
}

static const char *base_name(const struct loop *L)
{
    return L->cfg->model_name ? L->cfg->model_name : L->cfg->model_path;
}

static int checkpoint(struct loop *L, const struct train_metrics *mt, struct fj_err *err)
{
    char fp[2][24];
    snprintf(fp[0], sizeof fp[0], "%016llx", (unsigned long long)L->train.fingerprint);
    snprintf(fp[1], sizeof fp[1], "%016llx", (unsigned long long)L->valid.fingerprint);
    json_t *state = json_pack(
        "{s:s, s:i, s:I, s:i, s:I, s:s, s:s, s:o, s:o, s:I, s:f}", "format", TRAIN_CKPT_FORMAT,
        "version", TRAIN_CKPT_VERSION, "step", (json_int_t)L->pos.step, "epoch", L->pos.epoch,
        "cursor", (json_int_t)L->pos.cursor, "train_fingerprint", fp[0], "valid_fingerprint", fp[1],
        "plan", train_plan_json(&L->plan), "metrics", metrics_json(mt), "tokens_in",
        (json_int_t)L->tokens_in, "step_seconds", L->step_seconds);
    if (!state)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    char root[4300], path[4400];
    snprintf(root, sizeof root, "%s/checkpoints", L->cfg->out_dir);
    int rc = train_checkpoint_write(root, L->m, L->plan.method == TRAIN_METHOD_LORA,
                                    L->cfg->model_path, base_name(L), L->opt, &L->pos, state,
                                    &L->csv, L->cfg->keep_checkpoints, path, sizeof path, err);
    json_decref(state);
    if (rc == 0)
        rc = write_results(L, err);
    if (rc == 0)
        emit(L, (struct train_event){.kind = TRAIN_EVENT_CHECKPOINT, .metrics = mt, .path = path});
    return rc;
}

/* Compares the checkpoint's plan and data with this run's: resuming with other settings
 * would not continue the same run. */
static int check_resume(struct loop *L, json_t *state, const char *ckpt, struct fj_err *err)
{
    json_t *plan = train_plan_json(&L->plan);
    char *a = json_dumps(plan, JSON_SORT_KEYS | JSON_COMPACT);
    char *b = json_dumps(json_object_get(state, "plan"), JSON_SORT_KEYS | JSON_COMPACT);
    char fp[24];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)L->train.fingerprint);
    const char *sfp = json_string_value(json_object_get(state, "train_fingerprint"));
    int rc = 0;
    if (!a || !b || strcmp(a, b) != 0)
        rc = fj_err_set(err, FJ_ERR_INVALID,
                        "cannot resume from %s: its hyperparameters differ (%s) from this run's "
                        "(%s)",
                        ckpt, b ? b : "?", a ? a : "?");
    else if (!sfp || strcmp(sfp, fp) != 0)
        rc = fj_err_set(err, FJ_ERR_INVALID,
                        "cannot resume from %s: the training file is not the one it was made "
                        "from",
                        ckpt);
    free(a);
    free(b);
    json_decref(plan);
    return rc;
}

/* The model to train: the base, or a checkpoint's weights (full fine-tuning). */
static int load_model(struct loop *L, const char *ckpt, struct fj_err *err)
{
    char path[4400];
    bool full_ckpt = false;
    if (ckpt) {
        snprintf(path, sizeof path, "%s/model", ckpt);
        full_ckpt = fj_file_exists(path);
    }
    L->m = model_load(full_ckpt ? path : L->cfg->model_path, err);
    return L->m ? 0 : (err ? err->code : FJ_ERR_IO);
}

static int setup_method(struct loop *L, const char *ckpt, struct fj_err *err)
{
    if (L->plan.method == TRAIN_METHOD_FULL)
        return model_train_full(L->m, err);
    if (ckpt) {
        char path[4400];
        snprintf(path, sizeof path, "%s/adapter", ckpt);
        return model_lora_load(L->m, path, err);
    }
    struct model_lora_config lc = {.r = L->plan.lora_rank,
                                   .alpha = (float)L->plan.lora_alpha,
                                   .dropout = (float)L->plan.lora_dropout,
                                   .targets = L->plan.lora_targets};
    return model_lora_attach(L->m, &lc, fj_splitmix64(L->plan.seed ^ 0x6c6f7261ull), err);
}

/* ---- the run ------------------------------------------------------------------------------- */

static int prepare(struct loop *L, const char **ckpt_out, json_t **state, struct fj_err *err)
{
    const struct train_config *cfg = L->cfg;
    char prior[4400];
    snprintf(prior, sizeof prior, "%s/checkpoints", cfg->out_dir);
    if (!cfg->resume && fj_file_exists(prior))
        return fj_err_set(err, FJ_ERR_INVALID,
                          "%s already holds a run's checkpoints: continue it with --resume, or "
                          "choose another output folder",
                          cfg->out_dir);
    int rc = model_info_open(&L->info, cfg->model_path, err);
    L->have_info = rc == 0;
    if (rc == 0)
        rc = load_file(L, &L->train, cfg->train_path, 10, "training_file", err);
    if (rc == 0 && cfg->valid_path)
        rc = load_file(L, &L->valid, cfg->valid_path, 1, "validation_file", err);
    if (rc == 0 && cfg->resume)
        rc = train_checkpoint_find(cfg->resume, L->ckpt, sizeof L->ckpt, err);
    if (rc == 0 && cfg->resume)
        rc = train_checkpoint_read(L->ckpt, state, &L->csv, err);
    *ckpt_out = cfg->resume && rc == 0 ? L->ckpt : NULL;
    if (rc == 0)
        rc = load_model(L, *ckpt_out, err);
    int longest = L->train.longest > L->valid.longest ? L->train.longest : L->valid.longest;
    if (rc == 0)
        rc = train_plan_resolve(&cfg->hp, L->m, L->train.n, longest - 1, cfg->memory_budget,
                                &L->plan, err);
    if (rc == 0 && *ckpt_out)
        rc = check_resume(L, *state, *ckpt_out, err);
    if (rc == 0)
        rc = setup_method(L, *ckpt_out, err);
    if (rc == 0) {
        L->opt = train_adamw_new(L->m, L->plan.beta1, L->plan.beta2, L->plan.eps,
                                 L->plan.weight_decay, err);
        rc = L->opt ? 0 : (err ? err->code : FJ_ERR_NOMEM);
    }
    if (rc == 0 && *ckpt_out)
        rc = train_checkpoint_load_optim(*ckpt_out, L->opt, err);
    if (rc == 0) {
        L->run = model_run_new(L->m, L->plan.micro_batch_rows, L->plan.seq_len, err);
        rc = L->run ? 0 : (err ? err->code : FJ_ERR_NOMEM);
    }
    float *data, *grad;
    size_t n_grad = L->m ? model_trainable_block(L->m, &data, &grad) : 0;
    if (rc == 0 && L->plan.batch_size > L->plan.micro_batch_rows &&
        !(L->acc = malloc(n_grad * sizeof *L->acc)))
        rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory for the gradient sum");
    L->n_train = L->train.n;
    if (rc == 0 && !(L->perm = malloc(L->n_train * sizeof *L->perm)))
        rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    if (rc == 0)
        rc = fj_mkdirs(cfg->out_dir, err);
    return rc;
}

static void restore_position(struct loop *L, json_t *state)
{
    L->pos.step = json_integer_value(json_object_get(state, "step"));
    L->pos.epoch = (int)json_integer_value(json_object_get(state, "epoch"));
    L->pos.cursor = json_integer_value(json_object_get(state, "cursor"));
    L->tokens_in = (uint64_t)json_integer_value(json_object_get(state, "tokens_in"));
    L->step_seconds = json_real_value(json_object_get(state, "step_seconds"));
}

static int epochs(struct loop *L, struct train_metrics *last, struct fj_err *err)
{
    const struct train_config *cfg = L->cfg;
    const struct train_plan *p = &L->plan;
    int rc = 0;
    for (; rc == 0 && L->pos.epoch < p->n_epochs; L->pos.epoch++, L->pos.cursor = 0) {
        shuffle(L, L->pos.epoch);
        for (; rc == 0 && L->pos.cursor < p->steps_per_epoch;) {
            if (cfg->stop && *cfg->stop)
                return fj_err_set(err, FJ_ERR_CANCELLED, "stopped at step %lld of %lld",
                                  (long long)L->pos.step, (long long)p->total_steps);
            size_t first = (size_t)L->pos.cursor * (size_t)p->batch_size;
            size_t n = L->n_train - first < (size_t)p->batch_size ? L->n_train - first
                                                                  : (size_t)p->batch_size;
            struct train_metrics mt = {0};
            rc = train_step(L, L->perm + first, n, &mt, err);
            L->pos.step++;
            L->pos.cursor++;
            bool epoch_end = L->pos.cursor == p->steps_per_epoch;
            if (rc == 0 && L->valid.n && L->pos.step % p->eval_interval == 0) {
                rc = evaluate_batch(L, L->pos.step, &mt.valid_loss, &mt.valid_mean_token_accuracy,
                                    err);
                mt.has_valid = true;
            }
            if (rc == 0 && L->valid.n && epoch_end) {
                rc = evaluate_all(L, &mt.full_valid_loss, &mt.full_valid_mean_token_accuracy, err);
                mt.has_full_valid = true;
            }
            if (rc == 0)
                rc =
                    csv_row(&L->csv, &mt) == 0 ? 0 : fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
            if (rc != 0)
                break;
            *last = mt;
            emit(L, (struct train_event){.kind = TRAIN_EVENT_STEP, .metrics = &mt});
            bool every = cfg->checkpoint_every > 0 && L->pos.step % cfg->checkpoint_every == 0;
            if ((cfg->checkpoints && epoch_end) || every) {
                /* the position a resume starts from: the next epoch when this one is done */
                struct train_position here = L->pos;
                if (epoch_end) {
                    L->pos.epoch++;
                    L->pos.cursor = 0;
                }
                rc = checkpoint(L, &mt, err);
                L->pos = here;
            }
        }
    }
    return rc;
}

static int finish(struct loop *L, const struct train_metrics *last, struct fj_err *err)
{
    const struct train_config *cfg = L->cfg;
    struct train_result *res = L->res;
    bool lora = L->plan.method == TRAIN_METHOD_LORA;
    snprintf(res->model_dir, sizeof res->model_dir, "%s/%s", cfg->out_dir,
             lora ? "adapter" : "model");
    int rc = train_save_model(L->m, lora, cfg->model_path, base_name(L), res->model_dir, err);
    if (rc == 0)
        rc = write_results(L, err);
    res->plan = L->plan;
    res->last = *last;
    res->steps_done = L->pos.step;
    res->trained_tokens = L->train.n_tokens * (uint64_t)L->plan.n_epochs;
    res->train_examples = L->train.n;
    res->valid_examples = L->valid.n;
    res->train_seconds = L->step_seconds;
    res->tokens_per_s = L->step_seconds > 0 ? (double)L->tokens_in / L->step_seconds : 0;
    json_t *summary = json_pack(
        "{s:s, s:s, s:o, s:I, s:I, s:I, s:I, s:f, s:f, s:o, s:s}", "base_model", base_name(L),
        "method", train_method_name(L->plan.method), "hyperparameters", train_plan_json(&L->plan),
        "steps", (json_int_t)res->steps_done, "trained_tokens", (json_int_t)res->trained_tokens,
        "train_examples", (json_int_t)res->train_examples, "valid_examples",
        (json_int_t)res->valid_examples, "tokens_per_s", res->tokens_per_s, "train_seconds",
        res->train_seconds, "final_metrics", metrics_json(last), "model_dir", res->model_dir);
    if (summary && !isnan(res->initial_full_valid_loss))
        json_object_update_new(summary, json_pack("{s:f, s:f}", "initial_full_valid_loss",
                                                  res->initial_full_valid_loss,
                                                  "initial_full_valid_mean_token_accuracy",
                                                  res->initial_full_valid_mean_token_accuracy));
    char *text = summary ? json_dumps(summary, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    char path[4400];
    snprintf(path, sizeof path, "%s/train.json", cfg->out_dir);
    if (rc == 0)
        rc = text ? fj_file_write_atomic(path, text, strlen(text), err)
                  : fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    free(text);
    json_decref(summary);
    if (rc == 0)
        emit(L,
             (struct train_event){.kind = TRAIN_EVENT_DONE, .metrics = last, .path = cfg->out_dir});
    return rc;
}

struct train_config train_config_default(void)
{
    struct train_config c = {0};
    c.checkpoints = true;
    c.keep_checkpoints = 3;
    c.memory_budget = (size_t)4 << 30;
    c.hp.lora_dropout = -1;
    c.hp.weight_decay = -1;
    c.hp.warmup_steps = -1;
    return c;
}

int train_run(const struct train_config *cfg, struct train_result *res, struct fj_err *err)
{
    struct loop L = {.cfg = cfg, .res = res};
    memset(res, 0, sizeof *res);
    res->initial_full_valid_loss = res->initial_full_valid_mean_token_accuracy = NAN;
    L.t0 = now();
    if (cfg->threads > 0)
        nn_set_threads(cfg->threads);
    const char *ckpt = NULL;
    json_t *state = NULL;
    int rc = prepare(&L, &ckpt, &state, err);
    struct train_metrics last = {0};
    if (rc == 0 && ckpt) {
        restore_position(&L, state);
        message(&L, TRAIN_INFO, "Resuming from %s (step %lld of %lld)", ckpt, (long long)L.pos.step,
                (long long)L.plan.total_steps);
    } else if (rc == 0) {
        rc = fj_buf_append(&L.csv, csv_header, sizeof csv_header - 1);
    }
    if (rc == 0)
        emit(&L, (struct train_event){.kind = TRAIN_EVENT_PLAN});
    if (rc == 0 && cfg->validate_only) {
        res->plan = L.plan;
        res->train_examples = L.train.n;
        res->valid_examples = L.valid.n;
        res->trained_tokens = L.train.n_tokens * (uint64_t)L.plan.n_epochs;
    } else if (rc == 0 && L.valid.n && !ckpt) {
        rc = evaluate_all(&L, &res->initial_full_valid_loss,
                          &res->initial_full_valid_mean_token_accuracy, err);
        if (rc == 0)
            message(&L, TRAIN_INFO, "Validation loss before training: %.5f (token accuracy %.5f)",
                    res->initial_full_valid_loss, res->initial_full_valid_mean_token_accuracy);
    }
    if (rc == 0 && !cfg->validate_only)
        rc = epochs(&L, &last, err);
    if (rc == 0 && !cfg->validate_only)
        rc = finish(&L, &last, err);
    else if (rc == FJ_ERR_CANCELLED)
        res->steps_done = L.pos.step;
    json_decref(state);
    train_adamw_free(L.opt);
    model_run_free(L.run);
    model_free(L.m);
    train_batch_free(&L.batch);
    train_dataset_free(&L.train);
    train_dataset_free(&L.valid);
    free(L.acc);
    free(L.perm);
    fj_buf_free(&L.csv);
    if (L.have_info)
        model_info_close(&L.info);
    return rc;
}
