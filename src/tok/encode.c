/* encode.c - text to tokens and back, for any byte-level BPE encoding.
 *
 * tok_encode = (split off special tokens) -> pre-tokenize each stretch of ordinary text ->
 * for each piece: the piece's own id if its bytes are a token, else the byte-pair merge.
 * Taking the whole piece first is what tiktoken does, and it matters: a piece whose bytes are
 * a token is that token even where merging would not reach it.
 */
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "tok/nfc.h"
#include "tok/tok_internal.h"

int tok_ids_push(struct tok_ids *ids, uint32_t id)
{
    if (ids->len == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 256;
        uint32_t *p = realloc(ids->data, cap * sizeof *p);
        if (p == NULL)
            return FJ_ERR_NOMEM;
        ids->data = p;
        ids->cap = cap;
    }
    ids->data[ids->len++] = id;
    return 0;
}

void tok_ids_free(struct tok_ids *ids)
{
    if (ids == NULL)
        return;
    free(ids->data);
    ids->data = NULL;
    ids->len = ids->cap = 0;
}

/* Pieces are cut BATCH at a time and their slots prefetched before any is looked up, so the
 * table's cache misses overlap instead of following one another. */
#define BATCH 16

/* Whether a piece whose bytes are token id is that token (see enc->whole). */
static inline bool whole_ok(const uint8_t *whole, uint32_t id)
{
    return whole == NULL || ((whole[id >> 3] >> (id & 7)) & 1);
}

/* The loop of tok_encode_ordinary, instantiated for tiktoken's encodings (merges and whole
 * NULL constants, so that loop is what it was before tokenizer.json support) and for the rest. */
