/* value.c - runtime values of the chat template engine and the JavaScript behaviour
 * @huggingface/jinja inherits: number formatting (Number::toString, toFixed), strings
 * measured and indexed in UTF-16 code units, String.prototype.trim's whitespace, loose (==)
 * and strict (===) equality, JSON.stringify, and the conversion of a JSON context into
 * values (Object.entries order: integer-like keys first).
 *
 * All values of one render live in its arena (struct chat_arena); strings from the JSON
 * context and the template are referenced, not copied. Arrays and maps are never shared
 * by copying, so pointer identity is JavaScript's object identity.
 */
#include <math.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat_internal.h"
#include "core/utf8.h"

/* ---- arena ---------------------------------------------------------------------------- */

struct chat_chunk {
    struct chat_chunk *next;
    size_t cap, used;
    alignas(max_align_t) unsigned char data[];
};

void *chat_arena_alloc(struct chat_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n == 0)
        n = 16;
    struct chat_chunk *c = a->head;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = 64 * 1024;
        if (a->total / 2 > cap)
            cap = a->total / 2;
        if (cap > ((size_t)16 << 20))
            cap = (size_t)16 << 20;
        if (cap < n)
            cap = n;
        if (a->limit && a->total + cap > a->limit) {
            if (a->total + n > a->limit) {
                a->over_limit = true;
                return NULL;
            }
            cap = n;
        }
        c = malloc(sizeof *c + cap);
        if (c == NULL)
            return NULL;
        c->next = a->head;
        c->cap = cap;
        c->used = 0;
        a->head = c;
        a->total += cap;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

void chat_arena_free(struct chat_arena *a)
{
    struct chat_chunk *c = a->head;
    while (c != NULL) {
        struct chat_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->total = 0;
}

void *chat_alloc(struct chat_rx *rx, size_t n)
{
    void *p = chat_arena_alloc(&rx->arena, n);
    if (p == NULL) {
        if (rx->arena.over_limit)
            fj_err_set(rx->err, FJ_ERR_RANGE,
                       "chat template: the render needs more than %zu MiB of memory",
                       (size_t)CHAT_MAX_MEMORY >> 20);
        else
            fj_err_set(rx->err, FJ_ERR_NOMEM, "chat template: out of memory");
    }
    return p;
}

static int rx_code(struct chat_rx *rx)
{
    return rx->err->code != 0 ? rx->err->code : FJ_ERR_NOMEM;
}

/* ---- values ------------------------------------------------------------------------------ */

int chat_str_copy(struct chat_rx *rx, const char *s, size_t len, struct chat_value *out)
{
    char *p = chat_alloc(rx, len + 1);
    if (p == NULL)
        return rx_code(rx);
    if (len)
        memcpy(p, s, len);
    p[len] = '\0';
    *out = chat_str_ref(p, len);
    return 0;
}

int chat_str_from_buf(struct chat_rx *rx, const struct fj_buf *b, struct chat_value *out)
{
    return chat_str_copy(rx, b->data ? b->data : "", b->len, out);
}

struct chat_array *chat_array_new(struct chat_rx *rx, size_t n)
{
    struct chat_array *a = chat_alloc(rx, sizeof *a);
    if (a == NULL)
        return NULL;
    a->n = n;
    a->v = NULL;
    if (n > 0 && (a->v = chat_alloc(rx, n * sizeof *a->v)) == NULL)
        return NULL;
    return a;
}

struct chat_map *chat_map_new(struct chat_rx *rx, size_t cap)
{
    struct chat_map *m = chat_alloc(rx, sizeof *m);
    if (m == NULL)
        return NULL;
    m->n = 0;
    m->cap = cap;
    m->kv = NULL;
    if (cap > 0 && (m->kv = chat_alloc(rx, cap * sizeof *m->kv)) == NULL)
        return NULL;
    return m;
}

struct chat_value *chat_map_get(const struct chat_map *m, const char *k, size_t klen)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->kv[i].klen == klen && memcmp(m->kv[i].k, k, klen) == 0)
            return &m->kv[i].v;
    return NULL;
}

int chat_map_set(struct chat_rx *rx, struct chat_map *m, const char *k, size_t klen,
                 struct chat_value v)
{
    struct chat_value *old = chat_map_get(m, k, klen);
    if (old != NULL) {
        *old = v;
        return 0;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        struct chat_kv *kv = chat_alloc(rx, cap * sizeof *kv);
        if (kv == NULL)
            return rx_code(rx);
        if (m->n)
            memcpy(kv, m->kv, m->n * sizeof *kv);
        m->kv = kv;
        m->cap = cap;
    }
    m->kv[m->n].k = k;
    m->kv[m->n].klen = klen;
    m->kv[m->n].v = v;
    m->n++;
    return 0;
}

