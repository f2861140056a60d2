/* tok.h - tokenizers: text to token ids and back.
 *
 * forja's tokenizers are byte-level BPE: a split pattern cuts text into pieces, and each
 * piece's UTF-8 bytes are merged into tokens by rank. The built-in encodings are OpenAI's
 * tiktoken encodings, id for id:
 *
 *     struct fj_err err = {0};
 *     struct tok_encoding *enc = tok_encoding_new("cl100k_base", &err);
 *     struct tok_ids ids = {0};
 *     tok_encode(enc, "hello world", 11, TOK_SPECIAL_REJECT, &ids, &err);  // ids = 15339 1917
 *     tok_ids_free(&ids);
 *     tok_encoding_free(enc);
 *
 * Thread safety: an encoding is immutable once built; any number of threads may encode and
 * decode with it at once. There is no global state.
 */
#ifndef FJ_TOK_TOK_H
#define FJ_TOK_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

struct tok_encoding;

/* How text that spells a special token (such as "<|endoftext|>") is treated. */
enum tok_special {
    TOK_SPECIAL_REJECT,  /* it is an error (FJ_ERR_SPECIAL), as tiktoken's encode() by default */
    TOK_SPECIAL_ALLOW,   /* it becomes the special token's id (allowed_special="all") */
    TOK_SPECIAL_AS_TEXT, /* it is ordinary text (tiktoken's encode_ordinary) */
};

/* A growable array of token ids; owned by the caller, released with tok_ids_free. */
struct tok_ids {
    uint32_t *data;
    size_t len;
    size_t cap;
};

/* Appends one id. Returns 0 or FJ_ERR_NOMEM (ids unchanged). */
int tok_ids_push(struct tok_ids *ids, uint32_t id);
void tok_ids_free(struct tok_ids *ids);

/* Builds a built-in encoding: "cl100k_base", "o200k_base", "p50k_base", "r50k_base", or
 * "gpt2" (an alias of r50k_base). Returns NULL and fills err (FJ_ERR_NOT_FOUND for an
 * unknown name, FJ_ERR_NOMEM). The caller owns the result; free it with tok_encoding_free. */
struct tok_encoding *tok_encoding_new(const char *name, struct fj_err *err);

/* Frees an encoding. NULL is allowed. */
void tok_encoding_free(struct tok_encoding *enc);

/* The names tok_encoding_new accepts, NULL-terminated (aliases included). */
const char *const *tok_encoding_names(void);

/* The encoding's canonical name ("r50k_base" for "gpt2"). Borrowed; lives as long as enc. */
const char *tok_encoding_name(const struct tok_encoding *enc);

/* One more than the largest token id, special tokens included. */
uint32_t tok_encoding_n_vocab(const struct tok_encoding *enc);

/* Appends the tokens of text[0..len) to ids. text must be valid UTF-8 (FJ_ERR_UTF8 names
 * the offset of the first bad byte otherwise). With TOK_SPECIAL_REJECT, text containing a
 * special token's spelling fails with FJ_ERR_SPECIAL. On failure ids keeps its old length. */
int tok_encode(const struct tok_encoding *enc, const char *text, size_t len,
               enum tok_special special, struct tok_ids *ids, struct fj_err *err);

/* Like tok_encode but only counts the tokens, allocating nothing for them. */
int tok_count(const struct tok_encoding *enc, const char *text, size_t len,
              enum tok_special special, size_t *count, struct fj_err *err);

/* Appends the bytes of ids[0..n) to out. An id that is not a token fails with
 * FJ_ERR_NOT_FOUND. The bytes may not be valid UTF-8 (a token can hold part of a character). */
int tok_decode(const struct tok_encoding *enc, const uint32_t *ids, size_t n, struct fj_buf *out,
               struct fj_err *err);

/* The bytes of one token (special tokens give their text). Returns 0, or FJ_ERR_NOT_FOUND
 * for an id that is not a token. *bytes is borrowed; it lives as long as enc. */
int tok_token_bytes(const struct tok_encoding *enc, uint32_t id, const uint8_t **bytes,
                    size_t *len);

#endif