static inline __attribute__((always_inline)) int
encode_pieces(const struct tok_encoding *enc, const struct tok_merges *merges, const uint8_t *whole,
              const uint8_t *s, size_t n, struct tok_sink *sink)
{
    const struct tok_vocab *v = &enc->vocab;
    const enum tok_pattern pattern = enc->pattern;
    size_t start[BATCH + 1];
    struct tok_key key[BATCH];
    size_t i = 0;
    while (i < n) {
        int m = 0;
        for (; m < BATCH && i < n; m++) {
            size_t e = tok_pretok_next(pattern, s, i, n);
            start[m] = i;
            if (e - i > TOK_SHORT_MAX) {
                key[m] = tok_vocab_key(s + i, e - i);
                tok_vocab_prefetch(v, key[m]);
            }
            i = e;
        }
        start[m] = i;
        for (int k = 0; k < m; k++) {
            const uint8_t *p = s + start[k];
            size_t len = start[k + 1] - start[k];
            uint32_t id = len <= TOK_SHORT_MAX ? tok_vocab_lookup(v, p, len)
                                               : tok_vocab_find(v, key[k], p, len);
            int rc = id != TOK_NO_ID && whole_ok(whole, id)
                         ? tok_sink_push(sink, id)
                         : tok_bpe_merge(v, merges, p, len, sink);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

int tok_encode_ordinary(const struct tok_encoding *enc, const uint8_t *s, size_t n,
                        struct tok_sink *sink)
{
    if (enc->merges == NULL && enc->whole == NULL)
        return encode_pieces(enc, NULL, NULL, s, n, sink);
    return encode_pieces(enc, enc->merges, enc->whole, s, n, sink);
}

/* The leftmost special token in s[from..n) among the raw ones (normalized false) or the
 * normalized ones: returns its index in enc->specials and stores its offset, or returns -1.
 * Among tokens starting at the same offset, the longest wins (as Hugging Face's added-token
 * matching, leftmost-longest). Candidates are found with memchr when every special token
 * starts with the same byte (all of tiktoken's, Llama 3's and Qwen's start with '<'), so text
 * without that byte is skipped at memchr's speed. */
static long find_special(const struct tok_encoding *enc, bool normalized, const uint8_t *s,
                         size_t from, size_t n, size_t *at)
{
    for (size_t i = from; i < n; i++) {
        if (enc->special_lead >= 0) {
            const uint8_t *p = memchr(s + i, enc->special_lead, n - i);
            if (p == NULL)
                return -1;
            i = (size_t)(p - s);
        } else if (!enc->special_first[s[i]]) {
            continue;
        }
        long best = -1;
        for (size_t k = 0; k < enc->n_specials; k++) {
            const struct tok_special_token *t = &enc->specials[k];
            if (t->normalized == normalized && t->len <= n - i &&
                (t->len < 2 || (uint8_t)t->text[1] == s[i + 1]) &&
                memcmp(s + i, t->text, t->len) == 0 &&
                (best < 0 || t->len > enc->specials[best].len))
                best = (long)k;
        }
        if (best >= 0) {
            *at = i;
            return best;
        }
    }
    return -1;
}

/* Splits s[0..n) at the special tokens of one kind (raw or normalized): each becomes its id,
 * or an error with TOK_SPECIAL_REJECT; the stretches between go to `then`. */
static inline __attribute__((always_inline)) int
split_specials(const struct tok_encoding *enc, bool normalized, const uint8_t *s, size_t n,
               enum tok_special special, struct tok_sink *sink, struct fj_err *err,
               int (*then)(const struct tok_encoding *, const uint8_t *, size_t, enum tok_special,
                           struct tok_sink *, struct fj_err *))
{
    size_t from = 0, at;
    long k;
    while ((k = find_special(enc, normalized, s, from, n, &at)) >= 0) {
        const struct tok_special_token *t = &enc->specials[k];
        if (special == TOK_SPECIAL_REJECT)
            return fj_err_set(err, FJ_ERR_SPECIAL, "text contains the %s token %s at byte %zu%s",
                              t->special ? "special" : "added", t->text, at,
                              normalized ? " of its normalized form" : "");
        int rc = then(enc, s + from, at - from, special, sink, err);
        if (rc == 0)
            rc = tok_sink_push(sink, t->id);
        if (rc != 0)
            return rc;
        from = at + t->len;
    }
    return then(enc, s + from, n - from, special, sink, err);
}

static int ordinary(const struct tok_encoding *enc, const uint8_t *s, size_t n,
                    enum tok_special special, struct tok_sink *sink, struct fj_err *err)
{
    (void)special;
    (void)err;
    return tok_encode_ordinary(enc, s, n, sink);
}

/* A stretch of text between raw special tokens (or all of it): normalize it (tokenizer.json's
 * NFC), split it at the normalized special tokens if there are any, encode the rest. */
static int stretch(const struct tok_encoding *enc, const uint8_t *s, size_t n,
                   enum tok_special special, struct tok_sink *sink, struct fj_err *err)
{
    struct fj_buf norm = {0};
    if (enc->nfc && !tok_nfc_quick(s, n)) {
        if (tok_nfc(s, n, &norm) != 0) {
            fj_buf_free(&norm);
            return FJ_ERR_NOMEM;
        }
        s = (const uint8_t *)norm.data;
        n = norm.len;
    }
    int rc = special != TOK_SPECIAL_AS_TEXT && enc->any_normalized
                 ? split_specials(enc, true, s, n, special, sink, err, ordinary)
                 : tok_encode_ordinary(enc, s, n, sink);
    fj_buf_free(&norm);
    return rc;
}

static int encode_into(const struct tok_encoding *enc, const char *text, size_t len,
                       enum tok_special special, struct tok_sink *sink, struct fj_err *err)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t bad;
    if (!fj_utf8_valid(s, len, &bad))
        return fj_err_set(err, FJ_ERR_UTF8, "invalid UTF-8 at byte %zu", bad);
    /* tiktoken's encodings have neither a normalizer nor normalized special tokens: their
     * stretches of text go straight to tok_encode_ordinary. */
    int rc;
    if (special == TOK_SPECIAL_AS_TEXT || enc->n_specials == 0)
        rc = enc->hf ? stretch(enc, s, len, special, sink, err)
                     : tok_encode_ordinary(enc, s, len, sink);
    else if (enc->hf)
        rc = split_specials(enc, false, s, len, special, sink, err, stretch);
    else
        rc = split_specials(enc, false, s, len, special, sink, err, ordinary);
    if (rc == FJ_ERR_SPECIAL)
        return rc;
    if (rc == FJ_ERR_NOMEM)
        return fj_err_set(err, rc, "out of memory encoding %zu bytes", len);
    if (rc != 0)
        return fj_err_set(err, rc, "cannot encode a piece of %zu bytes", len);
    return 0;
}

int tok_encode(const struct tok_encoding *enc, const char *text, size_t len,
               enum tok_special special, struct tok_ids *ids, struct fj_err *err)
{
    size_t old = ids->len;
    struct tok_sink sink = {ids, 0};
    int rc = encode_into(enc, text, len, special, &sink, err);
    if (rc != 0)
        ids->len = old;
    return rc;
}

int tok_count(const struct tok_encoding *enc, const char *text, size_t len,
              enum tok_special special, size_t *count, struct fj_err *err)
{
    struct tok_sink sink = {NULL, 0};
    int rc = encode_into(enc, text, len, special, &sink, err);
    *count = rc == 0 ? sink.count : 0;
    return rc;
}

int tok_token_bytes(const struct tok_encoding *enc, uint32_t id, const uint8_t **bytes, size_t *len)
{
    const struct tok_vocab *v = &enc->vocab;
    if (id < v->n_ids && v->len[id] != 0) {
        *bytes = v->pool + v->off[id];
        *len = v->len[id];
        return 0;
    }
    for (size_t k = 0; k < enc->n_specials; k++) {
        if (enc->specials[k].id == id) {
            *bytes = (const uint8_t *)enc->specials[k].text;
            *len = enc->specials[k].len;
            return 0;
        }
    }
    return FJ_ERR_NOT_FOUND;
}

int tok_decode(const struct tok_encoding *enc, const uint32_t *ids, size_t n, struct fj_buf *out,
               struct fj_err *err)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *b;
        size_t len;
        if (tok_token_bytes(enc, ids[i], &b, &len) != 0)
            return fj_err_set(err, FJ_ERR_NOT_FOUND, "%u is not a token of %s (position %zu)",
                              ids[i], enc->name, i);
        if (fj_buf_append(out, b, len) != 0)
            return fj_err_set(err, FJ_ERR_NOMEM, "out of memory decoding %zu tokens", n);
    }
    return 0;
}