const char *chat_kind_name(enum chat_vk k)
{
    switch (k) {
    case V_UNDEF: return "undefined";
    case V_NULL: return "none";
    case V_BOOL: return "boolean";
    case V_INT: return "integer";
    case V_FLOAT: return "float";
    case V_STR: return "string";
    case V_ARRAY: return "list";
    case V_TUPLE: return "tuple";
    case V_OBJECT: return "mapping";
    case V_KWARGS: return "keyword arguments";
    case V_NS: return "namespace";
    case V_FUNC: return "function";
    case V_JSUNDEF: return "JavaScript undefined";
    }
    return "?";
}

bool chat_truthy(const struct chat_value *v)
{
    switch (v->k) {
    case V_BOOL: return v->u.b != 0;
    case V_INT:
    case V_FLOAT: return v->u.n != 0 && !isnan(v->u.n);
    case V_STR: return v->len > 0;
    case V_ARRAY:
    case V_TUPLE: return v->u.a->n > 0;
    case V_OBJECT:
    case V_KWARGS: return v->u.m->n > 0;
    case V_NS:
    case V_FUNC: return true;
    default: return false;
    }
}

/* Is k a canonical array index ("0".."4294967294"), which Object.entries puts first? */
static bool array_index_key(const char *k, size_t n, double *idx)
{
    if (n == 0 || n > 10 || (n > 1 && k[0] == '0'))
        return false;
    double v = 0;
    for (size_t i = 0; i < n; i++) {
        if (k[i] < '0' || k[i] > '9')
            return false;
        v = v * 10 + (k[i] - '0');
    }
    if (v > 4294967294.0)
        return false;
    *idx = v;
    return true;
}

static int from_json(struct chat_rx *rx, const json_t *j, struct chat_value *out, int depth)
{
    if (depth > 512)
        return fj_err_set(rx->err, FJ_ERR_RANGE, "chat template: context nested too deeply");
    switch (json_typeof(j)) {
    case JSON_NULL: *out = chat_null(); return 0;
    case JSON_TRUE: *out = chat_bool(true); return 0;
    case JSON_FALSE: *out = chat_bool(false); return 0;
    case JSON_INTEGER: *out = chat_int((double)json_integer_value(j)); return 0;
    case JSON_REAL: {
        double d = json_real_value(j);
        *out = isfinite(d) && floor(d) == d ? chat_int(d) : chat_float(d);
        return 0;
    }
    case JSON_STRING: *out = chat_str_ref(json_string_value(j), json_string_length(j)); return 0;
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        struct chat_array *a = chat_array_new(rx, n);
        if (a == NULL)
            return rx_code(rx);
        for (size_t i = 0; i < n; i++) {
            int rc = from_json(rx, json_array_get(j, i), &a->v[i], depth + 1);
            if (rc != 0)
                return rc;
        }
        out->k = V_ARRAY;
        out->u.a = a;
        return 0;
    }
    case JSON_OBJECT: {
        size_t n = json_object_size(j);
        struct chat_map *m = chat_map_new(rx, n);
        if (m == NULL)
            return rx_code(rx);
        const char *key;
        json_t *val;
        /* integer-like keys first, ascending (insertion sort: they are few) */
        size_t n_int = 0;
        json_object_foreach((json_t *)j, key, val)
        {
            double idx, other;
            size_t klen = strlen(key);
            if (!array_index_key(key, klen, &idx))
                continue;
            size_t at = n_int;
            while (at > 0 && array_index_key(m->kv[at - 1].k, m->kv[at - 1].klen, &other) &&
                   other > idx) {
                m->kv[at] = m->kv[at - 1];
                at--;
            }
            m->kv[at].k = key;
            m->kv[at].klen = klen;
            int rc = from_json(rx, val, &m->kv[at].v, depth + 1);
            if (rc != 0)
                return rc;
            n_int++;
            m->n = n_int;
        }
        json_object_foreach((json_t *)j, key, val)
        {
            double idx;
            size_t klen = strlen(key);
            if (array_index_key(key, klen, &idx))
                continue;
            struct chat_value v;
            int rc = from_json(rx, val, &v, depth + 1);
            if (rc == 0)
                rc = chat_map_set(rx, m, key, klen, v);
            if (rc != 0)
                return rc;
        }
        out->k = V_OBJECT;
        out->u.m = m;
        return 0;
    }
    }
    return fj_err_set(rx->err, FJ_ERR_INVALID, "chat template: unknown JSON type");
}

