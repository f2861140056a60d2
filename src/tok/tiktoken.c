/* tiktoken.c - OpenAI's tiktoken encodings, built in.
 *
 * The rank files are OpenAI's original .tiktoken files, carried in data/tiktoken/ (their
 * sha256 is checked by CMake before they are embedded into the library by tiktoken_data.S),
 * so nothing is read or fetched at run time. Special tokens, split patterns and vocabulary
 * sizes are those of tiktoken_ext/openai_public.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

/* Symbols defined by tiktoken_data.S. */
#define EMBED(name)                                                                                \
    extern const uint8_t tok_data_##name[];                                                        \
    extern const uint8_t tok_data_##name##_end[];
EMBED(r50k_base)
EMBED(p50k_base)
EMBED(cl100k_base)
EMBED(o200k_base)

struct builtin_special {
    const char *text;
    uint32_t id;
};

struct builtin {
    const char *name;
    enum tok_pattern pattern;
    const uint8_t *data, *data_end;
    uint32_t n_vocab;
    struct builtin_special specials[6];
};

static const struct builtin builtins[] = {
    {"r50k_base",
     TOK_PATTERN_GPT2,
     tok_data_r50k_base,
     tok_data_r50k_base_end,
     50257,
     {{"<|endoftext|>", 50256}}},
    {"p50k_base",
     TOK_PATTERN_GPT2,
     tok_data_p50k_base,
     tok_data_p50k_base_end,
     50281,
     {{"<|endoftext|>", 50256}}},
    {"cl100k_base",
     TOK_PATTERN_CL100K,
     tok_data_cl100k_base,
     tok_data_cl100k_base_end,
     100277,
     {{"<|endoftext|>", 100257},
      {"<|fim_prefix|>", 100258},
      {"<|fim_middle|>", 100259},
      {"<|fim_suffix|>", 100260},
      {"<|endofprompt|>", 100276}}},
    {"o200k_base",
     TOK_PATTERN_O200K,
     tok_data_o200k_base,
     tok_data_o200k_base_end,
     200019,
     {{"<|endoftext|>", 199999}, {"<|endofprompt|>", 200018}}},
};

static const char *const names[] = {"cl100k_base", "o200k_base", "p50k_base",
                                    "r50k_base",   "gpt2",       NULL};

const char *const *tok_encoding_names(void)
{
    return names;
}

static int b64_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes standard base64 (with '=' padding) s[0..n) into out; returns the length or -1. */
static long b64_decode(const uint8_t *s, size_t n, uint8_t *out)
{
    if (n == 0 || n % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad > 0 || (v[k] = b64_value(s[i + k])) < 0) {
                return -1;
            }
        }
        uint32_t w = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) |
                     (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(w >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)w;
    }
    return (long)o;
}

/* One line "<base64> <rank>": its fields, or -1 if it has not that shape. */
static int split_line(const uint8_t *line, size_t n, size_t *b64_len, uint32_t *rank)
{
    const uint8_t *sp = memchr(line, ' ', n);
    if (sp == NULL || sp == line || sp + 1 == line + n)
        return -1;
    uint64_t r = 0;
    for (const uint8_t *q = sp + 1; q < line + n; q++) {
        if (*q < '0' || *q > '9' || r > UINT32_MAX / 10)
            return -1;
        r = r * 10 + (uint64_t)(*q - '0');
    }
    if (r >= UINT32_MAX)
        return -1;
    *b64_len = (size_t)(sp - line);
    *rank = (uint32_t)r;
    return 0;
}

/* The next non-empty line of data[*pos..len) as [*start, *end); advances *pos and *line_no.
 * Returns 0 at the end of the data. */
static int next_line(const uint8_t *data, size_t len, size_t *pos, size_t *line_no, size_t *start,
                     size_t *end)
{
    while (*pos < len) {
        const uint8_t *nl = memchr(data + *pos, '\n', len - *pos);
        *start = *pos;
        *end = nl ? (size_t)(nl - data) : len;
        *pos = *end + 1;
        ++*line_no;
        if (*end > *start)
            return 1;
    }
    return 0;
}