const char *tok_encoding_name(const struct tok_encoding *enc)
{
    return enc->name;
}

uint32_t tok_encoding_n_vocab(const struct tok_encoding *enc)
{
    return enc->n_vocab;
}

int64_t tok_token_id(const struct tok_encoding *enc, const char *s, size_t len)
{
    for (size_t k = 0; k < enc->n_specials; k++)
        if (enc->specials[k].len == len && memcmp(enc->specials[k].text, s, len) == 0)
            return enc->specials[k].id;
    if (len == 0)
        return -1;
    uint32_t id = tok_vocab_lookup(&enc->vocab, (const uint8_t *)s, len);
    return id == TOK_NO_ID ? -1 : (int64_t)id;
}

bool tok_is_special(const struct tok_encoding *enc, uint32_t id)
{
    if (id < enc->special_min)
        return false;
    for (size_t k = 0; k < enc->n_specials; k++)
        if (enc->specials[k].id == id)
            return true;
    return false;
}

void tok_specials_index(struct tok_encoding *enc)
{
    memset(enc->special_first, 0, sizeof enc->special_first);
    enc->special_lead = enc->n_specials > 0 ? (uint8_t)enc->specials[0].text[0] : -1;
    enc->any_normalized = false;
    enc->special_min = UINT32_MAX;
    for (size_t k = 0; k < enc->n_specials; k++) {
        if (enc->specials[k].id < enc->special_min)
            enc->special_min = enc->specials[k].id;
        uint8_t first = (uint8_t)enc->specials[k].text[0];
        enc->special_first[first] = true;
        if (enc->special_lead != first)
            enc->special_lead = -1;
        enc->any_normalized |= enc->specials[k].normalized;
    }
}

int tok_encoding_add_special(struct tok_encoding *enc, const char *text, uint32_t id,
                             struct fj_err *err)
{
    size_t len = text != NULL ? strlen(text) : 0;
    if (len == 0 || !fj_utf8_valid(text, len, NULL))
        return fj_err_set(err, FJ_ERR_INVALID, "a special token must be non-empty UTF-8 text");
    if (id >= (1u << 24))
        return fj_err_set(err, FJ_ERR_RANGE, "special token id %u: ids must be below 2^24", id);
    for (size_t k = 0; k < enc->n_specials; k++) {
        if (enc->specials[k].id == id)
            return fj_err_set(err, FJ_ERR_INVALID, "id %u is already the special token %s", id,
                              enc->specials[k].text);
        if (strcmp(enc->specials[k].text, text) == 0)
            return fj_err_set(err, FJ_ERR_INVALID, "%s is already a special token (id %u)", text,
                              enc->specials[k].id);
    }
    if (id < enc->vocab.n_ids && enc->vocab.len[id] != 0)
        return fj_err_set(err, FJ_ERR_INVALID, "id %u is already an ordinary token of %s", id,
                          enc->name);
    struct tok_special_token *sp =
        realloc(enc->specials, (enc->n_specials + 1) * sizeof *enc->specials);
    if (sp == NULL)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    enc->specials = sp;
    char *copy = strdup(text);
    if (copy == NULL)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    sp[enc->n_specials++] = (struct tok_special_token){copy, len, id, true, false};
    if (id >= enc->n_vocab)
        enc->n_vocab = id + 1;
    tok_specials_index(enc);
    return 0;
}
