/* lex.c - a chat template's preprocessing and tokens, as @huggingface/jinja 0.5.11's
 * lexer.ts does them (docs/chat-templates.md).
 *
 * Preprocessing, in order, with the Template class's options (lstrip_blocks and
 * trim_blocks both on, as Hugging Face's apply_chat_template):
 *   1. one trailing "\n" of the template goes;
 *   2. lstrip_blocks: spaces and tabs from a line start up to "{#", "{%" or "{-" go
 *      (the regex /^[ \t]*({[#%-])/gm; a line starts after \n, \r, U+2028 or U+2029);
 *   3. trim_blocks: the "\n" right after "#}", "%}" or "-}" goes (/([#%-]})\n/g);
 *   4. transformers' {% generation %} / {% endgeneration %} tags go, with the whitespace
 *      around them where they carry "-".
 * Each byte of the result remembers its offset in the original source, so errors name the
 * line and column the author sees.
 *
 * The tokenizer then follows lexer.ts step by step, including where it is odd: "{%-" and
 * "{{-" trim the previous text with String.prototype.trimEnd (Unicode whitespace), "-%}"
 * and "-}}" skip whitespace after, "-" or "+" before digits is part of the number unless
 * the previous token ends an operand, and whitespace running to the end of the source
 * inside a tag is an error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat_internal.h"
#include "core/utf8.h"

void chat_where(const char *src, size_t len, uint32_t pos, char *buf, size_t cap)
{
    size_t line = 1, col = 1;
    if (pos > len)
        pos = (uint32_t)len;
    for (size_t i = 0; i < pos; i++) {
        if (src[i] == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)src[i] & 0xC0) != 0x80) {
            col++;
        }
    }
    snprintf(buf, cap, "chat template %zu:%zu: ", line, col);
}

static int lex_fail(const char *src, size_t len, uint32_t pos, struct fj_err *err, const char *fmt,
                    ...) __attribute__((format(printf, 5, 6)));

static int lex_fail(const char *src, size_t len, uint32_t pos, struct fj_err *err, const char *fmt,
                    ...)
{
    char where[64], msg[400];
    chat_where(src, len, pos, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fj_err_set(err, FJ_ERR_FORMAT, "%s%s", where, msg);
}

/* ---- preprocessing ----------------------------------------------------------------------- */

/* Text with, for each byte, its offset in the original source. */
struct pp {
    char *s;
    uint32_t *pos;
    size_t len, cap;
};

static int pp_push(struct pp *p, char c, uint32_t pos)
{
    if (p->len == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        char *s = realloc(p->s, cap + 1);
        if (s == NULL)
            return FJ_ERR_NOMEM;
        p->s = s;
        uint32_t *q = realloc(p->pos, (cap + 1) * sizeof *q);
        if (q == NULL)
            return FJ_ERR_NOMEM;
        p->pos = q;
        p->cap = cap;
    }
    p->s[p->len] = c;
    p->pos[p->len++] = pos;
    return 0;
}

static int pp_copy(struct pp *dst, const struct pp *src, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (pp_push(dst, src->s[i], src->pos[i]) != 0)
            return FJ_ERR_NOMEM;
    return 0;
}

static void pp_free(struct pp *p)
{
    free(p->s);
    free(p->pos);
    memset(p, 0, sizeof *p);
}

/* Length of a JavaScript line terminator at s[i] (\n, \r, U+2028, U+2029), or 0. */
static size_t line_term(const char *s, size_t n, size_t i)
{
    if (s[i] == '\n' || s[i] == '\r')
        return 1;
    if (i + 2 < n && (unsigned char)s[i] == 0xE2 && (unsigned char)s[i + 1] == 0x80 &&
        ((unsigned char)s[i + 2] == 0xA8 || (unsigned char)s[i + 2] == 0xA9))
        return 3;
    return 0;
}

