/* eval.c - the chat template interpreter: statements, expressions, scopes and macros, as
 * @huggingface/jinja 0.5.11's runtime.ts evaluates them, and the public chat_template_*
 * functions (chat.h).
 *
 * Invariants and the places JavaScript's behaviour shows through:
 *   1. Statements write straight into rx->out; a macro call or a block set renders into a
 *      buffer of its own and yields a string. A for loop truncates rx->out back to where an
 *      iteration started when that iteration ends in break or continue, because runtime.ts
 *      drops the output of such an iteration (the exception skips `result +=`).
 *   2. break and continue travel as the positive codes CHAT_BREAK / CHAT_CONTINUE through
 *      every evaluation, including macro calls, to the nearest loop body; errors travel as
 *      negative FJ_ERR_* codes. A loop whose iterations all ended in continue, or whose
 *      first iteration broke, renders its else block (runtime.ts' noIteration flag).
 *   3. Scopes: a for loop opens one scope for all its iterations; if does not open one; a
 *      macro's scope sits on the scope of the call site (dynamic scoping); each scope has
 *      its own `namespace` unless it assigns the name itself.
 *   4. chat_eval never yields V_JSUNDEF; eval_any does, for the few consumers that accept
 *      it (set, filter operands for safe/default, macro arguments).
 *   5. Every evaluation counts a step and a level of depth, so neither loops nor recursion
 *      can run past CHAT_MAX_STEPS / CHAT_MAX_EVAL_DEPTH / CHAT_MAX_CALL_DEPTH.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat_internal.h"
#include "core/utf8.h"

int chat_fail(struct chat_rx *rx, const struct chat_node *at, int code, const char *fmt, ...)
{
    char where[64], msg[420];
    if (at != NULL)
        chat_where(rx->t->src, rx->t->len, at->pos, where, sizeof where);
    else
        snprintf(where, sizeof where, "chat template: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fj_err_set(rx->err, code, "%s%s", where, msg);
    return rx->err->code != 0 ? rx->err->code : code;
}

static int nomem(struct chat_rx *rx)
{
    if (rx->err->code != 0)
        return rx->err->code;
    return fj_err_set(rx->err, FJ_ERR_NOMEM, "chat template: out of memory");
}

/* ---- scopes ------------------------------------------------------------------------------ */

struct chat_scope *chat_scope_new(struct chat_rx *rx, struct chat_scope *parent)
{
    struct chat_scope *s = chat_alloc(rx, sizeof *s);
    if (s != NULL) {
        s->parent = parent;
        memset(&s->vars, 0, sizeof s->vars);
    }
    return s;
}

int chat_scope_set(struct chat_rx *rx, struct chat_scope *s, const char *name, size_t len,
                   struct chat_value v)
{
    if (v.k == V_JSUNDEF)
        v = chat_undef();
    return chat_map_set(rx, &s->vars, name, len, v);
}

struct chat_value chat_lookup(struct chat_rx *rx, struct chat_scope *s, const char *name,
                              size_t len)
{
    for (bool first = true; s != NULL; s = s->parent, first = false) {
        struct chat_value *v = chat_map_get(&s->vars, name, len);
        if (v != NULL)
            return *v;
        if (first && len == 9 && memcmp(name, "namespace", 9) == 0)
            return rx->fn_namespace;
    }
    return chat_undef();
}

/* ---- output ------------------------------------------------------------------------------ */

static int emit_value(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *v)
{
    if (v->k == V_NULL || v->k == V_UNDEF)
        return 0;
    return chat_to_text(rx, at, v, CHAT_STR_RUNTIME, rx->out);
}

static void truncate_out(struct fj_buf *b, size_t len)
{
    b->len = len;
    if (b->data != NULL)
        b->data[len] = '\0';
}

static int exec_block(struct chat_rx *rx, const struct chat_list *body, struct chat_scope *env);

/* Renders body into a string of its own (macro calls, block sets, filter blocks). */
static int render_to_string(struct chat_rx *rx, const struct chat_list *body,
                            struct chat_scope *env, struct chat_value *out)
{
    struct fj_buf tmp = {0};
    struct fj_buf *saved = rx->out;
    rx->out = &tmp;
    int rc = exec_block(rx, body, env);
    rx->out = saved;
    if (rc == 0)
        rc = chat_str_from_buf(rx, &tmp, out);
    fj_buf_free(&tmp);
    return rc;
}

/* ---- expressions ------------------------------------------------------------------------- */

static int eval_any(struct chat_rx *rx, const struct chat_node *n, struct chat_scope *env,
                    struct chat_value *out);

static int jsundef_fail(struct chat_rx *rx, const struct chat_node *at)
{
    return chat_fail(rx, at, FJ_ERR_INVALID,
                     "undefined value (first or last of an empty list) used");
}

int chat_eval(struct chat_rx *rx, const struct chat_node *n, struct chat_scope *env,
              struct chat_value *out)
{
    int rc = eval_any(rx, n, env, out);
    if (rc == 0 && out->k == V_JSUNDEF)
        return jsundef_fail(rx, n);
    return rc;
}