int chat_from_json(struct chat_rx *rx, const json_t *j, struct chat_value *out)
{
    memset(out, 0, sizeof *out);
    return from_json(rx, j, out, 0);
}

/* ---- strings in JavaScript terms ------------------------------------------------------------ */

size_t chat_u16_len(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c & 0xC0) != 0x80)
            k += c >= 0xF0 ? 2 : 1;
    }
    return k;
}

size_t chat_js_space(const char *s, size_t n, size_t i)
{
    unsigned char c = (unsigned char)s[i];
    if (c == ' ' || (c >= 0x09 && c <= 0x0D))
        return 1;
    if (c < 0x80)
        return 0;
    unsigned char c1 = i + 1 < n ? (unsigned char)s[i + 1] : 0;
    unsigned char c2 = i + 2 < n ? (unsigned char)s[i + 2] : 0;
    if (c == 0xC2 && c1 == 0xA0)
        return 2; /* U+00A0 */
    if (c == 0xE1 && c1 == 0x9A && c2 == 0x80)
        return 3; /* U+1680 */
    if (c == 0xE2 && c1 == 0x80 && (c2 <= 0x8A || c2 == 0xA8 || c2 == 0xA9 || c2 == 0xAF) &&
        c2 >= 0x80)
        return 3; /* U+2000..200A, U+2028, U+2029, U+202F */
    if (c == 0xE2 && c1 == 0x81 && c2 == 0x9F)
        return 3; /* U+205F */
    if (c == 0xE3 && c1 == 0x80 && c2 == 0x80)
        return 3; /* U+3000 */
    if (c == 0xEF && c1 == 0xBB && c2 == 0xBF)
        return 3; /* U+FEFF */
    return 0;
}

static size_t cp_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

void chat_js_trim(const char *s, size_t n, bool start, bool end, size_t *b, size_t *e)
{
    size_t i = 0, k;
    if (start)
        while (i < n && (k = chat_js_space(s, n, i)) > 0)
            i += k;
    size_t last = n;
    if (end) {
        last = i;
        for (size_t j = i; j < n;) {
            k = chat_js_space(s, n, j);
            if (k > 0) {
                j += k;
            } else {
                j += cp_len((unsigned char)s[j]);
                last = j;
            }
        }
    }
    *b = i;
    *e = last;
}

static uint32_t u16_key(uint32_t cp)
{
    return cp < 0x10000 ? cp : 0xD800 + ((cp - 0x10000) >> 10);
}

int chat_u16_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    size_t i = 0, j = 0;
    while (i < an && j < bn) {
        int la, lb;
        uint32_t ca = fj_utf8_decode((const uint8_t *)a + i, &la);
        uint32_t cb = fj_utf8_decode((const uint8_t *)b + j, &lb);
        if (ca != cb) {
            uint32_t ka = u16_key(ca), kb = u16_key(cb);
            if (ka != kb)
                return ka < kb ? -1 : 1;
            return ca < cb ? -1 : 1;
        }
        i += (size_t)la;
        j += (size_t)lb;
    }
    if (i < an)
        return 1;
    if (j < bn)
        return -1;
    return 0;
}

/* strtod over s[b..e) (a syntax already checked). */
static double strtod_n(const char *s, size_t b, size_t e)
{
    char buf[128];
    char *p = buf;
    size_t n = e - b;
    if (n + 1 > sizeof buf && (p = malloc(n + 1)) == NULL)
        return NAN;
    memcpy(p, s + b, n);
    p[n] = '\0';
    double d = strtod(p, NULL);
    if (p != buf)
        free(p);
    return d;
}

static size_t digits(const char *s, size_t n, size_t i)
{
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    return i;
}

