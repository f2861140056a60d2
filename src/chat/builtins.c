/* builtins.c - the filters, tests, string and mapping methods and global functions of
 * @huggingface/jinja 0.5.11 (runtime.ts' applyFilter, Environment.TESTS, StringValue and
 * ObjectValue builtins, setupGlobals), with its semantics rather than Python Jinja's:
 * `strip`, `lstrip` and `rstrip` ignore their argument and trim JavaScript whitespace,
 * `capitalize` leaves the rest of the string alone, `int` floors floats, `length` counts
 * UTF-16 code units, `map` needs attribute=, `sort` compares case-insensitively by default.
 * A filter or test it does not know is an error naming it; so is anything it refuses.
 *
 * Where JavaScript would need full Unicode case mapping (upper, lower, the `lower`/`upper`
 * tests, case-insensitive sorting of text holding such letters) forja maps ASCII and fails
 * on other cased letters (case.c). tojson's sort_keys=true (String.prototype.localeCompare,
 * locale-dependent) is refused too.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat/chat_internal.h"
#include "core/utf8.h"

static int nomem(struct chat_rx *rx)
{
    if (rx->err->code != 0)
        return rx->err->code;
    return fj_err_set(rx->err, FJ_ERR_NOMEM, "chat template: out of memory");
}

static bool name_is(const char *s, size_t n, const char *w)
{
    return n == strlen(w) && memcmp(s, w, n) == 0;
}

static struct chat_value arr_val(struct chat_array *a)
{
    struct chat_value v = {.k = V_ARRAY};
    v.u.a = a;
    return v;
}

static int finish_buf(struct chat_rx *rx, struct fj_buf *b, int rc, struct chat_value *out)
{
    if (rc == 0)
        rc = chat_str_from_buf(rx, b, out);
    else if (rx->err->code == 0)
        rc = nomem(rx);
    fj_buf_free(b);
    return rc;
}

/* ---- properties and methods ------------------------------------------------------------- */

static const struct {
    const char *name;
    int id;
} STR_METHODS[] = {
    {"upper", CHAT_M_UPPER},   {"lower", CHAT_M_LOWER},           {"strip", CHAT_M_STRIP},
    {"title", CHAT_M_TITLE},   {"capitalize", CHAT_M_CAPITALIZE}, {"rstrip", CHAT_M_RSTRIP},
    {"lstrip", CHAT_M_LSTRIP}, {"startswith", CHAT_M_STARTSWITH}, {"endswith", CHAT_M_ENDSWITH},
    {"split", CHAT_M_SPLIT},   {"replace", CHAT_M_REPLACE},
};

static const struct {
    const char *name;
    int id;
} OBJ_METHODS[] = {
    {"get", CHAT_M_GET},       {"items", CHAT_M_ITEMS},       {"keys", CHAT_M_KEYS},
    {"values", CHAT_M_VALUES}, {"dictsort", CHAT_M_DICTSORT},
};

static int method(struct chat_rx *rx, const struct chat_value *self, int id, struct chat_value *out)
{
    struct chat_func *f = chat_alloc(rx, sizeof *f);
    if (f == NULL)
        return nomem(rx);
    memset(f, 0, sizeof *f);
    f->kind = FN_METHOD;
    f->id = id;
    f->self = *self;
    out->k = V_FUNC;
    out->u.f = f;
    return 0;
}

int chat_builtin_prop(struct chat_rx *rx, const struct chat_value *obj, const char *name,
                      size_t len, struct chat_value *out)
{
    *out = chat_undef();
    if (obj->k == V_STR) {
        if (name_is(name, len, "length")) {
            *out = chat_int((double)chat_u16_len(obj->u.s, obj->len));
            return 0;
        }
        for (size_t i = 0; i < sizeof STR_METHODS / sizeof STR_METHODS[0]; i++)
            if (name_is(name, len, STR_METHODS[i].name))
                return method(rx, obj, STR_METHODS[i].id, out);
    } else if (chat_is_array(obj)) {
        if (name_is(name, len, "length"))
            *out = chat_int((double)obj->u.a->n);
    } else if (chat_is_object(obj)) {
        for (size_t i = 0; i < sizeof OBJ_METHODS / sizeof OBJ_METHODS[0]; i++)
            if (name_is(name, len, OBJ_METHODS[i].name))
                return method(rx, obj, OBJ_METHODS[i].id, out);
    }
    return 0;
}

static int trim(struct chat_rx *rx, const struct chat_value *s, bool start, bool end,
                struct chat_value *out)
{
    size_t b, e;
    chat_js_trim(s->u.s, s->len, start, end, &b, &e);
    (void)rx;
    *out = chat_str_ref(s->u.s + b, e - b);
    return 0;
}

static bool ascii_word(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* value.replace(/\b\w/g, c => c.toUpperCase()): ASCII word characters only. */
static int title(struct chat_rx *rx, const struct chat_value *s, struct chat_value *out)
{
    char *p = chat_alloc(rx, s->len + 1);
    if (p == NULL)
        return nomem(rx);
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->u.s[i];
        bool start = ascii_word(c) && (i == 0 || !ascii_word((unsigned char)s->u.s[i - 1]));
        p[i] = (char)(start && c >= 'a' && c <= 'z' ? c - 32 : c);
    }
    p[s->len] = '\0';
    *out = chat_str_ref(p, s->len);
    return 0;
}

/* charAt(0).toUpperCase() + slice(1) */
static int capitalize(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *s,
                      struct chat_value *out)
{
    if (s->len == 0) {
        *out = *s;
        return 0;
    }
    unsigned char c = (unsigned char)s->u.s[0];
    size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (l == 4) { /* a lone high surrogate: toUpperCase leaves it */
        *out = *s;
        return 0;
    }
    struct chat_value first;
    int rc = chat_case_map(rx, at, s->u.s, l, 1, &first);
    if (rc != 0)
        return rc;
    char *p = chat_alloc(rx, s->len + 1);
    if (p == NULL)
        return nomem(rx);
    memcpy(p, first.u.s, l);
    memcpy(p + l, s->u.s + l, s->len - l);
    p[s->len] = '\0';
    *out = chat_str_ref(p, s->len);
    return 0;
}

static bool has_prefix(const struct chat_value *s, const struct chat_value *p, bool suffix)
{
    if (p->len > s->len)
        return false;
    const char *at = suffix ? s->u.s + s->len - p->len : s->u.s;
    return memcmp(at, p->u.s, p->len) == 0;
}

