/* pack.c - a step's examples laid out as rows of T positions for model_forward.
 *
 * An example of n tokens takes n - 1 positions: token i predicts token i + 1, and counts in
 * the loss when token i + 1 has mask 1. Packed, examples go in order into the first row
 * with room for them; their positions restart at 0, which is also where their attention
 * starts (model_forward's pos), so each gets the logits it would get alone and the step's
 * loss - the mean over all counted tokens - is the one unpacked rows would give. The rest of
 * a row is padding: mask 0, its own positions, seen by nothing before it.
 */
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

static int reserve_rows(struct train_batch *b, int rows, int T, struct fj_err *err)
{
    if (rows <= b->cap_rows && T == b->T)
        return 0;
    size_t n = (size_t)rows * T;
    int32_t *ints = realloc(b->tokens, 3 * n * sizeof *ints);
    if (!ints)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    float *mask = realloc(b->mask, n * sizeof *mask);
    b->tokens = ints;
    if (!mask)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    b->mask = mask;
    b->cap_rows = rows;
    b->T = T;
    return 0;
}

int train_batch_fill(struct train_batch *b, const struct train_dataset *ds, const size_t *idx,
                     size_t n, int T, bool pack, struct fj_err *err)
{
    /* rows needed, and where each example goes: row[i] and its first column col[i] */
    int *row = malloc((n ? n : 1) * sizeof *row), *col = malloc((n ? n : 1) * sizeof *col);
    int *fill = calloc(n ? n : 1, sizeof *fill);
    int rows = 0, rc = 0;
    if (!row || !col || !fill)
        rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int need = ds->ex[idx[i]].n - 1;
        if (need > T) {
            rc = fj_err_set(err, FJ_ERR_RANGE, "example of line %llu takes %d positions, > %d",
                            (unsigned long long)ds->ex[idx[i]].line, need, T);
            break;
        }
        int r = 0;
        while (pack && r < rows && fill[r] + need > T)
            r++;
        if (!pack || r == rows)
            r = rows++;
        row[i] = r;
        col[i] = fill[r];
        fill[r] += need;
    }
    if (rc == 0)
        rc = reserve_rows(b, rows > 0 ? rows : 1, T, err);
    if (rc == 0) {
        size_t N = (size_t)rows * T;
        b->rows = rows;
        b->targets = b->tokens + (size_t)b->cap_rows * T;
        b->pos = b->targets + (size_t)b->cap_rows * T;
        memset(b->tokens, 0, N * sizeof *b->tokens);
        memset(b->targets, 0, N * sizeof *b->targets);
        memset(b->mask, 0, N * sizeof *b->mask);
        b->counted = b->tokens_in = 0;
        for (int r = 0; r < rows; r++) /* padding: a segment of its own */
            for (int t = fill[r]; t < T; t++)
                b->pos[(size_t)r * T + t] = t - fill[r];
        for (size_t i = 0; i < n; i++) {
            const struct train_example *e = &ds->ex[idx[i]];
            const int32_t *ids = ds->ids + e->off;
            const uint8_t *m = ds->mask + e->off;
            size_t base = (size_t)row[i] * T + (size_t)col[i];
            for (int t = 0; t < e->n - 1; t++) {
                b->tokens[base + t] = ids[t];
                b->targets[base + t] = ids[t + 1];
                b->mask[base + t] = m[t + 1];
                b->pos[base + t] = t;
            }
            b->counted += e->counted;
            b->tokens_in += e->n;
        }
    }
    free(row);
    free(col);
    free(fill);
    return rc;
}

void train_batch_free(struct train_batch *b)
{
    if (!b)
        return;
    free(b->tokens);
    free(b->mask);
    memset(b, 0, sizeof *b);
}
