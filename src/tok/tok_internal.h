/* tok_internal.h - what the files of tok/ share: the vocabulary table, the byte-pair
 * merge and the layout of struct tok_encoding. Not part of the public API (tok.h). */
#ifndef FJ_TOK_INTERNAL_H
#define FJ_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/err.h"
#include "tok/pretok.h"
#include "tok/tok.h"

#define TOK_NO_ID UINT32_MAX

/* A hash slot: the token's first 8 bytes (zero-padded) are kept in the slot, so looking up
 * a token of up to 8 bytes - most of them - touches one cache line. */
struct tok_slot {
    uint64_t head; /* first min(len, 8) bytes, little-endian, zero-padded */
    uint32_t id1;  /* id + 1; 0 marks an empty slot */
    uint32_t len;
};

/* Token bytes <-> id. Ids index off/len; the hash maps bytes to ids. In tiktoken files
 * the id of a token is also its merge rank: lower ids merge first. */
struct tok_vocab {
    uint32_t n_ids; /* ids are < n_ids; absent ids have len 0 */
    uint32_t *off;  /* (n_ids) offset of each token's bytes in pool */
    uint32_t *len;  /* (n_ids) byte length of each token, 0 if the id is unused */
    uint8_t *pool;  /* all token bytes */
    size_t pool_len, pool_cap;
    struct tok_slot *slots; /* open addressing, linear probing, load factor <= 1/2 */
    size_t mask;            /* number of slots - 1 (a power of two) */
    size_t count;           /* tokens added */
    uint32_t byte_id[256];  /* id of each single byte, TOK_NO_ID if it has none */
    uint32_t *pair_id;      /* (65536) id of each two-byte token by its bytes (little-endian),
                               TOK_NO_ID if none: the merge's first lookups, without hashing */
    uint64_t *short_slots;  /* tokens of 3 or 4 bytes (the merge's most frequent lookups) in
                               a table small enough to stay in cache; see tok_vocab_short() */
    size_t short_size;      /* slots in short_slots (any size: indexed by multiply-shift) */
    uint64_t *filter;       /* a bit per (hash >> 40) & filter_mask of the tokens in slots: a
                               clear bit proves absence without touching the big table */
    size_t filter_mask;
};

/* Allocates a table for up to max_tokens tokens with ids < n_ids and pool_cap bytes. */
int tok_vocab_init(struct tok_vocab *v, uint32_t n_ids, size_t max_tokens, size_t pool_cap,
                   struct fj_err *err);
/* Adds a token; fails (FJ_ERR_FORMAT) on a duplicate id or duplicate bytes. */
int tok_vocab_add(struct tok_vocab *v, const uint8_t *bytes, size_t len, uint32_t id,
                  struct fj_err *err);
/* Builds the derived indexes (byte_id, pair_id, short table, filter) once every token is
 * added; lookups are valid only after it. Returns 0 or FJ_ERR_NOMEM. */
int tok_vocab_finish(struct tok_vocab *v, struct fj_err *err);
/* The id of exactly these bytes (len >= 1), or TOK_NO_ID. Ids must be < 2^24. */
uint32_t tok_vocab_lookup(const struct tok_vocab *v, const uint8_t *bytes, size_t len);

/* A lookup in two steps, so that a caller with several lookups to make can start all their
 * memory accesses before it waits for the first: key, prefetch, then find. */
struct tok_key {
    uint64_t head; /* first min(len, 8) bytes, zero-padded */
    uint64_t hash;
};

static inline uint64_t tok_mix64(uint64_t h)
{
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

/* The first min(n, 8) bytes of p as a little-endian word, zero-padded; n >= 1. The
 * overlapping loads read only bytes of p, and the bytes they share are the same bytes. */
static inline uint64_t tok_load_head(const uint8_t *p, size_t n)
{
    if (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        return w;
    }
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        return (uint64_t)a | ((uint64_t)b << (8 * (n - 4)));
    }
    return (uint64_t)p[0] | ((uint64_t)p[n >> 1] << (8 * (n >> 1))) |
           ((uint64_t)p[n - 1] << (8 * (n - 1)));
}

static inline __attribute__((always_inline)) struct tok_key tok_vocab_key(const uint8_t *bytes,
                                                                          size_t len)
{
    struct tok_key k;
    k.head = tok_load_head(bytes, len);
    uint64_t h = k.head ^ (0x9E3779B97F4A7C15ull * len);
    for (size_t i = 8; i < len; i += 8)
        h = (tok_mix64(h) ^ tok_load_head(bytes + i, len - i)) * 0xbf58476d1ce4e5b9ull;
    k.hash = tok_mix64(h);
    return k;
}