int chat_eval_args(struct chat_rx *rx, const struct chat_list *args, struct chat_scope *env,
                   struct chat_value **pos, size_t *n_pos, struct chat_map **kw)
{
    size_t n = 0, cap = args->n + 1;
    struct chat_value *v = chat_alloc(rx, cap * sizeof *v);
    struct chat_map *m = chat_map_new(rx, 0);
    if (v == NULL || m == NULL)
        return nomem(rx);
    int rc;
    /* positional arguments (with * unpacking) first, then keyword ones, as runtime.ts */
    for (size_t i = 0; i < args->n; i++) {
        const struct chat_node *a = args->v[i];
        if (a->kind == NK_KWARG || a->kind == NK_KWSPREAD)
            continue;
        struct chat_value x;
        if (a->kind == NK_SPREAD) {
            if ((rc = chat_eval(rx, a->a, env, &x)) != 0)
                return rc;
            if (x.k != V_ARRAY && x.k != V_TUPLE)
                return chat_fail(rx, a, FJ_ERR_INVALID, "cannot unpack a %s with '*'",
                                 chat_kind_name(x.k));
            if (n + x.u.a->n + (args->n - i) > cap) {
                size_t c = n + x.u.a->n + args->n + 1;
                struct chat_value *w = chat_alloc(rx, c * sizeof *w);
                if (w == NULL)
                    return nomem(rx);
                if (n)
                    memcpy(w, v, n * sizeof *w);
                v = w;
                cap = c;
            }
            for (size_t k = 0; k < x.u.a->n; k++)
                v[n++] = x.u.a->v[k];
            continue;
        }
        if ((rc = eval_any(rx, a, env, &x)) != 0)
            return rc;
        v[n++] = x;
    }
    for (size_t i = 0; i < args->n; i++) {
        const struct chat_node *a = args->v[i];
        struct chat_value x;
        if (a->kind == NK_KWARG) {
            if ((rc = eval_any(rx, a->a, env, &x)) != 0)
                return rc;
            if (chat_map_get(m, a->s, a->len) != NULL)
                return chat_fail(rx, a, FJ_ERR_INVALID,
                                 "got multiple values for keyword argument '%.*s'", (int)a->len,
                                 a->s);
            if ((rc = chat_map_set(rx, m, a->s, a->len, x)) != 0)
                return rc;
        } else if (a->kind == NK_KWSPREAD) {
            if ((rc = chat_eval(rx, a->a, env, &x)) != 0)
                return rc;
            if (!chat_is_object(&x))
                return chat_fail(rx, a, FJ_ERR_INVALID,
                                 "the argument after ** must be a mapping, not a %s",
                                 chat_kind_name(x.k));
            for (size_t k = 0; k < x.u.m->n; k++) {
                const struct chat_kv *kv = &x.u.m->kv[k];
                if (chat_map_get(m, kv->k, kv->klen) != NULL)
                    return chat_fail(rx, a, FJ_ERR_INVALID,
                                     "got multiple values for keyword argument '%.*s'",
                                     (int)kv->klen, kv->k);
                if ((rc = chat_map_set(rx, m, kv->k, kv->klen, kv->v)) != 0)
                    return rc;
            }
        }
    }
    *pos = v;
    *n_pos = n;
    *kw = m;
    return 0;
}

/* Binds a macro's (or call block's) parameters in scope: bindMacroArguments. */
static int bind_args(struct chat_rx *rx, const struct chat_node *at, const char *name,
                     size_t name_len, const struct chat_list *params, int special,
                     struct chat_value *args, size_t n, struct chat_scope *scope)
{
    struct chat_map *kw = chat_map_new(rx, 0);
    if (kw == NULL)
        return nomem(rx);
    int rc;
    if (n > 0 && args[n - 1].k == V_KWARGS) {
        const struct chat_map *src = args[n - 1].u.m;
        for (size_t i = 0; i < src->n; i++)
            if ((rc = chat_map_set(rx, kw, src->kv[i].k, src->kv[i].klen, src->kv[i].v)) != 0)
                return rc;
        n--;
    }
    bool *pending = chat_alloc(rx, params->n + 1);
    if (pending == NULL)
        return nomem(rx);
    for (size_t i = 0; i < params->n; i++) {
        const struct chat_node *p = params->v[i];
        struct chat_value v = i < n ? args[i] : chat_undef();
        bool missing = i >= n || v.k == V_JSUNDEF;
        if (missing) {
            struct chat_value *k = chat_map_get(kw, p->s, p->len);
            if (k != NULL) {
                v = *k;
                missing = v.k == V_JSUNDEF;
                /* delete it: the rest become kwargs */
                for (size_t j = 0; j < kw->n; j++)
                    if (&kw->kv[j].v == k) {
                        memmove(&kw->kv[j], &kw->kv[j + 1], (kw->n - j - 1) * sizeof kw->kv[0]);
                        kw->n--;
                        break;
                    }
            }
        }
        pending[i] = missing && p->kind == NK_KWARG;
        if ((rc = chat_scope_set(rx, scope, p->s, p->len, missing ? chat_undef() : v)) != 0)
            return rc;
    }
    if (special & CHAT_USES_KWARGS) {
        struct chat_value o = {.k = V_OBJECT};
        o.u.m = kw;
        if ((rc = chat_scope_set(rx, scope, "kwargs", 6, o)) != 0)
            return rc;
    } else if (kw->n > 0) {
        return chat_fail(rx, at, FJ_ERR_INVALID, "macro %.*s takes no keyword argument '%.*s'",
                         (int)name_len, name, (int)kw->kv[0].klen, kw->kv[0].k);
    }
    if (special & CHAT_USES_VARARGS) {
        size_t extra = n > params->n ? n - params->n : 0;
        struct chat_array *a = chat_array_new(rx, extra);
        if (a == NULL)
            return nomem(rx);
        for (size_t i = 0; i < extra; i++) {
            if (args[params->n + i].k == V_JSUNDEF)
                return jsundef_fail(rx, at);
            a->v[i] = args[params->n + i];
        }
        struct chat_value o = {.k = V_ARRAY};
        o.u.a = a;
        if ((rc = chat_scope_set(rx, scope, "varargs", 7, o)) != 0)
            return rc;
    } else if (n > params->n) {
        return chat_fail(rx, at, FJ_ERR_INVALID, "macro %.*s takes not more than %zu argument(s)",
                         (int)name_len, name, params->n);
    }
    for (size_t i = 0; i < params->n; i++) {
        if (!pending[i])
            continue;
        struct chat_value v;
        if ((rc = chat_eval(rx, params->v[i]->a, scope, &v)) != 0)
            return rc;
        if ((rc = chat_scope_set(rx, scope, params->v[i]->s, params->v[i]->len, v)) != 0)
            return rc;
    }
    return 0;
}

int chat_call(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *fn,
              struct chat_value *args, size_t n_args, struct chat_scope *env,
              struct chat_value *out)
{
    if (fn->k != V_FUNC)
        return chat_fail(rx, at, FJ_ERR_INVALID, "cannot call a %s (not a function)",
                         chat_kind_name(fn->k));
    const struct chat_func *f = fn->u.f;
    if (f->kind == FN_GLOBAL || f->kind == FN_METHOD) {
        for (size_t i = 0; i < n_args; i++)
            if (args[i].k == V_JSUNDEF)
                return jsundef_fail(rx, at);
        if (f->kind == FN_GLOBAL)
            return chat_call_global(rx, at, f->id, args, n_args, out);
        return chat_call_method(rx, at, f, args, n_args, out);
    }
    if (rx->calls >= CHAT_MAX_CALL_DEPTH)
        return chat_fail(rx, at, FJ_ERR_RANGE, "more than %d nested macro calls",
                         CHAT_MAX_CALL_DEPTH);
    rx->calls++;
    int rc;
    const struct chat_node *m = f->node;
    struct chat_scope *scope = chat_scope_new(rx, f->kind == FN_MACRO ? env : f->env);
    if (scope == NULL)
        rc = nomem(rx);
    else if (f->kind == FN_MACRO)
        rc = bind_args(rx, at, m->s, m->len, &m->l1, m->flag, args, n_args, scope);
    else
        rc = bind_args(rx, at, "None", 4, &m->l1, m->flag, args, n_args, scope);
    if (rc == 0)
        rc = render_to_string(rx, &m->l2, scope, out);
    rx->calls--;
    return rc;
}