/* Step 2: /^[ \t]*({[#%-])/gm -> "$1". */
static int pp_lstrip_blocks(const struct pp *in, struct pp *out)
{
    size_t i = 0;
    bool line_start = true;
    while (i < in->len) {
        if (line_start) {
            size_t j = i;
            while (j < in->len && (in->s[j] == ' ' || in->s[j] == '\t'))
                j++;
            if (j + 1 < in->len && in->s[j] == '{' &&
                (in->s[j + 1] == '#' || in->s[j + 1] == '%' || in->s[j + 1] == '-')) {
                if (pp_copy(out, in, j, j + 2) != 0)
                    return FJ_ERR_NOMEM;
                i = j + 2;
                line_start = false;
                continue;
            }
            line_start = false;
        }
        size_t t = line_term(in->s, in->len, i);
        if (t > 0) {
            if (pp_copy(out, in, i, i + t) != 0)
                return FJ_ERR_NOMEM;
            i += t;
            line_start = true;
            continue;
        }
        if (pp_push(out, in->s[i], in->pos[i]) != 0)
            return FJ_ERR_NOMEM;
        i++;
    }
    return 0;
}

/* Step 3: /([#%-]})\n/g -> "$1". */
static int pp_trim_blocks(const struct pp *in, struct pp *out)
{
    size_t i = 0;
    while (i < in->len) {
        char c = in->s[i];
        if ((c == '#' || c == '%' || c == '-') && i + 2 < in->len && in->s[i + 1] == '}' &&
            in->s[i + 2] == '\n') {
            if (pp_copy(out, in, i, i + 2) != 0)
                return FJ_ERR_NOMEM;
            i += 3;
            continue;
        }
        if (pp_push(out, c, in->pos[i]) != 0)
            return FJ_ERR_NOMEM;
        i++;
    }
    return 0;
}

static bool has_at(const struct pp *p, size_t i, const char *lit)
{
    size_t n = strlen(lit);
    return i + n <= p->len && memcmp(p->s + i, lit, n) == 0;
}

static size_t skip_space(const char *s, size_t n, size_t i)
{
    size_t k;
    while (i < n && (k = chat_js_space(s, n, i)) > 0)
        i += k;
    return i;
}

/* Matches {%(-?)\s*(?:end)?generation\s*(-?)%} at q; returns its end or 0. */
static size_t generation_tag(const struct pp *p, size_t q, bool *lstrip, bool *rstrip)
{
    if (!has_at(p, q, "{%"))
        return 0;
    size_t i = q + 2;
    *lstrip = i < p->len && p->s[i] == '-';
    if (*lstrip)
        i++;
    i = skip_space(p->s, p->len, i);
    if (has_at(p, i, "end"))
        i += 3;
    if (!has_at(p, i, "generation"))
        return 0;
    i = skip_space(p->s, p->len, i + 10);
    *rstrip = i < p->len && p->s[i] == '-';
    if (*rstrip)
        i++;
    if (!has_at(p, i, "%}"))
        return 0;
    return i + 2;
}

/* Step 4: /(\s*){%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/gs. */
static int pp_generation(const struct pp *in, struct pp *out)
{
    size_t i = 0;
    while (i < in->len) {
        if (in->s[i] != '{' && chat_js_space(in->s, in->len, i) == 0) {
            if (pp_push(out, in->s[i], in->pos[i]) != 0)
                return FJ_ERR_NOMEM;
            i++;
            continue;
        }
        size_t q = skip_space(in->s, in->len, i);
        bool ls = false, rs = false;
        size_t end = q < in->len ? generation_tag(in, q, &ls, &rs) : 0;
        if (end == 0) {
            size_t stop = q < in->len ? q + 1 : q;
            if (pp_copy(out, in, i, stop) != 0)
                return FJ_ERR_NOMEM;
            i = stop;
            continue;
        }
        size_t after = skip_space(in->s, in->len, end);
        if (!ls && pp_copy(out, in, i, q) != 0)
            return FJ_ERR_NOMEM;
        if (!rs && pp_copy(out, in, end, after) != 0)
            return FJ_ERR_NOMEM;
        i = after;
    }
    return 0;
}

