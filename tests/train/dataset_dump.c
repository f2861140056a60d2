/* dataset_dump.c - what the trainer's data pipeline makes of a fine-tuning file, for
 * tests/train/masking.mjs, which checks it against an independent ChatML + tiktoken
 * rendering.
 *
 *   dataset_dump MODEL_DIR FILE.jsonl [MAX_LEN]
 *
 * Opens MODEL_DIR (model_info_open) and reads FILE with train_dataset_load exactly as the
 * trainer does (MAX_LEN defaults to 2048, no minimum number of examples). Prints one JSON
 * line per example, {"line":N,"ids":[...],"mask":[...]}, in file order, then one line
 * {"problems":[{"line":N,"severity":"error"|"warning","message":M},...],"truncated":N}.
 * Exits 0 when the file could be read, 1 otherwise (the reason on stderr), 2 on bad usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "model/folder.h"
#include "train/train.h"

/* Prints j as one compact line and releases it. Returns 0, or -1 when j is NULL or cannot
 * be written. */
static int print_line(json_t *j)
{
    if (!j)
        return -1;
    int rc = json_dumpf(j, stdout, JSON_COMPACT);
    json_decref(j);
    if (rc != 0 || fputc('\n', stdout) == EOF)
        return -1;
    return 0;
}

static json_t *example_json(const struct train_dataset *ds, const struct train_example *ex)
{
    json_t *ids = json_array(), *mask = json_array();
    for (int32_t k = 0; ids && mask && k < ex->n; k++) {
        json_array_append_new(ids, json_integer(ds->ids[ex->off + (size_t)k]));
        json_array_append_new(mask, json_integer(ds->mask[ex->off + (size_t)k]));
    }
    return json_pack("{s:I,s:o,s:o}", "line", (json_int_t)ex->line, "ids", ids, "mask", mask);
}

static json_t *problems_json(const struct data_problems *probs, uint64_t truncated)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < probs->len; i++) {
        const struct data_problem *p = &probs->items[i];
        json_array_append_new(list,
                              json_pack("{s:I,s:s,s:s}", "line", (json_int_t)p->line, "severity",
                                        p->severity == DATA_ERROR ? "error" : "warning", "message",
                                        p->message));
    }
    return json_pack("{s:o,s:I}", "problems", list, "truncated", (json_int_t)truncated);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: dataset_dump MODEL_DIR FILE.jsonl [MAX_LEN]\n");
        return 2;
    }
    long max_len = 2048;
    if (argc == 4) {
        char *end = NULL;
        errno = 0;
        max_len = strtol(argv[3], &end, 10);
        if (errno != 0 || end == argv[3] || *end != '\0' || max_len < 1 || max_len > 1 << 24) {
            fprintf(stderr, "dataset_dump: MAX_LEN must be a number from 1 to %d\n", 1 << 24);
            return 2;
        }
    }

    struct fj_err err = {0};
    struct model_info info = {0};
    if (model_info_open(&info, argv[1], &err) != 0) {
        fprintf(stderr, "dataset_dump: %s\n", err.msg);
        return 1;
    }
    struct train_dataset ds = {0};
    struct data_problems probs = {.limit = 1000};
    int rc = train_dataset_load(&ds, argv[2], &info, (int)max_len, 0, &probs, &err);
    if (rc != 0) {
        fprintf(stderr, "dataset_dump: %s: %s\n", argv[2], err.msg);
    } else {
        for (size_t i = 0; rc == 0 && i < ds.n; i++)
            rc = print_line(example_json(&ds, &ds.ex[i]));
        if (rc == 0)
            rc = print_line(problems_json(&probs, ds.n_truncated));
        if (rc != 0)
            fprintf(stderr, "dataset_dump: cannot write the output\n");
    }
    data_problems_free(&probs);
    train_dataset_free(&ds);
    model_info_close(&info);
    return rc == 0 && fflush(stdout) == 0 ? 0 : 1;
}