static int starts_ends(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *s,
                       struct chat_value *args, size_t n, bool suffix, struct chat_value *out)
{
    const char *what = suffix ? "endswith" : "startswith";
    if (n == 0)
        return chat_fail(rx, at, FJ_ERR_INVALID, "%s() needs an argument", what);
    if (args[0].k == V_STR) {
        *out = chat_bool(has_prefix(s, &args[0], suffix));
        return 0;
    }
    if (chat_is_array(&args[0])) {
        for (size_t i = 0; i < args[0].u.a->n; i++) {
            const struct chat_value *p = &args[0].u.a->v[i];
            if (p->k != V_STR)
                return chat_fail(rx, at, FJ_ERR_INVALID, "%s(): the tuple must hold strings", what);
            if (has_prefix(s, p, suffix)) {
                *out = chat_bool(true);
                return 0;
            }
        }
        *out = chat_bool(false);
        return 0;
    }
    return chat_fail(rx, at, FJ_ERR_INVALID, "%s() takes a string or a tuple of strings", what);
}

/* A growable list of values in the arena. */
struct vlist {
    struct chat_value *v;
    size_t n, cap;
};

static int vl_push(struct chat_rx *rx, struct vlist *l, struct chat_value v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        struct chat_value *w = chat_alloc(rx, cap * sizeof *w);
        if (w == NULL)
            return nomem(rx);
        if (l->n)
            memcpy(w, l->v, l->n * sizeof *w);
        l->v = w;
        l->cap = cap;
    }
    l->v[l->n++] = v;
    return 0;
}

static struct chat_value vl_array(struct chat_rx *rx, struct vlist *l, int *rc)
{
    struct chat_array *a = chat_alloc(rx, sizeof *a);
    if (a == NULL) {
        *rc = nomem(rx);
        return chat_undef();
    }
    a->n = l->n;
    a->v = l->v;
    return arr_val(a);
}

static int split(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *s,
                 struct chat_value *args, size_t n, struct chat_value *out)
{
    struct chat_value sep = n > 0 ? args[0] : chat_null();
    if (sep.k != V_STR && sep.k != V_NULL)
        return chat_fail(rx, at, FJ_ERR_INVALID, "split(): the separator must be a string or none");
    struct chat_value maxv = n > 1 ? args[1] : chat_int(-1);
    if (maxv.k != V_INT)
        return chat_fail(rx, at, FJ_ERR_INVALID, "split(): maxsplit must be an integer");
    double max = maxv.u.n;
    struct vlist parts = {0};
    int rc = 0;
    const char *t = s->u.s;
    size_t len = s->len;
    if (sep.k == V_NULL) {
        size_t b, e;
        chat_js_trim(t, len, true, false, &b, &e);
        size_t i = b;
        while (i < len && rc == 0) {
            size_t k;
            while (i < len && (k = chat_js_space(t, len, i)) > 0)
                i += k;
            if (i >= len)
                break;
            size_t w = i;
            while (i < len && chat_js_space(t, len, i) == 0)
                i += ((unsigned char)t[i] < 0x80   ? 1
                      : (unsigned char)t[i] < 0xE0 ? 2
                      : (unsigned char)t[i] < 0xF0 ? 3
                                                   : 4);
            if (max != -1 && (double)parts.n >= max) {
                rc = vl_push(rx, &parts, chat_str_ref(t + w, len - w));
                break;
            }
            rc = vl_push(rx, &parts, chat_str_ref(t + w, i - w));
        }
    } else {
        if (sep.len == 0)
            return chat_fail(rx, at, FJ_ERR_INVALID, "split(): empty separator");
        size_t i = 0;
        for (;;) {
            const char *hit = sep.len <= len - i ? memmem(t + i, len - i, sep.u.s, sep.len) : NULL;
            size_t end = hit ? (size_t)(hit - t) : len;
            if ((rc = vl_push(rx, &parts, chat_str_ref(t + i, end - i))) != 0 || hit == NULL)
                break;
            i = end + sep.len;
        }
        if (rc == 0 && max != -1 && (double)parts.n > max) {
            double k = max < 0 ? fmax((double)parts.n + max, 0) : max;
            size_t keep = (size_t)k;
            struct fj_buf b = {0};
            for (size_t j = keep; j < parts.n && rc == 0; j++) {
                if (j > keep)
                    rc = fj_buf_append(&b, sep.u.s, sep.len);
                if (rc == 0)
                    rc = fj_buf_append(&b, parts.v[j].u.s, parts.v[j].len);
            }
            struct chat_value joined;
            rc = finish_buf(rx, &b, rc, &joined);
            if (rc == 0) {
                parts.n = keep;
                rc = vl_push(rx, &parts, joined);
            }
        }
    }
    if (rc != 0)
        return rc;
    *out = vl_array(rx, &parts, &rc);
    return rc;
}

/* utils.ts replace(): count null or negative means all; "" matches at every code point
 * boundary. */
static int replace_str(struct chat_rx *rx, const struct chat_value *s, const struct chat_value *o,
                       const struct chat_value *nw, double count, struct chat_value *out)
{
    if (count == 0) {
        *out = *s;
        return 0;
    }
    double remaining = isnan(count) || count < 0 ? INFINITY : count;
    struct fj_buf b = {0};
    int rc = 0;
    const char *t = s->u.s;
    size_t len = s->len;
    if (o->len == 0) {
        for (size_t i = 0; rc == 0;) {
            if (remaining > 0) {
                rc = fj_buf_append(&b, nw->u.s, nw->len);
                remaining--;
            }
            if (i >= len || rc != 0)
                break;
            size_t l = (unsigned char)t[i] < 0x80   ? 1
                       : (unsigned char)t[i] < 0xE0 ? 2
                       : (unsigned char)t[i] < 0xF0 ? 3
                                                    : 4;
            rc = fj_buf_append(&b, t + i, l);
            i += l;
            if (b.len > CHAT_MAX_OUTPUT)
                break;
        }
    } else {
        size_t i = 0;
        while (rc == 0) {
            const char *hit = o->len <= len - i ? memmem(t + i, len - i, o->u.s, o->len) : NULL;
            if (hit == NULL || remaining <= 0) {
                rc = fj_buf_append(&b, t + i, len - i);
                break;
            }
            size_t at = (size_t)(hit - t);
            rc = fj_buf_append(&b, t + i, at - i);
            if (rc == 0)
                rc = fj_buf_append(&b, nw->u.s, nw->len);
            remaining--;
            i = at + o->len;
            if (b.len > CHAT_MAX_OUTPUT)
                break;
        }
    }
    if (rc == 0 && b.len > CHAT_MAX_OUTPUT) {
        fj_buf_free(&b);
        return chat_fail(rx, NULL, FJ_ERR_RANGE, "replace(): text longer than %zu MiB",
                         CHAT_MAX_OUTPUT >> 20);
    }
    return finish_buf(rx, &b, rc, out);
}

static int str_replace(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *s,
                       struct chat_value *args, size_t n, struct chat_value *out)
{
    if (n < 2)
        return chat_fail(rx, at, FJ_ERR_INVALID, "replace() needs two arguments");
    if (args[0].k != V_STR || args[1].k != V_STR)
        return chat_fail(rx, at, FJ_ERR_INVALID, "replace(): the arguments must be strings");
    struct chat_value count = chat_null();
    if (n > 2) {
        if (args[2].k == V_KWARGS) {
            struct chat_value *c = chat_map_get(args[2].u.m, "count", 5);
            count = c != NULL ? *c : chat_null();
        } else {
            count = args[2];
        }
    }
    if (count.k != V_INT && count.k != V_NULL)
        return chat_fail(rx, at, FJ_ERR_INVALID, "replace(): count must be an integer or none");
    return replace_str(rx, s, &args[0], &args[1], count.k == V_NULL ? NAN : count.u.n, out);
}