/* The longest StrDecimalLiteral prefix of s[i..n): returns its end (i when none). */
static size_t decimal_prefix(const char *s, size_t n, size_t i, bool *inf)
{
    size_t b = i;
    *inf = false;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    if (n - i >= 8 && memcmp(s + i, "Infinity", 8) == 0) {
        *inf = true;
        return i + 8;
    }
    size_t d = digits(s, n, i);
    bool any = d > i;
    i = d;
    if (i < n && s[i] == '.') {
        size_t f = digits(s, n, i + 1);
        if (f > i + 1 || any) {
            any = any || f > i + 1;
            i = f;
        }
    }
    if (!any)
        return b;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t k = i + 1;
        if (k < n && (s[k] == '+' || s[k] == '-'))
            k++;
        size_t x = digits(s, n, k);
        if (x > k)
            i = x;
    }
    return i;
}

double chat_parse_int(const char *s, size_t n)
{
    size_t b, e;
    chat_js_trim(s, n, true, false, &b, &e);
    size_t i = b;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-')) {
        neg = s[i] == '-';
        i++;
    }
    size_t d = digits(s, n, i);
    if (d == i)
        return NAN;
    double v = strtod_n(s, i, d);
    return neg ? -v : v;
}

double chat_parse_float(const char *s, size_t n)
{
    size_t b, e;
    chat_js_trim(s, n, true, false, &b, &e);
    bool inf;
    size_t end = decimal_prefix(s, n, b, &inf);
    if (end == b)
        return NAN;
    if (inf)
        return s[b] == '-' ? -INFINITY : INFINITY;
    return strtod_n(s, b, end);
}

double chat_to_number(const char *s, size_t n)
{
    size_t b, e;
    chat_js_trim(s, n, true, true, &b, &e);
    if (b == e)
        return 0;
    if (e - b > 2 && s[b] == '0') {
        int base = 0;
        char x = s[b + 1];
        if (x == 'x' || x == 'X')
            base = 16;
        else if (x == 'o' || x == 'O')
            base = 8;
        else if (x == 'b' || x == 'B')
            base = 2;
        if (base) {
            double v = 0;
            for (size_t i = b + 2; i < e; i++) {
                int d;
                char c = s[i];
                if (c >= '0' && c <= '9')
                    d = c - '0';
                else if (c >= 'a' && c <= 'f')
                    d = c - 'a' + 10;
                else if (c >= 'A' && c <= 'F')
                    d = c - 'A' + 10;
                else
                    return NAN;
                if (d >= base)
                    return NAN;
                v = v * base + d;
            }
            return v;
        }
    }
    bool inf;
    size_t end = decimal_prefix(s, e, b, &inf);
    if (end != e)
        return NAN;
    if (inf)
        return s[b] == '-' ? -INFINITY : INFINITY;
    return strtod_n(s, b, end);
}

/* ---- numbers as JavaScript writes them ---------------------------------------------------- */

int chat_js_number(double x, struct fj_buf *out)
{
    if (isnan(x))
        return fj_buf_append(out, "NaN", 3);
    if (x == 0)
        return fj_buf_append(out, "0", 1);
    if (isinf(x))
        return x < 0 ? fj_buf_append(out, "-Infinity", 9) : fj_buf_append(out, "Infinity", 8);
    int rc = 0;
    if (x < 0) {
        rc = fj_buf_append(out, "-", 1);
        x = -x;
    }
    char sci[40];
    for (int p = 0; p <= 16; p++) {
        snprintf(sci, sizeof sci, "%.*e", p, x);
        if (strtod(sci, NULL) == x)
            break;
    }
    char d[24];
    int k = 0;
    const char *s = sci;
    for (; *s != 'e'; s++)
        if (*s != '.')
            d[k++] = *s;
    while (k > 1 && d[k - 1] == '0')
        k--;
    int n = atoi(s + 1) + 1;
    char buf[64];
    int o = 0;
    if (k <= n && n <= 21) {
        memcpy(buf, d, (size_t)k);
        o = k;
        for (int z = 0; z < n - k; z++)
            buf[o++] = '0';
    } else if (0 < n && n <= 21) {
        memcpy(buf, d, (size_t)n);
        o = n;
        buf[o++] = '.';
        memcpy(buf + o, d + n, (size_t)(k - n));
        o += k - n;
    } else if (-6 < n && n <= 0) {
        buf[o++] = '0';
        buf[o++] = '.';
        for (int z = 0; z < -n; z++)
            buf[o++] = '0';
        memcpy(buf + o, d, (size_t)k);
        o += k;
    } else {
        buf[o++] = d[0];
        if (k > 1) {
            buf[o++] = '.';
            memcpy(buf + o, d + 1, (size_t)(k - 1));
            o += k - 1;
        }
        o += snprintf(buf + o, sizeof buf - (size_t)o, "e%c%d", n - 1 >= 0 ? '+' : '-',
                      n - 1 >= 0 ? n - 1 : 1 - n);
    }
    if (rc == 0)
        rc = fj_buf_append(out, buf, (size_t)o);
    return rc;
}