static int eval_call(struct chat_rx *rx, const struct chat_node *n, struct chat_scope *env,
                     struct chat_value *out)
{
    struct chat_value *args;
    size_t n_args;
    struct chat_map *kw;
    int rc = chat_eval_args(rx, &n->l1, env, &args, &n_args, &kw);
    if (rc != 0)
        return rc;
    if (kw->n > 0) {
        args[n_args].k = V_KWARGS;
        args[n_args].u.m = kw;
        n_args++;
    }
    struct chat_value fn;
    if ((rc = chat_eval(rx, n->a, env, &fn)) != 0)
        return rc;
    return chat_call(rx, n, &fn, args, n_args, env, out);
}

/* JavaScript's Math.min / Math.max (NaN wins). */
static double js_min(double a, double b)
{
    return isnan(a) || isnan(b) ? NAN : a < b ? a : b;
}

static double js_max(double a, double b)
{
    return isnan(a) || isnan(b) ? NAN : a > b ? a : b;
}

static int eval_slice(struct chat_rx *rx, const struct chat_node *n, const struct chat_value *obj,
                      struct chat_scope *env, struct chat_value *out)
{
    if (!chat_is_array(obj) && obj->k != V_STR)
        return chat_fail(rx, n, FJ_ERR_INVALID, "cannot slice a %s", chat_kind_name(obj->k));
    struct chat_value part[3];
    const struct chat_node *src[3] = {n->a, n->b, n->c};
    for (int i = 0; i < 3; i++) {
        part[i] = chat_undef();
        int rc;
        if (src[i] != NULL && (rc = chat_eval(rx, src[i], env, &part[i])) != 0)
            return rc;
        if (part[i].k != V_INT && part[i].k != V_UNDEF)
            return chat_fail(rx, n, FJ_ERR_INVALID, "a slice's %s must be an integer, not a %s",
                             i == 0   ? "start"
                             : i == 1 ? "stop"
                                      : "step",
                             chat_kind_name(part[i].k));
    }
    /* the elements: array values, or a string's code points */
    size_t len;
    const char *s = obj->u.s;
    size_t *cps = NULL;
    if (obj->k == V_STR) {
        len = fj_utf8_count(s, obj->len);
        if ((cps = chat_alloc(rx, (len + 1) * sizeof *cps)) == NULL)
            return nomem(rx);
        size_t k = 0;
        for (size_t i = 0; i < obj->len; i++)
            if (((unsigned char)s[i] & 0xC0) != 0x80)
                cps[k++] = i;
        cps[len] = obj->len;
    } else {
        len = obj->u.a->n;
    }
    double L = (double)len;
    double step = part[2].k == V_UNDEF ? 1 : part[2].u.n;
    double dir = step > 0 ? 1 : step < 0 ? -1 : step == 0 ? 0 : NAN;
    double start, stop;
    if (dir >= 0) {
        start = part[0].k == V_UNDEF ? 0 : part[0].u.n;
        start = start < 0 ? js_max(L + start, 0) : js_min(start, L);
        stop = part[1].k == V_UNDEF ? L : part[1].u.n;
        stop = stop < 0 ? js_max(L + stop, 0) : js_min(stop, L);
    } else {
        start = part[0].k == V_UNDEF ? L - 1 : part[0].u.n;
        start = start < 0 ? js_max(L + start, -1) : js_min(start, L - 1);
        stop = part[1].k == V_UNDEF ? -1 : part[1].u.n;
        stop = stop < -1 ? js_max(L + stop, -1) : js_min(stop, L - 1);
    }
    size_t count = 0;
    for (double i = start; dir * i < dir * stop; i += step)
        count++;
    if (obj->k == V_STR) {
        struct fj_buf b = {0};
        int rc = 0;
        for (double i = start; dir * i < dir * stop && rc == 0; i += step) {
            size_t k = (size_t)i;
            rc = fj_buf_append(&b, s + cps[k], cps[k + 1] - cps[k]);
        }
        if (rc == 0)
            rc = chat_str_from_buf(rx, &b, out);
        else
            rc = nomem(rx);
        fj_buf_free(&b);
        return rc;
    }
    struct chat_array *a = chat_array_new(rx, count);
    if (a == NULL)
        return nomem(rx);
    size_t k = 0;
    for (double i = start; dir * i < dir * stop; i += step)
        a->v[k++] = obj->u.a->v[(size_t)i];
    out->k = V_ARRAY;
    out->u.a = a;
    return 0;
}

/* The UTF-16 code unit at index i of s (String.prototype.at), as a string. */
static int string_at(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *s,
                     double idx, struct chat_value *out)
{
    double len = (double)chat_u16_len(s->u.s, s->len);
    if (isnan(idx))
        idx = 0;
    idx = trunc(idx);
    if (idx < 0)
        idx += len;
    if (!(idx >= 0 && idx < len)) {
        *out = chat_undef();
        return 0;
    }
    size_t want = (size_t)idx, unit = 0;
    for (size_t i = 0; i < s->len;) {
        unsigned char c = (unsigned char)s->u.s[i];
        size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        size_t units = l == 4 ? 2 : 1;
        if (want < unit + units) {
            if (units == 2)
                return chat_fail(rx, at, FJ_ERR_INVALID,
                                 "unsupported: indexing a string inside a character outside "
                                 "the Basic Multilingual Plane (half a UTF-16 surrogate pair)");
            return chat_str_copy(rx, s->u.s + i, l, out);
        }
        unit += units;
        i += l;
    }
    *out = chat_undef();
    return 0;
}

