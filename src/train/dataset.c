/* dataset.c - a fine-tuning file as the trainer sees it: token ids and loss masks.
 *
 * Each line is first checked by data_check_line, the validator `forja tokens` uses (one
 * implementation of the rules), then rendered:
 *   - chat ({"messages": [...]}): the model's chat template and tokenizer, mask 1 on the
 *     assistant turns with weight 1 including the end-of-turn text the template puts after
 *     them, so the model learns to stop (model_info_render_training; the span rule renders
 *     prefixes and compares them, it never searches the text);
 *   - prompt/completion ({"prompt", "completion"}): the prompt's tokens (mask 0), then the
 *     completion's and the model's eos token (mask 1), no template;
 *   - preference ({"input", "preferred_output", "non_preferred_output"}): validated, but
 *     supervised training cannot use it (DPO comes later): an error naming the line.
 * Examples longer than the context are cut to it, each with a warning.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "train/train.h"

#define MAX_LINE (64u << 20)

static int grow_ids(struct train_dataset *ds, size_t extra, struct fj_err *err)
{
    if (ds->n_ids + extra <= ds->cap_ids)
        return 0;
    size_t cap = ds->cap_ids ? ds->cap_ids : 4096;
    while (cap < ds->n_ids + extra)
        cap *= 2;
    int32_t *ids = realloc(ds->ids, cap * sizeof *ids);
    if (ids)
        ds->ids = ids;
    uint8_t *mask = ids ? realloc(ds->mask, cap) : NULL;
    if (mask)
        ds->mask = mask;
    if (!ids || !mask)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    ds->cap_ids = cap;
    return 0;
}

static int add_example(struct train_dataset *ds, uint64_t line, const struct chat_tokens *t,
                       int max_len, struct data_problems *probs, struct fj_err *err)
{
    if (ds->n == ds->cap) {
        size_t cap = ds->cap ? 2 * ds->cap : 64;
        struct train_example *ex = realloc(ds->ex, cap * sizeof *ex);
        if (!ex)
            return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        ds->ex = ex;
        ds->cap = cap;
    }
    size_t n = t->ids.len;
    if (n > (size_t)max_len + 1) {
        if (data_problems_add(probs, line, 0, DATA_WARNING,
                              "%zu tokens, more than a context of %d positions holds: truncated "
                              "to the first %d",
                              n, max_len, max_len + 1) != 0)
            return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        n = (size_t)max_len + 1;
        ds->n_truncated++;
    }
    if (grow_ids(ds, n, err) != 0)
        return FJ_ERR_NOMEM;
    struct train_example *e = &ds->ex[ds->n++];
    *e = (struct train_example){.line = line, .n = (int32_t)n, .off = ds->n_ids};
    for (size_t i = 0; i < n; i++) {
        ds->ids[ds->n_ids + i] = (int32_t)t->ids.data[i];
        ds->mask[ds->n_ids + i] = t->mask[i];
        e->counted += i > 0 && t->mask[i];
    }
    ds->n_ids += n;
    ds->n_tokens += n;
    if ((int32_t)n > ds->longest)
        ds->longest = (int32_t)n;
    if (e->counted == 0 &&
        data_problems_add(probs, line, 0, DATA_WARNING,
                          "no token counts in the loss (after truncation): nothing to learn") != 0)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    return 0;
}

/* Gives every id of t a mask byte, the new ones (from `before` on) set to m. */
static int set_mask(struct chat_tokens *t, size_t before, uint8_t m, struct fj_err *err)
{
    if (t->ids.len > t->mask_cap) {
        uint8_t *mask = realloc(t->mask, t->ids.len);
        if (!mask)
            return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        t->mask = mask;
        t->mask_cap = t->ids.len;
    }
    if (t->ids.len > before) /* an empty prompt adds nothing, and mask may still be NULL */
        memset(t->mask + before, m, t->ids.len - before);
    return 0;
}

/* Appends the tokens of string s with mask value m. */
static int encode_part(const struct model_info *info, const json_t *s, uint8_t m,
                       struct chat_tokens *t, struct fj_err *err)
{
    size_t before = t->ids.len;
    int rc = tok_encode(info->enc, json_string_value(s), json_string_length(s), TOK_SPECIAL_ALLOW,
                        &t->ids, err);
    return rc == 0 ? set_mask(t, before, m, err) : rc;
}

