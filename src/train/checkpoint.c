/* checkpoint.c - saving trained models and checkpoints, and reading checkpoints back.
 *
 * Rules:
 *   1. A checkpoint folder is complete or absent: it is built as root/.tmp-ckpt-step-N, every
 *      file written atomically (fsynced), then renamed to root/ckpt-step-N and root fsynced.
 *      A kill at any moment leaves the old checkpoints and perhaps a .tmp- folder, which
 *      the next write removes and no reader takes.
 *   2. Old checkpoints are removed only after the new one is in place, newest `keep` kept;
 *      a folder being removed is first renamed to .del-..., so no half-removed checkpoint
 *      keeps a valid name.
 *   3. state.json carries a format name and version; a reader refuses any other.
 * Layout: docs/training.md.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "model/safetensors.h"
#include "train/train_internal.h"

/* Files of a model folder other than config and weights, copied when present. */
static const char *const tokenizer_files[] = {"tokenizer.json",         "tokenizer_config.json",
                                              "generation_config.json", "special_tokens_map.json",
                                              "chat_template.jinja",    NULL};

int train_save_model(struct model *m, bool lora, const char *base_dir, const char *base_name,
                     const char *dir, struct fj_err *err)
{
    int rc =
        lora ? model_lora_save(m, dir, base_name, err) : model_save(m, dir, MODEL_DTYPE_F32, err);
    char src[4400], dst[4400];
    for (int i = 0; rc == 0 && tokenizer_files[i]; i++) {
        snprintf(src, sizeof src, "%s/%s", base_dir, tokenizer_files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, tokenizer_files[i]);
        if (fj_file_exists(src))
            rc = fj_file_copy(src, dst, (size_t)1 << 30, err);
    }
    return rc;
}

static int write_optim(const char *path, struct train_adamw *opt, struct fj_err *err)
{
    float *m, *v;
    int64_t *t;
    size_t n = train_adamw_state(opt, &m, &v, &t);
    struct model_st_entry e[2] = {
        {.name = "exp_avg", .dtype = MODEL_DTYPE_F32, .ndim = 1, .shape = {(int64_t)n}, .data = m},
        {.name = "exp_avg_sq",
         .dtype = MODEL_DTYPE_F32,
         .ndim = 1,
         .shape = {(int64_t)n},
         .data = v},
    };
    char step[32];
    snprintf(step, sizeof step, "%lld", (long long)*t);
    json_t *meta = json_pack("{s:s, s:s}", "format", "forja-adamw", "step", step);
    if (!meta)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    int rc = model_st_write(path, e, 2, meta, err);
    json_decref(meta);
    return rc;
}

/* The step number of a folder name "ckpt-step-N", or -1. */
static long long ckpt_step(const char *name)
{
    if (strncmp(name, "ckpt-step-", 10) != 0)
        return -1;
    char *end;
    long long s = strtoll(name + 10, &end, 10);
    return *end == '\0' && end != name + 10 && s >= 0 ? s : -1;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* Steps of root's checkpoints, sorted ascending, into a malloc'ed array; *n their count. */
static long long *list_checkpoints(const char *root, size_t *n)
{
    DIR *d = opendir(root);
    long long *steps = NULL;
    size_t cap = 0;
    *n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        long long s = ckpt_step(e->d_name);
        if (s < 0)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            long long *p = realloc(steps, cap * sizeof *p);
            if (!p)
                break;
            steps = p;
        }
        steps[(*n)++] = s;
    }
    if (d)
        closedir(d);
    if (*n)
        qsort(steps, *n, sizeof *steps, cmp_ll);
    return steps;
}

/* A checkpoint goes by renaming first, so that a kill halfway leaves no half checkpoint. */
static int remove_checkpoint(const char *root, long long step, struct fj_err *err)
{
    char path[4400], del[4400];
    snprintf(path, sizeof path, "%s/ckpt-step-%lld", root, step);
    snprintf(del, sizeof del, "%s/.del-ckpt-step-%lld", root, step);
    if (rename(path, del) != 0)
        return fj_err_set(err, FJ_ERR_IO, "cannot remove checkpoint %s", path);
    return fj_remove_tree(del, err);
}