/* Tokens of up to TOK_SHORT_MAX bytes are found in the small derived indexes (byte_id,
 * pair_id, short_slots); longer ones in the main table, behind the filter. */
#define TOK_SHORT_MAX 4

/* A short slot: bytes (little-endian, zero-padded) << 32 | len << 24 | (id + 1); 0 is empty. */
static inline uint64_t tok_short_slot(uint32_t bytes, size_t len, uint32_t id)
{
    return ((uint64_t)bytes << 32) | ((uint64_t)len << 24) | (id + 1u);
}

/* The home slot of a short token: the hash scaled to [0, short_size) by multiply-shift, so
 * the table can be sized to a load factor rather than to a power of two. */
static inline size_t tok_short_home(const struct tok_vocab *v, uint32_t bytes, size_t len)
{
    uint64_t h = ((uint64_t)(bytes ^ (uint32_t)len) * 0x9E3779B97F4A7C15ull) >> 32;
    return (size_t)((h * v->short_size) >> 32);
}

/* The id of the 3 or 4 bytes at p, or TOK_NO_ID. */
static inline uint32_t tok_vocab_short(const struct tok_vocab *v, const uint8_t *p, size_t len)
{
    uint32_t bytes = (uint32_t)tok_load_head(p, len);
    uint64_t want = tok_short_slot(bytes, len, 0) >> 24;
    for (size_t i = tok_short_home(v, bytes, len);;) {
        uint64_t slot = v->short_slots[i];
        if (slot == 0)
            return TOK_NO_ID;
        if (slot >> 24 == want)
            return (uint32_t)(slot & 0xFFFFFF) - 1;
        if (++i == v->short_size)
            i = 0;
    }
}

/* The id of the two bytes at p, or TOK_NO_ID. */
static inline uint32_t tok_vocab_pair(const struct tok_vocab *v, const uint8_t *p)
{
    return v->pair_id[p[0] | (p[1] << 8)];
}

static inline size_t tok_filter_bit(const struct tok_vocab *v, struct tok_key k)
{
    return (size_t)(k.hash >> 40) & v->filter_mask;
}

static inline bool tok_vocab_maybe(const struct tok_vocab *v, struct tok_key k)
{
    size_t b = tok_filter_bit(v, k);
    return (v->filter[b >> 6] >> (b & 63)) & 1;
}

static inline void tok_vocab_prefetch(const struct tok_vocab *v, struct tok_key k)
{
    __builtin_prefetch(&v->slots[k.hash & v->mask]);
}

/* The id of bytes[0..len) with key k, len > TOK_SHORT_MAX, or TOK_NO_ID. */
uint32_t tok_vocab_find(const struct tok_vocab *v, struct tok_key k, const uint8_t *bytes,
                        size_t len);
void tok_vocab_free(struct tok_vocab *v);

/* Where tokens go: appended to ids, or only counted when ids is NULL. */
struct tok_sink {
    struct tok_ids *ids;
    size_t count;
};

int tok_sink_push(struct tok_sink *sink, uint32_t id);

/* The merges of a tokenizer.json: (left id, right id) -> (rank, merged id), where the rank is
 * the merge's position in the file's "merges" list. tiktoken encodings have none: there the
 * rank of a pair is the id of its joined bytes. */
struct tok_pair_merge {
    uint32_t rank; /* TOK_NO_ID if the pair does not merge */
    uint32_t id;   /* the token the pair merges into */
};

struct tok_merge_slot {
    uint64_t key; /* (left << 24 | right) + 1; 0 marks an empty slot */
    struct tok_pair_merge m;
};

struct tok_merges {
    struct tok_merge_slot *slots; /* open addressing, linear probing, load factor <= 1/2 */
    size_t mask;                  /* number of slots - 1 (a power of two) */
    size_t count;                 /* pairs held */
    struct tok_pair_merge *bytes; /* (65536) the merge of the single-byte tokens of bytes b0 b1,
                                     indexed by b0 | b1 << 8: a piece's first merges */
};

static inline uint64_t tok_merge_key(uint32_t left, uint32_t right)
{
    return (((uint64_t)left << 24) | right) + 1;
}