/* ---- sorting ----------------------------------------------------------------------------- */

struct sort_ctx {
    struct chat_rx *rx;
    const struct chat_node *at;
    bool case_sensitive, reverse;
    const char *attr; /* sort by this attribute path, or NULL */
    size_t attr_len;
    int by; /* dictsort: 0 key, 1 value; -1: the item itself */
    int rc;
};

static struct chat_value attribute_of(const struct chat_value *item, const char *path, size_t len);

static struct chat_value sort_key(const struct sort_ctx *c, const struct chat_value *v)
{
    if (c->by >= 0)
        return v->u.a->v[c->by];
    if (c->attr != NULL)
        return attribute_of(v, c->attr, c->attr_len);
    return *v;
}

static int sort_cmp(struct sort_ctx *c, const struct chat_value *a, const struct chat_value *b)
{
    if (c->rc != 0)
        return 0;
    struct chat_value x = sort_key(c, a), y = sort_key(c, b);
    int r = 0;
    c->rc = chat_compare(c->rx, c->at, &x, &y, c->case_sensitive, &r);
    return c->reverse ? -r : r;
}

/* A stable merge sort (Array.prototype.sort is stable). */
static int stable_sort(struct sort_ctx *c, struct chat_value *v, size_t n)
{
    if (n < 2)
        return 0;
    struct chat_value *tmp = chat_alloc(c->rx, n * sizeof *tmp);
    if (tmp == NULL)
        return nomem(c->rx);
    for (size_t w = 1; w < n && c->rc == 0; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = sort_cmp(c, &v[j], &v[i]) < 0 ? v[j++] : v[i++];
            while (i < mid)
                tmp[k++] = v[i++];
            while (j < hi)
                tmp[k++] = v[j++];
        }
        memcpy(v, tmp, n * sizeof *v);
    }
    return c->rc;
}

static int sorted_copy(struct sort_ctx *c, const struct chat_array *src, struct chat_value *out)
{
    struct chat_array *a = chat_array_new(c->rx, src->n);
    if (a == NULL)
        return nomem(c->rx);
    if (src->n)
        memcpy(a->v, src->v, src->n * sizeof *a->v);
    int rc = stable_sort(c, a->v, a->n);
    *out = arr_val(a);
    return rc;
}

/* ---- mapping methods ----------------------------------------------------------------------- */

static int items_of(struct chat_rx *rx, const struct chat_map *m, struct chat_value *out)
{
    struct chat_array *a = chat_array_new(rx, m->n);
    if (a == NULL)
        return nomem(rx);
    for (size_t i = 0; i < m->n; i++) {
        struct chat_array *pair = chat_array_new(rx, 2);
        if (pair == NULL)
            return nomem(rx);
        pair->v[0] = chat_str_ref(m->kv[i].k, m->kv[i].klen);
        pair->v[1] = m->kv[i].v;
        a->v[i] = arr_val(pair);
    }
    *out = arr_val(a);
    return 0;
}

static int dictsort(struct chat_rx *rx, const struct chat_node *at, const struct chat_map *m,
                    struct chat_value *args, size_t n, struct chat_value *out)
{
    const struct chat_map *kw = NULL;
    struct chat_value pos[3];
    size_t np = 0;
    for (size_t i = 0; i < n; i++) {
        if (args[i].k == V_KWARGS)
            kw = args[i].u.m;
        else if (np < 3)
            pos[np++] = args[i];
    }
    const char *names[3] = {"case_sensitive", "by", "reverse"};
    struct chat_value v[3] = {chat_bool(false), chat_str_ref("key", 3), chat_bool(false)};
    for (int i = 0; i < 3; i++) {
        struct chat_value *k = kw ? chat_map_get(kw, names[i], strlen(names[i])) : NULL;
        if ((size_t)i < np)
            v[i] = pos[i];
        else if (k != NULL)
            v[i] = *k;
    }
    if (v[0].k != V_BOOL)
        return chat_fail(rx, at, FJ_ERR_INVALID, "dictsort: case_sensitive must be a boolean");
    if (v[1].k != V_STR)
        return chat_fail(rx, at, FJ_ERR_INVALID, "dictsort: by must be a string");
    bool by_key = name_is(v[1].u.s, v[1].len, "key");
    if (!by_key && !name_is(v[1].u.s, v[1].len, "value"))
        return chat_fail(rx, at, FJ_ERR_INVALID, "dictsort: by must be 'key' or 'value'");
    if (v[2].k != V_BOOL)
        return chat_fail(rx, at, FJ_ERR_INVALID, "dictsort: reverse must be a boolean");
    struct chat_value items;
    int rc = items_of(rx, m, &items);
    if (rc != 0)
        return rc;
    struct sort_ctx c = {
        .rx = rx, .at = at, .case_sensitive = v[0].u.b, .reverse = v[2].u.b, .by = by_key ? 0 : 1};
    *out = items;
    return stable_sort(&c, items.u.a->v, items.u.a->n);
}

int chat_call_method(struct chat_rx *rx, const struct chat_node *at, const struct chat_func *f,
                     struct chat_value *args, size_t n, struct chat_value *out)
{
    const struct chat_value *s = &f->self;
    switch (f->id) {
    case CHAT_M_UPPER: return chat_case_map(rx, at, s->u.s, s->len, 1, out);
    case CHAT_M_LOWER: return chat_case_map(rx, at, s->u.s, s->len, 0, out);
    case CHAT_M_STRIP: return trim(rx, s, true, true, out);
    case CHAT_M_LSTRIP: return trim(rx, s, true, false, out);
    case CHAT_M_RSTRIP: return trim(rx, s, false, true, out);
    case CHAT_M_TITLE: return title(rx, s, out);
    case CHAT_M_CAPITALIZE: return capitalize(rx, at, s, out);
    case CHAT_M_STARTSWITH: return starts_ends(rx, at, s, args, n, false, out);
    case CHAT_M_ENDSWITH: return starts_ends(rx, at, s, args, n, true, out);
    case CHAT_M_SPLIT: return split(rx, at, s, args, n, out);
    case CHAT_M_REPLACE: return str_replace(rx, at, s, args, n, out);
    case CHAT_M_GET: {
        if (n == 0 || args[0].k != V_STR)
            return chat_fail(rx, at, FJ_ERR_INVALID, "get(): the key must be a string");
        struct chat_value *v = chat_map_get(s->u.m, args[0].u.s, args[0].len);
        *out = v != NULL ? *v : n > 1 ? args[1] : chat_null();
        return 0;
    }
    case CHAT_M_ITEMS: return items_of(rx, s->u.m, out);
    case CHAT_M_KEYS:
    case CHAT_M_VALUES: {
        struct chat_array *a = chat_array_new(rx, s->u.m->n);
        if (a == NULL)
            return nomem(rx);
        for (size_t i = 0; i < s->u.m->n; i++)
            a->v[i] = f->id == CHAT_M_KEYS ? chat_str_ref(s->u.m->kv[i].k, s->u.m->kv[i].klen)
                                           : s->u.m->kv[i].v;
        *out = arr_val(a);
        return 0;
    }
    case CHAT_M_DICTSORT: return dictsort(rx, at, s->u.m, args, n, out);
    }
    return chat_fail(rx, at, FJ_ERR_INVALID, "unknown method");
}