int chat_member(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *obj,
                const struct chat_value *prop, struct chat_value *out)
{
    if (chat_is_attr_container(obj)) {
        if (prop->k != V_STR)
            return chat_fail(rx, at, FJ_ERR_INVALID,
                             "cannot access a %s's property with a %s (not a string)",
                             chat_kind_name(obj->k), chat_kind_name(prop->k));
        struct chat_value *v = chat_map_get(obj->u.m, prop->u.s, prop->len);
        if (v != NULL) {
            *out = *v;
            return 0;
        }
        if (obj->k == V_NS) {
            *out = chat_undef();
            return 0;
        }
        return chat_builtin_prop(rx, obj, prop->u.s, prop->len, out);
    }
    if (chat_is_array(obj) || obj->k == V_STR) {
        if (prop->k == V_INT) {
            if (obj->k == V_STR)
                return string_at(rx, at, obj, prop->u.n, out);
            double idx = isnan(prop->u.n) ? 0 : trunc(prop->u.n);
            double n = (double)obj->u.a->n;
            if (idx < 0)
                idx += n;
            *out = idx >= 0 && idx < n ? obj->u.a->v[(size_t)idx] : chat_undef();
            return 0;
        }
        if (prop->k == V_STR)
            return chat_builtin_prop(rx, obj, prop->u.s, prop->len, out);
        return chat_fail(rx, at, FJ_ERR_INVALID, "cannot index a %s with a %s",
                         chat_kind_name(obj->k), chat_kind_name(prop->k));
    }
    if (obj->k == V_JSUNDEF)
        return jsundef_fail(rx, at);
    if (prop->k != V_STR)
        return chat_fail(rx, at, FJ_ERR_INVALID, "cannot index a %s with a %s",
                         chat_kind_name(obj->k), chat_kind_name(prop->k));
    *out = chat_undef();
    return 0;
}

static int eval_member(struct chat_rx *rx, const struct chat_node *n, struct chat_scope *env,
                       struct chat_value *out)
{
    struct chat_value obj, prop;
    int rc = chat_eval(rx, n->a, env, &obj);
    if (rc != 0)
        return rc;
    if (n->flag) {
        if (n->b->kind == NK_SLICE)
            return eval_slice(rx, n->b, &obj, env, out);
        if ((rc = chat_eval(rx, n->b, env, &prop)) != 0)
            return rc;
    } else if (n->b->kind == NK_INT) {
        prop = chat_int(n->b->num);
    } else {
        prop = chat_str_ref(n->b->s, n->b->len);
    }
    return chat_member(rx, n, &obj, &prop, out);
}

static bool numeric_like(const struct chat_value *v)
{
    return v->k == V_INT || v->k == V_FLOAT || v->k == V_BOOL;
}

static double numeric_of(const struct chat_value *v)
{
    return v->k == V_BOOL ? (double)v->u.b : v->u.n;
}

static int concat_raw(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *a,
                      const struct chat_value *b, struct chat_value *out)
{
    struct fj_buf buf = {0};
    int rc = chat_to_text(rx, at, a, CHAT_STR_RAW, &buf);
    if (rc == 0)
        rc = chat_to_text(rx, at, b, CHAT_STR_RAW, &buf);
    if (rc == 0)
        rc = chat_str_from_buf(rx, &buf, out);
    fj_buf_free(&buf);
    return rc;
}

static const char *op_name(enum chat_op op)
{
    switch (op) {
    case OP_ADD: return "+";
    case OP_SUB: return "-";
    case OP_CONCAT: return "~";
    case OP_MUL: return "*";
    case OP_DIV: return "/";
    case OP_FLOORDIV: return "//";
    case OP_MOD: return "%";
    case OP_POW: return "**";
    case OP_EQ: return "==";
    case OP_NE: return "!=";
    case OP_LT: return "<";
    case OP_GT: return ">";
    case OP_LE: return "<=";
    case OP_GE: return ">=";
    case OP_IN: return "in";
    case OP_NOTIN: return "not in";
    case OP_AND: return "and";
    case OP_OR: return "or";
    case OP_NOT: return "not";
    case OP_NEG: return "-";
    case OP_POS: return "+";
    default: return "?";
    }
}

static bool bytes_contain(const char *h, size_t hn, const char *nd, size_t nn)
{
    if (nn == 0)
        return true;
    if (nn > hn)
        return false;
    return memmem(h, hn, nd, nn) != NULL;
}

/* a ** b. JavaScript's pow (V8's fdlibm port) rounds differently from the C library's in the
 * last place for fractional powers, so forja computes only results that are exact: integer
 * powers that stay within 2^53, and negative powers of powers of two; anything else is
 * refused rather than risk a different last digit. */
static int eval_pow(struct chat_rx *rx, const struct chat_node *n, const struct chat_value *l,
                    const struct chat_value *r, struct chat_value *out)
{
    double a = numeric_of(l), b = numeric_of(r);
    if (a == 0 && b < 0)
        return chat_fail(rx, n, FJ_ERR_INVALID, "0.0 cannot be raised to a negative power");
    bool flt = l->k == V_FLOAT || r->k == V_FLOAT || b < 0;
    if (b == 0 && isfinite(a)) {
        *out = flt ? chat_float(1) : chat_int(1);
        return 0;
    }
    if (!isfinite(a) || !isfinite(b) || floor(a) != a || floor(b) != b)
        return chat_fail(rx, n, FJ_ERR_INVALID,
                         "unsupported: '**' with a fractional or non-finite operand");
    double res = 1;
    int e;
    double m = frexp(fabs(a), &e);
    if (a == 0 || a == 1) {
        res = a;
    } else if (a == -1) {
        res = fmod(b, 2) == 0 ? 1 : -1;
    } else if (m == 0.5) { /* a power of two: exact at any exponent that stays finite */
        double x = (e - 1) * b;
        if (x > 1023 || x < -1074)
            return chat_fail(rx, n, FJ_ERR_INVALID, "'**' gives no finite real number");
        res = ldexp(1, (int)x);
        if (a < 0 && fmod(b, 2) != 0)
            res = -res;
    } else if (b > 0) {
        for (double k = 0; k < b; k++) {
            res *= a;
            if (fabs(res) > 9007199254740992.0)
                return chat_fail(rx, n, FJ_ERR_INVALID,
                                 "unsupported: '**' with a result beyond 2^53 (not a power of "
                                 "two)");
        }
    } else {
        return chat_fail(rx, n, FJ_ERR_INVALID,
                         "unsupported: '**' with a negative power of a number other than a "
                         "power of two");
    }
    *out = flt ? chat_float(res) : chat_int(res);
    return 0;
}