static int preprocess(const char *src, size_t len, struct pp *res)
{
    struct pp a = {0}, b = {0};
    int rc = 0;
    if (len > 0 && src[len - 1] == '\n')
        len--;
    for (size_t i = 0; i < len && rc == 0; i++)
        rc = pp_push(&a, src[i], (uint32_t)i);
    if (rc == 0)
        rc = pp_lstrip_blocks(&a, &b);
    pp_free(&a);
    if (rc == 0)
        rc = pp_trim_blocks(&b, &a);
    pp_free(&b);
    if (rc == 0)
        rc = pp_generation(&a, &b);
    pp_free(&a);
    if (rc != 0) {
        pp_free(&b);
        return rc;
    }
    if (b.s == NULL && pp_push(&b, 0, 0) == 0)
        b.len = 0; /* an empty template still gets a buffer */
    if (b.s == NULL)
        return FJ_ERR_NOMEM;
    b.s[b.len] = '\0';
    b.pos[b.len] = (uint32_t)len;
    *res = b;
    return 0;
}

/* ---- tokens ------------------------------------------------------------------------------- */

struct lexer {
    const char *src; /* original, for messages */
    size_t src_len;
    const char *s; /* preprocessed */
    const uint32_t *pos;
    size_t n;
    size_t i;
    struct chat_arena *arena;
    struct chat_tokens_vec *out;
    struct fj_err *err;
};

static int lx_fail(struct lexer *lx, size_t at, const char *msg)
{
    return lex_fail(lx->src, lx->src_len, lx->pos[at < lx->n ? at : lx->n], lx->err, "%s", msg);
}

static int lx_push(struct lexer *lx, enum chat_tk type, const char *s, size_t len, size_t at)
{
    struct chat_tokens_vec *v = lx->out;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        struct chat_token *t = chat_arena_alloc(lx->arena, cap * sizeof *t);
        if (t == NULL)
            return fj_err_set(lx->err, FJ_ERR_NOMEM, "chat template: out of memory");
        if (v->n)
            memcpy(t, v->v, v->n * sizeof *t);
        v->v = t;
        v->cap = cap;
    }
    struct chat_token *t = &v->v[v->n++];
    t->type = type;
    t->s = s;
    t->len = len;
    t->pos = lx->pos[at < lx->n ? at : lx->n];
    return 0;
}

static enum chat_tk last_type(const struct lexer *lx, bool *none)
{
    *none = lx->out->n == 0;
    return *none ? TK_TEXT : lx->out->v[lx->out->n - 1].type;
}

/* {%- and {{- : String.prototype.trimEnd on the previous text token, dropped if empty. */
static void strip_trailing(struct lexer *lx)
{
    if (lx->out->n == 0)
        return;
    struct chat_token *t = &lx->out->v[lx->out->n - 1];
    if (t->type != TK_TEXT)
        return;
    size_t b, e;
    chat_js_trim(t->s, t->len, false, true, &b, &e);
    t->len = e;
    if (t->len == 0)
        lx->out->n--;
}

static void skip_leading(struct lexer *lx)
{
    lx->i = skip_space(lx->s, lx->n, lx->i);
}