/* ---- globals -------------------------------------------------------------------------------- */

static int range_fn(struct chat_rx *rx, const struct chat_node *at, struct chat_value *args,
                    size_t n, struct chat_value *out)
{
    double v[3] = {0, 0, 1};
    for (size_t i = 0; i < n && i < 3; i++) {
        if (!chat_is_num(&args[i]))
            return chat_fail(rx, at, FJ_ERR_INVALID,
                             "unsupported: range() with a %s argument (numbers only)",
                             chat_kind_name(args[i].k));
        v[i] = args[i].u.n;
    }
    struct vlist l = {0};
    int rc = 0;
    if (n == 0) {
        *out = vl_array(rx, &l, &rc);
        return rc;
    }
    double start = v[0], stop = v[1], step = v[2];
    if (n == 1) {
        stop = start;
        start = 0;
    }
    if (step == 0)
        return chat_fail(rx, at, FJ_ERR_INVALID, "range() step must not be zero");
    for (double i = start; step > 0 ? i < stop : i > stop; i += step) {
        if (l.n >= CHAT_MAX_RANGE)
            return chat_fail(rx, at, FJ_ERR_RANGE, "range() of more than %u numbers",
                             (unsigned)CHAT_MAX_RANGE);
        if ((rc = vl_push(rx, &l, floor(i) == i ? chat_int(i) : chat_float(i))) != 0)
            return rc;
    }
    *out = vl_array(rx, &l, &rc);
    return rc;
}

static int strftime_fn(struct chat_rx *rx, const struct chat_node *at, struct chat_value *args,
                       size_t n, struct chat_value *out)
{
    if (n == 0 || args[0].k != V_STR)
        return chat_fail(rx, at, FJ_ERR_INVALID, "strftime_now() takes a format string");
    static const char *const MONTHS[] = {"January",   "February", "March",    "April",
                                         "May",       "June",     "July",     "August",
                                         "September", "October",  "November", "December"};
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    const char *f = args[0].u.s;
    size_t len = args[0].len;
    struct fj_buf b = {0};
    int rc = 0;
    for (size_t i = 0; i < len && rc == 0; i++) {
        if (f[i] != '%' || i + 1 >= len) {
            rc = fj_buf_append(&b, f + i, 1);
            continue;
        }
        char c = f[i + 1];
        switch (c) {
        case 'Y': rc = fj_buf_printf(&b, "%d", tm.tm_year + 1900); break;
        case 'm': rc = fj_buf_printf(&b, "%02d", tm.tm_mon + 1); break;
        case 'd': rc = fj_buf_printf(&b, "%02d", tm.tm_mday); break;
        case 'H': rc = fj_buf_printf(&b, "%02d", tm.tm_hour); break;
        case 'M': rc = fj_buf_printf(&b, "%02d", tm.tm_min); break;
        case 'B': rc = fj_buf_printf(&b, "%s", MONTHS[tm.tm_mon]); break;
        case 'b': rc = fj_buf_printf(&b, "%.3s", MONTHS[tm.tm_mon]); break;
        case '%': rc = fj_buf_append(&b, "%", 1); break;
        default: rc = fj_buf_append(&b, f + i, 2); break;
        }
        i++;
    }
    return finish_buf(rx, &b, rc, out);
}

static int namespace_fn(struct chat_rx *rx, const struct chat_node *at, struct chat_value *args,
                        size_t n, struct chat_value *out)
{
    const struct chat_map *kw = NULL;
    if (n > 0 && args[n - 1].k == V_KWARGS)
        kw = args[--n].u.m;
    if (n > 1)
        return chat_fail(rx, at, FJ_ERR_INVALID, "namespace expected at most 1 argument, got %zu",
                         n);
    struct chat_map *m = chat_map_new(rx, 0);
    if (m == NULL)
        return nomem(rx);
    int rc = 0;
    if (n == 1) {
        const struct chat_value *src = &args[0];
        if (chat_is_object(src)) {
            for (size_t i = 0; i < src->u.m->n && rc == 0; i++)
                rc =
                    chat_map_set(rx, m, src->u.m->kv[i].k, src->u.m->kv[i].klen, src->u.m->kv[i].v);
        } else if (chat_is_array(src)) {
            for (size_t i = 0; i < src->u.a->n && rc == 0; i++) {
                const struct chat_value *pair = &src->u.a->v[i];
                struct chat_value k, v;
                if (chat_is_array(pair) && pair->u.a->n == 2) {
                    k = pair->u.a->v[0];
                    v = pair->u.a->v[1];
                } else if (pair->k == V_STR && fj_utf8_count(pair->u.s, pair->len) == 2) {
                    int l;
                    fj_utf8_decode((const uint8_t *)pair->u.s, &l);
                    k = chat_str_ref(pair->u.s, (size_t)l);
                    v = chat_str_ref(pair->u.s + l, pair->len - (size_t)l);
                } else {
                    return chat_fail(rx, at, FJ_ERR_INVALID,
                                     "namespace expected a mapping or [key, value] pairs");
                }
                if (k.k != V_STR)
                    return chat_fail(rx, at, FJ_ERR_INVALID, "namespace keys must be strings");
                rc = chat_map_set(rx, m, k.u.s, k.len, v);
            }
        } else {
            return chat_fail(rx, at, FJ_ERR_INVALID, "namespace(): a %s is not iterable",
                             chat_kind_name(src->k));
        }
    }
    for (size_t i = 0; kw != NULL && i < kw->n && rc == 0; i++)
        rc = chat_map_set(rx, m, kw->kv[i].k, kw->kv[i].klen, kw->kv[i].v);
    out->k = V_NS;
    out->u.m = m;
    return rc;
}

