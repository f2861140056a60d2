/* tok_internal.h - what the files of tok/ share: the vocabulary table, the byte-pair
 * merge and the layout of struct tok_encoding. Not part of the public API (tok.h). */
#ifndef FJ_TOK_INTERNAL_H
#define FJ_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "tok/pretok.h"
#include "tok/tok.h"

#define TOK_NO_ID UINT32_MAX

/* Token bytes <-> id. Ids index off/len; the hash maps bytes to ids. In tiktoken files
 * the id of a token is also its merge rank: lower ids merge first. */
struct tok_vocab {
    uint32_t n_ids;     /* ids are < n_ids; absent ids have len 0 */
    uint32_t *off;      /* (n_ids) offset of each token's bytes in pool */
    uint32_t *len;      /* (n_ids) byte length of each token, 0 if the id is unused */
    uint8_t *pool;      /* all token bytes */
    size_t pool_len, pool_cap;
    uint64_t *slots;    /* open addressing: (hash tag << 32) | (id + 1); 0 is empty */
    size_t mask;        /* number of slots - 1 (a power of two) */
    size_t count;       /* tokens added */
    uint32_t byte_id[256]; /* id of each single byte, TOK_NO_ID if it has none */
};

/* Allocates a table for up to max_tokens tokens with ids < n_ids and pool_cap bytes. */
int tok_vocab_init(struct tok_vocab *v, uint32_t n_ids, size_t max_tokens, size_t pool_cap,
                   struct fj_err *err);
/* Adds a token; fails (FJ_ERR_FORMAT) on a duplicate id or duplicate bytes. */
int tok_vocab_add(struct tok_vocab *v, const uint8_t *bytes, size_t len, uint32_t id,
                  struct fj_err *err);
/* The id of exactly these bytes, or TOK_NO_ID. */
uint32_t tok_vocab_lookup(const struct tok_vocab *v, const uint8_t *bytes, size_t len);
void tok_vocab_free(struct tok_vocab *v);

/* Where tokens go: appended to ids, or only counted when ids is NULL. */
struct tok_sink {
    struct tok_ids *ids;
    size_t count;
};

int tok_sink_push(struct tok_sink *sink, uint32_t id);

/* Appends the tokens of one piece (n >= 2 bytes) by tiktoken's byte-pair merge: repeatedly
 * join the adjacent pair whose joined bytes have the lowest rank, leftmost first. Returns 0 or
 * FJ_ERR_NOMEM (long pieces need scratch memory). */
int tok_bpe_merge(const struct tok_vocab *v, const uint8_t *piece, size_t n, struct tok_sink *sink);
/* The two strategies tok_bpe_merge chooses between, exposed for the test that checks they
 * agree: the quadratic scan (n <= TOK_BPE_SMALL) and the heap (any n >= 2). */
#define TOK_BPE_SMALL 256
int tok_bpe_merge_small(const struct tok_vocab *v, const uint8_t *piece, size_t n,
                        struct tok_sink *sink);
int tok_bpe_merge_large(const struct tok_vocab *v, const uint8_t *piece, size_t n,
                        struct tok_sink *sink);

struct tok_special_token {
    char *text; /* owned, NUL-terminated */
    size_t len;
    uint32_t id;
};

struct tok_encoding {
    char name[32];
    enum tok_pattern pattern;
    struct tok_vocab vocab;
    struct tok_special_token *specials; /* owned, n_specials entries */
    size_t n_specials;
    uint32_t n_vocab;
    bool special_first[256]; /* bytes that start some special token */
};

/* Parses a .tiktoken rank file ("<base64 bytes> <rank>" per line) into v. */
int tok_vocab_load_tiktoken(struct tok_vocab *v, const uint8_t *data, size_t len,
                            struct fj_err *err);

#endif