static int eval_binary(struct chat_rx *rx, const struct chat_node *n, struct chat_scope *env,
                       struct chat_value *out)
{
    struct chat_value l, r;
    int rc = chat_eval(rx, n->a, env, &l);
    if (rc != 0)
        return rc;
    if (n->op == OP_AND || n->op == OP_OR) {
        bool t = chat_truthy(&l);
        if ((n->op == OP_AND) == t)
            return chat_eval(rx, n->b, env, out);
        *out = l;
        return 0;
    }
    if ((rc = chat_eval(rx, n->b, env, &r)) != 0)
        return rc;
    enum chat_op op = n->op;
    if (op == OP_EQ || op == OP_NE) {
        bool eq;
        if ((rc = chat_loose_eq(rx, n, &l, &r, &eq)) != 0)
            return rc;
        *out = chat_bool(op == OP_EQ ? eq : !eq);
        return 0;
    }
    if (l.k == V_UNDEF || r.k == V_UNDEF) {
        if (r.k == V_UNDEF && (op == OP_IN || op == OP_NOTIN)) {
            *out = chat_bool(op == OP_NOTIN);
            return 0;
        }
        return chat_fail(rx, n, FJ_ERR_INVALID, "cannot apply '%s' to an undefined value",
                         op_name(op));
    }
    if (l.k == V_NULL || r.k == V_NULL)
        return chat_fail(rx, n, FJ_ERR_INVALID, "cannot apply '%s' to none", op_name(op));
    if (op == OP_CONCAT)
        return concat_raw(rx, n, &l, &r, out);
    if (op == OP_POW && numeric_like(&l) && numeric_like(&r))
        return eval_pow(rx, n, &l, &r, out);
    if (chat_is_num(&l) && chat_is_num(&r)) {
        double a = l.u.n, b = r.u.n;
        bool flt = l.k == V_FLOAT || r.k == V_FLOAT;
        switch (op) {
        case OP_ADD: *out = flt ? chat_float(a + b) : chat_int(a + b); return 0;
        case OP_SUB: *out = flt ? chat_float(a - b) : chat_int(a - b); return 0;
        case OP_MUL: *out = flt ? chat_float(a * b) : chat_int(a * b); return 0;
        case OP_DIV: *out = chat_float(a / b); return 0;
        case OP_FLOORDIV: *out = flt ? chat_float(floor(a / b)) : chat_int(floor(a / b)); return 0;
        case OP_MOD: *out = flt ? chat_float(fmod(a, b)) : chat_int(fmod(a, b)); return 0;
        case OP_LT: *out = chat_bool(a < b); return 0;
        case OP_GT: *out = chat_bool(a > b); return 0;
        case OP_LE: *out = chat_bool(a <= b); return 0;
        case OP_GE: *out = chat_bool(a >= b); return 0;
        default: break;
        }
    } else if (chat_is_array(&l) && chat_is_array(&r)) {
        if (op == OP_ADD) {
            struct chat_array *a = chat_array_new(rx, l.u.a->n + r.u.a->n);
            if (a == NULL)
                return nomem(rx);
            if (l.u.a->n)
                memcpy(a->v, l.u.a->v, l.u.a->n * sizeof *a->v);
            if (r.u.a->n)
                memcpy(a->v + l.u.a->n, r.u.a->v, r.u.a->n * sizeof *a->v);
            out->k = V_ARRAY;
            out->u.a = a;
            return 0;
        }
    } else if (chat_is_array(&r)) {
        if (op == OP_IN || op == OP_NOTIN) {
            bool found = false;
            for (size_t i = 0; i < r.u.a->n && !found; i++)
                found = chat_strict_eq(&r.u.a->v[i], &l);
            *out = chat_bool(op == OP_IN ? found : !found);
            return 0;
        }
    }
    if ((l.k == V_STR || r.k == V_STR) && op == OP_ADD)
        return concat_raw(rx, n, &l, &r, out);
    if (l.k == V_STR && r.k == V_STR && (op == OP_IN || op == OP_NOTIN)) {
        bool in = bytes_contain(r.u.s, r.len, l.u.s, l.len);
        *out = chat_bool(op == OP_IN ? in : !in);
        return 0;
    }
    if (l.k == V_STR && chat_is_object(&r) && (op == OP_IN || op == OP_NOTIN)) {
        bool in = chat_map_get(r.u.m, l.u.s, l.len) != NULL;
        *out = chat_bool(op == OP_IN ? in : !in);
        return 0;
    }
    return chat_fail(rx, n, FJ_ERR_INVALID, "unsupported operator '%s' between %s and %s",
                     op_name(op), chat_kind_name(l.k), chat_kind_name(r.k));
}

static int eval_unary(struct chat_rx *rx, const struct chat_node *n, struct chat_scope *env,
                      struct chat_value *out)
{
    struct chat_value v;
    int rc = chat_eval(rx, n->a, env, &v);
    if (rc != 0)
        return rc;
    if (n->op == OP_NOT) {
        *out = chat_bool(!chat_truthy(&v));
        return 0;
    }
    if (!numeric_like(&v))
        return chat_fail(rx, n, FJ_ERR_INVALID, "unsupported operator '%s' for a %s",
                         op_name(n->op), chat_kind_name(v.k));
    double x = numeric_of(&v);
    if (n->op == OP_NEG)
        x = -x;
    *out = v.k == V_FLOAT ? chat_float(x) : chat_int(x);
    return 0;
}