int chat_call_global(struct chat_rx *rx, const struct chat_node *at, int id,
                     struct chat_value *args, size_t n, struct chat_value *out)
{
    switch (id) {
    case CHAT_G_RAISE: {
        struct fj_buf b = {0};
        int rc = 0;
        if (n > 0 && args[0].k != V_UNDEF && args[0].k != V_NULL) /* Error(undefined) */
            rc = chat_to_text(rx, at, &args[0], CHAT_STR_RAW, &b);
        if (rc != 0) {
            fj_buf_free(&b);
            return rc;
        }
        fj_err_set(rx->err, FJ_ERR_INVALID, "%s", b.data ? b.data : "");
        fj_buf_free(&b);
        return rx->err->code != 0 ? rx->err->code : FJ_ERR_INVALID;
    }
    case CHAT_G_RANGE:
        if (n > 0 && args[n - 1].k == V_KWARGS)
            return chat_fail(rx, at, FJ_ERR_INVALID, "range() takes no keyword arguments");
        return range_fn(rx, at, args, n, out);
    case CHAT_G_STRFTIME: return strftime_fn(rx, at, args, n, out);
    case CHAT_G_NAMESPACE: return namespace_fn(rx, at, args, n, out);
    }
    return chat_fail(rx, at, FJ_ERR_INVALID, "unknown function");
}

/* ---- tests ------------------------------------------------------------------------------------
 */

static const char *const TESTS[] = {
    "boolean", "callable", "odd",       "even",     "false",   "true",     "none",
    "string",  "number",   "integer",   "iterable", "mapping", "sequence", "lower",
    "upper",   "defined",  "undefined", "equalto",  "eq",      NULL,
};

bool chat_test_exists(const char *name, size_t len)
{
    for (const char *const *t = TESTS; *t; t++)
        if (name_is(name, len, *t))
            return true;
    return false;
}

int chat_apply_test(struct chat_rx *rx, const struct chat_node *at, const char *name, size_t len,
                    const struct chat_value *a, const struct chat_value *b, bool has_b, bool *res)
{
    if (!chat_test_exists(name, len))
        return chat_fail(rx, at, FJ_ERR_INVALID, "unknown test '%.*s'", (int)len, name);
    if (a->k == V_JSUNDEF)
        return chat_fail(rx, at, FJ_ERR_INVALID,
                         "undefined value (first or last of an empty list) used");
    if (name_is(name, len, "boolean"))
        *res = a->k == V_BOOL;
    else if (name_is(name, len, "callable"))
        *res = a->k == V_FUNC;
    else if (name_is(name, len, "odd") || name_is(name, len, "even")) {
        if (a->k != V_INT)
            return chat_fail(rx, at, FJ_ERR_INVALID, "cannot test '%.*s' on a %s", (int)len, name,
                             chat_kind_name(a->k));
        bool odd = fmod(a->u.n, 2) != 0;
        *res = name_is(name, len, "odd") ? odd : !odd;
    } else if (name_is(name, len, "false"))
        *res = a->k == V_BOOL && !a->u.b;
    else if (name_is(name, len, "true"))
        *res = a->k == V_BOOL && a->u.b;
    else if (name_is(name, len, "none"))
        *res = a->k == V_NULL;
    else if (name_is(name, len, "string"))
        *res = a->k == V_STR;
    else if (name_is(name, len, "number"))
        *res = chat_is_num(a);
    else if (name_is(name, len, "integer"))
        *res = a->k == V_INT;
    else if (name_is(name, len, "iterable"))
        *res = a->k == V_ARRAY || a->k == V_STR;
    else if (name_is(name, len, "mapping"))
        *res = chat_is_object(a);
    else if (name_is(name, len, "sequence"))
        *res = chat_is_array(a) || chat_is_object(a) || a->k == V_STR;
    else if (name_is(name, len, "lower") || name_is(name, len, "upper")) {
        *res = false;
        if (a->k == V_STR) {
            struct chat_value m;
            int rc = chat_case_map(rx, at, a->u.s, a->len, name_is(name, len, "upper"), &m);
            if (rc != 0)
                return rc;
            *res = memcmp(m.u.s, a->u.s, a->len) == 0;
        }
    } else if (name_is(name, len, "defined"))
        *res = a->k != V_UNDEF;
    else if (name_is(name, len, "undefined"))
        *res = a->k == V_UNDEF;
    else {
        if (!has_b)
            return chat_fail(rx, at, FJ_ERR_INVALID, "the test '%.*s' needs a value to compare",
                             (int)len, name);
        if (b->k == V_JSUNDEF)
            return chat_fail(rx, at, FJ_ERR_INVALID,
                             "undefined value (first or last of an empty list) used");
        *res = chat_strict_eq(a, b);
    }
    return 0;
}

/* ---- filters ----------------------------------------------------------------------------------
 */

/* getAttributeValue: a dotted path through mappings and list indexes. */
static struct chat_value attribute_of(const struct chat_value *item, const char *path, size_t len)
{
    struct chat_value v = *item;
    size_t i = 0;
    for (;;) {
        const char *dot = memchr(path + i, '.', len - i);
        size_t end = dot ? (size_t)(dot - path) : len;
        const char *part = path + i;
        size_t plen = end - i;
        if (chat_is_attr_container(&v)) {
            struct chat_value *x = chat_map_get(v.u.m, part, plen);
            v = x != NULL ? *x : chat_undef();
        } else if (chat_is_array(&v)) {
            double idx = chat_parse_int(part, plen);
            if (!isnan(idx) && idx >= 0 && idx < (double)v.u.a->n)
                v = v.u.a->v[(size_t)idx];
            else
                return chat_undef();
        } else {
            return chat_undef();
        }
        if (dot == NULL)
            return v;
        i = end + 1;
    }
}

static int join_values(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *v,
                       const char *sep, size_t sep_len, struct chat_value *out)
{
    struct fj_buf b = {0};
    int rc = 0;
    if (v->k == V_STR) {
        for (size_t i = 0; i < v->len && rc == 0;) {
            int l;
            fj_utf8_decode((const uint8_t *)v->u.s + i, &l);
            if (i > 0)
                rc = fj_buf_append(&b, sep, sep_len);
            if (rc == 0)
                rc = fj_buf_append(&b, v->u.s + i, (size_t)l);
            i += (size_t)l;
        }
    } else {
        for (size_t i = 0; i < v->u.a->n && rc == 0; i++) {
            if (i > 0)
                rc = fj_buf_append(&b, sep, sep_len);
            if (rc == 0)
                rc = chat_to_text(rx, at, &v->u.a->v[i], CHAT_STR_JOIN, &b);
        }
    }
    return finish_buf(rx, &b, rc, out);
}

/* JavaScript truthiness of a value's raw .value (an empty list is a truthy array). */
static bool raw_truthy(const struct chat_value *v)
{
    if (chat_is_array(v) || chat_is_attr_container(v) || v->k == V_FUNC)
        return true;
    return chat_truthy(v);
}

