/* hf.c - Hugging Face tokenizer.json files of byte-level BPE models, read and written.
 *
 * Reading builds the same struct tok_encoding as the tiktoken encodings, with three things
 * tiktoken has not: merge ranks by pair (struct tok_merges, the file's "merges" order), the
 * rule for pieces that are tokens (tiktoken and "ignore_merges" take the piece whole; without
 * ignore_merges only where merging its bytes gives the token anyway, enc->whole) and an NFC
 * normalizer. Writing produces what transformers' TikTokenConverter would from the ranks.
 *
 * Everything a file may say that forja does not implement is refused with FJ_ERR_INVALID
 * and a message naming it, rather than tokenized differently; malformed files are
 * FJ_ERR_FORMAT. The order of the checks matters for the messages: a SentencePiece-style
 * file is named as such before its vocabulary (not in the byte-level alphabet) is looked at.
 * docs/tokenizers.md ("Hugging Face tokenizer.json") lists what is supported and why.
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "tok/nfc.h"
#include "tok/tok_internal.h"

/* The largest id: struct tok_vocab keeps ids (and their count) below 2^24. */
#define MAX_ID ((1u << 24) - 2)

/* ---- the byte-level alphabet (GPT-2's bytes_to_unicode) ----
 * Printable Latin-1 bytes stand for themselves; the other 68 bytes (controls, space, DEL, NBSP,
 * soft hyphen) are U+0100.. in byte order. */
#define ALPHABET_END 0x144

struct alphabet {
    uint16_t cp_of[256];            /* byte -> code point */
    uint16_t byte_of[ALPHABET_END]; /* code point -> byte, 256 if none */
};

static void alphabet_init(struct alphabet *a)
{
    int n = 0;
    for (int cp = 0; cp < ALPHABET_END; cp++)
        a->byte_of[cp] = 256;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        a->cp_of[b] = (uint16_t)(printable ? b : 256 + n++);
        a->byte_of[a->cp_of[b]] = (uint16_t)b;
    }
}

/* Decodes the byte-level string s[0..n) (valid UTF-8) into out (room for n bytes). Returns the
 * number of bytes, or -1 if a character is not in the alphabet. */
static long alphabet_decode(const struct alphabet *a, const char *s, size_t n, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int len;
        uint32_t cp = fj_utf8_decode((const uint8_t *)s + i, &len);
        if (cp >= ALPHABET_END || a->byte_of[cp] == 256)
            return -1;
        out[o++] = (uint8_t)a->byte_of[cp];
        i += (size_t)len;
    }
    return (long)o;
}

/* ---- errors: every message starts with the source (the path, or "tokenizer.json") ---- */

struct ctx {
    const char *src;
    struct fj_err *err;
    struct alphabet ab;
    uint8_t *scratch; /* decoded tokens, room for the longest string of the file */
    size_t scratch_cap;
};

static int fail(struct ctx *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct ctx *c, int code, const char *fmt, ...)
{
    char msg[FJ_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fj_err_set(c->err, code, "%s: %s", c->src, msg);
}

/* A JSON string for a message: at most 40 bytes of it (cut at a character), quoted. */
struct shown {
    char s[64];
};

static struct shown show(const char *s)
{
    struct shown r;
    size_t n = strlen(s), cut = n > 40 ? 40 : n;
    while (cut < n && cut > 0 && ((uint8_t)s[cut] & 0xC0) == 0x80)
        cut--;
    snprintf(r.s, sizeof r.s, "\"%.*s%s\"", (int)cut, s, cut < n ? "..." : "");
    return r;
}

static const char *type_of(const json_t *obj)
{
    const char *t = json_string_value(json_object_get(obj, "type"));
    return t != NULL ? t : "(none)";
}

/* A boolean field: absent gives dflt; another type is a format error. */
static int get_bool(struct ctx *c, const json_t *obj, const char *where, const char *key, bool dflt,
                    bool *out)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return fail(c, FJ_ERR_FORMAT, "%s.%s is not true or false", where, key);
    *out = json_is_true(v);
    return 0;
}

/* ---- what the file says around the model ---- */

#define SENTENCEPIECE                                                                              \
    "SentencePiece-style tokenizers (Llama 2, TinyLlama, Mistral v0.1) are not supported yet"

/* Metaspace, byte fallback and the "▁" replacements are the marks of a SentencePiece model
 * converted to tokenizer.json. Looks through nested Sequences. */
static bool sentencepiece_part(const json_t *part)
{
    if (!json_is_object(part))
        return false;
    const char *t = type_of(part);
    if (strcmp(t, "Metaspace") == 0 || strcmp(t, "ByteFallback") == 0 || strcmp(t, "Prepend") == 0)
        return true;
    if (strcmp(t, "Replace") == 0) {
        const char *content = json_string_value(json_object_get(part, "content"));
        return content != NULL && strstr(content, "\xE2\x96\x81") != NULL; /* U+2581 */
    }
    static const char *const lists[] = {"pretokenizers", "normalizers", "decoders"};
    for (size_t k = 0; k < 3; k++) {
        const json_t *list = json_object_get(part, lists[k]);
        size_t i;
        const json_t *e;
        json_array_foreach(list, i, e)
        {
            if (sentencepiece_part(e))
                return true;
        }
    }
    return false;
}

