/* bpe.c - tiktoken's byte-pair merge.
 *
 * A piece starts as one part per byte. While some adjacent pair of parts joins into bytes
 * that are a token, join the pair whose token has the lowest rank; among equal ranks (the
 * same bytes at several places) the leftmost. What is left are the piece's tokens.
 *
 * Short pieces (nearly all of them) use tiktoken's own quadratic scan over a small array on
 * the stack. Long pieces (a 1 MB "word", a long run of spaces) would make that scan take
 * hours, so they use a heap of candidate pairs keyed by (rank, position) over a linked list
 * of parts: the same choice at every step, found in O(log n). Both paths are checked against
 * npm tiktoken by tests/tok/parity.js.
 */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

int tok_sink_push(struct tok_sink *sink, uint32_t id)
{
    sink->count++;
    return sink->ids != NULL ? tok_ids_push(sink->ids, id) : 0;
}

static inline uint32_t span_rank(const struct tok_vocab *v, const uint8_t *p, size_t a, size_t b)
{
    return tok_vocab_lookup(v, p + a, b - a);
}

/* tiktoken's loop, without moving memory: part k (alive while k is reachable through next[])
 * covers bytes [k, next[k]); rank[k] is the rank of part k joined with its successor
 * (TOK_NO_ID if that is no token, or if k was absorbed). The scan for the lowest rank runs
 * over all n slots in byte order, so among equal ranks it still finds the leftmost pair. */
int tok_bpe_merge_small(const struct tok_vocab *v, const uint8_t *p, size_t n,
                        struct tok_sink *sink)
{
    uint32_t next[TOK_BPE_SMALL + 1], prev[TOK_BPE_SMALL], rank[TOK_BPE_SMALL], id[TOK_BPE_SMALL];
    if (n > TOK_BPE_SMALL)
        return FJ_ERR_RANGE;
    for (size_t k = 0; k < n; k++) {
        next[k] = (uint32_t)k + 1;
        prev[k] = (uint32_t)k - 1; /* wraps for k == 0; never read there */
        id[k] = v->byte_id[p[k]];
        rank[k] = k + 1 < n ? tok_vocab_pair(v, p + k) : TOK_NO_ID;
    }
    next[n] = (uint32_t)n;
    for (;;) {
        uint32_t best = TOK_NO_ID;
        size_t k = 0;
        for (size_t j = 0; j + 1 < n; j++) {
            if (rank[j] < best) {
                best = rank[j];
                k = j;
            }
        }
        if (best == TOK_NO_ID)
            break;
        /* Part k absorbs its successor; the pairs (prev, k) and (k, next) change. */
        uint32_t j = next[k], after = next[j];
        id[k] = best;
        rank[j] = TOK_NO_ID;
        next[k] = after;
        if (after < n)
            prev[after] = (uint32_t)k;
        rank[k] = after < n ? span_rank(v, p, k, next[after]) : TOK_NO_ID;
        if (k > 0)
            rank[prev[k]] = span_rank(v, p, prev[k], after);
    }
    for (size_t k = 0; k < n; k = next[k])
        if (tok_sink_push(sink, id[k]) != 0)
            return FJ_ERR_NOMEM;
    return 0;
}

/* Min-heap of (rank << 32 | part), parts numbered by their first byte. */
struct heap {
    uint64_t *a;
    size_t len, cap;
};

static int heap_push(struct heap *h, uint64_t key)
{
    if (h->len == h->cap) {
        size_t cap = h->cap * 2;
        uint64_t *a = realloc(h->a, cap * sizeof *a);
        if (a == NULL)
            return FJ_ERR_NOMEM;
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->len++;
    while (i > 0 && h->a[(i - 1) / 2] > key) {
        h->a[i] = h->a[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->a[i] = key;
    return 0;
}

static uint64_t heap_pop(struct heap *h)
{
    uint64_t top = h->a[0], last = h->a[--h->len];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->len)
            break;
        if (c + 1 < h->len && h->a[c + 1] < h->a[c])
            c++;
        if (h->a[c] >= last)
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->len > 0)
        h->a[i] = last;
    return top;
}

/* Parts are a linked list over byte positions: part k starts at byte k and ends where
 * next[k] starts (n for the last part). rank[k] is the rank of part k joined with its
 * successor; a heap entry is current only while it still equals rank[k] and k is alive. */
int tok_bpe_merge_large(const struct tok_vocab *v, const uint8_t *p, size_t n,
                        struct tok_sink *sink)
{
    uint32_t *next = malloc(n * sizeof *next);
    uint32_t *prev = malloc(n * sizeof *prev);
    uint32_t *rank = malloc(n * sizeof *rank);
    uint32_t *id = malloc(n * sizeof *id);
    struct heap h = {malloc(2 * n * sizeof(uint64_t)), 0, 2 * n};
    int rc = FJ_ERR_NOMEM;
    if (!next || !prev || !rank || !id || !h.a)
        goto out;
    for (size_t k = 0; k < n; k++) {
        next[k] = (uint32_t)(k + 1);
        prev[k] = (uint32_t)k - 1; /* wraps for k == 0; never read there */
        id[k] = v->byte_id[p[k]];
        rank[k] = k + 2 <= n ? tok_vocab_pair(v, p + k) : TOK_NO_ID;
        if (rank[k] != TOK_NO_ID && heap_push(&h, ((uint64_t)rank[k] << 32) | k) != 0)
            goto out;
    }
    while (h.len > 0) {
        uint64_t top = heap_pop(&h);
        uint32_t r = (uint32_t)(top >> 32), k = (uint32_t)top;
        if (rank[k] != r)
            continue;         /* stale: k was absorbed (rank TOK_NO_ID) or its pair changed */
        uint32_t j = next[k]; /* absorbed into k */
        uint32_t after = next[j];
        id[k] = r;
        rank[j] = TOK_NO_ID;
        next[k] = after;
        if (after < n)
            prev[after] = k;
        rank[k] = after < n ? span_rank(v, p, k, next[after]) : TOK_NO_ID;
        if (rank[k] != TOK_NO_ID && heap_push(&h, ((uint64_t)rank[k] << 32) | k) != 0)
            goto out;
        if (k > 0) {
            uint32_t pk = prev[k];
            rank[pk] = span_rank(v, p, pk, after);
            if (rank[pk] != TOK_NO_ID && heap_push(&h, ((uint64_t)rank[pk] << 32) | pk) != 0)
                goto out;
        }
    }
    rc = 0;
    for (size_t k = 0; k < n && rc == 0; k = next[k])
        rc = tok_sink_push(sink, id[k]);
out:
    free(next);
    free(prev);
    free(rank);
    free(id);
    free(h.a);
    return rc;
}

int tok_bpe_merge(const struct tok_vocab *v, const uint8_t *piece, size_t n, struct tok_sink *sink)
{
    if (n >= UINT32_MAX)
        return FJ_ERR_RANGE; /* positions are 32-bit; no caller makes a 4 GiB piece */
    if (n <= 256)
        return tok_bpe_merge_small(v, piece, n, sink);
    return tok_bpe_merge_large(v, piece, n, sink);
}
