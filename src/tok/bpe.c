/* bpe.c - the byte-pair merge, by tiktoken's ranks or by a tokenizer.json's merges.
 *
 * A piece starts as one part per byte. While some adjacent pair of parts has a rank, join the
 * pair of lowest rank; among equal ranks (the same pair at several places) the leftmost. What
 * is left are the piece's tokens. In tiktoken's encodings a pair's rank is the id of its
 * joined bytes (if they are a token at all); in a tokenizer.json it is the position of the
 * pair (left id, right id) in the "merges" list, and the merge names the token it makes
 * (struct tok_merges). Both rules run through the same loops: the rank lookup is the only
 * difference, and the loops are compiled once per rule.
 *
 * Short pieces (nearly all of them) use tiktoken's own quadratic scan over a small array on
 * the stack. Long pieces (a 1 MB "word", a long run of spaces) would make that scan take
 * hours, so they use a heap of candidate pairs keyed by (rank, position) over a linked list
 * of parts: the same choice at every step, found in O(log n). Both paths are checked against
 * npm tiktoken by tests/tok/parity.js.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

int tok_sink_push(struct tok_sink *sink, uint32_t id)
{
    sink->count++;
    return sink->ids != NULL ? tok_ids_push(sink->ids, id) : 0;
}

/* The rank of joining parts [a, b) and [b, c) of piece p whose ids are ia and ib, and in
 * *merged the id of the joined part. With m NULL (tiktoken) the rank is the id of the joined
 * bytes, and *merged is left alone; the functions below are instantiated once with m a constant
 * NULL, so tiktoken's loops carry no trace of the tokenizer.json case. */
static inline __attribute__((always_inline)) uint32_t
pair_rank(const struct tok_vocab *v, const struct tok_merges *m, const uint8_t *p, size_t a,
          size_t c, uint32_t ia, uint32_t ib, uint32_t *merged)
{
    if (m == NULL)
        return tok_vocab_lookup(v, p + a, c - a); /* *merged is not used: the rank is the id */
    struct tok_pair_merge pm = tok_merges_find(m, ia, ib);
    *merged = pm.id;
    return pm.rank;
}

/* The rank of the first pairs, of two single bytes: direct tables either way. */
static inline __attribute__((always_inline)) uint32_t byte_pair_rank(const struct tok_vocab *v,
                                                                     const struct tok_merges *m,
                                                                     const uint8_t *p,
                                                                     uint32_t *merged)
{
    if (m == NULL)
        return tok_vocab_pair(v, p);
    struct tok_pair_merge pm = m->bytes[p[0] | (p[1] << 8)];
    *merged = pm.id;
    return pm.rank;
}

/* tiktoken's loop, without moving memory: part k (alive while k is reachable through next[])
 * covers bytes [k, next[k]); rank[k] is the rank of part k joined with its successor
 * (TOK_NO_ID if they do not merge, or if k was absorbed) and joined[k] the id they make. The
 * scan for the lowest rank runs over all n slots in byte order, so among equal ranks it
 * still finds the leftmost pair. */
static inline __attribute__((always_inline)) int merge_small(const struct tok_vocab *v,
                                                             const struct tok_merges *m,
                                                             const uint8_t *p, size_t n,
                                                             struct tok_sink *sink)
{
    uint32_t next[TOK_BPE_SMALL + 1], prev[TOK_BPE_SMALL], rank[TOK_BPE_SMALL], id[TOK_BPE_SMALL];
    uint32_t joined[TOK_BPE_SMALL];
    if (n > TOK_BPE_SMALL)
        return FJ_ERR_RANGE;
    for (size_t k = 0; k < n; k++) {
        next[k] = (uint32_t)k + 1;
        prev[k] = (uint32_t)k - 1; /* wraps for k == 0; never read there */
        id[k] = v->byte_id[p[k]];
        rank[k] = k + 1 < n ? byte_pair_rank(v, m, p + k, &joined[k]) : TOK_NO_ID;
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
        id[k] = m == NULL ? best : joined[k];
        rank[j] = TOK_NO_ID;
        next[k] = after;
        if (after < n) {
            prev[after] = (uint32_t)k;
            rank[k] = pair_rank(v, m, p, k, next[after], id[k], id[after], &joined[k]);
        } else {
            rank[k] = TOK_NO_ID;
        }
        if (k > 0) {
            uint32_t pk = prev[k];
            rank[pk] = pair_rank(v, m, p, pk, after, id[pk], id[k], &joined[pk]);
        }
    }
    for (size_t k = 0; k < n; k = next[k])
        if (tok_sink_push(sink, id[k]) != 0)
            return FJ_ERR_NOMEM;
    return 0;
}