int tok_vocab_load_tiktoken(struct tok_vocab *v, const uint8_t *data, size_t len,
                            struct fj_err *err)
{
    /* Pass 1: count tokens, find the largest rank, bound the bytes. */
    size_t lines = 0, pool = 0, pos = 0, ln = 0, a, b, b64_len;
    uint32_t rank, max_rank = 0;
    while (next_line(data, len, &pos, &ln, &a, &b)) {
        if (split_line(data + a, b - a, &b64_len, &rank) != 0)
            return fj_err_set(err, FJ_ERR_FORMAT, "rank file line %zu: expected '<base64> <rank>'",
                              ln);
        lines++;
        pool += b64_len / 4 * 3;
        if (rank > max_rank)
            max_rank = rank;
    }
    if (lines == 0)
        return fj_err_set(err, FJ_ERR_FORMAT, "rank file is empty");
    /* Ranks index arrays: refuse a sparse file that would make them huge. */
    if (max_rank > 2 * lines + 1024)
        return fj_err_set(err, FJ_ERR_FORMAT, "rank file has %zu tokens but ranks up to %u", lines,
                          max_rank);
    int rc = tok_vocab_init(v, max_rank + 1, lines, pool, err);
    if (rc != 0)
        return rc;
    /* Pass 2: decode and add. */
    uint8_t tokbuf[1024];
    pos = ln = 0;
    while (next_line(data, len, &pos, &ln, &a, &b)) {
        split_line(data + a, b - a, &b64_len, &rank);
        long n = b64_len <= 4 * sizeof tokbuf / 3 ? b64_decode(data + a, b64_len, tokbuf) : -1;
        if (n <= 0)
            rc = fj_err_set(err, FJ_ERR_FORMAT, "rank file line %zu: bad base64", ln);
        else
            rc = tok_vocab_add(v, tokbuf, (size_t)n, rank, err);
        if (rc != 0) {
            tok_vocab_free(v);
            return rc;
        }
    }
    if ((rc = tok_vocab_finish(v, err)) != 0)
        tok_vocab_free(v);
    return rc;
}

static void encoding_free_specials(struct tok_encoding *enc)
{
    for (size_t k = 0; k < enc->n_specials; k++)
        free(enc->specials[k].text);
    free(enc->specials);
}

void tok_encoding_free(struct tok_encoding *enc)
{
    if (enc == NULL)
        return;
    tok_vocab_free(&enc->vocab);
    tok_merges_free(enc->merges);
    free(enc->merges);
    free(enc->whole);
    encoding_free_specials(enc);
    free(enc);
}

struct tok_encoding *tok_encoding_new(const char *name, struct fj_err *err)
{
    if (name != NULL && strcmp(name, "gpt2") == 0)
        name = "r50k_base";
    const struct builtin *b = NULL;
    for (size_t i = 0; name != NULL && i < sizeof builtins / sizeof builtins[0]; i++)
        if (strcmp(builtins[i].name, name) == 0)
            b = &builtins[i];
    if (b == NULL) {
        fj_err_set(err, FJ_ERR_NOT_FOUND,
                   "unknown encoding '%s' (known: cl100k_base, o200k_base, p50k_base, "
                   "r50k_base, gpt2)",
                   name ? name : "(null)");
        return NULL;
    }
    struct tok_encoding *enc = calloc(1, sizeof *enc);
    if (enc == NULL) {
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        return NULL;
    }
    snprintf(enc->name, sizeof enc->name, "%s", b->name);
    enc->pattern = b->pattern;
    enc->n_vocab = b->n_vocab;
    if (tok_vocab_load_tiktoken(&enc->vocab, b->data, (size_t)(b->data_end - b->data), err) != 0) {
        free(enc);
        return NULL;
    }
    size_t ns = 0;
    while (ns < 6 && b->specials[ns].text != NULL)
        ns++;
    enc->specials = calloc(ns, sizeof *enc->specials);
    if (enc->specials == NULL) {
        tok_encoding_free(enc);
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (size_t k = 0; k < ns; k++) {
        struct tok_special_token *t = &enc->specials[k];
        t->text = strdup(b->specials[k].text);
        if (t->text == NULL) {
            tok_encoding_free(enc);
            fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
            return NULL;
        }
        t->len = strlen(t->text);
        t->id = b->specials[k].id;
        t->special = true;
        enc->n_specials = k + 1;
    }
    tok_specials_index(enc);
    return enc;
}
