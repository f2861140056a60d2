/* vocab.c - the token table: bytes to id by hashing, id to bytes by index.
 *
 * Lookups are the tokenizer's inner loop (one per piece, several per merge step). The main
 * table is open addressing with linear probing at a load factor of at most 1/2, and each slot
 * holds the token's first 8 bytes, so most lookups read one cache line and no token bytes.
 * That table is 4 MB for cl100k_base, beyond the L2 cache, so tok_vocab_finish derives
 * smaller indexes for the lookups that are most frequent or most often fail:
 *
 *   byte_id   256 single bytes            pair_id   65 536 two-byte strings, direct
 *   short     3- and 4-byte tokens, 8-byte slots (the merge's usual intermediate tokens)
 *   filter    a bit per long token's hash: a clear bit proves a string is no token
 *
 * Callers with several lookups to make compute their keys and prefetch the main table's
 * slots first (tok_internal.h), so the remaining cache misses overlap.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

int tok_vocab_init(struct tok_vocab *v, uint32_t n_ids, size_t max_tokens, size_t pool_cap,
                   struct fj_err *err)
{
    memset(v, 0, sizeof *v);
    if (n_ids >= (1u << 24))
        return fj_err_set(err, FJ_ERR_FORMAT, "%u token ids: more than forja supports", n_ids);
    size_t slots = 16;
    while (slots < 2 * max_tokens)
        slots *= 2;
    v->n_ids = n_ids;
    v->off = calloc(n_ids ? n_ids : 1, sizeof *v->off);
    v->len = calloc(n_ids ? n_ids : 1, sizeof *v->len);
    v->pool = malloc(pool_cap ? pool_cap : 1);
    v->slots = calloc(slots, sizeof *v->slots);
    if (!v->off || !v->len || !v->pool || !v->slots) {
        tok_vocab_free(v);
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory for a %u-token vocabulary", n_ids);
    }
    v->pool_cap = pool_cap;
    v->mask = slots - 1;
    return 0;
}

int tok_vocab_add(struct tok_vocab *v, const uint8_t *bytes, size_t len, uint32_t id,
                  struct fj_err *err)
{
    if (id >= v->n_ids || len == 0 || len > UINT32_MAX)
        return fj_err_set(err, FJ_ERR_FORMAT, "token id %u out of range or empty token", id);
    if (v->len[id] != 0)
        return fj_err_set(err, FJ_ERR_FORMAT, "token id %u appears twice", id);
    if (v->count + 1 > (v->mask + 1) / 2 || len > v->pool_cap - v->pool_len)
        return fj_err_set(err, FJ_ERR_FORMAT, "more tokens than the vocabulary was sized for");
    struct tok_key k = tok_vocab_key(bytes, len);
    size_t i = (size_t)k.hash & v->mask;
    while (v->slots[i].id1 != 0) {
        uint32_t other = v->slots[i].id1 - 1;
        if (v->slots[i].head == k.head && v->slots[i].len == len &&
            memcmp(v->pool + v->off[other], bytes, len) == 0)
            return fj_err_set(err, FJ_ERR_FORMAT, "token ids %u and %u have the same bytes", other,
                              id);
        i = (i + 1) & v->mask;
    }
    memcpy(v->pool + v->pool_len, bytes, len);
    v->off[id] = (uint32_t)v->pool_len;
    v->len[id] = (uint32_t)len;
    v->pool_len += len;
    v->slots[i] = (struct tok_slot){k.head, id + 1, (uint32_t)len};
    v->count++;
    return 0;
}

int tok_vocab_finish(struct tok_vocab *v, struct fj_err *err)
{
    size_t n_short = 0, n_long = 0;
    for (uint32_t id = 0; id < v->n_ids; id++) {
        n_short += v->len[id] == 3 || v->len[id] == 4;
        n_long += v->len[id] > TOK_SHORT_MAX;
    }
    /* Load factor 0.7: small enough to stay in cache (270 KB for cl100k), with short probes. */
    size_t short_slots = n_short + n_short * 3 / 7 + 1, filter_bits = 1 << 16;
    /* 16 bits per long token: about 6% of absent strings get past the filter. */
    while (filter_bits < 16 * n_long)
        filter_bits *= 2;
    v->pair_id = malloc(65536 * sizeof *v->pair_id);
    v->short_slots = calloc(short_slots, sizeof *v->short_slots);
    v->filter = calloc(filter_bits / 64, sizeof *v->filter);
    if (!v->pair_id || !v->short_slots || !v->filter)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory for the vocabulary's indexes");
    v->short_size = short_slots;
    v->filter_mask = filter_bits - 1;
    for (int b = 0; b < 256; b++)
        v->byte_id[b] = TOK_NO_ID;
    for (size_t k = 0; k < 65536; k++)
        v->pair_id[k] = TOK_NO_ID;
    for (uint32_t id = 0; id < v->n_ids; id++) {
        size_t len = v->len[id];
        const uint8_t *bytes = v->pool + v->off[id];
        if (len > TOK_SHORT_MAX) {
            size_t bit = tok_filter_bit(v, tok_vocab_key(bytes, len));
            v->filter[bit >> 6] |= 1ull << (bit & 63);
        } else if (len == 1)
            v->byte_id[bytes[0]] = id;
        else if (len == 2)
            v->pair_id[bytes[0] | (bytes[1] << 8)] = id;
        else if (len >= 3) {
            uint32_t b = (uint32_t)tok_load_head(bytes, len);
            size_t j = tok_short_home(v, b, len);
            while (v->short_slots[j] != 0)
                j = j + 1 == v->short_size ? 0 : j + 1;
            v->short_slots[j] = tok_short_slot(b, len, id);
        }
    }
    return 0;
}

uint32_t tok_vocab_find(const struct tok_vocab *v, struct tok_key k, const uint8_t *bytes,
                        size_t len)
{
    assert(len > TOK_SHORT_MAX);
    if (!tok_vocab_maybe(v, k))
        return TOK_NO_ID;
    size_t i = (size_t)k.hash & v->mask;
    for (;;) {
        const struct tok_slot *s = &v->slots[i];
        if (s->id1 == 0)
            return TOK_NO_ID;
        if (s->head == k.head && s->len == len) {
            uint32_t id = s->id1 - 1;
            if (len <= 8 || memcmp(v->pool + v->off[id] + 8, bytes + 8, len - 8) == 0)
                return id;
        }
        i = (i + 1) & v->mask;
    }
}

uint32_t tok_vocab_lookup(const struct tok_vocab *v, const uint8_t *bytes, size_t len)
{
    if (len == 1)
        return v->byte_id[bytes[0]];
    if (len == 2)
        return tok_vocab_pair(v, bytes);
    if (len <= TOK_SHORT_MAX)
        return tok_vocab_short(v, bytes, len);
    return tok_vocab_find(v, tok_vocab_key(bytes, len), bytes, len);
}

void tok_vocab_free(struct tok_vocab *v)
{
    if (v == NULL)
        return;
    free(v->off);
    free(v->len);
    free(v->pool);
    free(v->slots);
    free(v->pair_id);
    free(v->short_slots);
    free(v->filter);
    memset(v, 0, sizeof *v);
}