int tok_bpe_merge_small(const struct tok_vocab *v, const struct tok_merges *m, const uint8_t *p,
                        size_t n, struct tok_sink *sink)
{
    return m == NULL ? merge_small(v, NULL, p, n, sink) : merge_small(v, m, p, n, sink);
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
 * successor, joined[k] the id they make; a heap entry is current only while it still equals
 * rank[k] and k is alive. */
int tok_bpe_merge_large(const struct tok_vocab *v, const struct tok_merges *m, const uint8_t *p,
                        size_t n, struct tok_sink *sink)
{
    uint32_t *next = malloc(n * sizeof *next);
    uint32_t *prev = malloc(n * sizeof *prev);
    uint32_t *rank = malloc(n * sizeof *rank);
    uint32_t *id = malloc(n * sizeof *id);
    uint32_t *joined = malloc(n * sizeof *joined);
    struct heap h = {malloc(2 * n * sizeof(uint64_t)), 0, 2 * n};
    int rc = FJ_ERR_NOMEM;
    if (!next || !prev || !rank || !id || !joined || !h.a)
        goto out;
    for (size_t k = 0; k < n; k++) {
        next[k] = (uint32_t)(k + 1);
        prev[k] = (uint32_t)k - 1; /* wraps for k == 0; never read there */
        id[k] = v->byte_id[p[k]];
        rank[k] = k + 2 <= n ? byte_pair_rank(v, m, p + k, &joined[k]) : TOK_NO_ID;
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
        id[k] = m == NULL ? r : joined[k];
        rank[j] = TOK_NO_ID;
        next[k] = after;
        if (after < n) {
            prev[after] = k;
            rank[k] = pair_rank(v, m, p, k, next[after], id[k], id[after], &joined[k]);
        } else {
            rank[k] = TOK_NO_ID;
        }
        if (rank[k] != TOK_NO_ID && heap_push(&h, ((uint64_t)rank[k] << 32) | k) != 0)
            goto out;
        if (k > 0) {
            uint32_t pk = prev[k];
            rank[pk] = pair_rank(v, m, p, pk, after, id[pk], id[k], &joined[pk]);
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
    free(joined);
    free(h.a);
    return rc;
}

int tok_bpe_merge(const struct tok_vocab *v, const struct tok_merges *m, const uint8_t *piece,
                  size_t n, struct tok_sink *sink)
{
    if (n >= UINT32_MAX)
        return FJ_ERR_RANGE; /* positions are 32-bit; no caller makes a 4 GiB piece */
    if (n <= TOK_BPE_SMALL)
        return m == NULL ? merge_small(v, NULL, piece, n, sink) : merge_small(v, m, piece, n, sink);
    return tok_bpe_merge_large(v, m, piece, n, sink);
}

/* ---- the merges table of a tokenizer.json ---- */

int tok_merges_init(struct tok_merges *m, size_t max_pairs, struct fj_err *err)
{
    memset(m, 0, sizeof *m);
    size_t slots = 16;
    while (slots < 2 * max_pairs)
        slots *= 2;
    m->slots = calloc(slots, sizeof *m->slots);
    if (m->slots == NULL)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory for %zu merges", max_pairs);
    m->mask = slots - 1;
    return 0;
}

void tok_merges_set(struct tok_merges *m, uint32_t left, uint32_t right, uint32_t rank, uint32_t id)
{
    uint64_t key = tok_merge_key(left, right);
    size_t i = (size_t)tok_mix64(key) & m->mask;
    while (m->slots[i].key != 0 && m->slots[i].key != key)
        i = (i + 1) & m->mask;
    if (m->slots[i].key == 0)
        m->count++;
    assert(m->count <= (m->mask + 1) / 2);
    m->slots[i] = (struct tok_merge_slot){key, {rank, id}};
}

int tok_merges_finish(struct tok_merges *m, const struct tok_vocab *v, struct fj_err *err)
{
    m->bytes = malloc(65536 * sizeof *m->bytes);
    if (m->bytes == NULL)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory for the merges' byte-pair index");
    for (size_t k = 0; k < 65536; k++) {
        uint32_t a = v->byte_id[k & 0xFF], b = v->byte_id[k >> 8];
        m->bytes[k] = a == TOK_NO_ID || b == TOK_NO_ID
                          ? (struct tok_pair_merge){TOK_NO_ID, TOK_NO_ID}
                          : tok_merges_find(m, a, b);
    }
    return 0;
}

void tok_merges_free(struct tok_merges *m)
{
    if (m == NULL)
        return;
    free(m->slots);
    free(m->bytes);
    memset(m, 0, sizeof *m);
}