static bool at_lit(const struct lexer *lx, const char *lit)
{
    size_t n = strlen(lit);
    return lx->i + n <= lx->n && memcmp(lx->s + lx->i, lit, n) == 0;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_word(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* consumeWhile(pred) for digits or word characters: the lexer fails when the run reaches the
 * end of the source. */
static int consume_class(struct lexer *lx, bool (*pred)(char), size_t *b, size_t *e)
{
    *b = lx->i;
    *e = lx->i;
    while (lx->i < lx->n && pred(lx->s[lx->i])) {
        lx->i++;
        if (lx->i >= lx->n)
            return lx_fail(lx, lx->i, "unexpected end of template");
    }
    *e = lx->i;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool parse_hex(const char *s, size_t n, size_t at, int digits, uint32_t *v)
{
    *v = 0;
    for (int k = 0; k < digits; k++) {
        int h = at + (size_t)k < n ? hexval(s[at + (size_t)k]) : -1;
        if (h < 0)
            return false;
        *v = *v * 16 + (uint32_t)h;
    }
    return true;
}

static int put_utf8(struct fj_buf *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return fj_buf_append(b, u, n);
}

/* A string literal from after its opening quote; escapes as lexer.ts decodes them. */
static int lex_string(struct lexer *lx, char quote, size_t start)
{
    struct fj_buf b = {0};
    int rc = 0;
    while (rc == 0) {
        if (lx->i >= lx->n) {
            rc = lx_fail(lx, start, "unterminated string");
            break;
        }
        char c = lx->s[lx->i];
        if (c == quote)
            break;
        if (c != '\\') {
            if (fj_buf_append(&b, &c, 1) != 0) {
                rc = fj_err_set(lx->err, FJ_ERR_NOMEM, "chat template: out of memory");
                break;
            }
            lx->i++;
            if (lx->i >= lx->n)
                rc = lx_fail(lx, start, "unterminated string");
            continue;
        }
        size_t at = lx->i++;
        if (lx->i >= lx->n) {
            rc = lx_fail(lx, start, "unterminated string");
            break;
        }
        char e = lx->s[lx->i++];
        const char *map = "n\nt\tr\rb\bf\fv\v''\"\"\\\\";
        const char *hit = NULL;
        for (const char *m = map; *m; m += 2)
            if (*m == e) {
                hit = m + 1;
                break;
            }
        if (hit != NULL) {
            if (fj_buf_append(&b, hit, 1) != 0) {
                rc = fj_err_set(lx->err, FJ_ERR_NOMEM, "chat template: out of memory");
                break;
            }
            continue;
        }
        if (e != 'x' && e != 'u') {
            rc = lx_fail(lx, at, "unknown escape sequence in a string");
            break;
        }
        uint32_t cp;
        int nd = e == 'x' ? 2 : 4;
        if (!parse_hex(lx->s, lx->n, lx->i, nd, &cp)) {
            rc = lx_fail(lx, at, "invalid hexadecimal escape sequence in a string");
            break;
        }
        lx->i += (size_t)nd;
        uint32_t lo;
        if (cp >= 0xD800 && cp <= 0xDBFF && lx->i + 6 <= lx->n && lx->s[lx->i] == '\\' &&
            lx->s[lx->i + 1] == 'u' && parse_hex(lx->s, lx->n, lx->i + 2, 4, &lo) && lo >= 0xDC00 &&
            lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            lx->i += 6;
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            rc = lx_fail(lx, at, "a lone surrogate escape in a string is not supported");
            break;
        }
        if (put_utf8(&b, cp) != 0)
            rc = fj_err_set(lx->err, FJ_ERR_NOMEM, "chat template: out of memory");
    }
    if (rc == 0) {
        lx->i++; /* the closing quote */
        char *s = chat_arena_alloc(lx->arena, b.len + 1);
        if (s == NULL)
            rc = fj_err_set(lx->err, FJ_ERR_NOMEM, "chat template: out of memory");
        else {
            if (b.len)
                memcpy(s, b.data, b.len);
            s[b.len] = '\0';
            rc = lx_push(lx, TK_STR, s, b.len, start);
        }
    }
    fj_buf_free(&b);
    return rc;
}

static const struct {
    const char *seq;
    enum chat_tk type;
} TABLE[] = {
    {"{%", TK_OPEN_STMT}, {"%}", TK_CLOSE_STMT}, {"{{", TK_OPEN_EXPR}, {"}}", TK_CLOSE_EXPR},
    {"(", TK_LPAREN},     {")", TK_RPAREN},      {"{", TK_LBRACE},     {"}", TK_RBRACE},
    {"[", TK_LBRACKET},   {"]", TK_RBRACKET},    {",", TK_COMMA},      {".", TK_DOT},
    {":", TK_COLON},      {"|", TK_PIPE},        {"<=", TK_CMP},       {">=", TK_CMP},
    {"==", TK_CMP},       {"!=", TK_CMP},        {"<", TK_CMP},        {">", TK_CMP},
    {"+", TK_ADD},        {"-", TK_ADD},         {"~", TK_ADD},        {"**", TK_POW},
    {"*", TK_MUL},        {"//", TK_MUL},        {"/", TK_MUL},        {"%", TK_MUL},
    {"=", TK_EQUALS},
};

static int lex_tokens(struct lexer *lx)
{
    int curly = 0;
    int rc;
    while (lx->i < lx->n) {
        bool none;
        enum chat_tk last = last_type(lx, &none);
        if (none || last == TK_CLOSE_STMT || last == TK_CLOSE_EXPR || last == TK_COMMENT) {
            size_t b = lx->i;
            while (lx->i < lx->n && !(lx->s[lx->i] == '{' && lx->i + 1 < lx->n &&
                                      (lx->s[lx->i + 1] == '%' || lx->s[lx->i + 1] == '{' ||
                                       lx->s[lx->i + 1] == '#')))
                lx->i++;
            if (lx->i > b) {
                if ((rc = lx_push(lx, TK_TEXT, lx->s + b, lx->i - b, b)) != 0)
                    return rc;
                continue;
            }
        }
        if (at_lit(lx, "{#")) {
            size_t start = lx->i;
            lx->i += 2;
            bool strip_before = lx->i < lx->n && lx->s[lx->i] == '-';
            if (strip_before)
                lx->i++;
            size_t b = lx->i;
            while (!(lx->i + 1 < lx->n && lx->s[lx->i] == '#' && lx->s[lx->i + 1] == '}')) {
                if (lx->i + 2 >= lx->n)
                    return lx_fail(lx, start, "missing end of comment tag");
                lx->i++;
            }
            size_t e = lx->i;
            bool strip_after = e > b && lx->s[e - 1] == '-';
            if (strip_after)
                e--;
            if (strip_before)
                strip_trailing(lx);
            if ((rc = lx_push(lx, TK_COMMENT, lx->s + b, e - b, start)) != 0)
                return rc;
            lx->i += 2;
            if (strip_after)
                skip_leading(lx);
            continue;
        }
        if (at_lit(lx, "{%-")) {
            strip_trailing(lx);
            if ((rc = lx_push(lx, TK_OPEN_STMT, "{%", 2, lx->i)) != 0)
                return rc;
            lx->i += 3;
            continue;
        }
        if (at_lit(lx, "{{-")) {
            strip_trailing(lx);
            if ((rc = lx_push(lx, TK_OPEN_EXPR, "{{", 2, lx->i)) != 0)
                return rc;
            curly = 0;
            lx->i += 3;
            continue;
        }
        size_t k;
        while (lx->i < lx->n && (k = chat_js_space(lx->s, lx->n, lx->i)) > 0) {
            lx->i += k;
            if (lx->i >= lx->n)
                return lx_fail(lx, lx->i, "unexpected end of template inside a tag");
        }
        if (at_lit(lx, "-%}")) {
            if ((rc = lx_push(lx, TK_CLOSE_STMT, "%}", 2, lx->i)) != 0)
                return rc;
            lx->i += 3;
            skip_leading(lx);
            continue;
        }
        if (at_lit(lx, "-}}")) {
            if ((rc = lx_push(lx, TK_CLOSE_EXPR, "}}", 2, lx->i)) != 0)
                return rc;
            lx->i += 3;
            skip_leading(lx);
            continue;
        }
        size_t at = lx->i;
        char c = lx->s[at];
        if (c == '-' || c == '+') {
            last = last_type(lx, &none);
            if (none || last == TK_TEXT)
                return lx_fail(lx, at, "unexpected character");
            if (!(last == TK_IDENT || last == TK_NUM || last == TK_STR || last == TK_RPAREN ||
                  last == TK_RBRACKET)) {
                lx->i++;
                size_t b = 0, e = 0;
                if ((rc = consume_class(lx, is_digit, &b, &e)) != 0)
                    return rc;
                if (e > b && lx->i + 1 < lx->n && lx->s[lx->i] == '.' &&
                    is_digit(lx->s[lx->i + 1])) {
                    lx->i++;
                    size_t fb = 0, fe = 0;
                    if ((rc = consume_class(lx, is_digit, &fb, &fe)) != 0)
                        return rc;
                    e = fe;
                }
                if (e > b)
                    rc = lx_push(lx, TK_NUM, lx->s + at, e - at, at);
                else
                    rc = lx_push(lx, TK_UNARY, lx->s + at, 1, at);
                if (rc != 0)
                    return rc;
                continue;
            }
        }
        bool matched = false;
        for (size_t t = 0; t < sizeof TABLE / sizeof TABLE[0]; t++) {
            if (TABLE[t].type == TK_CLOSE_EXPR && curly > 0)
                continue;
            if (at_lit(lx, TABLE[t].seq)) {
                size_t len = strlen(TABLE[t].seq);
                if ((rc = lx_push(lx, TABLE[t].type, lx->s + at, len, at)) != 0)
                    return rc;
                if (TABLE[t].type == TK_OPEN_EXPR)
                    curly = 0;
                else if (TABLE[t].type == TK_LBRACE)
                    curly++;
                else if (TABLE[t].type == TK_RBRACE)
                    curly--;
                lx->i += len;
                matched = true;
                break;
            }
        }
        if (matched)
            continue;
        if (c == '\'' || c == '"') {
            lx->i++;
            if ((rc = lex_string(lx, c, at)) != 0)
                return rc;
            continue;
        }
        if (is_digit(c)) {
            size_t b = 0, e = 0;
            if ((rc = consume_class(lx, is_digit, &b, &e)) != 0)
                return rc;
            last = last_type(lx, &none);
            if ((none || last != TK_DOT) && lx->i + 1 < lx->n && lx->s[lx->i] == '.' &&
                is_digit(lx->s[lx->i + 1])) {
                lx->i++;
                size_t fb = 0, fe = 0;
                if ((rc = consume_class(lx, is_digit, &fb, &fe)) != 0)
                    return rc;
                e = fe;
            }
            if ((rc = lx_push(lx, TK_NUM, lx->s + b, e - b, b)) != 0)
                return rc;
            continue;
        }
        if (is_word(c)) {
            size_t b = 0, e = 0;
            if ((rc = consume_class(lx, is_word, &b, &e)) != 0)
                return rc;
            if ((rc = lx_push(lx, TK_IDENT, lx->s + b, e - b, b)) != 0)
                return rc;
            continue;
        }
        char what[48];
        if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7F)
            snprintf(what, sizeof what, "unexpected character (byte 0x%02X)", (unsigned char)c);
        else
            snprintf(what, sizeof what, "unexpected character '%c'", c);
        return lx_fail(lx, at, what);
    }
    return 0;
}

int chat_lex(const char *src, size_t len, struct chat_arena *arena, struct chat_tokens_vec *out,
             struct fj_err *err)
{
    struct pp p = {0};
    if (preprocess(src, len, &p) != 0)
        return fj_err_set(err, FJ_ERR_NOMEM, "chat template: out of memory");
    /* Token text points into the preprocessed text: keep it in the arena. */
    char *s = chat_arena_alloc(arena, p.len + 1);
    uint32_t *pos = chat_arena_alloc(arena, (p.len + 1) * sizeof *pos);
    if (s == NULL || pos == NULL) {
        pp_free(&p);
        return fj_err_set(err, FJ_ERR_NOMEM, "chat template: out of memory");
    }
    memcpy(s, p.s, p.len + 1);
    memcpy(pos, p.pos, (p.len + 1) * sizeof *pos);
    size_t n = p.len;
    pp_free(&p);
    struct lexer lx = {.src = src,
                       .src_len = len,
                       .s = s,
                       .pos = pos,
                       .n = n,
                       .arena = arena,
                       .out = out,
                       .err = err};
    return lex_tokens(&lx);
}
