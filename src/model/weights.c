/* weights.c - a model's weights from and to Hugging Face safetensors (model_load,
 * model_save), walking the parameter table of layout.c.
 *
 * Every tensor the table names must be in the files with exactly the HF shape the config
 * implies; GPT-2's Conv1D weights are transposed on the way in and out. Extra tensors
 * (GPT-2's attn.bias mask buffers, old rotary caches, a tied lm_head) are ignored.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "model/model_internal.h"

int model_write_json(const char *dir, const char *name, json_t *v, struct fj_err *err)
{
    char path[4400];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        json_decref(v);
        return fj_err_set(err, FJ_ERR_RANGE, "%s: path too long", dir);
    }
    char *text = v ? json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(v);
    if (!text)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    int rc = fj_file_write_atomic(path, text, strlen(text), err);
    free(text);
    return rc;
}

/* HF's original GPT-2 checkpoints name tensors without the "transformer." prefix. */
static const struct model_st_tensor *find_tensor(const struct model_st *st, const struct model *m,
                                                 const char *name)
{
    const struct model_st_tensor *t = model_st_find(st, name);
    const char *prefix = "transformer.";
    if (!t && m->cfg.arch == MODEL_ARCH_GPT2 && strncmp(name, prefix, strlen(prefix)) == 0)
        t = model_st_find(st, name + strlen(prefix));
    return t;
}

static void transpose(float *dst, const float *src, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            dst[c * rows + r] = src[r * cols + c];
}

/* Reads tensor t (HF shape of p) into p's storage. */
int model_param_read(struct model_param *p, const struct model_st_tensor *t, const char *where,
                     struct fj_err *err)
{
    bool same = t->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++)
        same = t->shape[d] == p->shape[d];
    if (!same) {
        char got[96] = "", want[96] = "";
        for (int d = 0; d < t->ndim && d < 4; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "",
                     (long long)t->shape[d]);
        for (int d = 0; d < p->ndim; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "",
                     (long long)p->shape[d]);
        return fj_err_set(err, FJ_ERR_FORMAT,
                          "%s: tensor %s has shape [%s], the config implies [%s]", where, p->name,
                          got, want);
    }
    if (t->dtype == MODEL_DTYPE_OTHER)
        return fj_err_set(err, FJ_ERR_FORMAT, "%s: tensor %s is %s; forja reads F32, F16 and BF16",
                          where, p->name, t->dtype_name);
    if (!p->transposed)
        return model_st_to_f32(t, p->data, err);
    float *tmp = malloc(p->numel * sizeof(float));
    if (!tmp)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory reading %s", p->name);
    int rc = model_st_to_f32(t, tmp, err);
    if (rc == 0)
        transpose(p->data, tmp, p->shape[0], p->shape[1]);
    free(tmp);
    return rc;
}

struct model *model_load(const char *dir, struct fj_err *err)
{
    struct model_config cfg;
    if (model_config_load(&cfg, dir, err) != 0)
        return NULL;
    struct model_st *st = model_st_open_dir(dir, err);
    if (!st)
        return NULL;
    struct model *m = model_new(&cfg, err);
    for (size_t i = 0; m && i < m->n_base_params; i++) {
        struct model_param *p = &m->params[i];
        const struct model_st_tensor *t = find_tensor(st, m, p->name);
        int rc = t ? model_param_read(p, t, dir, err)
                   : fj_err_set(err, FJ_ERR_FORMAT, "%s: tensor %s is missing from the weights",
                                dir, p->name);
        if (rc != 0) {
            model_free(m);
            m = NULL;
        }
    }
    model_st_close(st);
    return m;
}

/* Entries for the tensors of params[begin, end); transposed ones are copied into *owned
 * (freed by the caller). */
int model_params_entries(const struct model_param *params, size_t n, enum model_dtype dtype,
                         struct model_st_entry *entries, float **owned, struct fj_err *err)
{
    for (size_t i = 0; i < n; i++) {
        const struct model_param *p = &params[i];
        struct model_st_entry *e = &entries[i];
        memset(e, 0, sizeof *e);
        e->name = p->name;
        e->dtype = dtype;
        e->ndim = p->ndim;
        e->shape[0] = p->shape[0];
        e->shape[1] = p->shape[1];
        e->data = p->data;
        owned[i] = NULL;
        if (p->transposed) {
            owned[i] = malloc(p->numel * sizeof(float));
            if (!owned[i])
                return fj_err_set(err, FJ_ERR_NOMEM, "out of memory writing %s", p->name);
            /* held (out, in) = (shape[1], shape[0]); HF wants (shape[0], shape[1]) */
            transpose(owned[i], p->data, p->shape[1], p->shape[0]);
            e->data = owned[i];
        }
    }
    return 0;
}

int model_save(const struct model *m, const char *dir, enum model_dtype dtype, struct fj_err *err)
{
    if (dtype != MODEL_DTYPE_F32 && dtype != MODEL_DTYPE_BF16 && dtype != MODEL_DTYPE_F16)
        return fj_err_set(err, FJ_ERR_INVALID, "models are saved as F32, BF16 or F16");
    if (fj_mkdirs(dir, err) != 0)
        return err ? err->code : FJ_ERR_IO;
    struct model_config cfg = m->cfg;
    snprintf(cfg.torch_dtype, sizeof cfg.torch_dtype, "%s",
             dtype == MODEL_DTYPE_F32    ? "float32"
             : dtype == MODEL_DTYPE_BF16 ? "bfloat16"
                                         : "float16");
    struct fj_buf json = {0};
    char path[4096];
    int rc = model_config_to_json(&cfg, &json, err);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (rc == 0)
        rc = fj_file_write_atomic(path, json.data, json.len, err);
    fj_buf_free(&json);
    if (rc != 0)
        return rc;

    size_t n = m->n_base_params;
    struct model_st_entry *entries = calloc(n, sizeof *entries);
    float **owned = calloc(n, sizeof *owned);
    if (!entries || !owned)
        rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    if (rc == 0)
        rc = model_params_entries(m->params, n, dtype, entries, owned, err);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (rc == 0)
        rc = model_st_write(path, entries, n, NULL, err);
    for (size_t i = 0; owned && i < n; i++)
        free(owned[i]);
    free(owned);
    free(entries);
    return rc;
}
