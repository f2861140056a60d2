/* vocab.c - the token table: bytes to id by hashing, id to bytes by index.
 *
 * Lookups are the tokenizer's inner loop (one per piece, several per merge step), so the
 * table is open addressing with linear probing at a load factor of at most 1/2, and each slot
 * keeps 32 bits of the hash so that most probes decide without touching the token bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

static inline uint64_t mix(uint64_t h)
{
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

static inline uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull * (n + 1);
    while (n > 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        w = ((uint64_t)a << 32) | b;
    } else if (n > 0) {
        w = (uint64_t)p[0] | ((uint64_t)p[n / 2] << 8) | ((uint64_t)p[n - 1] << 16);
    }
    return mix(h ^ w);
}

int tok_vocab_init(struct tok_vocab *v, uint32_t n_ids, size_t max_tokens, size_t pool_cap,
                   struct fj_err *err)
{
    memset(v, 0, sizeof *v);
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
    for (int b = 0; b < 256; b++)
        v->byte_id[b] = TOK_NO_ID;
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
    uint64_t h = hash_bytes(bytes, len);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t i = (size_t)h & v->mask;
    while (v->slots[i] != 0) {
        uint32_t other = (uint32_t)v->slots[i] - 1;
        if ((uint32_t)(v->slots[i] >> 32) == tag && v->len[other] == len &&
            memcmp(v->pool + v->off[other], bytes, len) == 0)
            return fj_err_set(err, FJ_ERR_FORMAT, "token ids %u and %u have the same bytes",
                              other, id);
        i = (i + 1) & v->mask;
    }
    memcpy(v->pool + v->pool_len, bytes, len);
    v->off[id] = (uint32_t)v->pool_len;
    v->len[id] = (uint32_t)len;
    v->pool_len += len;
    v->slots[i] = ((uint64_t)tag << 32) | ((uint64_t)id + 1);
    v->count++;
    if (len == 1)
        v->byte_id[bytes[0]] = id;
    return 0;
}

uint32_t tok_vocab_lookup(const struct tok_vocab *v, const uint8_t *bytes, size_t len)
{
    uint64_t h = hash_bytes(bytes, len);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t i = (size_t)h & v->mask;
    for (;;) {
        uint64_t s = v->slots[i];
        if (s == 0)
            return TOK_NO_ID;
        if ((uint32_t)(s >> 32) == tag) {
            uint32_t id = (uint32_t)s - 1;
            if (v->len[id] == len && memcmp(v->pool + v->off[id], bytes, len) == 0)
                return id;
        }
        i = (i + 1) & v->mask;
    }
}

void tok_vocab_free(struct tok_vocab *v)
{
    if (v == NULL)
        return;
    free(v->off);
    free(v->len);
    free(v->pool);
    free(v->slots);
    memset(v, 0, sizeof *v);
}