static int eval_any(struct chat_rx *rx, const struct chat_node *n, struct chat_scope *env,
                    struct chat_value *out)
{
    if (++rx->steps > CHAT_MAX_STEPS)
        return chat_fail(rx, n, FJ_ERR_RANGE, "more than %u evaluation steps",
                         (unsigned)CHAT_MAX_STEPS);
    if (rx->depth >= CHAT_MAX_EVAL_DEPTH)
        return chat_fail(rx, n, FJ_ERR_RANGE, "evaluation nested more than %d deep",
                         CHAT_MAX_EVAL_DEPTH);
    rx->depth++;
    int rc = 0;
    size_t i;
    switch (n->kind) {
    case NK_STR: *out = chat_str_ref(n->s, n->len); break;
    case NK_INT: *out = chat_int(n->num); break;
    case NK_FLOAT: *out = chat_float(n->num); break;
    case NK_ARRAY:
    case NK_TUPLE: {
        struct chat_array *a = chat_array_new(rx, n->l1.n);
        if (a == NULL) {
            rc = nomem(rx);
            break;
        }
        for (i = 0; i < n->l1.n && rc == 0; i++)
            rc = chat_eval(rx, n->l1.v[i], env, &a->v[i]);
        out->k = n->kind == NK_ARRAY ? V_ARRAY : V_TUPLE;
        out->u.a = a;
        break;
    }
    case NK_OBJECT: {
        struct chat_map *m = chat_map_new(rx, n->l1.n);
        if (m == NULL) {
            rc = nomem(rx);
            break;
        }
        for (i = 0; i < n->l1.n && rc == 0; i++) {
            struct chat_value k, v;
            if ((rc = chat_eval(rx, n->l1.v[i], env, &k)) != 0)
                break;
            if (k.k != V_STR) {
                rc = chat_fail(rx, n->l1.v[i], FJ_ERR_INVALID,
                               "a mapping's keys must be strings, not a %s", chat_kind_name(k.k));
                break;
            }
            if ((rc = chat_eval(rx, n->l2.v[i], env, &v)) == 0)
                rc = chat_map_set(rx, m, k.u.s, k.len, v);
        }
        out->k = V_OBJECT;
        out->u.m = m;
        break;
    }
    case NK_IDENT: *out = chat_lookup(rx, env, n->s, n->len); break;
    case NK_CALL: rc = eval_call(rx, n, env, out); break;
    case NK_MEMBER: rc = eval_member(rx, n, env, out); break;
    case NK_UNARY: rc = eval_unary(rx, n, env, out); break;
    case NK_BINARY: rc = eval_binary(rx, n, env, out); break;
    case NK_FILTER: {
        struct chat_value v;
        if ((rc = eval_any(rx, n->a, env, &v)) == 0)
            rc = chat_apply_filter(rx, n, &v, env, out);
        break;
    }
    case NK_TEST: {
        struct chat_value v;
        bool res;
        if ((rc = chat_eval(rx, n->a, env, &v)) == 0 &&
            (rc = chat_apply_test(rx, n, n->s, n->len, &v, NULL, false, &res)) == 0)
            *out = chat_bool(n->flag ? !res : res);
        break;
    }
    case NK_SELECT: {
        struct chat_value t;
        if ((rc = chat_eval(rx, n->b, env, &t)) != 0)
            break;
        if (!chat_truthy(&t))
            *out = chat_undef();
        else
            rc = chat_eval(rx, n->a, env, out);
        break;
    }
    case NK_TERNARY: {
        struct chat_value c;
        if ((rc = chat_eval(rx, n->a, env, &c)) == 0)
            rc = chat_eval(rx, chat_truthy(&c) ? n->b : n->c, env, out);
        break;
    }
    case NK_KWARG:
    case NK_SPREAD:
    case NK_KWSPREAD:
    case NK_SLICE: rc = chat_fail(rx, n, FJ_ERR_INVALID, "unexpected argument syntax here"); break;
    default: rc = chat_fail(rx, n, FJ_ERR_INVALID, "a statement where a value was expected"); break;
    }
    rx->depth--;
    return rc;
}

/* ---- statements -------------------------------------------------------------------------- */

