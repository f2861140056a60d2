/* st_tool.c - forja's safetensors reader and writer, driven by st_cross.py and
 * config_cross.py.
 *
 *   st_tool dump PATH            file or model folder -> JSON on stdout: files, metadata and
 *                                every tensor with its raw bytes and (F32/F16/BF16) its fp32
 *                                values, both as hex
 *   st_tool convert IN OUT DTYPE every tensor of IN, through fp32, written to OUT as
 *                                F32, F16 or BF16, in IN's order, with IN's metadata
 *   st_tool config DIR           DIR's config -> {"n_params": N, "config": model_config_to_json}
 *
 * Errors go to stderr with exit status 2, so scripts can check refusals and messages.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/config.h"
#include "model/safetensors.h"

static char *hex(const void *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *b = p;
    char *s = malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = digits[b[i] >> 4];
        s[2 * i + 1] = digits[b[i] & 15];
    }
    s[2 * n] = '\0';
    return s;
}

static struct model_st *open_any(const char *path, struct fj_err *err)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return model_st_open_dir(path, err);
    return model_st_open_file(path, err);
}

static int fail(const struct fj_err *err)
{
    fprintf(stderr, "%s: %s\n", fj_code_name(err->code), err->msg);
    return 2;
}

static int dump(const char *path)
{
    struct fj_err err = {0};
    struct model_st *st = open_any(path, &err);
    if (st == NULL)
        return fail(&err);
    json_t *out = json_object(), *files = json_array(), *tensors = json_array();
    json_object_set_new(out, "files", files);
    json_object_set_new(out, "tensors", tensors);
    for (int i = 0; i < model_st_n_files(st); i++) {
        const json_t *m = model_st_metadata(st, i);
        json_array_append_new(files, json_pack("{s:s,s:O?}", "path", model_st_file_path(st, i),
                                               "metadata", (json_t *)m));
    }
    for (size_t i = 0; i < model_st_count(st); i++) {
        const struct model_st_tensor *t = model_st_at(st, i);
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++)
            json_array_append_new(shape, json_integer(t->shape[d]));
        char *raw = hex(t->data, t->nbytes);
        json_t *f32 = json_null();
        if (t->dtype != MODEL_DTYPE_OTHER) {
            float *v = malloc((size_t)t->numel * sizeof *v + 1);
            if (model_st_to_f32(t, v, &err) != 0)
                return fail(&err);
            char *h = hex(v, (size_t)t->numel * sizeof *v);
            f32 = json_string(h);
            free(h);
            free(v);
        }
        if (model_st_find(st, t->name) != t) {
            fprintf(stderr, "model_st_find(\"%s\") is not model_st_at(%zu)\n", t->name, i);
            return 1;
        }
        json_array_append_new(tensors, json_pack("{s:s,s:s,s:o,s:I,s:i,s:s,s:o}", "name", t->name,
                                                 "dtype", t->dtype_name, "shape", shape, "numel",
                                                 (json_int_t)t->numel, "file", t->file, "raw", raw,
                                                 "f32", f32));
        free(raw);
    }
    json_dumpf(out, stdout, JSON_COMPACT);
    putchar('\n');
    json_decref(out);
    model_st_close(st);
    return 0;
}

static int convert(const char *in, const char *out, const char *dtype)
{
    enum model_dtype d = strcmp(dtype, "F32") == 0    ? MODEL_DTYPE_F32
                         : strcmp(dtype, "F16") == 0  ? MODEL_DTYPE_F16
                         : strcmp(dtype, "BF16") == 0 ? MODEL_DTYPE_BF16
                                                      : MODEL_DTYPE_OTHER;
    struct fj_err err = {0};
    struct model_st *st = model_st_open_file(in, &err);
    if (st == NULL)
        return fail(&err);
    size_t n = model_st_count(st);
    struct model_st_entry *e = calloc(n + 1, sizeof *e);
    for (size_t i = 0; i < n; i++) {
        const struct model_st_tensor *t = model_st_at(st, i);
        float *v = malloc((size_t)t->numel * sizeof *v + 1);
        if (model_st_to_f32(t, v, &err) != 0)
            return fail(&err);
        e[i].name = t->name;
        e[i].dtype = d;
        e[i].ndim = t->ndim;
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
        e[i].data = v;
    }
    int rc = model_st_write(out, e, n, model_st_metadata(st, 0), &err);
    for (size_t i = 0; i < n; i++)
        free((void *)e[i].data);
    free(e);
    model_st_close(st);
    return rc != 0 ? fail(&err) : 0;
}

static int config(const char *dir)
{
    struct model_config c;
    struct fj_err err = {0};
    struct fj_buf b = {0};
    if (model_config_load(&c, dir, &err) != 0 || model_config_to_json(&c, &b, &err) != 0)
        return fail(&err);
    printf("{\"n_params\": %lld, \"n_ctx\": %d, \"config\": %s}\n",
           (long long)model_config_n_params(&c), c.n_ctx, b.data);
    fj_buf_free(&b);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "dump") == 0)
        return dump(argv[2]);
    if (argc == 5 && strcmp(argv[1], "convert") == 0)
        return convert(argv[2], argv[3], argv[4]);
    if (argc == 3 && strcmp(argv[1], "config") == 0)
        return config(argv[2]);
    fprintf(stderr, "usage: st_tool dump PATH | convert IN OUT F32|F16|BF16 | config DIR\n");
    return 2;
}
