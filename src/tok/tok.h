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
 * An encoding can also be built from a Hugging Face tokenizer.json of a byte-level BPE model
 * (GPT-2, Llama 3, Qwen 2/2.5/3): tok_encoding_open_hf. Its added tokens (special or not)
 * are what this interface calls special tokens. docs/tokenizers.md says what is supported.
 *
 * Thread safety: an encoding is immutable once built (tok_encoding_add_special is part of
 * building it); any number of threads may encode and decode with it at once. There is no
 * global state.
 */
#ifndef FJ_TOK_TOK_H
#define FJ_TOK_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

struct tok_encoding;

/* How text that spells a special token (such as "<|endoftext|>") is treated. For an
 * encoding from a tokenizer.json this applies to all its added tokens, special or not. */
enum tok_special {
    TOK_SPECIAL_REJECT,  /* it is an error (FJ_ERR_SPECIAL), as tiktoken's encode() by default */
    TOK_SPECIAL_ALLOW,   /* it becomes the special token's id (allowed_special="all"; what a
                            Hugging Face tokenizer does by default) */
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

/* Builds an encoding from tokenizer.json text (len bytes). NULL + err on failure. Owned by caller.
 *
 * Supported: model "BPE" over the byte-level alphabet (merges as "a b" strings or ["a", "b"]
 * pairs, ignore_merges), pre_tokenizer ByteLevel (GPT-2's regex) or Sequence [Split(regex),
 * ByteLevel(use_regex false)] with a regex forja has a scanner for, normalizer null or NFC,
 * decoder ByteLevel, added_tokens without lstrip/rstrip/single_word. The post_processor is
 * ignored: tok_encode never adds BOS/EOS (the chat template does). The name is
 * "tokenizer.json". Errors: FJ_ERR_FORMAT for malformed JSON or a malformed tokenizer (a
 * merge naming a token not in the vocab, duplicate ids, ...), FJ_ERR_INVALID for a valid
 * tokenizer forja does not support (SentencePiece-style models, unknown regexes, ...), with a
 * message naming what; FJ_ERR_NOMEM. The JSON text is not kept. */
struct tok_encoding *tok_encoding_from_hf_json(const char *json, size_t len, struct fj_err *err);

/* Same, reading the file at path (errors name the path; FJ_ERR_IO if it cannot be read). */
struct tok_encoding *tok_encoding_open_hf(const char *path, struct fj_err *err);

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

/* Id of the token whose text/bytes are exactly s[0..len): special/added tokens by their
 * content, ordinary tokens by their bytes. -1 if none. */
int64_t tok_token_id(const struct tok_encoding *enc, const char *s, size_t len);

/* true if id is a special (or added) token. */
bool tok_is_special(const struct tok_encoding *enc, uint32_t id);

/* Adds a special token (recognized like tiktoken's specials) to an encoding before use; fails
 * if text or id is taken. Used for the built-in model: cl100k_base + <|im_start|> (100264)
 * and <|im_end|> (100265). text is copied; it must be non-empty UTF-8 (FJ_ERR_INVALID) and id
 * below 2^24 (FJ_ERR_RANGE). "Taken": the id of an ordinary or special token, or the text of
 * a special token (FJ_ERR_INVALID). n_vocab grows to cover id. Not thread-safe: call it before
 * the encoding is shared. */
int tok_encoding_add_special(struct tok_encoding *enc, const char *text, uint32_t id,
                             struct fj_err *err);

/* Appends a tokenizer.json equivalent to enc (vocab in the byte-level alphabet, merges derived
 * from the ranks as transformers' TikTokenConverter does, the split regex of enc's pattern,
 * ByteLevel decoder, added_tokens for the specials) that @huggingface/transformers and
 * tok_encoding_from_hf_json load and that tokenizes identically. An encoding from a
 * tokenizer.json is written back with its own merges, ignore_merges and normalizer. Returns 0,
 * FJ_ERR_NOMEM, or FJ_ERR_INVALID for a special token whose text is not valid UTF-8. */
int tok_encoding_to_hf_json(const struct tok_encoding *enc, struct fj_buf *out, struct fj_err *err);

#endif
