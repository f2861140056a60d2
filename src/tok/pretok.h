/* pretok.h - the pre-tokenizer: splits text into pieces the way a split regex would
 * (internal to tok/).
 *
 * Byte-level BPE tokenizers first cut text with a regular expression and then merge bytes
 * inside each piece. forja does not run those regexes: each known pattern has a hand-written
 * scanner that returns exactly the match the regex engine (leftmost-first alternation,
 * greedy quantifiers with backtracking) would. docs/tokenizers.md derives each scanner from
 * its pattern.
 */
#ifndef FJ_TOK_PRETOK_H
#define FJ_TOK_PRETOK_H

#include <stddef.h>
#include <stdint.h>

enum tok_pattern {
    /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
     * (r50k_base, p50k_base, GPT-2) */
    TOK_PATTERN_GPT2,
    /* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
     * ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+   (cl100k_base, Llama 3) */
    TOK_PATTERN_CL100K,
    /* cl100k's pattern with \p{N} (one digit) in place of \p{N}{1,3}   (Qwen 2, 2.5, 3) */
    TOK_PATTERN_QWEN2,
    /* [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|...)?|
     * [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|...)?|
     * \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+   (o200k_base) */
    TOK_PATTERN_O200K,
};

/* The pattern's regular expression, as tokenizer.json files spell it (a Split pre-tokenizer's
 * "Regex"; GPT-2's is also what a ByteLevel pre-tokenizer with use_regex applies). */
const char *tok_pattern_regex(enum tok_pattern pattern);

/* The pattern whose regex is exactly re[0..len) in one of the spellings forja knows (see
 * docs/tokenizers.md), or -1. */
int tok_pattern_from_regex(const char *re, size_t len);

/* Returns the end of the piece that starts at s[i], for i < n; s[0..n) is valid UTF-8 and
 * n is treated as the end of the text (lookaheads see nothing past it). The result is > i. */
size_t tok_pretok_next(enum tok_pattern pattern, const uint8_t *s, size_t i, size_t n);

#endif