static int indent_str(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *s,
                      double width, bool first, bool blank, struct chat_value *out)
{
    if (!(width >= 0) || width > (double)CHAT_MAX_OUTPUT)
        return chat_fail(rx, at, FJ_ERR_INVALID, "indent: invalid width");
    struct fj_buf b = {0};
    int rc = 0;
    size_t i = 0, line = 0;
    for (;;) {
        const char *nl = memchr(s->u.s + i, '\n', s->len - i);
        size_t end = nl ? (size_t)(nl - s->u.s) : s->len;
        bool skip = (!first && line == 0) || (!blank && end == i);
        for (size_t k = 0; !skip && k < (size_t)width && rc == 0; k++)
            rc = fj_buf_append(&b, " ", 1);
        if (rc == 0)
            rc = fj_buf_append(&b, s->u.s + i, end - i);
        if (rc != 0 || nl == NULL)
            break;
        rc = fj_buf_append(&b, "\n", 1);
        i = end + 1;
        line++;
        if (b.len > CHAT_MAX_OUTPUT) {
            fj_buf_free(&b);
            return chat_fail(rx, at, FJ_ERR_RANGE, "indent: text longer than %zu MiB",
                             CHAT_MAX_OUTPUT >> 20);
        }
    }
    return finish_buf(rx, &b, rc, out);
}

static int unique(struct chat_rx *rx, const struct chat_array *a, struct chat_value *out)
{
    struct vlist l = {0};
    int rc = 0;
    for (size_t i = 0; i < a->n && rc == 0; i++) {
        bool seen = false;
        for (size_t j = 0; j < l.n && !seen; j++) {
            const struct chat_value *x = &a->v[i], *y = &l.v[j];
            /* SameValueZero of the raw values */
            seen = (chat_is_num(x) && chat_is_num(y) && isnan(x->u.n) && isnan(y->u.n)) ||
                   chat_strict_eq(x, y);
        }
        if (!seen)
            rc = vl_push(rx, &l, a->v[i]);
    }
    if (rc == 0)
        *out = vl_array(rx, &l, &rc);
    return rc;
}

static struct chat_value kwarg(const struct chat_map *kw, const char *name, bool *found)
{
    struct chat_value *v = chat_map_get(kw, name, strlen(name));
    *found = v != NULL;
    return v != NULL ? *v : chat_undef();
}

/* args.at(i) ?? kwargs.get(name) ?? fallback */
static struct chat_value arg_or(const struct chat_value *pos, size_t n, size_t i,
                                const struct chat_map *kw, const char *name, struct chat_value dflt)
{
    if (i < n)
        return pos[i];
    bool found;
    struct chat_value v = kw != NULL ? kwarg(kw, name, &found) : chat_undef();
    return kw != NULL && found ? v : dflt;
}

static int filter_fail(struct chat_rx *rx, const struct chat_node *f, const struct chat_value *v)
{
    return chat_fail(rx, f, FJ_ERR_INVALID, "unknown filter '%.*s' or it cannot apply to a %s",
                     (int)f->len, f->s, chat_kind_name(v->k));
}

static int tojson_filter(struct chat_rx *rx, const struct chat_node *f, struct chat_value *v,
                         struct chat_scope *env, struct chat_value *out)
{
    struct chat_json_opts o = {.undefined_as_null = true};
    if (f->flag) {
        struct chat_value *pos;
        size_t np;
        struct chat_map *kw;
        int rc = chat_eval_args(rx, &f->l1, env, &pos, &np, &kw);
        if (rc != 0)
            return rc;
        bool found;
        struct chat_value indent = kwarg(kw, "indent", &found);
        if (!found)
            indent = chat_null();
        if (indent.k != V_INT && indent.k != V_NULL)
            return chat_fail(rx, f, FJ_ERR_INVALID, "tojson: indent must be an integer");
        struct chat_value ea = kwarg(kw, "ensure_ascii", &found);
        if (!found)
            ea = chat_bool(false);
        if (ea.k != V_BOOL)
            return chat_fail(rx, f, FJ_ERR_INVALID, "tojson: ensure_ascii must be a boolean");
        struct chat_value sk = kwarg(kw, "sort_keys", &found);
        if (!found)
            sk = chat_bool(false);
        if (sk.k != V_BOOL)
            return chat_fail(rx, f, FJ_ERR_INVALID, "tojson: sort_keys must be a boolean");
        if (sk.u.b)
            return chat_fail(rx, f, FJ_ERR_INVALID,
                             "unsupported: tojson(sort_keys=true) (locale-dependent order)");
        struct chat_value sep = kwarg(kw, "separators", &found);
        if (found && sep.k != V_NULL) {
            if (!chat_is_array(&sep) || sep.u.a->n != 2 || sep.u.a->v[0].k != V_STR ||
                sep.u.a->v[1].k != V_STR)
                return chat_fail(rx, f, FJ_ERR_INVALID, "tojson: separators must be two strings");
            o.item_sep = sep.u.a->v[0].u.s;
            o.item_sep_len = sep.u.a->v[0].len;
            o.key_sep = sep.u.a->v[1].u.s;
            o.key_sep_len = sep.u.a->v[1].len;
        }
        if (indent.k == V_INT && !isnan(indent.u.n)) {
            if (indent.u.n < 0 || indent.u.n > 1000)
                return chat_fail(rx, f, FJ_ERR_INVALID, "tojson: unsupported indent %g",
                                 indent.u.n);
            o.indent = (long)indent.u.n;
        }
        o.ensure_ascii = ea.u.b;
    }
    struct fj_buf b = {0};
    int rc = chat_to_json(rx, f, v, &o, 0, &b);
    return finish_buf(rx, &b, rc, out);
}