static int check_normalizer(struct ctx *c, const json_t *root, bool *nfc)
{
    const json_t *n = json_object_get(root, "normalizer");
    *nfc = false;
    if (n == NULL || json_is_null(n))
        return 0;
    if (!json_is_object(n))
        return fail(c, FJ_ERR_FORMAT, "normalizer is neither null nor an object");
    if (strcmp(type_of(n), "NFC") == 0) {
        *nfc = true;
        return 0;
    }
    if (strcmp(type_of(n), "Sequence") == 0) {
        const json_t *list = json_object_get(n, "normalizers");
        size_t i;
        const json_t *e;
        if (!json_is_array(list))
            return fail(c, FJ_ERR_FORMAT, "normalizer Sequence without a normalizers list");
        json_array_foreach(list, i, e)
        {
            if (!json_is_object(e) || strcmp(type_of(e), "NFC") != 0)
                return fail(c, FJ_ERR_INVALID,
                            "normalizer %s is not supported (only null and NFC are)",
                            json_is_object(e) ? type_of(e) : "(not an object)");
            *nfc = true;
        }
        return 0;
    }
    return fail(c, FJ_ERR_INVALID, "normalizer %s is not supported (only null and NFC are)",
                type_of(n));
}

/* A ByteLevel pre-tokenizer; *split says whether it applies GPT-2's regex (use_regex). */
static int check_byte_level(struct ctx *c, const json_t *bl, bool *split)
{
    const json_t *aps = json_object_get(bl, "add_prefix_space");
    if (!json_is_false(aps))
        return fail(c, FJ_ERR_INVALID,
                    "ByteLevel pre-tokenizer with add_prefix_space %s is not supported (only "
                    "false)",
                    json_is_true(aps) ? "true" : "unset");
    return get_bool(c, bl, "pre_tokenizer ByteLevel", "use_regex", true, split);
}

static int check_split(struct ctx *c, const json_t *sp, enum tok_pattern *pattern)
{
    const json_t *pat = json_object_get(sp, "pattern");
    const json_t *re = json_object_get(pat, "Regex");
    if (!json_is_string(re)) {
        if (json_is_string(json_object_get(pat, "String")))
            return fail(c, FJ_ERR_INVALID,
                        "Split on the string %s is not supported (only known regexes)",
                        show(json_string_value(json_object_get(pat, "String"))).s);
        return fail(c, FJ_ERR_FORMAT, "Split pre-tokenizer without a pattern.Regex string");
    }
    const char *behavior = json_string_value(json_object_get(sp, "behavior"));
    if (behavior == NULL || strcmp(behavior, "Isolated") != 0)
        return fail(c, FJ_ERR_INVALID, "Split behavior %s is not supported (only Isolated)",
                    behavior ? behavior : "(none)");
    if (!json_is_false(json_object_get(sp, "invert")))
        return fail(c, FJ_ERR_INVALID, "Split with invert other than false is not supported");
    int p = tok_pattern_from_regex(json_string_value(re), json_string_length(re));
    if (p < 0)
        return fail(c, FJ_ERR_INVALID,
                    "split regex \"%.300s\" is not one forja has a scanner for (GPT-2's, "
                    "cl100k/Llama 3's, Qwen 2's, o200k's)",
                    json_string_value(re));
    *pattern = (enum tok_pattern)p;
    return 0;
}

static int check_pre_tokenizer(struct ctx *c, const json_t *root, enum tok_pattern *pattern)
{
    const json_t *pt = json_object_get(root, "pre_tokenizer");
    bool split = false;
    int rc;
    if (!json_is_object(pt))
        return fail(c, FJ_ERR_INVALID, "no pre_tokenizer (a byte-level BPE needs ByteLevel)");
    const char *t = type_of(pt);
    if (strcmp(t, "ByteLevel") == 0) {
        if ((rc = check_byte_level(c, pt, &split)) != 0)
            return rc;
        if (!split)
            return fail(c, FJ_ERR_INVALID,
                        "a ByteLevel pre-tokenizer without use_regex and no Split is not "
                        "supported");
        *pattern = TOK_PATTERN_GPT2;
        return 0;
    }
    if (strcmp(t, "Sequence") != 0)
        return fail(c, FJ_ERR_INVALID, "pre_tokenizer %s is not supported", t);
    const json_t *list = json_object_get(pt, "pretokenizers");
    size_t n = json_array_size(list);
    const json_t *last = json_array_get(list, n - 1);
    if (n == 0 || n > 2 || strcmp(type_of(last), "ByteLevel") != 0 ||
        (n == 2 && strcmp(type_of(json_array_get(list, 0)), "Split") != 0))
        return fail(c, FJ_ERR_INVALID,
                    "pre_tokenizer Sequence of %zu (%s, ...) is not supported (only [Split, "
                    "ByteLevel] and [ByteLevel])",
                    n, n ? type_of(json_array_get(list, 0)) : "");
    if ((rc = check_byte_level(c, last, &split)) != 0)
        return rc;
    if (n == 1) {
        if (!split)
            return fail(c, FJ_ERR_INVALID,
                        "a ByteLevel pre-tokenizer without use_regex and no Split is not "
                        "supported");
        *pattern = TOK_PATTERN_GPT2;
        return 0;
    }
    if (split)
        return fail(c, FJ_ERR_INVALID,
                    "Split followed by a ByteLevel with use_regex (two regexes) is not "
                    "supported");
    return check_split(c, json_array_get(list, 0), pattern);
}

