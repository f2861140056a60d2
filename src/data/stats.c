/* stats.c - distributions of token counts, as the lab computes them with numpy.
 *
 * numpy's mean of integers is their float64 sum over n; the sum is exact below 2^53, so
 * summing as integers and dividing once gives the same double. np.median of an even count
 * is the mean of the two middle values, (a + b) / 2 in float64.
 */
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

static inline size_t slot_of(uint64_t v, size_t mask)
{
    v ^= v >> 33;
    v *= 0xff51afd7ed558ccdull;
    v ^= v >> 33;
    return (size_t)v & mask;
}

static int grow(struct data_hist *h)
{
    size_t cap = h->cap ? h->cap * 2 : 64;
    uint64_t *keys = calloc(cap, sizeof *keys), *counts = calloc(cap, sizeof *counts);
    if (keys == NULL || counts == NULL) {
        free(keys);
        free(counts);
        return FJ_ERR_NOMEM;
    }
    for (size_t i = 0; i < h->cap; i++) {
        if (h->counts[i] == 0)
            continue;
        size_t j = slot_of(h->keys[i], cap - 1);
        while (counts[j] != 0)
            j = (j + 1) & (cap - 1);
        keys[j] = h->keys[i];
        counts[j] = h->counts[i];
    }
    free(h->keys);
    free(h->counts);
    h->keys = keys;
    h->counts = counts;
    h->cap = cap;
    return 0;
}

int data_hist_add(struct data_hist *h, uint64_t value, uint64_t count)
{
    if (count == 0)
        return 0;
    if ((h->len + 1) * 2 > h->cap && grow(h) != 0)
        return FJ_ERR_NOMEM;
    size_t j = slot_of(value, h->cap - 1);
    while (h->counts[j] != 0 && h->keys[j] != value)
        j = (j + 1) & (h->cap - 1);
    if (h->counts[j] == 0) {
        h->keys[j] = value;
        h->len++;
    }
    h->counts[j] += count;
    return 0;
}

int data_hist_merge(struct data_hist *dst, const struct data_hist *src)
{
    for (size_t i = 0; i < src->cap; i++)
        if (src->counts[i] != 0 && data_hist_add(dst, src->keys[i], src->counts[i]) != 0)
            return FJ_ERR_NOMEM;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The value at 0-based rank k in sorted order; pairs is (value, count) sorted by value. */
static uint64_t value_at(const uint64_t *pairs, size_t npairs, uint64_t k)
{
    for (size_t i = 0; i < npairs; i++) {
        if (k < pairs[2 * i + 1])
            return pairs[2 * i];
        k -= pairs[2 * i + 1];
    }
    return 0; /* unreachable for k < n */
}

int data_hist_dist(const struct data_hist *h, struct data_dist *d)
{
    memset(d, 0, sizeof *d);
    if (h->len == 0)
        return 0;
    uint64_t *pairs = malloc(2 * h->len * sizeof *pairs);
    if (pairs == NULL)
        return FJ_ERR_NOMEM;
    size_t np = 0;
    for (size_t i = 0; i < h->cap; i++) {
        if (h->counts[i] == 0)
            continue;
        pairs[2 * np] = h->keys[i];
        pairs[2 * np + 1] = h->counts[i];
        np++;
    }
    qsort(pairs, np, 2 * sizeof *pairs, cmp_u64);
    unsigned __int128 sum = 0;
    for (size_t i = 0; i < np; i++) {
        d->n += pairs[2 * i + 1];
        sum += (unsigned __int128)pairs[2 * i] * pairs[2 * i + 1];
    }
    d->min = pairs[0];
    d->max = pairs[2 * (np - 1)];
    d->mean = (double)sum / (double)d->n;
    uint64_t lo = value_at(pairs, np, (d->n - 1) / 2), hi = value_at(pairs, np, d->n / 2);
    d->median = ((double)lo + (double)hi) / 2.0;
    free(pairs);
    return 0;
}

void data_hist_free(struct data_hist *h)
{
    if (h == NULL)
        return;
    free(h->keys);
    free(h->counts);
    memset(h, 0, sizeof *h);
}