/* The merge of tokens left and right ({TOK_NO_ID, TOK_NO_ID} if they do not merge). */
static inline struct tok_pair_merge tok_merges_find(const struct tok_merges *m, uint32_t left,
                                                    uint32_t right)
{
    uint64_t key = tok_merge_key(left, right);
    for (size_t i = (size_t)tok_mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        const struct tok_merge_slot *s = &m->slots[i];
        if (s->key == key)
            return s->m;
        if (s->key == 0)
            return (struct tok_pair_merge){TOK_NO_ID, TOK_NO_ID};
    }
}

/* Allocates a table for up to max_pairs merges. Returns 0 or FJ_ERR_NOMEM. */
int tok_merges_init(struct tok_merges *m, size_t max_pairs, struct fj_err *err);
/* Sets the merge of (left, right); a pair already present takes the new rank and id (the last
 * of duplicate merges wins, as in Hugging Face's tokenizers). */
void tok_merges_set(struct tok_merges *m, uint32_t left, uint32_t right, uint32_t rank,
                    uint32_t id);
/* Builds the byte-pair index once every merge is set (v finished). Returns 0 or NOMEM. */
int tok_merges_finish(struct tok_merges *m, const struct tok_vocab *v, struct fj_err *err);
void tok_merges_free(struct tok_merges *m);

/* Appends the tokens of one piece (n >= 2 bytes) by byte-pair merge: repeatedly join the
 * adjacent pair of lowest rank, leftmost first, while some pair has a rank. With m NULL the
 * rank of a pair is the id of its joined bytes (tiktoken); otherwise m's rank. Returns 0 or
 * FJ_ERR_NOMEM (long pieces need scratch memory). */
int tok_bpe_merge(const struct tok_vocab *v, const struct tok_merges *m, const uint8_t *piece,
                  size_t n, struct tok_sink *sink);
/* The two strategies tok_bpe_merge chooses between, exposed for the test that checks they
 * agree: the quadratic scan (n <= TOK_BPE_SMALL) and the heap (any n >= 2). */
#define TOK_BPE_SMALL 256
int tok_bpe_merge_small(const struct tok_vocab *v, const struct tok_merges *m, const uint8_t *piece,
                        size_t n, struct tok_sink *sink);
int tok_bpe_merge_large(const struct tok_vocab *v, const struct tok_merges *m, const uint8_t *piece,
                        size_t n, struct tok_sink *sink);

/* A special token: one of tiktoken's, one added by tok_encoding_add_special, or one of a
 * tokenizer.json's "added_tokens" (special or not). */
struct tok_special_token {
    char *text; /* owned, NUL-terminated */
    size_t len;
    uint32_t id;
    bool special;    /* "special" in tokenizer.json; true for tiktoken's */
    bool normalized; /* tokenizer.json "normalized": matched in the normalized text of the
                        stretches between the other (raw) tokens, after them */
};

struct tok_encoding {
    char name[32];
    enum tok_pattern pattern;
    struct tok_vocab vocab;
    struct tok_merges *merges; /* NULL for tiktoken's ranks; owned */
    uint8_t *whole;            /* NULL: a piece whose bytes are a token is that token (tiktoken, and
                                  tokenizer.json's ignore_merges); else a bit per id, set where the
                                  merge of the token's own bytes gives the token; owned */
    bool nfc;                  /* text is NFC-normalized before pre-tokenizing (tokenizer.json) */
    bool hf;                   /* built from a tokenizer.json */
    struct tok_special_token *specials; /* owned, n_specials entries */
    size_t n_specials;
    bool any_normalized;  /* some special token is "normalized" */
    uint32_t special_min; /* the lowest special id (UINT32_MAX if none): a quick "no" */
    uint32_t n_vocab;
    bool special_first[256]; /* bytes that start some special token */
    int special_lead;        /* the byte all special tokens start with, or -1 */
};

/* Recomputes special_first, special_lead, any_normalized and special_min after specials
 * change. */
void tok_specials_index(struct tok_encoding *enc);

/* Parses a .tiktoken rank file ("<base64 bytes> <rank>" per line) into v. */
int tok_vocab_load_tiktoken(struct tok_vocab *v, const uint8_t *data, size_t len,
                            struct fj_err *err);

/* Encodes text[0..len) (valid UTF-8, no special-token handling) into sink: pre-tokenize,
 * then each piece. The tokenizer.json loader uses it to build enc->whole. */
int tok_encode_ordinary(const struct tok_encoding *enc, const uint8_t *text, size_t len,
                        struct tok_sink *sink);

#endif