static int check_decoder(struct ctx *c, const json_t *root)
{
    const json_t *d = json_object_get(root, "decoder");
    if (json_is_object(d) && strcmp(type_of(d), "Sequence") == 0 &&
        json_array_size(json_object_get(d, "decoders")) == 1)
        d = json_array_get(json_object_get(d, "decoders"), 0);
    if (!json_is_object(d) || strcmp(type_of(d), "ByteLevel") != 0)
        return fail(c, FJ_ERR_INVALID, "decoder %s is not supported (only ByteLevel)",
                    json_is_object(d) ? type_of(d) : "null");
    return 0;
}

static int check_model_options(struct ctx *c, const json_t *model, bool *ignore_merges)
{
    const json_t *dropout = json_object_get(model, "dropout");
    if (dropout != NULL && !json_is_null(dropout) &&
        !(json_is_number(dropout) && json_number_value(dropout) == 0))
        return fail(c, FJ_ERR_INVALID, "BPE dropout is not supported");
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const json_t *a = json_object_get(model, affixes[k]);
        if (a != NULL && !json_is_null(a) && !(json_is_string(a) && json_string_length(a) == 0))
            return fail(c, FJ_ERR_INVALID, "model.%s other than null or \"\" is not supported",
                        affixes[k]);
    }
    return get_bool(c, model, "model", "ignore_merges", false, ignore_merges);
}

/* ---- vocabulary, merges, added tokens ---- */

static int decode_token(struct ctx *c, const char *s, size_t n, const char *where, size_t *len)
{
    long r = n <= c->scratch_cap ? alphabet_decode(&c->ab, s, n, c->scratch) : -1;
    if (r <= 0)
        return fail(c, n == 0 ? FJ_ERR_FORMAT : FJ_ERR_INVALID, "%s %s is %s", where, show(s).s,
                    n == 0 ? "empty" : "not in the byte-level alphabet (not a byte-level BPE)");
    *len = (size_t)r;
    return 0;
}

static int load_vocab(struct ctx *c, const json_t *vocab, uint32_t max_added, struct tok_vocab *v)
{
    if (!json_is_object(vocab))
        return fail(c, FJ_ERR_FORMAT, "model.vocab is %s, not an object",
                    vocab == NULL ? "missing" : "of the wrong type");
    size_t count = 0, pool = 0;
    uint32_t max_id = 0;
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)vocab, key, val)
    {
        if (!json_is_integer(val))
            return fail(c, FJ_ERR_FORMAT, "model.vocab[%s] is not an integer id", show(key).s);
        json_int_t id = json_integer_value(val);
        if (id < 0 || id > (json_int_t)MAX_ID)
            return fail(c, FJ_ERR_FORMAT, "model.vocab[%s] = %lld: ids must be in 0..%u",
                        show(key).s, (long long)id, MAX_ID);
        if ((uint32_t)id > max_id)
            max_id = (uint32_t)id;
        pool += strlen(key);
        count++;
    }
    if (count == 0)
        return fail(c, FJ_ERR_FORMAT, "model.vocab is empty");
    /* Ids index arrays: refuse a sparse vocabulary that would make them huge. */
    uint32_t top = max_id > max_added ? max_id : max_added;
    if (top > 2 * count + 1024)
        return fail(c, FJ_ERR_FORMAT, "%zu tokens but ids up to %u", count, top);
    int rc = tok_vocab_init(v, max_id + 1, count, pool, c->err);
    if (rc != 0)
        return rc;
    json_object_foreach((json_t *)vocab, key, val)
    {
        uint32_t id = (uint32_t)json_integer_value(val);
        size_t len;
        if ((rc = decode_token(c, key, strlen(key), "vocab token", &len)) != 0)
            return rc;
        if (v->len[id] != 0) {
            char other[64];
            snprintf(other, sizeof other, "%s", show(key).s);
            return fail(c, FJ_ERR_FORMAT, "model.vocab gives id %u to two tokens (one is %s)", id,
                        other);
        }
        if ((rc = tok_vocab_add(v, c->scratch, len, id, c->err)) != 0)
            return rc;
    }
    if ((rc = tok_vocab_finish(v, c->err)) != 0)
        return rc;
    for (int b = 0; b < 256; b++) {
        if (v->byte_id[b] == TOK_NO_ID)
            return fail(c, FJ_ERR_FORMAT, "model.vocab lacks the token of byte 0x%02X (U+%04X)", b,
                        c->ab.cp_of[b]);
    }
    return 0;
}

