/* unicode.h - character classes for the tokenizers' split patterns (internal to tok/).
 *
 * The split patterns of tiktoken and Hugging Face tokenizers test a handful of Unicode
 * properties: \p{L} and its subcategories, \p{M}, \p{N} and \s (White_Space). Each code
 * point falls in exactly one class below; the table is generated from the Unicode
 * Character Database by scripts/gen-unicode-table.mjs (version in tok_uc_version).
 */
#ifndef FJ_TOK_UNICODE_H
#define FJ_TOK_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#include "core/utf8.h"

enum tok_uclass {
    TOK_UC_OTHER = 0, /* punctuation, symbols, controls, unassigned, private use */
    TOK_UC_LU = 1,    /* Lu, Lt: upper- and titlecase letters */
    TOK_UC_LL = 2,    /* Ll: lowercase letters */
    TOK_UC_LO = 3,    /* Lm, Lo: modifier and other letters (caseless) */
    TOK_UC_M = 4,     /* Mn, Mc, Me: marks (not \p{L}) */
    TOK_UC_N = 5,     /* Nd, Nl, No */
    TOK_UC_WS = 6,    /* White_Space other than CR and LF */
    TOK_UC_NL = 7,    /* CR, LF */
};

extern const char tok_uc_version[];
extern const uint8_t tok_uc_stage1[];
extern const uint8_t tok_uc_stage2[];

static inline enum tok_uclass tok_uc_class(uint32_t cp)
{
    return (enum tok_uclass)tok_uc_stage2[(size_t)tok_uc_stage1[cp >> 7] * 128 + (cp & 127)];
}

/* Class of the character at s[i] (valid UTF-8) and its length in bytes. */
static inline enum tok_uclass tok_uc_class_at(const uint8_t *s, size_t i, int *len)
{
    if (s[i] < 0x80) {
        *len = 1;
        return (enum tok_uclass)tok_uc_stage2[s[i]];
    }
    return tok_uc_class(fj_utf8_decode(s + i, len));
}

static inline int tok_uc_is_letter(enum tok_uclass c)
{
    return c >= TOK_UC_LU && c <= TOK_UC_LO;
}

#endif