/* FloatValue.toString: "-0.0", integral values with ".0" (toFixed(1)), else Number's. */
static int float_text(double x, struct fj_buf *out)
{
    if (x == 0 && signbit(x))
        return fj_buf_append(out, "-0.0", 4);
    if (isfinite(x) && floor(x) == x) {
        if (fabs(x) >= 1e21)
            return chat_js_number(x, out);
        return fj_buf_printf(out, "%.1f", x);
    }
    return chat_js_number(x, out);
}

/* ---- text --------------------------------------------------------------------------------- */

int chat_to_text(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *v,
                 enum chat_str_mode mode, struct fj_buf *out)
{
    int rc = 0;
    switch (v->k) {
    case V_STR: rc = fj_buf_append(out, v->u.s, v->len); break;
    case V_BOOL:
        rc = v->u.b ? fj_buf_append(out, "true", 4) : fj_buf_append(out, "false", 5);
        break;
    case V_INT: rc = chat_js_number(v->u.n, out); break;
    case V_FLOAT:
        rc = mode == CHAT_STR_RUNTIME ? float_text(v->u.n, out) : chat_js_number(v->u.n, out);
        break;
    case V_NULL: /* NullValue's value is undefined (its constructor's default) */
    case V_UNDEF:
        if (mode != CHAT_STR_JOIN)
            rc = fj_buf_append(out, "undefined", 9);
        break;
    case V_ARRAY:
    case V_TUPLE:
        if (mode == CHAT_STR_RUNTIME) {
            if (v->k == V_TUPLE)
                return chat_fail(rx, at, FJ_ERR_INVALID, "cannot convert a tuple to text");
            struct chat_json_opts o = {0};
            return chat_to_json(rx, at, v, &o, 0, out);
        }
        /* Array.prototype.join(","): each element by its own toString */
        for (size_t i = 0; i < v->u.a->n && rc == 0; i++) {
            if (i > 0)
                rc = fj_buf_append(out, ",", 1);
            if (rc == 0)
                rc = chat_to_text(rx, at, &v->u.a->v[i], CHAT_STR_RUNTIME, out);
        }
        break;
    case V_OBJECT:
    case V_NS:
    case V_KWARGS:
        if (mode == CHAT_STR_RUNTIME) {
            if (v->k == V_KWARGS)
                return chat_fail(rx, at, FJ_ERR_INVALID,
                                 "cannot convert keyword arguments to text");
            struct chat_json_opts o = {0};
            return chat_to_json(rx, at, v, &o, 0, out);
        }
        rc = fj_buf_append(out, "[object Map]", 12);
        break;
    case V_FUNC: return chat_fail(rx, at, FJ_ERR_INVALID, "cannot convert a function to text");
    case V_JSUNDEF:
        return chat_fail(rx, at, FJ_ERR_INVALID,
                         "undefined value (first or last of an empty list) used");
    }
    if (rc != 0)
        return fj_err_set(rx->err, FJ_ERR_NOMEM, "chat template: out of memory");
    if (out->len > CHAT_MAX_OUTPUT)
        return chat_fail(rx, at, FJ_ERR_RANGE, "text longer than %zu MiB", CHAT_MAX_OUTPUT >> 20);
    return 0;
}

/* ---- JSON.stringify ------------------------------------------------------------------------ */

static int json_u16(struct fj_buf *out, unsigned u)
{
    return fj_buf_printf(out, "\\u%04x", u);
}

static int json_quote(const char *s, size_t n, bool ascii, struct fj_buf *out)
{
    int rc = fj_buf_append(out, "\"", 1);
    size_t run = 0; /* start of bytes to copy as they are */
    for (size_t i = 0; i < n && rc == 0;) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default: break;
        }
        bool special = esc != NULL || c < 0x20 || (ascii && c >= 0x7F);
        if (!special) {
            i++;
            continue;
        }
        rc = fj_buf_append(out, s + run, i - run);
        if (rc != 0)
            break;
        if (esc != NULL) {
            rc = fj_buf_append(out, esc, 2);
            i++;
        } else if (c < 0x80) {
            rc = json_u16(out, c);
            i++;
        } else {
            int l;
            uint32_t cp = fj_utf8_decode((const uint8_t *)s + i, &l);
            if (cp >= 0x10000) {
                rc = json_u16(out, 0xD800 + ((cp - 0x10000) >> 10));
                if (rc == 0)
                    rc = json_u16(out, 0xDC00 + ((cp - 0x10000) & 0x3FF));
            } else {
                rc = json_u16(out, cp);
            }
            i += (size_t)l;
        }
        run = i;
    }
    if (rc == 0)
        rc = fj_buf_append(out, s + run, n - run);
    if (rc == 0)
        rc = fj_buf_append(out, "\"", 1);
    return rc;
}