/* The two token strings of merge i: "a b" or ["a", "b"]. */
static int merge_parts(struct ctx *c, const json_t *e, size_t i, char *buf, size_t cap,
                       const char **a, size_t *alen, const char **b, size_t *blen)
{
    if (json_is_string(e)) {
        const char *s = json_string_value(e);
        size_t n = json_string_length(e);
        const char *sp = memchr(s, ' ', n);
        if (sp == NULL || sp == s || sp + 1 == s + n ||
            memchr(sp + 1, ' ', (size_t)(s + n - sp - 1)))
            return fail(c, FJ_ERR_FORMAT,
                        "model.merges[%zu] %s is not two tokens separated by one space", i,
                        show(s).s);
        if (n >= cap)
            return fail(c, FJ_ERR_FORMAT, "model.merges[%zu] is too long", i);
        memcpy(buf, s, n + 1);
        buf[sp - s] = '\0';
        *a = buf;
        *alen = (size_t)(sp - s);
        *b = buf + (sp - s) + 1;
        *blen = n - *alen - 1;
        return 0;
    }
    if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
        json_is_string(json_array_get(e, 1))) {
        *a = json_string_value(json_array_get(e, 0));
        *alen = json_string_length(json_array_get(e, 0));
        *b = json_string_value(json_array_get(e, 1));
        *blen = json_string_length(json_array_get(e, 1));
        return 0;
    }
    return fail(c, FJ_ERR_FORMAT, "model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", i);
}

static int load_merges(struct ctx *c, const json_t *merges, const struct tok_vocab *v,
                       struct tok_merges *m)
{
    if (!json_is_array(merges))
        return fail(c, FJ_ERR_FORMAT, "model.merges is %s, not a list",
                    merges == NULL ? "missing" : "of the wrong type");
    size_t n = json_array_size(merges);
    if (n >= TOK_NO_ID)
        return fail(c, FJ_ERR_FORMAT, "%zu merges: too many", n);
    int rc = tok_merges_init(m, n, c->err);
    if (rc != 0)
        return rc;
    char *buf = malloc(c->scratch_cap + 2);
    uint8_t *joined = malloc(2 * c->scratch_cap + 1);
    if (buf == NULL || joined == NULL) {
        rc = fj_err_set(c->err, FJ_ERR_NOMEM, "out of memory");
        goto out;
    }
    size_t i;
    const json_t *e;
    json_array_foreach(merges, i, e)
    {
        const char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0, la = 0, lb = 0;
        if ((rc = merge_parts(c, e, i, buf, c->scratch_cap + 2, &a, &alen, &b, &blen)) != 0)
            goto out;
        if ((rc = decode_token(c, a, alen, "a merge's token", &la)) != 0)
            goto out;
        memcpy(joined, c->scratch, la);
        if ((rc = decode_token(c, b, blen, "a merge's token", &lb)) != 0)
            goto out;
        memcpy(joined + la, c->scratch, lb);
        uint32_t ia = tok_vocab_lookup(v, joined, la), ib = tok_vocab_lookup(v, joined + la, lb);
        uint32_t ij = tok_vocab_lookup(v, joined, la + lb);
        if (ia == TOK_NO_ID || ib == TOK_NO_ID) {
            rc = fail(c, FJ_ERR_FORMAT, "model.merges[%zu] names %s, which is not in the vocab", i,
                      show(ia == TOK_NO_ID ? a : b).s);
            goto out;
        }
        if (ij == TOK_NO_ID) {
            char left[64];
            snprintf(left, sizeof left, "%s", show(a).s);
            rc = fail(c, FJ_ERR_FORMAT,
                      "model.merges[%zu] (%s + %s) makes a token that is not in the vocab", i, left,
                      show(b).s);
            goto out;
        }
        tok_merges_set(m, ia, ib, (uint32_t)i, ij);
    }
    rc = tok_merges_finish(m, v, c->err);
out:
    free(buf);
    free(joined);
    return rc;
}

/* The largest id among the added tokens (checked later), so the vocabulary's range check
 * covers them. */
static uint32_t max_added_id(const json_t *added)
{
    uint32_t top = 0;
    size_t i;
    const json_t *e;
    json_array_foreach(added, i, e)
    {
        json_int_t id = json_integer_value(json_object_get(e, "id"));
        if (id > 0 && id <= (json_int_t)MAX_ID && (uint32_t)id > top)
            top = (uint32_t)id;
    }
    return top;
}