static int assign(struct chat_rx *rx, const struct chat_node *target, struct chat_value v,
                  struct chat_scope *env)
{
    if (target->kind == NK_IDENT)
        return chat_scope_set(rx, env, target->s, target->len, v);
    if (target->kind == NK_TUPLE) {
        if (!chat_is_array(&v))
            return chat_fail(rx, target, FJ_ERR_INVALID, "cannot unpack a %s in set",
                             chat_kind_name(v.k));
        if (v.u.a->n != target->l1.n)
            return chat_fail(rx, target, FJ_ERR_INVALID, "too %s items to unpack in set",
                             target->l1.n > v.u.a->n ? "few" : "many");
        for (size_t i = 0; i < target->l1.n; i++) {
            const struct chat_node *t = target->l1.v[i];
            if (t->kind != NK_IDENT)
                return chat_fail(rx, t, FJ_ERR_INVALID, "cannot unpack into a non-name in set");
            int rc = chat_scope_set(rx, env, t->s, t->len, v.u.a->v[i]);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    if (target->kind == NK_MEMBER) {
        struct chat_value obj;
        int rc = chat_eval(rx, target->a, env, &obj);
        if (rc != 0)
            return rc;
        if (obj.k != V_NS)
            return chat_fail(rx, target, FJ_ERR_INVALID,
                             "cannot assign an attribute of a %s (only of a namespace)",
                             chat_kind_name(obj.k));
        if (target->b->kind != NK_IDENT)
            return chat_fail(rx, target, FJ_ERR_INVALID,
                             "cannot assign to a member that is not a name");
        if (v.k == V_JSUNDEF)
            v = chat_undef();
        return chat_map_set(rx, obj.u.m, target->b->s, target->b->len, v);
    }
    return chat_fail(rx, target, FJ_ERR_INVALID, "invalid target for set");
}

/* Assigns a loop item to the loop target (runtime.ts' scopeUpdateFunction). */
static int loop_assign(struct chat_rx *rx, const struct chat_node *target,
                       const struct chat_value *item, struct chat_scope *scope)
{
    if (target->kind == NK_IDENT)
        return chat_scope_set(rx, scope, target->s, target->len, *item);
    for (size_t j = 0; j < target->l1.n; j++) {
        const struct chat_node *t = target->l1.v[j];
        if (t->kind != NK_IDENT)
            return chat_fail(rx, t, FJ_ERR_INVALID, "cannot unpack into a non-name");
        int rc = chat_scope_set(rx, scope, t->s, t->len, item->u.a->v[j]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int exec_for(struct chat_rx *rx, const struct chat_node *n, struct chat_scope *env)
{
    struct chat_scope *scope = chat_scope_new(rx, env);
    if (scope == NULL)
        return nomem(rx);
    const struct chat_node *test = NULL;
    struct chat_value it;
    int rc;
    if (n->b->kind == NK_SELECT) {
        rc = chat_eval(rx, n->b->a, scope, &it);
        test = n->b->b;
    } else {
        rc = chat_eval(rx, n->b, scope, &it);
    }
    if (rc != 0)
        return rc;
    const struct chat_array *src;
    struct chat_array *keys = NULL;
    if (chat_is_array(&it)) {
        src = it.u.a;
    } else if (chat_is_object(&it)) {
        if ((keys = chat_array_new(rx, it.u.m->n)) == NULL)
            return nomem(rx);
        for (size_t i = 0; i < it.u.m->n; i++)
            keys->v[i] = chat_str_ref(it.u.m->kv[i].k, it.u.m->kv[i].klen);
        src = keys;
    } else {
        return chat_fail(rx, n->b, FJ_ERR_INVALID, "cannot loop over a %s", chat_kind_name(it.k));
    }
    struct chat_value *items = chat_alloc(rx, (src->n + 1) * sizeof *items);
    if (items == NULL)
        return nomem(rx);
    size_t n_items = 0;
    for (size_t i = 0; i < src->n; i++) {
        const struct chat_value *cur = &src->v[i];
        if (n->a->kind == NK_TUPLE) {
            if (cur->k != V_ARRAY)
                return chat_fail(rx, n->a, FJ_ERR_INVALID, "cannot unpack a %s in a for loop",
                                 chat_kind_name(cur->k));
            if (cur->u.a->n != n->a->l1.n)
                return chat_fail(rx, n->a, FJ_ERR_INVALID, "too %s items to unpack",
                                 n->a->l1.n > cur->u.a->n ? "few" : "many");
        }
        if (test != NULL) {
            struct chat_scope *ls = chat_scope_new(rx, scope);
            struct chat_value t;
            if (ls == NULL)
                return nomem(rx);
            if ((rc = loop_assign(rx, n->a, cur, ls)) != 0 ||
                (rc = chat_eval(rx, test, ls, &t)) != 0)
                return rc;
            if (!chat_truthy(&t))
                continue;
        }
        items[n_items++] = *cur;
    }
    bool none = true;
    for (size_t i = 0; i < n_items; i++) {
        if (++rx->steps > CHAT_MAX_STEPS)
            return chat_fail(rx, n, FJ_ERR_RANGE, "more than %u evaluation steps",
                             (unsigned)CHAT_MAX_STEPS);
        struct chat_map *loop = chat_map_new(rx, 9);
        if (loop == NULL)
            return nomem(rx);
        double len = (double)n_items, k = (double)i;
        if ((rc = chat_map_set(rx, loop, "index", 5, chat_int(k + 1))) != 0 ||
            (rc = chat_map_set(rx, loop, "index0", 6, chat_int(k))) != 0 ||
            (rc = chat_map_set(rx, loop, "revindex", 8, chat_int(len - k))) != 0 ||
            (rc = chat_map_set(rx, loop, "revindex0", 9, chat_int(len - k - 1))) != 0 ||
            (rc = chat_map_set(rx, loop, "first", 5, chat_bool(i == 0))) != 0 ||
            (rc = chat_map_set(rx, loop, "last", 4, chat_bool(i + 1 == n_items))) != 0 ||
            (rc = chat_map_set(rx, loop, "length", 6, chat_int(len))) != 0 ||
            (rc = chat_map_set(rx, loop, "previtem", 8, i > 0 ? items[i - 1] : chat_undef())) !=
                0 ||
            (rc = chat_map_set(rx, loop, "nextitem", 8,
                               i + 1 < n_items ? items[i + 1] : chat_undef())) != 0)
            return rc;
        struct chat_value lv = {.k = V_OBJECT};
        lv.u.m = loop;
        if ((rc = chat_scope_set(rx, scope, "loop", 4, lv)) != 0 ||
            (rc = loop_assign(rx, n->a, &items[i], scope)) != 0)
            return rc;
        size_t mark = rx->out->len;
        rc = exec_block(rx, &n->l1, scope);
        if (rc == CHAT_CONTINUE) {
            truncate_out(rx->out, mark);
            continue;
        }
        if (rc == CHAT_BREAK) {
            truncate_out(rx->out, mark);
            break;
        }
        if (rc != 0)
            return rc;
        none = false;
    }
    if (none)
        return exec_block(rx, &n->l2, scope);
    return 0;
}

static int exec_stmt(struct chat_rx *rx, const struct chat_node *n, struct chat_scope *env)
{
    int rc;
    struct chat_value v;
    switch (n->kind) {
    case NK_STR:
        if (rx->out->len + n->len > CHAT_MAX_OUTPUT)
            return chat_fail(rx, n, FJ_ERR_RANGE, "output longer than %zu MiB",
                             CHAT_MAX_OUTPUT >> 20);
        return fj_buf_append(rx->out, n->s, n->len) == 0 ? 0 : nomem(rx);
    case NK_COMMENT: return 0;
    case NK_IF:
        if ((rc = chat_eval(rx, n->a, env, &v)) != 0)
            return rc;
        return exec_block(rx, chat_truthy(&v) ? &n->l1 : &n->l2, env);
    case NK_FOR: return exec_for(rx, n, env);
    case NK_SET:
        if (n->b != NULL)
            rc = eval_any(rx, n->b, env, &v);
        else
            rc = render_to_string(rx, &n->l1, env, &v);
        if (rc != 0)
            return rc;
        return assign(rx, n->a, v, env);
    case NK_MACRO: {
        struct chat_func *f = chat_alloc(rx, sizeof *f);
        if (f == NULL)
            return nomem(rx);
        memset(f, 0, sizeof *f);
        f->kind = FN_MACRO;
        f->node = n;
        v.k = V_FUNC;
        v.u.f = f;
        return chat_scope_set(rx, env, n->s, n->len, v);
    }
    case NK_CALLBLOCK: {
        struct chat_func *f = chat_alloc(rx, sizeof *f);
        if (f == NULL)
            return nomem(rx);
        memset(f, 0, sizeof *f);
        f->kind = FN_CALLER;
        f->node = n;
        f->env = env;
        struct chat_value *args;
        size_t n_args;
        struct chat_map *kw;
        if ((rc = chat_eval_args(rx, &n->a->l1, env, &args, &n_args, &kw)) != 0)
            return rc;
        args[n_args].k = V_KWARGS;
        args[n_args].u.m = kw;
        n_args++;
        struct chat_value fn, caller = {.k = V_FUNC};
        caller.u.f = f;
        if ((rc = chat_eval(rx, n->a->a, env, &fn)) != 0)
            return rc;
        struct chat_scope *inner = chat_scope_new(rx, env);
        if (inner == NULL)
            return nomem(rx);
        if ((rc = chat_scope_set(rx, inner, "caller", 6, caller)) != 0 ||
            (rc = chat_call(rx, n, &fn, args, n_args, inner, &v)) != 0)
            return rc;
        if (v.k == V_JSUNDEF)
            return jsundef_fail(rx, n);
        return emit_value(rx, n, &v);
    }
    case NK_FILTERBLOCK: {
        struct chat_value body;
        if ((rc = render_to_string(rx, &n->l1, env, &body)) != 0 ||
            (rc = chat_apply_filter(rx, n->a, &body, env, &v)) != 0)
            return rc;
        if (v.k == V_JSUNDEF)
            return jsundef_fail(rx, n);
        return emit_value(rx, n, &v);
    }
    case NK_BREAK: rx->ctrl_at = n; return CHAT_BREAK;
    case NK_CONTINUE: rx->ctrl_at = n; return CHAT_CONTINUE;
    default:
        if ((rc = chat_eval(rx, n, env, &v)) != 0)
            return rc;
        return emit_value(rx, n, &v);
    }
}

static int exec_block(struct chat_rx *rx, const struct chat_list *body, struct chat_scope *env)
{
    if (rx->depth >= CHAT_MAX_EVAL_DEPTH)
        return chat_fail(rx, body->n ? body->v[0] : NULL, FJ_ERR_RANGE,
                         "evaluation nested more than %d deep", CHAT_MAX_EVAL_DEPTH);
    rx->depth++;
    int rc = 0;
    for (size_t i = 0; i < body->n && rc == 0; i++) {
        if (++rx->steps > CHAT_MAX_STEPS) {
            rc = chat_fail(rx, body->v[i], FJ_ERR_RANGE, "more than %u evaluation steps",
                           (unsigned)CHAT_MAX_STEPS);
            break;
        }
        rc = exec_stmt(rx, body->v[i], env);
    }
    rx->depth--;
    return rc;
}

/* ---- public ------------------------------------------------------------------------------- */

struct chat_template *chat_template_new(const char *src, size_t len, struct fj_err *err)
{
    struct fj_err local = {0};
    struct fj_err *e = err != NULL ? err : &local;
    if (len > CHAT_MAX_SOURCE) {
        fj_err_set(e, FJ_ERR_RANGE, "chat template: %zu bytes, more than the %u allowed", len,
                   (unsigned)CHAT_MAX_SOURCE);
        return NULL;
    }
    size_t bad;
    if (!fj_utf8_valid(src, len, &bad)) {
        fj_err_set(e, FJ_ERR_UTF8, "chat template: invalid UTF-8 at byte %zu", bad);
        return NULL;
    }
    struct chat_template *t = calloc(1, sizeof *t);
    if (t == NULL || (t->src = malloc(len + 1)) == NULL) {
        free(t);
        fj_err_set(e, FJ_ERR_NOMEM, "chat template: out of memory");
        return NULL;
    }
    if (len)
        memcpy(t->src, src, len);
    t->src[len] = '\0';
    t->len = len;
    struct chat_tokens_vec toks = {0};
    int rc = chat_lex(t->src, len, &t->arena, &toks, e);
    if (rc == 0)
        rc = chat_parse(&toks, t->src, len, &t->arena, &t->program, e);
    if (rc != 0) {
        if (e->code == 0)
            fj_err_set(e, FJ_ERR_FORMAT, "chat template: invalid template");
        chat_template_free(t);
        return NULL;
    }
    return t;
}

void chat_template_free(struct chat_template *t)
{
    if (t == NULL)
        return;
    chat_arena_free(&t->arena);
    free(t->src);
    free(t);
}

static int global(struct chat_rx *rx, const char *name, struct chat_value v)
{
    return chat_scope_set(rx, rx->root, name, strlen(name), v);
}

static int global_fn(struct chat_rx *rx, const char *name, int id, struct chat_value *out)
{
    struct chat_func *f = chat_alloc(rx, sizeof *f);
    if (f == NULL)
        return nomem(rx);
    memset(f, 0, sizeof *f);
    f->kind = FN_GLOBAL;
    f->id = id;
    struct chat_value v = {.k = V_FUNC};
    v.u.f = f;
    if (out != NULL)
        *out = v;
    return name != NULL ? global(rx, name, v) : 0;
}

int chat_template_render(const struct chat_template *t, const json_t *ctx, struct fj_buf *out,
                         struct fj_err *err)
{
    struct fj_err local = {0};
    struct chat_rx rx = {.t = t, .err = err != NULL ? err : &local, .out = out};
    rx.arena.limit = CHAT_MAX_MEMORY;
    size_t start = out->len;
    int rc = 0;
    if (ctx != NULL && !json_is_object(ctx))
        rc = fj_err_set(rx.err, FJ_ERR_INVALID, "chat template: the context must be an object");
    if (rc == 0 && (rx.root = chat_scope_new(&rx, NULL)) == NULL)
        rc = nomem(&rx);
    if (rc == 0)
        rc = global_fn(&rx, NULL, CHAT_G_NAMESPACE, &rx.fn_namespace);
    if (rc == 0)
        rc = global(&rx, "false", chat_bool(false));
    if (rc == 0)
        rc = global(&rx, "true", chat_bool(true));
    if (rc == 0)
        rc = global(&rx, "none", chat_null());
    if (rc == 0)
        rc = global_fn(&rx, "raise_exception", CHAT_G_RAISE, NULL);
    if (rc == 0)
        rc = global_fn(&rx, "range", CHAT_G_RANGE, NULL);
    if (rc == 0)
        rc = global_fn(&rx, "strftime_now", CHAT_G_STRFTIME, NULL);
    if (rc == 0)
        rc = global(&rx, "True", chat_bool(true));
    if (rc == 0)
        rc = global(&rx, "False", chat_bool(false));
    if (rc == 0)
        rc = global(&rx, "None", chat_null());
    if (rc == 0 && ctx != NULL) {
        struct chat_value all;
        rc = chat_from_json(&rx, ctx, &all);
        for (size_t i = 0; rc == 0 && i < all.u.m->n; i++) {
            const struct chat_kv *kv = &all.u.m->kv[i];
            if (chat_map_get(&rx.root->vars, kv->k, kv->klen) != NULL ||
                (kv->klen == 9 && memcmp(kv->k, "namespace", 9) == 0))
                rc = fj_err_set(rx.err, FJ_ERR_INVALID,
                                "chat template: context variable '%.*s' is already declared "
                                "(a global of the template language)",
                                (int)kv->klen, kv->k);
            else
                rc = chat_scope_set(&rx, rx.root, kv->k, kv->klen, kv->v);
        }
    }
    if (rc == 0)
        rc = exec_block(&rx, &t->program, rx.root);
    if (rc > 0)
        rc = chat_fail(&rx, rx.ctrl_at, FJ_ERR_INVALID, "%s outside of a loop",
                       rc == CHAT_BREAK ? "break" : "continue");
    if (rc != 0)
        truncate_out(out, start);
    chat_arena_free(&rx.arena);
    return rc;
}