static int pad(struct fj_buf *out, long indent, int depth)
{
    int rc = fj_buf_append(out, "\n", 1);
    for (long i = 0; i < indent * depth && rc == 0; i++)
        rc = fj_buf_append(out, " ", 1);
    return rc;
}

int chat_to_json(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *v,
                 const struct chat_json_opts *o, int depth, struct fj_buf *out)
{
    if (depth > 512)
        return chat_fail(rx, at, FJ_ERR_RANGE, "tojson: value nested too deeply");
    if (out->len > CHAT_MAX_OUTPUT)
        return chat_fail(rx, at, FJ_ERR_RANGE, "tojson: text longer than %zu MiB",
                         CHAT_MAX_OUTPUT >> 20);
    const char *isep = o->item_sep, *ksep = o->key_sep;
    size_t isl = o->item_sep_len, ksl = o->key_sep_len;
    if (isep == NULL) {
        isep = o->indent ? "," : ", ";
        isl = strlen(isep);
        ksep = ": ";
        ksl = 2;
    }
    int rc = 0;
    switch (v->k) {
    case V_NULL: rc = fj_buf_append(out, "null", 4); break;
    case V_UNDEF:
        rc = o->undefined_as_null ? fj_buf_append(out, "null", 4)
                                  : fj_buf_append(out, "undefined", 9);
        break;
    case V_INT:
    case V_FLOAT:
        rc = isfinite(v->u.n) ? chat_js_number(v->u.n, out) : fj_buf_append(out, "null", 4);
        break;
    case V_BOOL:
        rc = v->u.b ? fj_buf_append(out, "true", 4) : fj_buf_append(out, "false", 5);
        break;
    case V_STR: rc = json_quote(v->u.s, v->len, o->ensure_ascii, out); break;
    case V_ARRAY: {
        const struct chat_array *a = v->u.a;
        rc = fj_buf_append(out, "[", 1);
        for (size_t i = 0; i < a->n && rc == 0; i++) {
            if (i > 0)
                rc = fj_buf_append(out, isep, isl);
            if (rc == 0 && o->indent)
                rc = pad(out, o->indent, depth + 1);
            if (rc == 0)
                rc = chat_to_json(rx, at, &a->v[i], o, depth + 1, out);
        }
        if (rc == 0 && o->indent && a->n > 0)
            rc = pad(out, o->indent, depth);
        if (rc == 0)
            rc = fj_buf_append(out, "]", 1);
        break;
    }
    case V_OBJECT:
    case V_NS: {
        const struct chat_map *m = v->u.m;
        rc = fj_buf_append(out, "{", 1);
        for (size_t i = 0; i < m->n && rc == 0; i++) {
            if (i > 0)
                rc = fj_buf_append(out, isep, isl);
            if (rc == 0 && o->indent)
                rc = pad(out, o->indent, depth + 1);
            if (rc == 0)
                rc = json_quote(m->kv[i].k, m->kv[i].klen, o->ensure_ascii, out);
            if (rc == 0)
                rc = fj_buf_append(out, ksep, ksl);
            if (rc == 0)
                rc = chat_to_json(rx, at, &m->kv[i].v, o, depth + 1, out);
        }
        if (rc == 0 && o->indent && m->n > 0)
            rc = pad(out, o->indent, depth);
        if (rc == 0)
            rc = fj_buf_append(out, "}", 1);
        break;
    }
    case V_TUPLE: return chat_fail(rx, at, FJ_ERR_INVALID, "cannot convert a tuple to JSON");
    case V_KWARGS:
        return chat_fail(rx, at, FJ_ERR_INVALID, "cannot convert keyword arguments to JSON");
    case V_FUNC: return chat_fail(rx, at, FJ_ERR_INVALID, "cannot convert a function to JSON");
    case V_JSUNDEF:
        return chat_fail(rx, at, FJ_ERR_INVALID,
                         "undefined value (first or last of an empty list) used");
    }
    if (rc != 0 && rx->err->code == 0)
        return fj_err_set(rx->err, FJ_ERR_NOMEM, "chat template: out of memory");
    return rc;
}