static int load_added(struct ctx *c, const json_t *added, struct tok_encoding *enc)
{
    if (added == NULL || json_is_null(added)) {
        tok_specials_index(enc);
        return 0;
    }
    if (!json_is_array(added))
        return fail(c, FJ_ERR_FORMAT, "added_tokens is not a list");
    size_t n = json_array_size(added);
    enc->specials = calloc(n ? n : 1, sizeof *enc->specials);
    if (enc->specials == NULL)
        return fj_err_set(c->err, FJ_ERR_NOMEM, "out of memory");
    size_t i;
    const json_t *e;
    int rc;
    json_array_foreach(added, i, e)
    {
        const json_t *idv = json_object_get(e, "id"), *content = json_object_get(e, "content");
        if (!json_is_object(e) || !json_is_integer(idv) || !json_is_string(content) ||
            json_string_length(content) == 0)
            return fail(c, FJ_ERR_FORMAT,
                        "added_tokens[%zu] lacks an integer id or a non-empty content string", i);
        const char *text = json_string_value(content);
        size_t len = json_string_length(content);
        json_int_t id = json_integer_value(idv);
        if (id < 0 || id > (json_int_t)MAX_ID)
            return fail(c, FJ_ERR_FORMAT, "added_tokens[%zu] %s: id %lld out of range 0..%u", i,
                        show(text).s, (long long)id, MAX_ID);
        if (strlen(text) != len)
            return fail(c, FJ_ERR_FORMAT, "added_tokens[%zu] contains a NUL character", i);
        bool special = false, normalized = false, flag = false;
        if ((rc = get_bool(c, e, "added_tokens[]", "special", false, &special)) != 0 ||
            (rc = get_bool(c, e, "added_tokens[]", "normalized", !special, &normalized)) != 0)
            return rc;
        static const char *const unsupported[] = {"lstrip", "rstrip", "single_word"};
        for (int k = 0; k < 3; k++) {
            if ((rc = get_bool(c, e, "added_tokens[]", unsupported[k], false, &flag)) != 0)
                return rc;
            if (flag)
                return fail(c, FJ_ERR_INVALID, "added token %s: %s is not supported", show(text).s,
                            unsupported[k]);
        }
        for (size_t k = 0; k < enc->n_specials; k++) {
            if (enc->specials[k].id == (uint32_t)id || strcmp(enc->specials[k].text, text) == 0)
                return fail(c, FJ_ERR_FORMAT, "added_tokens[%zu] %s repeats the %s of another", i,
                            show(text).s, enc->specials[k].id == (uint32_t)id ? "id" : "content");
        }
        const struct tok_vocab *v = &enc->vocab;
        if ((uint32_t)id < v->n_ids && v->len[id] != 0 &&
            (v->len[id] != len || memcmp(v->pool + v->off[id], text, len) != 0))
            return fail(c, FJ_ERR_FORMAT,
                        "added token %s has id %lld, which is another vocab token", show(text).s,
                        (long long)id);
        if (normalized && enc->nfc && !tok_nfc_quick((const uint8_t *)text, len)) {
            struct fj_buf nf = {0};
            bool same = tok_nfc((const uint8_t *)text, len, &nf) == 0 && nf.len == len &&
                        memcmp(nf.data, text, len) == 0;
            fj_buf_free(&nf);
            if (!same)
                return fail(c, FJ_ERR_INVALID,
                            "added token %s is normalized but not NFC: not supported",
                            show(text).s);
        }
        char *copy = strdup(text);
        if (copy == NULL)
            return fj_err_set(c->err, FJ_ERR_NOMEM, "out of memory");
        enc->specials[enc->n_specials++] =
            (struct tok_special_token){copy, len, (uint32_t)id, special, normalized};
        if ((uint32_t)id >= enc->n_vocab)
            enc->n_vocab = (uint32_t)id + 1;
    }
    tok_specials_index(enc);
    return 0;
}

/* enc->whole for a file without ignore_merges: the tokens that merging their own bytes
 * produces. A piece spelling any other token is merged like any piece. */
static int find_whole_tokens(struct ctx *c, struct tok_encoding *enc)
{
    const struct tok_vocab *v = &enc->vocab;
    enc->whole = calloc(v->n_ids / 8 + 1, 1);
    struct tok_ids ids = {0};
    if (enc->whole == NULL)
        return fj_err_set(c->err, FJ_ERR_NOMEM, "out of memory");
    for (uint32_t id = 0; id < v->n_ids; id++) {
        size_t len = v->len[id];
        bool ok = len == 1;
        if (len >= 2) {
            struct tok_sink sink = {&ids, 0};
            ids.len = 0;
            if (tok_bpe_merge(v, enc->merges, v->pool + v->off[id], len, &sink) != 0) {
                tok_ids_free(&ids);
                return fj_err_set(c->err, FJ_ERR_NOMEM, "out of memory");
            }
            ok = ids.len == 1 && ids.data[0] == id;
        }
        if (ok)
            enc->whole[id >> 3] |= (uint8_t)(1u << (id & 7));
    }
    tok_ids_free(&ids);
    return 0;
}