/* Filters written without arguments: `x | name`. */
static int plain_filter(struct chat_rx *rx, const struct chat_node *f, struct chat_value *v,
                        struct chat_value *out)
{
    const char *n = f->s;
    size_t len = f->len;
    if (chat_is_array(v)) {
        const struct chat_array *a = v->u.a;
        if (name_is(n, len, "list")) {
            *out = *v;
            return 0;
        }
        if (name_is(n, len, "first") || name_is(n, len, "last")) {
            if (a->n == 0)
                out->k = V_JSUNDEF;
            else
                *out = a->v[name_is(n, len, "first") ? 0 : a->n - 1];
            return 0;
        }
        if (name_is(n, len, "length")) {
            *out = chat_int((double)a->n);
            return 0;
        }
        if (name_is(n, len, "reverse")) {
            struct chat_array *r = chat_array_new(rx, a->n);
            if (r == NULL)
                return nomem(rx);
            for (size_t i = 0; i < a->n; i++)
                r->v[i] = a->v[a->n - 1 - i];
            *out = arr_val(r);
            return 0;
        }
        if (name_is(n, len, "sort")) {
            struct sort_ctx c = {.rx = rx, .at = f, .by = -1};
            return sorted_copy(&c, a, out);
        }
        if (name_is(n, len, "join"))
            return join_values(rx, f, v, "", 0, out);
        if (name_is(n, len, "string")) {
            struct chat_json_opts o = {0};
            struct fj_buf b = {0};
            if (v->k == V_TUPLE)
                return chat_fail(rx, f, FJ_ERR_INVALID, "cannot convert a tuple to JSON");
            int rc = chat_to_json(rx, f, v, &o, 0, &b);
            return finish_buf(rx, &b, rc, out);
        }
        if (name_is(n, len, "unique"))
            return unique(rx, a, out);
        return filter_fail(rx, f, v);
    }
    if (v->k == V_STR) {
        if (name_is(n, len, "length")) {
            *out = chat_int((double)chat_u16_len(v->u.s, v->len));
            return 0;
        }
        if (name_is(n, len, "upper") || name_is(n, len, "lower"))
            return chat_case_map(rx, f, v->u.s, v->len, name_is(n, len, "upper"), out);
        if (name_is(n, len, "title"))
            return title(rx, v, out);
        if (name_is(n, len, "capitalize"))
            return capitalize(rx, f, v, out);
        if (name_is(n, len, "trim"))
            return trim(rx, v, true, true, out);
        if (name_is(n, len, "indent"))
            return indent_str(rx, f, v, 4, false, false, out);
        if (name_is(n, len, "join") || name_is(n, len, "string")) {
            *out = *v;
            return 0;
        }
        if (name_is(n, len, "int")) {
            double x = chat_parse_int(v->u.s, v->len);
            *out = chat_int(isnan(x) ? 0 : x);
            return 0;
        }
        if (name_is(n, len, "float")) {
            double x = chat_parse_float(v->u.s, v->len);
            *out = chat_float(isnan(x) ? 0 : x);
            return 0;
        }
        return filter_fail(rx, f, v);
    }
    if (chat_is_num(v)) {
        if (name_is(n, len, "abs")) {
            *out = *v;
            out->u.n = fabs(v->u.n);
            return 0;
        }
        if (name_is(n, len, "int")) {
            *out = chat_int(floor(v->u.n));
            return 0;
        }
        if (name_is(n, len, "float")) {
            *out = chat_float(v->u.n);
            return 0;
        }
        if (name_is(n, len, "string")) {
            struct fj_buf b = {0};
            int rc = chat_to_text(rx, f, v, CHAT_STR_RUNTIME, &b);
            return finish_buf(rx, &b, rc, out);
        }
        return filter_fail(rx, f, v);
    }
    if (chat_is_object(v)) {
        if (name_is(n, len, "items"))
            return items_of(rx, v->u.m, out);
        if (name_is(n, len, "length")) {
            *out = chat_int((double)v->u.m->n);
            return 0;
        }
        for (size_t i = 0; i < sizeof OBJ_METHODS / sizeof OBJ_METHODS[0]; i++)
            if (name_is(n, len, OBJ_METHODS[i].name)) {
                struct chat_func fn = {.kind = FN_METHOD, .id = OBJ_METHODS[i].id, .self = *v};
                return chat_call_method(rx, f, &fn, NULL, 0, out);
            }
        return filter_fail(rx, f, v);
    }
    if (v->k == V_BOOL) {
        if (name_is(n, len, "bool")) {
            *out = *v;
            return 0;
        }
        if (name_is(n, len, "int") || name_is(n, len, "float")) {
            *out = name_is(n, len, "int") ? chat_int(v->u.b) : chat_float(v->u.b);
            return 0;
        }
        if (name_is(n, len, "string")) {
            *out = v->u.b ? chat_str_ref("true", 4) : chat_str_ref("false", 5);
            return 0;
        }
        return filter_fail(rx, f, v);
    }
    return filter_fail(rx, f, v);
}

static int select_filter(struct chat_rx *rx, const struct chat_node *f, struct chat_value *v,
                         struct chat_scope *env, bool select, struct chat_value *out)
{
    const struct chat_array *a = v->u.a;
    for (size_t i = 0; i < a->n; i++)
        if (!chat_is_attr_container(&a->v[i]))
            return chat_fail(rx, f, FJ_ERR_INVALID,
                             "%.*s can only be applied to a list of mappings", (int)f->len, f->s);
    for (size_t i = 0; i < f->l1.n; i++)
        if (f->l1.v[i]->kind != NK_STR)
            return chat_fail(rx, f, FJ_ERR_INVALID, "the arguments of %.*s must be strings",
                             (int)f->len, f->s);
    if (f->l1.n == 0)
        return chat_fail(rx, f, FJ_ERR_INVALID, "%.*s needs an attribute name", (int)f->len, f->s);
    const struct chat_node *attr = f->l1.v[0];
    const struct chat_node *test = f->l1.n > 1 ? f->l1.v[1] : NULL;
    struct chat_value val =
        f->l1.n > 2 ? chat_str_ref(f->l1.v[2]->s, f->l1.v[2]->len) : chat_undef();
    (void)env;
    if (test != NULL && !chat_test_exists(test->s, test->len))
        return chat_fail(rx, f, FJ_ERR_INVALID, "unknown test '%.*s'", (int)test->len, test->s);
    struct vlist l = {0};
    int rc = 0;
    for (size_t i = 0; i < a->n && rc == 0; i++) {
        struct chat_value *x = chat_map_get(a->v[i].u.m, attr->s, attr->len);
        bool res = false;
        if (x != NULL) {
            if (test != NULL)
                rc = chat_apply_test(rx, f, test->s, test->len, x, &val, f->l1.n > 2, &res);
            else
                res = chat_truthy(x);
        }
        if (rc == 0 && res == select)
            rc = vl_push(rx, &l, a->v[i]);
    }
    if (rc == 0)
        *out = vl_array(rx, &l, &rc);
    return rc;
}