/* ---- equality and order -------------------------------------------------------------------- */

/* A JavaScript primitive or object, as the == algorithm sees a value's .value. */
enum js_t { JS_UNDEF, JS_NULL, JS_BOOL, JS_NUM, JS_STR, JS_OBJ };
struct js_val {
    enum js_t t;
    double n;
    const char *s;
    size_t len;
    const void *obj;
    const struct chat_value *v; /* for ToPrimitive of objects */
};

static int raw_of(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *v,
                  struct js_val *j)
{
    memset(j, 0, sizeof *j);
    j->v = v;
    switch (v->k) {
    case V_UNDEF:
    case V_NULL: j->t = JS_UNDEF; break; /* NullValue's value is undefined */
    case V_BOOL:
        j->t = JS_BOOL;
        j->n = v->u.b;
        break;
    case V_INT:
    case V_FLOAT:
        j->t = JS_NUM;
        j->n = v->u.n;
        break;
    case V_STR:
        j->t = JS_STR;
        j->s = v->u.s;
        j->len = v->len;
        break;
    case V_ARRAY:
    case V_TUPLE:
        j->t = JS_OBJ;
        j->obj = v->u.a;
        break;
    case V_OBJECT:
    case V_KWARGS:
    case V_NS:
        j->t = JS_OBJ;
        j->obj = v->u.m;
        break;
    case V_FUNC:
        j->t = JS_OBJ;
        j->obj = v->u.f;
        break;
    case V_JSUNDEF:
        return chat_fail(rx, at, FJ_ERR_INVALID,
                         "undefined value (first or last of an empty list) used");
    }
    return 0;
}

/* ToPrimitive of an object: its String() text. */
static int to_primitive(struct chat_rx *rx, const struct chat_node *at, struct js_val *j)
{
    if (j->v->k == V_FUNC)
        return chat_fail(rx, at, FJ_ERR_INVALID, "comparing a function is not supported");
    struct fj_buf b = {0};
    int rc = chat_to_text(rx, at, j->v, CHAT_STR_RAW, &b);
    if (rc == 0) {
        struct chat_value s;
        rc = chat_str_from_buf(rx, &b, &s);
        if (rc == 0) {
            j->t = JS_STR;
            j->s = s.u.s;
            j->len = s.len;
        }
    }
    fj_buf_free(&b);
    return rc;
}

static int js_loose(struct chat_rx *rx, const struct chat_node *at, struct js_val *x,
                    struct js_val *y, bool *eq)
{
    for (int guard = 0; guard < 8; guard++) {
        if (x->t == y->t) {
            switch (x->t) {
            case JS_UNDEF:
            case JS_NULL: *eq = true; break;
            case JS_BOOL:
            case JS_NUM: *eq = x->n == y->n; break;
            case JS_STR: *eq = x->len == y->len && memcmp(x->s, y->s, x->len) == 0; break;
            case JS_OBJ: *eq = x->obj == y->obj; break;
            }
            return 0;
        }
        bool xn = x->t == JS_NULL || x->t == JS_UNDEF, yn = y->t == JS_NULL || y->t == JS_UNDEF;
        if (xn || yn) {
            *eq = xn && yn;
            return 0;
        }
        if (x->t == JS_NUM && y->t == JS_STR) {
            *eq = x->n == chat_to_number(y->s, y->len);
            return 0;
        }
        if (x->t == JS_STR && y->t == JS_NUM) {
            *eq = chat_to_number(x->s, x->len) == y->n;
            return 0;
        }
        if (x->t == JS_BOOL) {
            x->t = JS_NUM;
            continue;
        }
        if (y->t == JS_BOOL) {
            y->t = JS_NUM;
            continue;
        }
        if (y->t == JS_OBJ) {
            int rc = to_primitive(rx, at, y);
            if (rc != 0)
                return rc;
            continue;
        }
        if (x->t == JS_OBJ) {
            int rc = to_primitive(rx, at, x);
            if (rc != 0)
                return rc;
            continue;
        }
        *eq = false;
        return 0;
    }
    *eq = false;
    return 0;
}