static size_t longest_string(const json_t *model)
{
    size_t longest = 1;
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)json_object_get(model, "vocab"), key, val)
    {
        size_t n = strlen(key);
        if (n > longest)
            longest = n;
    }
    /* A merge string holds two tokens and a space. */
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(model, "merges"), i, e)
    {
        size_t n = json_is_string(e) ? json_string_length(e) : 0;
        for (size_t k = 0; k < json_array_size(e); k++)
            n += json_string_length(json_array_get(e, k));
        if (n > longest)
            longest = n;
    }
    return longest;
}

static int build(struct ctx *c, const json_t *root, struct tok_encoding *enc)
{
    int rc;
    if (!json_is_object(root))
        return fail(c, FJ_ERR_FORMAT, "not a JSON object");
    const json_t *model = json_object_get(root, "model");
    if (!json_is_object(model))
        return fail(c, FJ_ERR_FORMAT, "no \"model\" object");
    const char *type = json_string_value(json_object_get(model, "type"));
    if (type == NULL)
        return fail(c, FJ_ERR_FORMAT, "model has no type");
    if (strcmp(type, "Unigram") == 0)
        return fail(c, FJ_ERR_INVALID, "model type Unigram: " SENTENCEPIECE);
    if (strcmp(type, "BPE") != 0)
        return fail(c, FJ_ERR_INVALID, "model type %s is not supported (only byte-level BPE)",
                    type);
    bool byte_fallback = false;
    if ((rc = get_bool(c, model, "model", "byte_fallback", false, &byte_fallback)) != 0)
        return rc;
    if (byte_fallback)
        return fail(c, FJ_ERR_INVALID, "BPE with byte_fallback: " SENTENCEPIECE);
    static const char *const parts[] = {"normalizer", "pre_tokenizer", "decoder"};
    for (int k = 0; k < 3; k++)
        if (sentencepiece_part(json_object_get(root, parts[k])))
            return fail(c, FJ_ERR_INVALID, "%s %s: " SENTENCEPIECE, parts[k],
                        type_of(json_object_get(root, parts[k])));
    bool ignore_merges = false;
    if ((rc = check_normalizer(c, root, &enc->nfc)) != 0 ||
        (rc = check_pre_tokenizer(c, root, &enc->pattern)) != 0 ||
        (rc = check_decoder(c, root)) != 0 ||
        (rc = check_model_options(c, model, &ignore_merges)) != 0)
        return rc;
    const json_t *added = json_object_get(root, "added_tokens");
    c->scratch_cap = longest_string(model);
    c->scratch = malloc(c->scratch_cap);
    if (c->scratch == NULL)
        return fj_err_set(c->err, FJ_ERR_NOMEM, "out of memory");
    if ((rc = load_vocab(c, json_object_get(model, "vocab"), max_added_id(added), &enc->vocab)) !=
        0)
        return rc;
    enc->n_vocab = enc->vocab.n_ids;
    enc->merges = calloc(1, sizeof *enc->merges);
    if (enc->merges == NULL)
        return fj_err_set(c->err, FJ_ERR_NOMEM, "out of memory");
    if ((rc = load_merges(c, json_object_get(model, "merges"), &enc->vocab, enc->merges)) != 0 ||
        (rc = load_added(c, added, enc)) != 0)
        return rc;
    if (!ignore_merges && (rc = find_whole_tokens(c, enc)) != 0)
        return rc;
    return 0;
}

static struct tok_encoding *from_json(const char *json, size_t len, const char *src,
                                      struct fj_err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        fj_err_set(err, FJ_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", src, jerr.line,
                   jerr.column, jerr.text);
        return NULL;
    }
    struct tok_encoding *enc = calloc(1, sizeof *enc);
    struct ctx c = {.src = src, .err = err};
    alphabet_init(&c.ab);
    int rc = enc == NULL ? fj_err_set(err, FJ_ERR_NOMEM, "out of memory") : build(&c, root, enc);
    free(c.scratch);
    json_decref(root);
    if (rc != 0) {
        tok_encoding_free(enc);
        return NULL;
    }
    snprintf(enc->name, sizeof enc->name, "tokenizer.json");
    enc->hf = true;
    return enc;
}

struct tok_encoding *tok_encoding_from_hf_json(const char *json, size_t len, struct fj_err *err)
{
    return from_json(json, len, "tokenizer.json", err);
}

