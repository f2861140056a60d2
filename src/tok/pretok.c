/* pretok.c - hand-written scanners equivalent to the tokenizers' split regexes.
 *
 * Each scanner answers one question: at position i, which alternative of the pattern matches
 * first, and where does its (greedy, backtracked) match end? The derivations are in
 * docs/tokenizers.md; in short:
 *
 *   \s*[\r\n]+     the whitespace run from i, cut just after its last CR or LF.
 *   \s+(?!\S)      the whitespace run, less its last character when a non-space follows.
 *   (?i:'s|...)    Unicode simple case folding, so 's also matches 'S and 'ſ (U+017F).
 *
 * Invariants: input is valid UTF-8 (the caller validated it); every scanner consumes at
 * least one character, so the caller's loop always advances.
 */
#include "tok/pretok.h"

#include <string.h>

#include "tok/unicode.h"

/* The character class at s[i], or TOK_UC_NL as a stand-in for "no character" at the end,
 * which no rule below accepts as part of a letter, number or symbol run. */
static inline enum tok_uclass class_at(const uint8_t *s, size_t i, size_t n, int *len)
{
    if (i >= n) {
        *len = 0;
        return TOK_UC_NL;
    }
    return tok_uc_class_at(s, i, len);
}

/* End of the run of characters from i whose class is in mask (bit per class). */
static inline size_t run_end(const uint8_t *s, size_t i, size_t n, unsigned mask)
{
    while (i < n) {
        int len;
        enum tok_uclass c = tok_uc_class_at(s, i, &len);
        if (!(mask & (1u << c)))
            break;
        i += (size_t)len;
    }
    return i;
}

#define BIT(c)     (1u << (c))
#define MASK_L     (BIT(TOK_UC_LU) | BIT(TOK_UC_LL) | BIT(TOK_UC_LO))
#define MASK_N     BIT(TOK_UC_N)
#define MASK_SPACE (BIT(TOK_UC_WS) | BIT(TOK_UC_NL))
/* [^\s\p{L}\p{N}]: symbols, punctuation, controls and marks. */
#define MASK_SYMBOL (BIT(TOK_UC_OTHER) | BIT(TOK_UC_M))
/* o200k's [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] and [\p{Ll}\p{Lm}\p{Lo}\p{M}]. */
#define MASK_UPPERISH (BIT(TOK_UC_LU) | BIT(TOK_UC_LO) | BIT(TOK_UC_M))
#define MASK_LOWERISH (BIT(TOK_UC_LL) | BIT(TOK_UC_LO) | BIT(TOK_UC_M))

static inline int in(unsigned mask, enum tok_uclass c)
{
    return (mask >> c) & 1u;
}

static inline uint8_t ascii_lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

/* Length of the contraction 's 't 're 've 'm 'll 'd at s[i] (s[i] == '\''), or 0. With
 * fold, letters match case-insensitively, and "s" also matches U+017F (bytes C5 BF). */