int chat_loose_eq(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *a,
                  const struct chat_value *b, bool *eq)
{
    struct js_val x, y;
    int rc = raw_of(rx, at, a, &x);
    if (rc == 0)
        rc = raw_of(rx, at, b, &y);
    if (rc == 0)
        rc = js_loose(rx, at, &x, &y, eq);
    return rc;
}

bool chat_strict_eq(const struct chat_value *a, const struct chat_value *b)
{
    if (chat_is_num(a) && chat_is_num(b))
        return a->u.n == b->u.n;
    switch (a->k) {
    case V_STR: return b->k == V_STR && a->len == b->len && memcmp(a->u.s, b->u.s, a->len) == 0;
    case V_BOOL: return b->k == V_BOOL && a->u.b == b->u.b;
    case V_NULL:
    case V_UNDEF: return b->k == V_NULL || b->k == V_UNDEF; /* both hold undefined */
    case V_ARRAY:
    case V_TUPLE: return chat_is_array(b) && a->u.a == b->u.a;
    case V_OBJECT:
    case V_KWARGS:
    case V_NS: return chat_is_attr_container(b) && a->u.m == b->u.m;
    case V_FUNC: return b->k == V_FUNC && a->u.f == b->u.f;
    default: return false;
    }
}

static bool numeric_like(const struct chat_value *v)
{
    return v->k == V_INT || v->k == V_FLOAT || v->k == V_BOOL;
}

static double numeric_of(const struct chat_value *v)
{
    return v->k == V_BOOL ? (double)v->u.b : v->u.n;
}

/* The runtime class name JavaScript compares by type. */
static int type_class(enum chat_vk k)
{
    return (int)k;
}

int chat_compare(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *a,
                 const struct chat_value *b, bool case_sensitive, int *res)
{
    if (a->k == V_JSUNDEF || b->k == V_JSUNDEF)
        return chat_fail(rx, at, FJ_ERR_INVALID,
                         "undefined value (first or last of an empty list) used");
    if (a->k == V_NULL || b->k == V_NULL || a->k == V_UNDEF || b->k == V_UNDEF) {
        if (a->k == b->k) {
            *res = 0;
            return 0;
        }
        return chat_fail(rx, at, FJ_ERR_INVALID, "cannot compare %s with %s", chat_kind_name(a->k),
                         chat_kind_name(b->k));
    }
    if (numeric_like(a) && numeric_like(b)) {
        double x = numeric_of(a), y = numeric_of(b);
        *res = x < y ? -1 : x > y ? 1 : 0;
        return 0;
    }
    if (type_class(a->k) != type_class(b->k))
        return chat_fail(rx, at, FJ_ERR_INVALID, "cannot compare %s with %s", chat_kind_name(a->k),
                         chat_kind_name(b->k));
    if (a->k != V_STR)
        return chat_fail(rx, at, FJ_ERR_INVALID, "cannot compare values of type %s",
                         chat_kind_name(a->k));
    struct chat_value x = *a, y = *b;
    if (!case_sensitive) {
        int rc = chat_case_map(rx, at, a->u.s, a->len, 0, &x);
        if (rc == 0)
            rc = chat_case_map(rx, at, b->u.s, b->len, 0, &y);
        if (rc != 0)
            return rc;
    }
    int c = chat_u16_cmp(x.u.s, x.len, y.u.s, y.len);
    *res = c < 0 ? -1 : c > 0 ? 1 : 0;
    return 0;
}

/* ---- case ---------------------------------------------------------------------------------- */

int chat_case_map(struct chat_rx *rx, const struct chat_node *at, const char *s, size_t n,
                  int upper, struct chat_value *out)
{
    char *p = chat_alloc(rx, n + 1);
    if (p == NULL)
        return rx_code(rx);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            if (upper && c >= 'a' && c <= 'z')
                c = (unsigned char)(c - 32);
            else if (!upper && c >= 'A' && c <= 'Z')
                c = (unsigned char)(c + 32);
            p[i++] = (char)c;
            continue;
        }
        int l;
        uint32_t cp = fj_utf8_decode((const uint8_t *)s + i, &l);
        if (chat_case_changes(cp))
            return chat_fail(rx, at, FJ_ERR_INVALID,
                             "unsupported: %s-casing the non-ASCII character U+%04X",
                             upper ? "upper" : "lower", (unsigned)cp);
        memcpy(p + i, s + i, (size_t)l);
        i += (size_t)l;
    }
    p[n] = '\0';
    *out = chat_str_ref(p, n);
    return 0;
}