struct tok_encoding *tok_encoding_open_hf(const char *path, struct fj_err *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fj_err_set(err, FJ_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *data = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 1 << 20;
            char *p = ncap > cap ? realloc(data, ncap) : NULL;
            if (p == NULL) {
                free(data);
                fclose(f);
                fj_err_set(err, FJ_ERR_NOMEM, "%s: out of memory reading the file", path);
                return NULL;
            }
            data = p;
            cap = ncap;
        }
        size_t got = fread(data + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(data);
        fj_err_set(err, FJ_ERR_IO, "%s: read error", path);
        return NULL;
    }
    struct tok_encoding *enc = from_json(data, len, path, err);
    free(data);
    return enc;
}

/* ---- writing ---- */

/* Appends s[0..n) (valid UTF-8) as a JSON string. */
static int put_string(struct fj_buf *out, const char *s, size_t n)
{
    int rc = fj_buf_append(out, "\"", 1);
    size_t run = 0; /* s[run..i) waits to be copied */
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint8_t ch = (uint8_t)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        rc = fj_buf_append(out, s + run, i - run);
        if (rc == 0)
            rc = ch == '"' || ch == '\\' ? fj_buf_printf(out, "\\%c", ch)
                                         : fj_buf_printf(out, "\\u%04x", ch);
        run = i + 1;
    }
    if (rc == 0)
        rc = fj_buf_append(out, s + run, n - run);
    return rc == 0 ? fj_buf_append(out, "\"", 1) : rc;
}

/* Appends bytes in the byte-level alphabet, escaped for a JSON string (no quotes). */
static int put_chars(struct fj_buf *out, const struct alphabet *ab, const uint8_t *b, size_t n)
{
    if (fj_buf_reserve(out, 2 * n) != 0)
        return FJ_ERR_NOMEM;
    char *o = out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        uint16_t cp = ab->cp_of[b[i]];
        if (cp == '"' || cp == '\\') {
            *o++ = '\\';
            *o++ = (char)cp;
        } else if (cp < 0x80) {
            *o++ = (char)cp;
        } else {
            *o++ = (char)(0xC0 | (cp >> 6));
            *o++ = (char)(0x80 | (cp & 0x3F));
        }
    }
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
    return 0;
}

/* Appends bytes as a JSON string in the byte-level alphabet. */
static int put_token(struct fj_buf *out, const struct alphabet *ab, const uint8_t *b, size_t n)
{
    int rc = fj_buf_append(out, "\"", 1);
    if (rc == 0)
        rc = put_chars(out, ab, b, n);
    return rc == 0 ? fj_buf_append(out, "\"", 1) : rc;
}

struct merge_out {
    uint32_t rank, left, right;
};

static int cmp_merge(const void *a, const void *b)
{
    const struct merge_out *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    if (x->left != y->left)
        return x->left < y->left ? -1 : 1;
    return x->right < y->right ? -1 : x->right > y->right;
}

/* The merges to write, in order. For a tiktoken encoding, as transformers' TikTokenConverter
 * derives them: for each token in rank order, every split of its bytes into two tokens,
 * sorted by the ranks of (left, right). A byte-pair merge with these merges joins the same
 * pairs in the same order as tiktoken's (docs/tokenizers.md). */
/* A growable list of merges. */
struct merge_list {
    struct merge_out *m;
    size_t len, cap;
};

static int merge_push(struct merge_list *ml, uint32_t rank, uint32_t left, uint32_t right)
{
    if (ml->len == ml->cap) {
        size_t cap = ml->cap ? 2 * ml->cap : 1024;
        struct merge_out *p = realloc(ml->m, cap * sizeof *p);
        if (p == NULL)
            return FJ_ERR_NOMEM;
        ml->m = p;
        ml->cap = cap;
    }
    ml->m[ml->len++] = (struct merge_out){rank, left, right};
    return 0;
}

static int collect_merges(const struct tok_encoding *enc, struct merge_out **out, size_t *n)
{
    const struct tok_vocab *v = &enc->vocab;
    struct merge_list ml = {0};
    int rc = 0;
    if (enc->merges != NULL) {
        const struct tok_merges *mg = enc->merges;
        for (size_t i = 0; rc == 0 && i <= mg->mask; i++) {
            const struct tok_merge_slot *s = &mg->slots[i];
            if (s->key == 0)
                continue;
            uint64_t k = s->key - 1;
            rc = merge_push(&ml, s->m.rank, (uint32_t)(k >> 24), (uint32_t)k & 0xFFFFFF);
        }
        if (rc == 0 && ml.len > 1)
            qsort(ml.m, ml.len, sizeof *ml.m, cmp_merge);
    } else {
        for (uint32_t id = 0; rc == 0 && id < v->n_ids; id++) {
            const uint8_t *b = v->pool + v->off[id];
            size_t start = ml.len;
            for (size_t i = 1; rc == 0 && i < v->len[id]; i++) {
                uint32_t l = tok_vocab_lookup(v, b, i),
                         r = tok_vocab_lookup(v, b + i, v->len[id] - i);
                if (l != TOK_NO_ID && r != TOK_NO_ID)
                    rc = merge_push(&ml, id, l, r);
            }
            if (rc == 0 && ml.len - start > 1)
                qsort(ml.m + start, ml.len - start, sizeof *ml.m, cmp_merge);
        }
    }
    if (rc != 0) {
        free(ml.m);
        return rc;
    }
    *out = ml.m;
    *n = ml.len;
    return 0;
}