static size_t contraction_len(const uint8_t *s, size_t i, size_t n, int fold)
{
    if (i + 1 >= n)
        return 0;
    uint8_t a = fold ? ascii_lower(s[i + 1]) : s[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (fold && s[i + 1] == 0xC5 && i + 2 < n && s[i + 2] == 0xBF)
        return 3;
    if (i + 2 >= n)
        return 0;
    uint8_t b = fold ? ascii_lower(s[i + 2]) : s[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

/* \s*[\r\n]+ | \s+(?!\S) | \s+ at a whitespace character s[i]. */
static size_t whitespace_piece(const uint8_t *s, size_t i, size_t n, int newline_rule)
{
    size_t j = i, last_nl = n, last_start = i;
    while (j < n) {
        int len;
        enum tok_uclass c = tok_uc_class_at(s, j, &len);
        if (!in(MASK_SPACE, c))
            break;
        if (c == TOK_UC_NL)
            last_nl = j;
        last_start = j;
        j += (size_t)len;
    }
    if (newline_rule && last_nl != n)
        return last_nl + 1;
    if (j == n || last_start == i)
        return j;
    return last_start;
}

/* [^\s\p{L}\p{N}]+ from j, then any run of the ASCII characters in `trail`. */
static size_t symbol_piece(const uint8_t *s, size_t j, size_t n, const char *trail)
{
    j = run_end(s, j, n, MASK_SYMBOL);
    while (j < n && s[j] != 0 && strchr(trail, s[j]) != NULL)
        j++;
    return j;
}

/* The last four alternatives that cl100k and o200k share, at s[i] of class c0:
 * \p{N}{1,max_digits} | ?[^\s\p{L}\p{N}]+[trail]* | \s*[\r\n]+ | \s+(?!\S) | \s+ */
static size_t tail_piece(const uint8_t *s, size_t i, size_t n, enum tok_uclass c0, int max_digits,
                         const char *trail)
{
    int len;
    if (c0 == TOK_UC_N) {
        size_t j = i;
        for (int d = 0; d < max_digits && class_at(s, j, n, &len) == TOK_UC_N; d++)
            j += (size_t)len;
        return j;
    }
    size_t j = (s[i] == ' ') ? i + 1 : i;
    if (in(MASK_SYMBOL, class_at(s, j, n, &len)))
        return symbol_piece(s, j, n, trail);
    return whitespace_piece(s, i, n, 1);
}

static size_t next_gpt2(const uint8_t *s, size_t i, size_t n)
{
    if (s[i] == '\'') {
        size_t m = contraction_len(s, i, n, 0);
        if (m)
            return i + m;
    }
    size_t j = (s[i] == ' ') ? i + 1 : i;
    int len;
    enum tok_uclass c = class_at(s, j, n, &len);
    if (in(MASK_L, c))
        return run_end(s, j, n, MASK_L);
    if (c == TOK_UC_N)
        return run_end(s, j, n, MASK_N);
    if (in(MASK_SYMBOL, c))
        return symbol_piece(s, j, n, "");
    return whitespace_piece(s, i, n, 0);
}

static inline __attribute__((always_inline)) size_t next_cl100k(const uint8_t *s, size_t i,
                                                                size_t n, int max_digits)
{
    if (s[i] == '\'') {
        size_t m = contraction_len(s, i, n, 1);
        if (m)
            return i + m;
    }
    int len0, len1;
    enum tok_uclass c0 = tok_uc_class_at(s, i, &len0);
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (in(MASK_L, c0))
        return run_end(s, i, n, MASK_L);
    if (c0 != TOK_UC_NL && c0 != TOK_UC_N) {
        size_t j = i + (size_t)len0;
        if (in(MASK_L, class_at(s, j, n, &len1)))
            return run_end(s, j, n, MASK_L);
    }
    return tail_piece(s, i, n, c0, max_digits, "\r\n");
}

/* o200k's first alternative without its optional prefix character, from start:
 * [upperish]*[lowerish]+ — returns the end of the [lowerish]+ part, or 0 if none matches. */
static size_t o200k_cased_word(const uint8_t *s, size_t start, size_t n)
{
    size_t p = start, last_both = n;
    int len = 0;
    enum tok_uclass c;
    /* The upperish run; remember the last character that is also lowerish (Lm, Lo, M),
     * which is where the regex lands when it backtracks. */
    while ((c = class_at(s, p, n, &len)), in(MASK_UPPERISH, c)) {
        if (in(MASK_LOWERISH, c))
            last_both = p;
        p += (size_t)len;
    }
    if (c == TOK_UC_LL)
        return run_end(s, p, n, MASK_LOWERISH);
    if (last_both != n) {
        class_at(s, last_both, n, &len);
        return last_both + (size_t)len;
    }
    return 0;
}

static size_t with_contraction(const uint8_t *s, size_t j, size_t n)
{
    if (j < n && s[j] == '\'')
        return j + contraction_len(s, j, n, 1);
    return j;
}

static size_t next_o200k(const uint8_t *s, size_t i, size_t n)
{
    int len0, len1;
    enum tok_uclass c0 = tok_uc_class_at(s, i, &len0);
    size_t after = i + (size_t)len0;
    /* [^\r\n\p{L}\p{N}]? may take s[i] (space, symbol or mark) as a prefix. */
    int prefix = !in(MASK_L, c0) && c0 != TOK_UC_N && c0 != TOK_UC_NL;
    size_t e;
    if (prefix && (e = o200k_cased_word(s, after, n)) != 0)
        return with_contraction(s, e, n);
    if ((e = o200k_cased_word(s, i, n)) != 0)
        return with_contraction(s, e, n);
    /* [^\r\n\p{L}\p{N}]?[upperish]+[lowerish]* */
    if (prefix && in(MASK_UPPERISH, class_at(s, after, n, &len1))) {
        e = run_end(s, run_end(s, after, n, MASK_UPPERISH), n, MASK_LOWERISH);
        return with_contraction(s, e, n);
    }
    if (in(MASK_UPPERISH, c0)) {
        e = run_end(s, run_end(s, i, n, MASK_UPPERISH), n, MASK_LOWERISH);
        return with_contraction(s, e, n);
    }
    return tail_piece(s, i, n, c0, 3, "\r\n/");
}

size_t tok_pretok_next(enum tok_pattern pattern, const uint8_t *s, size_t i, size_t n)
{
    switch (pattern) {
    case TOK_PATTERN_GPT2: return next_gpt2(s, i, n);
    case TOK_PATTERN_CL100K: return next_cl100k(s, i, n, 3);
    case TOK_PATTERN_QWEN2: return next_cl100k(s, i, n, 1);
    case TOK_PATTERN_O200K: return next_o200k(s, i, n);
    }
    return n;
}

/* The regexes as tokenizer.json files spell them: GPT-2's is the one of Hugging Face's
 * ByteLevel pre-tokenizer; cl100k's is the one of Llama 3's file (tiktoken's older
 * spelling); Qwen 2's is the one of Qwen's files; o200k's is tiktoken's. */
/* One alternative per line. */
/* clang-format off */
#define CONTRACTIONS "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
#define UPPERISH     "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]"
#define LOWERISH     "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]"
static const char *const regexes[] = {
    [TOK_PATTERN_GPT2] =
        "'s|'t|'re|'ve|'m|'ll|'d"
        "| ?\\p{L}+"
        "| ?\\p{N}+"
        "| ?[^\\s\\p{L}\\p{N}]+"
        "|\\s+(?!\\S)|\\s+",
    [TOK_PATTERN_CL100K] =
        CONTRACTIONS
        "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
        "|\\p{N}{1,3}"
        "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
        "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    [TOK_PATTERN_QWEN2] =
        CONTRACTIONS
        "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
        "|\\p{N}"
        "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
        "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    [TOK_PATTERN_O200K] =
        "[^\\r\\n\\p{L}\\p{N}]?" UPPERISH "*" LOWERISH "+" CONTRACTIONS "?"
        "|[^\\r\\n\\p{L}\\p{N}]?" UPPERISH "+" LOWERISH "*" CONTRACTIONS "?"
        "|\\p{N}{1,3}"
        "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*"
        "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
/* clang-format on */

const char *tok_pattern_regex(enum tok_pattern pattern)
{
    return regexes[pattern];
}

int tok_pattern_from_regex(const char *re, size_t len)
{
    for (size_t p = 0; p < sizeof regexes / sizeof regexes[0]; p++)
        if (strlen(regexes[p]) == len && memcmp(regexes[p], re, len) == 0)
            return (int)p;
    return -1;
}