/* prompt (mask 0) + completion (mask 1) + eos (mask 1, when the model has one). */
static int render_completion(const struct model_info *info, const json_t *root,
                             struct chat_tokens *t, struct fj_err *err)
{
    int rc = encode_part(info, json_object_get(root, "prompt"), 0, t, err);
    if (rc == 0)
        rc = encode_part(info, json_object_get(root, "completion"), 1, t, err);
    if (rc == 0 && info->n_stop > 0) {
        const char *eos = info->eos_token;
        int64_t id = eos ? tok_token_id(info->enc, eos, strlen(eos)) : -1;
        size_t before = t->ids.len;
        rc = tok_ids_push(&t->ids, id >= 0 ? (uint32_t)id : info->stop_ids[0]);
        rc = rc == 0 ? set_mask(t, before, 1, err) : fj_err_set(err, rc, "out of memory");
    }
    return rc;
}

/* Renders one valid line; a problem of the data goes to probs, a failure is returned. */
static int render_line(struct train_dataset *ds, const char *text, size_t len, uint64_t line,
                       enum data_format format, const struct model_info *info, int max_len,
                       struct data_problems *probs, struct fj_err *err)
{
    json_t *root = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!root)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    struct chat_tokens t = {0};
    struct fj_err e = {0};
    int rc = 0;
    const char *problem = NULL;
    switch (format) {
    case DATA_FORMAT_CHAT:
        rc = model_info_render_training(info, json_object_get(root, "messages"), NULL, &t, &e);
        break;
    case DATA_FORMAT_COMPLETION: rc = render_completion(info, root, &t, &e); break;
    case DATA_FORMAT_PREFERENCE:
        problem = "preference (DPO) examples are not trained by supervised fine-tuning yet";
        break;
    }
    if (rc == FJ_ERR_NOMEM || rc == FJ_ERR_IO) {
        fj_err_set(err, rc, "%s", e.msg);
    } else if (rc != 0 || problem) {
        rc = data_problems_add(probs, line, 0, DATA_ERROR, "%s", problem ? problem : e.msg);
        if (rc != 0)
            fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    } else if (t.ids.len < 2) {
        rc = data_problems_add(probs, line, 0, DATA_WARNING, "fewer than 2 tokens (skipped)");
    } else {
        rc = add_example(ds, line, &t, max_len, probs, err);
    }
    chat_tokens_free(&t);
    json_decref(root);
    return rc;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

int train_dataset_load(struct train_dataset *ds, const char *path, const struct model_info *info,
                       int max_len, size_t min_examples, struct data_problems *probs,
                       struct fj_err *err)
{
    struct data_reader *r = data_reader_open(path, MAX_LINE, err);
    if (!r)
        return err ? err->code : FJ_ERR_IO;
    struct data_check_opts opts = {.enc = info->enc, .special = TOK_SPECIAL_ALLOW, .context = 0};
    struct data_block blk = {0};
    struct data_format_rule rule = {0};
    uint64_t lines = 0;
    int rc;
    ds->fingerprint = 0xcbf29ce484222325ull;
    while ((rc = data_reader_next(r, &blk, 1u << 20, err)) == 1) {
        for (size_t k = 0; k < blk.n_lines && rc == 1; k++) {
            const struct data_line *l = &blk.lines[k];
            lines++;
            if (l->flags & DATA_LINE_TOO_LONG) {
                if (data_problems_add(probs, l->number, 0, DATA_ERROR,
                                      "line is %zu bytes, longer than the limit of %u bytes",
                                      l->len, MAX_LINE) != 0)
                    rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
                continue;
            }
            const char *text = blk.buf + l->off;
            ds->fingerprint = fnv1a(fnv1a(ds->fingerprint, text, l->len), "\n", 1);
            struct data_line_result res;
            uint64_t errors = probs->errors;
            if (data_check_line(text, l->len, l->number, &opts, &res, probs, err) != 0 ||
                (res.recognised && data_format_rule_check(&rule, l->number, res.format, probs) < 0))
                rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
            else if (probs->errors == errors && res.counted &&
                     render_line(ds, text, l->len, l->number, res.format, info, max_len, probs,
                                 err) != 0)
                rc = err ? err->code : FJ_ERR_NOMEM;
        }
    }
    data_block_free(&blk);
    data_reader_close(r);
    if (rc < 0)
        return rc;
    if (lines == 0)
        rc = data_problems_add(probs, 0, 0, DATA_ERROR, "the file is empty");
    else if (ds->n < min_examples)
        rc = data_problems_add(probs, 0, 0, DATA_ERROR,
                               "%zu valid examples; a training file needs at least %zu", ds->n,
                               min_examples);
    return rc == 0 ? 0 : fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
}

void train_dataset_free(struct train_dataset *ds)
{
    if (!ds)
        return;
    free(ds->ex);
    free(ds->ids);
    free(ds->mask);
    memset(ds, 0, sizeof *ds);
}