static int cmp_special(const void *a, const void *b)
{
    const struct tok_special_token *x = *(const struct tok_special_token *const *)a;
    const struct tok_special_token *y = *(const struct tok_special_token *const *)b;
    return x->id < y->id ? -1 : x->id > y->id;
}

int tok_encoding_to_hf_json(const struct tok_encoding *enc, struct fj_buf *out, struct fj_err *err)
{
    struct alphabet ab;
    alphabet_init(&ab);
    const struct tok_vocab *v = &enc->vocab;
    const struct tok_special_token **sp = calloc(enc->n_specials + 1, sizeof *sp);
    struct merge_out *merges = NULL;
    size_t n_merges = 0;
    int rc = sp == NULL ? FJ_ERR_NOMEM : collect_merges(enc, &merges, &n_merges);
    if (rc != 0)
        goto out;
    for (size_t k = 0; k < enc->n_specials; k++) {
        sp[k] = &enc->specials[k];
        if (!fj_utf8_valid(sp[k]->text, sp[k]->len, NULL)) {
            rc = fj_err_set(err, FJ_ERR_INVALID, "special token %u is not valid UTF-8", sp[k]->id);
            goto out;
        }
    }
    qsort(sp, enc->n_specials, sizeof *sp, cmp_special);
    rc = fj_buf_printf(out, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n"
                            "  \"padding\": null,\n  \"added_tokens\": [");
    for (size_t k = 0; k < enc->n_specials && rc == 0; k++) {
        rc = fj_buf_printf(out, "%s\n    {\"id\": %u, \"content\": ", k ? "," : "", sp[k]->id);
        if (rc == 0)
            rc = put_string(out, sp[k]->text, sp[k]->len);
        if (rc == 0)
            rc = fj_buf_printf(out,
                               ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                               "\"normalized\": %s, \"special\": %s}",
                               sp[k]->normalized ? "true" : "false",
                               sp[k]->special ? "true" : "false");
    }
    const char *re = tok_pattern_regex(enc->pattern);
    if (rc == 0)
        rc = fj_buf_printf(out,
                           "\n  ],\n  \"normalizer\": %s,\n"
                           "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": "
                           "[{\"type\": \"Split\", \"pattern\": {\"Regex\": ",
                           enc->nfc ? "{\"type\": \"NFC\"}" : "null");
    if (rc == 0)
        rc = put_string(out, re, strlen(re));
    if (rc == 0)
        rc = fj_buf_printf(
            out,
            "}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", "
            "\"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]},\n"
            "  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
            "\"trim_offsets\": false, \"use_regex\": true},\n"
            "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
            "\"trim_offsets\": true, \"use_regex\": true},\n"
            "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, "
            "\"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, "
            "\"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": %s,\n"
            "    \"vocab\": {",
            enc->whole == NULL ? "true" : "false");
    bool first = true;
    for (uint32_t id = 0; id < v->n_ids && rc == 0; id++) {
        if (v->len[id] == 0)
            continue;
        rc = fj_buf_append(out, first ? "\n      " : ",\n      ", first ? 7 : 8);
        first = false;
        if (rc == 0)
            rc = put_token(out, &ab, v->pool + v->off[id], v->len[id]);
        if (rc == 0)
            rc = fj_buf_printf(out, ": %u", id);
    }
    if (rc == 0)
        rc = fj_buf_printf(out, "\n    },\n    \"merges\": [");
    for (size_t i = 0; i < n_merges && rc == 0; i++) {
        /* "left right": byte-level tokens hold no space (it is "Ġ"), so the older, smaller
         * form of a merge is unambiguous, and it loads faster than ["left", "right"]. */
        const struct merge_out *m = &merges[i];
        rc = fj_buf_append(out, i ? ",\n      \"" : "\n      \"", i ? 9 : 8);
        if (rc == 0)
            rc = put_chars(out, &ab, v->pool + v->off[m->left], v->len[m->left]);
        if (rc == 0)
            rc = fj_buf_append(out, " ", 1);
        if (rc == 0)
            rc = put_chars(out, &ab, v->pool + v->off[m->right], v->len[m->right]);
        if (rc == 0)
            rc = fj_buf_append(out, "\"", 1);
    }
    if (rc == 0)
        rc = fj_buf_printf(out, "\n    ]\n  }\n}\n");
out:
    if (rc == FJ_ERR_NOMEM)
        fj_err_set(err, rc, "out of memory writing a tokenizer.json");
    free(sp);
    free(merges);
    return rc;
}