static int rotate(const char *root, int keep, struct fj_err *err)
{
    size_t n;
    long long *steps = list_checkpoints(root, &n);
    int rc = 0;
    for (size_t i = 0; rc == 0 && keep > 0 && i + (size_t)keep < n; i++)
        rc = remove_checkpoint(root, steps[i], err);
    free(steps);
    return rc;
}

long long train_checkpoint_newest(const char *out_dir)
{
    char root[4400];
    snprintf(root, sizeof root, "%s/checkpoints", out_dir);
    size_t n;
    long long *steps = list_checkpoints(root, &n);
    long long newest = n ? steps[n - 1] : 0;
    free(steps);
    return newest;
}

int train_checkpoint_drop_after(const char *out_dir, long long step, struct fj_err *err)
{
    char root[4400];
    snprintf(root, sizeof root, "%s/checkpoints", out_dir);
    size_t n;
    long long *steps = list_checkpoints(root, &n);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (steps[i] > step)
            rc = remove_checkpoint(root, steps[i], err);
    free(steps);
    return rc;
}

int train_checkpoint_write(const char *root, struct model *m, bool lora, const char *base_dir,
                           const char *base_name, struct train_adamw *opt,
                           const struct train_position *pos, json_t *state,
                           const struct fj_buf *results, int keep, char *out, size_t cap,
                           struct fj_err *err)
{
    char tmp[4400], path[4600], final[4400];
    snprintf(tmp, sizeof tmp, "%s/.tmp-ckpt-step-%lld", root, (long long)pos->step);
    snprintf(final, sizeof final, "%s/ckpt-step-%lld", root, (long long)pos->step);
    int rc = fj_mkdirs(root, err);
    if (rc == 0)
        rc = fj_remove_tree(tmp, err);
    if (rc == 0)
        rc = fj_mkdirs(tmp, err);
    snprintf(path, sizeof path, "%s/%s", tmp, lora ? "adapter" : "model");
    if (rc == 0)
        rc = train_save_model(m, lora, base_dir, base_name, path, err);
    snprintf(path, sizeof path, "%s/optimizer.safetensors", tmp);
    if (rc == 0)
        rc = write_optim(path, opt, err);
    snprintf(path, sizeof path, "%s/results.csv", tmp);
    if (rc == 0)
        rc = fj_file_write_atomic(path, results->data ? results->data : "", results->len, err);
    char *text = rc == 0 ? json_dumps(state, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    snprintf(path, sizeof path, "%s/state.json", tmp);
    if (rc == 0)
        rc = text ? fj_file_write_atomic(path, text, strlen(text), err)
                  : fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    free(text);
    /* a checkpoint of the same step from an interrupted earlier run is replaced */
    if (rc == 0 && fj_file_exists(final)) {
        snprintf(path, sizeof path, "%s/.del-ckpt-step-%lld", root, (long long)pos->step);
        rc = rename(final, path) == 0 ? fj_remove_tree(path, err)
                                      : fj_err_set(err, FJ_ERR_IO, "cannot replace %s", final);
    }
    if (rc == 0 && rename(tmp, final) != 0)
        rc = fj_err_set(err, FJ_ERR_IO, "cannot rename %s to %s", tmp, final);
    if (rc == 0)
        rc = fj_file_sync_dir(final, err);
    if (rc != 0) {
        fj_remove_tree(tmp, NULL);
        return rc;
    }
    snprintf(out, cap, "%s", final);
    return rotate(root, keep, err);
}

int train_checkpoint_find(const char *path, char *out, size_t cap, struct fj_err *err)
{
    char p[4400];
    snprintf(p, sizeof p, "%s/state.json", path);
    if (fj_file_exists(p)) {
        snprintf(out, cap, "%s", path);
        return 0;
    }
    snprintf(p, sizeof p, "%s/checkpoints", path);
    size_t n;
    long long *steps = list_checkpoints(p, &n);
    if (n == 0) {
        free(steps);
        return fj_err_set(err, FJ_ERR_NOT_FOUND, "%s holds no checkpoint to resume from", path);
    }
    snprintf(out, cap, "%s/ckpt-step-%lld", p, steps[n - 1]);
    free(steps);
    return 0;
}

int train_checkpoint_read(const char *ckpt, json_t **state, struct fj_buf *results,
                          struct fj_err *err)
{
    char path[4400];
    struct fj_buf text = {0};
    snprintf(path, sizeof path, "%s/state.json", ckpt);
    int rc = fj_file_read(path, 16u << 20, &text, err);
    json_error_t jerr;
    json_t *s = rc == 0 ? json_loadb(text.data, text.len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    fj_buf_free(&text);
    if (rc != 0)
        return rc;
    const char *format = json_string_value(json_object_get(s, "format"));
    if (!json_is_object(s) || !format || strcmp(format, TRAIN_CKPT_FORMAT) != 0 ||
        json_integer_value(json_object_get(s, "version")) != TRAIN_CKPT_VERSION) {
        json_decref(s);
        return fj_err_set(err, FJ_ERR_FORMAT, "%s is not a forja checkpoint state (version %d)",
                          path, TRAIN_CKPT_VERSION);
    }
    snprintf(path, sizeof path, "%s/results.csv", ckpt);
    rc = fj_file_read(path, 1u << 30, results, err);
    if (rc != 0) {
        json_decref(s);
        return rc;
    }
    *state = s;
    return 0;
}

int train_checkpoint_load_optim(const char *ckpt, struct train_adamw *opt, struct fj_err *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/optimizer.safetensors", ckpt);
    struct model_st *st = model_st_open_file(path, err);
    if (!st)
        return err ? err->code : FJ_ERR_IO;
    float *m, *v;
    int64_t *t;
    size_t n = train_adamw_state(opt, &m, &v, &t);
    const struct model_st_tensor *tm = model_st_find(st, "exp_avg");
    const struct model_st_tensor *tv = model_st_find(st, "exp_avg_sq");
    const json_t *meta = model_st_metadata(st, 0);
    const char *step = json_string_value(json_object_get(meta, "step"));
    int rc = 0;
    if (!tm || !tv || !step || tm->numel != (int64_t)n || tv->numel != (int64_t)n ||
        tm->dtype != MODEL_DTYPE_F32 || tv->dtype != MODEL_DTYPE_F32)
        rc =
            fj_err_set(err, FJ_ERR_FORMAT,
                       "%s: expected F32 exp_avg and exp_avg_sq of %zu values and a step", path, n);
    if (rc == 0)
        rc = model_st_to_f32(tm, m, err);
    if (rc == 0)
        rc = model_st_to_f32(tv, v, err);
    if (rc == 0)
        *t = strtoll(step, NULL, 10);
    model_st_close(st);
    return rc;
}

json_t *train_plan_json(const struct train_plan *p)
{
    json_t *o =
        json_pack("{s:i, s:i, s:f, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I, "
                  "s:i, s:i, s:i, s:i, s:b, s:I}",
                  "n_epochs", p->n_epochs, "batch_size", p->batch_size, "learning_rate_multiplier",
                  p->lr_multiplier, "method", train_method_name(p->method), "learning_rate",
                  p->learning_rate, "base_learning_rate", p->base_learning_rate, "weight_decay",
                  p->weight_decay, "max_grad_norm", p->max_grad_norm, "beta1", p->beta1, "beta2",
                  p->beta2, "eps", p->eps, "steps_per_epoch", (json_int_t)p->steps_per_epoch,
                  "total_steps", (json_int_t)p->total_steps, "warmup_steps", p->warmup_steps,
                  "eval_interval", p->eval_interval, "seq_len", p->seq_len, "micro_batch_rows",
                  p->micro_batch_rows, "packing", p->packing, "seed", (json_int_t)p->seed);
    if (o && p->method == TRAIN_METHOD_LORA)
        json_object_update_new(o, json_pack("{s:i, s:f, s:f, s:s}", "lora_rank", p->lora_rank,
                                            "lora_alpha", p->lora_alpha, "lora_dropout",
                                            p->lora_dropout, "lora_target_modules",
                                            p->lora_target_names));
    return o;
}