/* Filters called with arguments: `x | name(...)`. */
static int call_filter(struct chat_rx *rx, const struct chat_node *f, struct chat_value *v,
                       struct chat_scope *env, struct chat_value *out)
{
    const char *n = f->s;
    size_t len = f->len;
    struct chat_value *pos;
    size_t np;
    struct chat_map *kw;
    int rc;
    if (name_is(n, len, "join")) {
        if (v->k != V_STR && !chat_is_array(v))
            return filter_fail(rx, f, v);
        if ((rc = chat_eval_args(rx, &f->l1, env, &pos, &np, &kw)) != 0)
            return rc;
        struct chat_value sep = arg_or(pos, np, 0, kw, "separator", chat_str_ref("", 0));
        if (sep.k != V_STR)
            return chat_fail(rx, f, FJ_ERR_INVALID, "join: the separator must be a string");
        return join_values(rx, f, v, sep.u.s, sep.len, out);
    }
    if (name_is(n, len, "int") || name_is(n, len, "float")) {
        bool is_int = name_is(n, len, "int");
        if ((rc = chat_eval_args(rx, &f->l1, env, &pos, &np, &kw)) != 0)
            return rc;
        struct chat_value dflt =
            arg_or(pos, np, 0, kw, "default", is_int ? chat_int(0) : chat_float(0));
        if (v->k == V_STR) {
            double x = is_int ? chat_parse_int(v->u.s, v->len) : chat_parse_float(v->u.s, v->len);
            *out = isnan(x) ? dflt : is_int ? chat_int(x) : chat_float(x);
            return 0;
        }
        if (chat_is_num(v)) {
            *out = *v;
            return 0;
        }
        if (v->k == V_BOOL) {
            *out = is_int ? chat_int(v->u.b) : chat_float(v->u.b);
            return 0;
        }
        return filter_fail(rx, f, v);
    }
    if (name_is(n, len, "default")) {
        if ((rc = chat_eval_args(rx, &f->l1, env, &pos, &np, &kw)) != 0)
            return rc;
        struct chat_value dflt = np > 0 ? pos[0] : chat_str_ref("", 0);
        struct chat_value flag = arg_or(pos, np, 1, kw, "boolean", chat_bool(false));
        if (flag.k != V_BOOL)
            return chat_fail(rx, f, FJ_ERR_INVALID, "default: the flag must be a boolean");
        if (v->k == V_JSUNDEF && flag.u.b)
            return chat_fail(rx, f, FJ_ERR_INVALID,
                             "undefined value (first or last of an empty list) used");
        *out = v->k == V_UNDEF || (flag.u.b && !chat_truthy(v)) ? dflt : *v;
        return 0;
    }
    if (v->k == V_JSUNDEF)
        return filter_fail(rx, f, v);
    if (chat_is_array(v)) {
        if (name_is(n, len, "sort")) {
            if ((rc = chat_eval_args(rx, &f->l1, env, &pos, &np, &kw)) != 0)
                return rc;
            struct chat_value rev = arg_or(pos, np, 0, kw, "reverse", chat_bool(false));
            struct chat_value cs = arg_or(pos, np, 1, kw, "case_sensitive", chat_bool(false));
            struct chat_value attr = arg_or(pos, np, 2, kw, "attribute", chat_null());
            if (rev.k != V_BOOL)
                return chat_fail(rx, f, FJ_ERR_INVALID, "sort: reverse must be a boolean");
            if (cs.k != V_BOOL)
                return chat_fail(rx, f, FJ_ERR_INVALID, "sort: case_sensitive must be a boolean");
            if (attr.k != V_STR && attr.k != V_INT && attr.k != V_NULL)
                return chat_fail(rx, f, FJ_ERR_INVALID,
                                 "sort: attribute must be a string, an integer or none");
            struct sort_ctx c = {
                .rx = rx, .at = f, .case_sensitive = cs.u.b, .reverse = rev.u.b, .by = -1};
            if (attr.k != V_NULL) {
                struct fj_buf b = {0};
                struct chat_value s;
                rc = chat_to_text(rx, f, &attr, CHAT_STR_RAW, &b);
                if ((rc = finish_buf(rx, &b, rc, &s)) != 0)
                    return rc;
                c.attr = s.u.s;
                c.attr_len = s.len;
            }
            return sorted_copy(&c, v->u.a, out);
        }
        if (name_is(n, len, "selectattr") || name_is(n, len, "rejectattr"))
            return select_filter(rx, f, v, env, name_is(n, len, "selectattr"), out);
        if (name_is(n, len, "map")) {
            if ((rc = chat_eval_args(rx, &f->l1, env, &pos, &np, &kw)) != 0)
                return rc;
            bool found;
            struct chat_value attr = kwarg(kw, "attribute", &found);
            if (!found)
                return chat_fail(rx, f, FJ_ERR_INVALID, "unsupported: map without attribute=");
            if (attr.k != V_STR)
                return chat_fail(rx, f, FJ_ERR_INVALID, "map: attribute must be a string");
            bool has_dflt;
            struct chat_value dflt = kwarg(kw, "default", &has_dflt);
            struct chat_array *a = chat_array_new(rx, v->u.a->n);
            if (a == NULL)
                return nomem(rx);
            for (size_t i = 0; i < v->u.a->n; i++) {
                if (!chat_is_attr_container(&v->u.a->v[i]))
                    return chat_fail(rx, f, FJ_ERR_INVALID, "map: the items must be mappings");
                struct chat_value x = attribute_of(&v->u.a->v[i], attr.u.s, attr.len);
                a->v[i] = x.k == V_UNDEF && has_dflt ? dflt : x;
            }
            *out = arr_val(a);
            return 0;
        }
        return filter_fail(rx, f, v);
    }
    if (v->k == V_STR) {
        if (name_is(n, len, "indent")) {
            if ((rc = chat_eval_args(rx, &f->l1, env, &pos, &np, &kw)) != 0)
                return rc;
            struct chat_value w = arg_or(pos, np, 0, kw, "width", chat_int(4));
            if (w.k != V_INT)
                return chat_fail(rx, f, FJ_ERR_INVALID, "indent: width must be a number");
            struct chat_value first = arg_or(pos, np, 1, kw, "first", chat_bool(false));
            struct chat_value blank = arg_or(pos, np, 2, kw, "blank", chat_bool(false));
            if (first.k == V_JSUNDEF || blank.k == V_JSUNDEF)
                return filter_fail(rx, f, &first);
            return indent_str(rx, f, v, w.u.n, raw_truthy(&first), raw_truthy(&blank), out);
        }
        if (name_is(n, len, "replace")) {
            if ((rc = chat_eval_args(rx, &f->l1, env, &pos, &np, &kw)) != 0)
                return rc;
            struct chat_value *args = chat_alloc(rx, (np + 1) * sizeof *args);
            if (args == NULL)
                return nomem(rx);
            if (np)
                memcpy(args, pos, np * sizeof *args);
            args[np].k = V_KWARGS;
            args[np].u.m = kw;
            for (size_t i = 0; i < np; i++)
                if (args[i].k == V_JSUNDEF)
                    return filter_fail(rx, f, &args[i]);
            return str_replace(rx, f, v, args, np + 1, out);
        }
        return filter_fail(rx, f, v);
    }
    if (chat_is_object(v)) {
        for (size_t i = 0; i < sizeof OBJ_METHODS / sizeof OBJ_METHODS[0]; i++) {
            if (!name_is(n, len, OBJ_METHODS[i].name))
                continue;
            if ((rc = chat_eval_args(rx, &f->l1, env, &pos, &np, &kw)) != 0)
                return rc;
            if (kw->n > 0) {
                pos[np].k = V_KWARGS;
                pos[np].u.m = kw;
                np++;
            }
            for (size_t k = 0; k < np; k++)
                if (pos[k].k == V_JSUNDEF)
                    return filter_fail(rx, f, &pos[k]);
            struct chat_func fn = {.kind = FN_METHOD, .id = OBJ_METHODS[i].id, .self = *v};
            return chat_call_method(rx, f, &fn, pos, np, out);
        }
        return filter_fail(rx, f, v);
    }
    return filter_fail(rx, f, v);
}

int chat_apply_filter(struct chat_rx *rx, const struct chat_node *f, struct chat_value *operand,
                      struct chat_scope *env, struct chat_value *out)
{
    if (name_is(f->s, f->len, "safe") && !f->flag) {
        *out = *operand;
        return 0;
    }
    if (name_is(f->s, f->len, "tojson"))
        return tojson_filter(rx, f, operand, env, out);
    if (f->flag)
        return call_filter(rx, f, operand, env, out);
    if (operand->k == V_JSUNDEF)
        return filter_fail(rx, f, operand);
    return plain_filter(rx, f, operand, out);
}
