/* parse.c - chat template tokens to a syntax tree, following @huggingface/jinja 0.5.11's
 * parser.ts function for function, so that precedence and odd corners agree:
 *
 *   ternary (a if b else c; a if b alone selects)  <  or  <  and  <  not
 *   <  comparisons and in / not in (one level, left to right)  <  + - ~  <  * / // %
 *   <  ** (left-associative)  <  is-tests  <  | filters  <  unary + -  <  calls, . and []
 *
 * so `-x | abs` is `(-x) | abs` and `not a == b` is `not (a == b)`. Nesting is bounded by
 * CHAT_MAX_PARSE_DEPTH (statements and expressions together), so the C stack is too.
 * Nodes live in the template's arena.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat_internal.h"

struct parser {
    const struct chat_token *t;
    size_t n, cur;
    const char *src;
    size_t src_len;
    struct chat_arena *arena;
    struct fj_err *err;
    int depth;
};

static int p_fail(struct parser *p, uint32_t pos, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int p_fail(struct parser *p, uint32_t pos, int code, const char *fmt, ...)
{
    char where[64], msg[400];
    chat_where(p->src, p->src_len, pos, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fj_err_set(p->err, code, "%s%s", where, msg);
}

static uint32_t here(const struct parser *p)
{
    return p->cur < p->n ? p->t[p->cur].pos : (uint32_t)p->src_len;
}

static const char *tk_name(enum chat_tk t)
{
    switch (t) {
    case TK_TEXT: return "text";
    case TK_NUM: return "number";
    case TK_STR: return "string";
    case TK_IDENT: return "name";
    case TK_EQUALS: return "'='";
    case TK_LPAREN: return "'('";
    case TK_RPAREN: return "')'";
    case TK_OPEN_STMT: return "'{%'";
    case TK_CLOSE_STMT: return "'%}'";
    case TK_OPEN_EXPR: return "'{{'";
    case TK_CLOSE_EXPR: return "'}}'";
    case TK_LBRACKET: return "'['";
    case TK_RBRACKET: return "']'";
    case TK_LBRACE: return "'{'";
    case TK_RBRACE: return "'}'";
    case TK_COMMA: return "','";
    case TK_DOT: return "'.'";
    case TK_COLON: return "':'";
    case TK_PIPE: return "'|'";
    case TK_ADD: return "an operator";
    case TK_MUL: return "an operator";
    case TK_POW: return "'**'";
    case TK_CMP: return "a comparison";
    case TK_UNARY: return "a sign";
    case TK_COMMENT: return "a comment";
    }
    return "?";
}

/* Describes the current token for messages. */
static const char *found(const struct parser *p, char *buf, size_t cap)
{
    if (p->cur >= p->n)
        return "the end of the template";
    const struct chat_token *t = &p->t[p->cur];
    if (t->type == TK_IDENT || t->type == TK_ADD || t->type == TK_MUL || t->type == TK_CMP)
        snprintf(buf, cap, "'%.*s'", (int)(t->len > 40 ? 40 : t->len), t->s);
    else
        snprintf(buf, cap, "%s", tk_name(t->type));
    return buf;
}

static bool is(const struct parser *p, enum chat_tk type)
{
    return p->cur < p->n && p->t[p->cur].type == type;
}

static bool tok_is_word(const struct chat_token *t, const char *w)
{
    return t->type == TK_IDENT && t->len == strlen(w) && memcmp(t->s, w, t->len) == 0;
}

static bool is_ident(const struct parser *p, const char *w)
{
    return p->cur < p->n && tok_is_word(&p->t[p->cur], w);
}

/* {% name ... with name one of the words. */
static bool is_statement(const struct parser *p, const char *const *words)
{
    if (!(p->cur + 1 < p->n && p->t[p->cur].type == TK_OPEN_STMT))
        return false;
    for (; *words; words++)
        if (tok_is_word(&p->t[p->cur + 1], *words))
            return true;
    return false;
}

static int expect(struct parser *p, enum chat_tk type, const char *what)
{
    if (is(p, type)) {
        p->cur++;
        return 0;
    }
    char buf[64];
    return p_fail(p, here(p), FJ_ERR_FORMAT, "expected %s%s, found %s", tk_name(type), what,
                  found(p, buf, sizeof buf));
}

static int expect_word(struct parser *p, const char *w)
{
    if (is_ident(p, w)) {
        p->cur++;
        return 0;
    }
    char buf[64];
    return p_fail(p, here(p), FJ_ERR_FORMAT, "expected '%s', found %s", w,
                  found(p, buf, sizeof buf));
}

static struct chat_node *node(struct parser *p, enum chat_nk kind, uint32_t pos)
{
    struct chat_node *n = chat_arena_alloc(p->arena, sizeof *n);
    if (n == NULL) {
        fj_err_set(p->err, FJ_ERR_NOMEM, "chat template: out of memory");
        return NULL;
    }
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->pos = pos;
    return n;
}

static int list_push(struct parser *p, struct chat_list *l, size_t *cap, struct chat_node *x)
{
    if (l->n == *cap) {
        size_t c = *cap ? *cap * 2 : 4;
        struct chat_node **v = chat_arena_alloc(p->arena, c * sizeof *v);
        if (v == NULL)
            return fj_err_set(p->err, FJ_ERR_NOMEM, "chat template: out of memory");
        if (l->n)
            memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        *cap = c;
    }
    l->v[l->n++] = x;
    return 0;
}

static int enter(struct parser *p)
{
    if (++p->depth > CHAT_MAX_PARSE_DEPTH)
        return p_fail(p, here(p), FJ_ERR_RANGE, "nested more than %d deep", CHAT_MAX_PARSE_DEPTH);
    return 0;
}

static struct chat_node *parse_any(struct parser *p);
static struct chat_node *parse_expression(struct parser *p);
static struct chat_node *parse_primary(struct parser *p);
static struct chat_node *parse_member(struct parser *p, struct chat_node *object);
static int parse_args(struct parser *p, bool params, struct chat_list *out);

/* Statements until {% word %} for one of words (not consumed). */
static int parse_body(struct parser *p, const char *const *words, const char *closing,
                      struct chat_list *body)
{
    size_t cap = 0;
    while (!is_statement(p, words)) {
        if (p->cur >= p->n)
            return p_fail(p, here(p), FJ_ERR_FORMAT, "unexpected end of template, expected %s",
                          closing);
        struct chat_node *s = parse_any(p);
        if (s == NULL || list_push(p, body, &cap, s) != 0)
            return FJ_ERR_FORMAT;
    }
    return 0;
}

/* {% word %} */
static int parse_end(struct parser *p, const char *word)
{
    int rc = expect(p, TK_OPEN_STMT, "");
    if (rc == 0)
        rc = expect_word(p, word);
    if (rc == 0)
        rc = expect(p, TK_CLOSE_STMT, "");
    return rc;
}

static struct chat_node *parse_sequence(struct parser *p, bool primary)
{
    uint32_t pos = here(p);
    struct chat_node *first = primary ? parse_primary(p) : parse_expression(p);
    if (first == NULL || !is(p, TK_COMMA))
        return first;
    struct chat_node *tuple = node(p, NK_TUPLE, pos);
    size_t cap = 0;
    if (tuple == NULL || list_push(p, &tuple->l1, &cap, first) != 0)
        return NULL;
    for (;;) {
        p->cur++; /* , */
        struct chat_node *x = primary ? parse_primary(p) : parse_expression(p);
        if (x == NULL || list_push(p, &tuple->l1, &cap, x) != 0)
            return NULL;
        if (!is(p, TK_COMMA))
            break;
    }
    return tuple;
}

static const char *const W_ENDSET[] = {"endset", NULL};
static const char *const W_IF[] = {"elif", "else", "endif", NULL};
static const char *const W_ENDIF[] = {"endif", NULL};
static const char *const W_ENDMACRO[] = {"endmacro", NULL};
static const char *const W_FOR[] = {"endfor", "else", NULL};
static const char *const W_ENDFOR[] = {"endfor", NULL};
static const char *const W_ENDCALL[] = {"endcall", NULL};
static const char *const W_ENDFILTER[] = {"endfilter", NULL};

static struct chat_node *parse_set(struct parser *p, uint32_t pos)
{
    struct chat_node *n = node(p, NK_SET, pos);
    if (n == NULL || (n->a = parse_sequence(p, false)) == NULL)
        return NULL;
    if (is(p, TK_EQUALS)) {
        p->cur++;
        if ((n->b = parse_sequence(p, false)) == NULL)
            return NULL;
    } else {
        if (expect(p, TK_CLOSE_STMT, " or '=' in set") != 0 ||
            parse_body(p, W_ENDSET, "{% endset %}", &n->l1) != 0 ||
            expect(p, TK_OPEN_STMT, "") != 0 || expect_word(p, "endset") != 0)
            return NULL;
    }
    if (expect(p, TK_CLOSE_STMT, "") != 0)
        return NULL;
    return n;
}

static struct chat_node *parse_if(struct parser *p, uint32_t pos)
{
    struct chat_node *n = node(p, NK_IF, pos);
    if (n == NULL || (n->a = parse_expression(p)) == NULL ||
        expect(p, TK_CLOSE_STMT, " after the if condition") != 0 ||
        parse_body(p, W_IF, "{% endif %}", &n->l1) != 0)
        return NULL;
    if (is_statement(p, (const char *const[]){"elif", NULL})) {
        uint32_t epos = p->t[p->cur + 1].pos;
        p->cur += 2;
        struct chat_node *elif = parse_if(p, epos);
        size_t cap = 0;
        if (elif == NULL || list_push(p, &n->l2, &cap, elif) != 0)
            return NULL;
    } else if (is_statement(p, (const char *const[]){"else", NULL})) {
        p->cur += 2;
        if (expect(p, TK_CLOSE_STMT, " after else") != 0 ||
            parse_body(p, W_ENDIF, "{% endif %}", &n->l2) != 0)
            return NULL;
    }
    return n;
}

/* Which of kwargs / varargs a macro body reads (@huggingface/jinja binds them only then). */
static int special_args(const struct chat_node *n)
{
    if (n == NULL)
        return 0;
    int f = 0;
    if (n->kind == NK_IDENT) {
        if (n->len == 6 && memcmp(n->s, "kwargs", 6) == 0)
            f |= CHAT_USES_KWARGS;
        if (n->len == 7 && memcmp(n->s, "varargs", 7) == 0)
            f |= CHAT_USES_VARARGS;
        return f;
    }
    if (n->kind == NK_MEMBER && !n->flag)
        return special_args(n->a);
    f |= special_args(n->a) | special_args(n->b) | special_args(n->c);
    for (size_t i = 0; i < n->l1.n; i++)
        f |= special_args(n->l1.v[i]);
    for (size_t i = 0; i < n->l2.n; i++)
        f |= special_args(n->l2.v[i]);
    return f;
}

static int body_special_args(const struct chat_list *body)
{
    int f = 0;
    for (size_t i = 0; i < body->n; i++)
        f |= special_args(body->v[i]);
    return f;
}

static struct chat_node *parse_macro(struct parser *p, uint32_t pos)
{
    struct chat_node *n = node(p, NK_MACRO, pos);
    if (n == NULL)
        return NULL;
    struct chat_node *name = parse_primary(p);
    if (name == NULL)
        return NULL;
    if (name->kind != NK_IDENT) {
        p_fail(p, name->pos, FJ_ERR_FORMAT, "expected a name after macro");
        return NULL;
    }
    n->s = name->s;
    n->len = name->len;
    if (parse_args(p, true, &n->l1) != 0 || expect(p, TK_CLOSE_STMT, "") != 0 ||
        parse_body(p, W_ENDMACRO, "{% endmacro %}", &n->l2) != 0)
        return NULL;
    n->flag = body_special_args(&n->l2);
    return n;
}

static struct chat_node *parse_for(struct parser *p, uint32_t pos)
{
    struct chat_node *n = node(p, NK_FOR, pos);
    if (n == NULL || (n->a = parse_sequence(p, true)) == NULL)
        return NULL;
    if (n->a->kind != NK_IDENT && n->a->kind != NK_TUPLE) {
        p_fail(p, n->a->pos, FJ_ERR_FORMAT, "expected a name or names for the loop variable");
        return NULL;
    }
    if (expect_word(p, "in") != 0 || (n->b = parse_expression(p)) == NULL ||
        expect(p, TK_CLOSE_STMT, " after the for loop's iterable") != 0 ||
        parse_body(p, W_FOR, "{% endfor %}", &n->l1) != 0)
        return NULL;
    if (is_statement(p, (const char *const[]){"else", NULL})) {
        p->cur += 2;
        if (expect(p, TK_CLOSE_STMT, " after else") != 0 ||
            parse_body(p, W_ENDFOR, "{% endfor %}", &n->l2) != 0)
            return NULL;
    }
    return n;
}

/* A filter after | or in {% filter %}: a name, or a call of a name. */
static struct chat_node *parse_filter_ref(struct parser *p, struct chat_node *operand)
{
    struct chat_node *name = parse_primary(p);
    if (name == NULL)
        return NULL;
    if (name->kind != NK_IDENT) {
        p_fail(p, name->pos, FJ_ERR_FORMAT, "expected a filter name");
        return NULL;
    }
    struct chat_node *f = node(p, NK_FILTER, name->pos);
    if (f == NULL)
        return NULL;
    f->a = operand;
    f->s = name->s;
    f->len = name->len;
    if (is(p, TK_LPAREN)) {
        f->flag = 1;
        if (parse_args(p, false, &f->l1) != 0)
            return NULL;
        if (is(p, TK_DOT) || is(p, TK_LBRACKET) || is(p, TK_LPAREN)) {
            p_fail(p, here(p), FJ_ERR_FORMAT,
                   "unsupported: a filter's call result used with '.', '[' or '(' "
                   "(filter '%.*s')",
                   (int)f->len, f->s);
            return NULL;
        }
    }
    return f;
}

static struct chat_node *parse_statement(struct parser *p)
{
    uint32_t pos = here(p);
    p->cur++; /* {% */
    if (!is(p, TK_IDENT)) {
        char buf[64];
        p_fail(p, here(p), FJ_ERR_FORMAT, "expected a statement name after '{%%', found %s",
               found(p, buf, sizeof buf));
        return NULL;
    }
    const struct chat_token *w = &p->t[p->cur];
    struct chat_node *n = NULL;
    if (tok_is_word(w, "set")) {
        p->cur++;
        return parse_set(p, pos);
    }
    if (tok_is_word(w, "if")) {
        p->cur++;
        if ((n = parse_if(p, pos)) == NULL || parse_end(p, "endif") != 0)
            return NULL;
        return n;
    }
    if (tok_is_word(w, "macro")) {
        p->cur++;
        if ((n = parse_macro(p, pos)) == NULL || parse_end(p, "endmacro") != 0)
            return NULL;
        return n;
    }
    if (tok_is_word(w, "for")) {
        p->cur++;
        if ((n = parse_for(p, pos)) == NULL || parse_end(p, "endfor") != 0)
            return NULL;
        return n;
    }
    if (tok_is_word(w, "call")) {
        p->cur++;
        if ((n = node(p, NK_CALLBLOCK, pos)) == NULL)
            return NULL;
        if (is(p, TK_LPAREN) && parse_args(p, true, &n->l1) != 0)
            return NULL;
        struct chat_node *callee = parse_primary(p);
        if (callee == NULL)
            return NULL;
        if (callee->kind != NK_IDENT) {
            p_fail(p, callee->pos, FJ_ERR_FORMAT, "expected a macro name after call");
            return NULL;
        }
        if ((n->a = node(p, NK_CALL, callee->pos)) == NULL)
            return NULL;
        n->a->a = callee;
        if (parse_args(p, false, &n->a->l1) != 0 || expect(p, TK_CLOSE_STMT, "") != 0 ||
            parse_body(p, W_ENDCALL, "{% endcall %}", &n->l2) != 0 || parse_end(p, "endcall") != 0)
            return NULL;
        n->flag = body_special_args(&n->l2);
        return n;
    }
    if (tok_is_word(w, "filter")) {
        p->cur++;
        if ((n = node(p, NK_FILTERBLOCK, pos)) == NULL ||
            (n->a = parse_filter_ref(p, NULL)) == NULL || expect(p, TK_CLOSE_STMT, "") != 0 ||
            parse_body(p, W_ENDFILTER, "{% endfilter %}", &n->l1) != 0 ||
            parse_end(p, "endfilter") != 0)
            return NULL;
        return n;
    }
    if (tok_is_word(w, "break") || tok_is_word(w, "continue")) {
        bool brk = tok_is_word(w, "break");
        p->cur++;
        if (expect(p, TK_CLOSE_STMT, "") != 0)
            return NULL;
        return node(p, brk ? NK_BREAK : NK_CONTINUE, pos);
    }
    p_fail(p, w->pos, FJ_ERR_FORMAT, "unknown or unsupported statement '%.*s'",
           (int)(w->len > 40 ? 40 : w->len), w->s);
    return NULL;
}

static struct chat_node *parse_any(struct parser *p)
{
    if (enter(p) != 0)
        return NULL;
    struct chat_node *n = NULL;
    const struct chat_token *t = &p->t[p->cur];
    switch (t->type) {
    case TK_COMMENT:
        p->cur++;
        n = node(p, NK_COMMENT, t->pos);
        break;
    case TK_TEXT:
        p->cur++;
        if ((n = node(p, NK_STR, t->pos)) != NULL) {
            n->s = t->s;
            n->len = t->len;
        }
        break;
    case TK_OPEN_STMT: n = parse_statement(p); break;
    case TK_OPEN_EXPR:
        p->cur++;
        n = parse_expression(p);
        if (n != NULL && expect(p, TK_CLOSE_EXPR, " to end the expression") != 0)
            n = NULL;
        break;
    default: p_fail(p, t->pos, FJ_ERR_FORMAT, "unexpected %s", tk_name(t->type)); break;
    }
    p->depth--;
    return n;
}

/* ---- expressions ------------------------------------------------------------------------ */

static struct chat_node *binary(struct parser *p, enum chat_op op, uint32_t pos,
                                struct chat_node *l, struct chat_node *r)
{
    if (l == NULL || r == NULL)
        return NULL;
    struct chat_node *n = node(p, NK_BINARY, pos);
    if (n != NULL) {
        n->op = op;
        n->a = l;
        n->b = r;
    }
    return n;
}

static struct chat_node *parse_or(struct parser *p);

static struct chat_node *parse_if_expr(struct parser *p)
{
    if (enter(p) != 0)
        return NULL;
    struct chat_node *a = parse_or(p), *res = a;
    if (a != NULL && is_ident(p, "if")) {
        uint32_t pos = here(p);
        p->cur++;
        struct chat_node *test = parse_or(p);
        if (test == NULL)
            res = NULL;
        else if (is_ident(p, "else")) {
            p->cur++;
            struct chat_node *f = parse_if_expr(p);
            res = f == NULL ? NULL : node(p, NK_TERNARY, pos);
            if (res != NULL) {
                res->a = test;
                res->b = a;
                res->c = f;
            }
        } else {
            res = node(p, NK_SELECT, pos);
            if (res != NULL) {
                res->a = a;
                res->b = test;
            }
        }
    }
    p->depth--;
    return res;
}

static struct chat_node *parse_expression(struct parser *p)
{
    return parse_if_expr(p);
}

static struct chat_node *parse_not(struct parser *p);
static struct chat_node *parse_and(struct parser *p);

static struct chat_node *parse_or(struct parser *p)
{
    struct chat_node *l = parse_and(p);
    while (l != NULL && is_ident(p, "or")) {
        uint32_t pos = here(p);
        p->cur++;
        l = binary(p, OP_OR, pos, l, parse_and(p));
    }
    return l;
}

static struct chat_node *parse_and(struct parser *p)
{
    struct chat_node *l = parse_not(p);
    while (l != NULL && is_ident(p, "and")) {
        uint32_t pos = here(p);
        p->cur++;
        l = binary(p, OP_AND, pos, l, parse_not(p));
    }
    return l;
}

static struct chat_node *parse_comparison(struct parser *p);

static struct chat_node *parse_not(struct parser *p)
{
    struct chat_node *right = NULL;
    while (is_ident(p, "not")) {
        if (enter(p) != 0)
            return NULL;
        uint32_t pos = here(p);
        p->cur++;
        struct chat_node *arg = parse_not(p);
        p->depth--;
        if (arg == NULL || (right = node(p, NK_UNARY, pos)) == NULL)
            return NULL;
        right->op = OP_NOT;
        right->a = arg;
    }
    return right != NULL ? right : parse_comparison(p);
}

static struct chat_node *parse_additive(struct parser *p);

static bool is_ident_at(const struct parser *p, size_t at, const char *w)
{
    return at < p->n && tok_is_word(&p->t[at], w);
}

static enum chat_op cmp_op(const struct chat_token *t)
{
    if (t->len == 1)
        return t->s[0] == '<' ? OP_LT : OP_GT;
    switch (t->s[0]) {
    case '<': return OP_LE;
    case '>': return OP_GE;
    case '=': return OP_EQ;
    default: return OP_NE;
    }
}

static struct chat_node *parse_comparison(struct parser *p)
{
    struct chat_node *l = parse_additive(p);
    while (l != NULL) {
        enum chat_op op;
        uint32_t pos = here(p);
        if (is_ident(p, "not") && is_ident_at(p, p->cur + 1, "in")) {
            op = OP_NOTIN;
            p->cur += 2;
        } else if (is_ident(p, "in")) {
            op = OP_IN;
            p->cur++;
        } else if (is(p, TK_CMP)) {
            op = cmp_op(&p->t[p->cur]);
            p->cur++;
        } else
            break;
        l = binary(p, op, pos, l, parse_additive(p));
    }
    return l;
}

static struct chat_node *parse_multiplicative(struct parser *p);

static struct chat_node *parse_additive(struct parser *p)
{
    struct chat_node *l = parse_multiplicative(p);
    while (l != NULL && is(p, TK_ADD)) {
        const struct chat_token *t = &p->t[p->cur++];
        enum chat_op op = t->s[0] == '+' ? OP_ADD : t->s[0] == '-' ? OP_SUB : OP_CONCAT;
        l = binary(p, op, t->pos, l, parse_multiplicative(p));
    }
    return l;
}

static struct chat_node *parse_power(struct parser *p);

static struct chat_node *parse_multiplicative(struct parser *p)
{
    struct chat_node *l = parse_power(p);
    while (l != NULL && is(p, TK_MUL)) {
        const struct chat_token *t = &p->t[p->cur++];
        enum chat_op op = t->s[0] == '*'   ? OP_MUL
                          : t->s[0] == '%' ? OP_MOD
                          : t->len == 2    ? OP_FLOORDIV
                                           : OP_DIV;
        l = binary(p, op, t->pos, l, parse_power(p));
    }
    return l;
}

static struct chat_node *parse_test(struct parser *p);

static struct chat_node *parse_power(struct parser *p)
{
    struct chat_node *l = parse_test(p);
    while (l != NULL && is(p, TK_POW)) {
        uint32_t pos = here(p);
        p->cur++;
        l = binary(p, OP_POW, pos, l, parse_test(p));
    }
    return l;
}

static struct chat_node *parse_filter(struct parser *p);

static struct chat_node *parse_test(struct parser *p)
{
    struct chat_node *operand = parse_filter(p);
    while (operand != NULL && is_ident(p, "is")) {
        uint32_t pos = here(p);
        p->cur++;
        bool negate = is_ident(p, "not");
        if (negate)
            p->cur++;
        struct chat_node *name = parse_primary(p);
        if (name == NULL)
            return NULL;
        if (name->kind != NK_IDENT) {
            p_fail(p, name->pos, FJ_ERR_FORMAT, "expected a test name after 'is'");
            return NULL;
        }
        struct chat_node *n = node(p, NK_TEST, pos);
        if (n == NULL)
            return NULL;
        n->a = operand;
        n->flag = negate;
        n->s = name->s;
        n->len = name->len;
        operand = n;
    }
    return operand;
}

static struct chat_node *parse_unary(struct parser *p);

static struct chat_node *parse_filter(struct parser *p)
{
    struct chat_node *operand = parse_unary(p);
    while (operand != NULL && is(p, TK_PIPE)) {
        p->cur++;
        operand = parse_filter_ref(p, operand);
    }
    return operand;
}

static struct chat_node *parse_call_member(struct parser *p);

static struct chat_node *parse_unary(struct parser *p)
{
    if (p->cur < p->n) {
        const struct chat_token *t = &p->t[p->cur];
        if ((t->type == TK_UNARY || t->type == TK_ADD) && t->len == 1 &&
            (t->s[0] == '-' || t->s[0] == '+')) {
            if (enter(p) != 0)
                return NULL;
            p->cur++;
            struct chat_node *arg = parse_unary(p);
            p->depth--;
            struct chat_node *n = arg == NULL ? NULL : node(p, NK_UNARY, t->pos);
            if (n != NULL) {
                n->op = t->s[0] == '-' ? OP_NEG : OP_POS;
                n->a = arg;
            }
            return n;
        }
    }
    return parse_call_member(p);
}

static struct chat_node *parse_call(struct parser *p, struct chat_node *callee)
{
    if (enter(p) != 0)
        return NULL;
    struct chat_node *n = node(p, NK_CALL, callee->pos);
    if (n != NULL) {
        n->a = callee;
        if (parse_args(p, false, &n->l1) != 0)
            n = NULL;
    }
    if (n != NULL)
        n = parse_member(p, n);
    if (n != NULL && is(p, TK_LPAREN))
        n = parse_call(p, n);
    p->depth--;
    return n;
}

static struct chat_node *parse_call_member(struct parser *p)
{
    struct chat_node *prim = parse_primary(p);
    struct chat_node *m = prim == NULL ? NULL : parse_member(p, prim);
    if (m != NULL && is(p, TK_LPAREN))
        return parse_call(p, m);
    return m;
}

static int parse_args(struct parser *p, bool params, struct chat_list *out)
{
    int rc = expect(p, TK_LPAREN, " to open the argument list");
    if (rc != 0)
        return rc;
    size_t cap = 0;
    bool saw_kw = false, saw_spread = false;
    while (!is(p, TK_RPAREN)) {
        if (p->cur >= p->n)
            return p_fail(p, here(p), FJ_ERR_FORMAT, "unexpected end of template in arguments");
        uint32_t pos = here(p);
        bool kw_spread = is(p, TK_POW);
        bool spread = is(p, TK_MUL) && p->t[p->cur].len == 1 && p->t[p->cur].s[0] == '*';
        if (params && (kw_spread || spread))
            return p_fail(p, pos, FJ_ERR_FORMAT,
                          "argument unpacking is not allowed in parameter declarations");
        struct chat_node *arg;
        if (kw_spread) {
            p->cur++;
            struct chat_node *x = parse_expression(p);
            if (x == NULL || (arg = node(p, NK_KWSPREAD, pos)) == NULL)
                return FJ_ERR_FORMAT;
            arg->a = x;
            if ((rc = list_push(p, out, &cap, arg)) != 0)
                return rc;
            if (is(p, TK_COMMA))
                p->cur++;
            if (!is(p, TK_RPAREN))
                return p_fail(p, here(p), FJ_ERR_FORMAT, "'**' must be the final argument");
            break;
        }
        if (spread) {
            if (saw_spread)
                return p_fail(p, pos, FJ_ERR_FORMAT, "only one '*' argument unpacking is allowed");
            saw_spread = true;
            p->cur++;
            struct chat_node *x = parse_expression(p);
            if (x == NULL || (arg = node(p, NK_SPREAD, pos)) == NULL)
                return FJ_ERR_FORMAT;
            arg->a = x;
        } else {
            if ((arg = parse_expression(p)) == NULL)
                return FJ_ERR_FORMAT;
            if (is(p, TK_EQUALS)) {
                p->cur++;
                if (arg->kind != NK_IDENT)
                    return p_fail(p, arg->pos, FJ_ERR_FORMAT,
                                  params ? "expected a name for a parameter"
                                         : "expected a name for a keyword argument");
                struct chat_node *v = parse_expression(p);
                struct chat_node *kw = v == NULL ? NULL : node(p, NK_KWARG, arg->pos);
                if (kw == NULL)
                    return FJ_ERR_FORMAT;
                kw->s = arg->s;
                kw->len = arg->len;
                kw->a = v;
                arg = kw;
            }
            if (params) {
                if (arg->kind != NK_IDENT && arg->kind != NK_KWARG)
                    return p_fail(p, arg->pos, FJ_ERR_FORMAT, "expected a name for a parameter");
                for (size_t i = 0; i < out->n; i++)
                    if (out->v[i]->len == arg->len && memcmp(out->v[i]->s, arg->s, arg->len) == 0)
                        return p_fail(p, arg->pos, FJ_ERR_FORMAT, "duplicate parameter '%.*s'",
                                      (int)arg->len, arg->s);
            }
            if (arg->kind == NK_KWARG)
                saw_kw = true;
            else if (saw_kw)
                return p_fail(p, arg->pos, FJ_ERR_FORMAT,
                              params ? "a parameter without default follows one with a default"
                                     : "a positional argument follows a keyword argument");
            else if (saw_spread)
                return p_fail(p, arg->pos, FJ_ERR_FORMAT,
                              "a positional argument follows '*' unpacking");
        }
        if ((rc = list_push(p, out, &cap, arg)) != 0)
            return rc;
        if (is(p, TK_COMMA))
            p->cur++;
    }
    p->cur++; /* ) */
    return 0;
}

/* Inside [...]: an index, or a slice a:b:c with parts left out. */
static struct chat_node *parse_subscript(struct parser *p)
{
    uint32_t pos = here(p);
    struct chat_node *parts[4] = {NULL};
    size_t n = 0;
    bool slice = false;
    while (!is(p, TK_RBRACKET)) {
        if (p->cur >= p->n) {
            p_fail(p, here(p), FJ_ERR_FORMAT, "unexpected end of template, expected ']'");
            return NULL;
        }
        struct chat_node *x = NULL;
        if (is(p, TK_COLON)) {
            p->cur++;
            slice = true;
        } else {
            if ((x = parse_expression(p)) == NULL)
                return NULL;
            if (is(p, TK_COLON)) {
                p->cur++;
                slice = true;
            }
        }
        if (n == 4) {
            p_fail(p, pos, FJ_ERR_FORMAT, "a slice takes at most 3 parts");
            return NULL;
        }
        parts[n++] = x;
    }
    if (n == 0) {
        p_fail(p, pos, FJ_ERR_FORMAT, "expected an index or slice in '[]'");
        return NULL;
    }
    if (!slice)
        return parts[0];
    if (n > 3) {
        p_fail(p, pos, FJ_ERR_FORMAT, "a slice takes at most 3 parts");
        return NULL;
    }
    struct chat_node *s = node(p, NK_SLICE, pos);
    if (s != NULL) {
        s->a = parts[0];
        s->b = parts[1];
        s->c = parts[2];
    }
    return s;
}

static struct chat_node *parse_member(struct parser *p, struct chat_node *object)
{
    while (object != NULL && (is(p, TK_DOT) || is(p, TK_LBRACKET))) {
        bool computed = is(p, TK_LBRACKET);
        uint32_t pos = here(p);
        p->cur++;
        struct chat_node *prop;
        if (computed) {
            if ((prop = parse_subscript(p)) == NULL || expect(p, TK_RBRACKET, "") != 0)
                return NULL;
        } else {
            if ((prop = parse_primary(p)) == NULL)
                return NULL;
            if (prop->kind != NK_IDENT && prop->kind != NK_INT) {
                p_fail(p, prop->pos, FJ_ERR_FORMAT, "expected a name or integer after '.'");
                return NULL;
            }
        }
        struct chat_node *m = node(p, NK_MEMBER, pos);
        if (m == NULL)
            return NULL;
        m->a = object;
        m->b = prop;
        m->flag = computed;
        object = m;
    }
    return object;
}

static struct chat_node *parse_primary(struct parser *p)
{
    if (p->cur >= p->n) {
        p_fail(p, here(p), FJ_ERR_FORMAT, "unexpected end of template in an expression");
        return NULL;
    }
    const struct chat_token *t = &p->t[p->cur++];
    struct chat_node *n;
    size_t cap = 0, cap2 = 0;
    switch (t->type) {
    case TK_NUM: {
        bool flt = memchr(t->s, '.', t->len) != NULL;
        if ((n = node(p, flt ? NK_FLOAT : NK_INT, t->pos)) == NULL)
            return NULL;
        char buf[64];
        if (t->len >= sizeof buf) {
            /* very long digit strings: strtod reads them from an arena copy */
            char *c = chat_arena_alloc(p->arena, t->len + 1);
            if (c == NULL) {
                fj_err_set(p->err, FJ_ERR_NOMEM, "chat template: out of memory");
                return NULL;
            }
            memcpy(c, t->s, t->len);
            c[t->len] = '\0';
            n->num = strtod(c, NULL);
        } else {
            memcpy(buf, t->s, t->len);
            buf[t->len] = '\0';
            n->num = strtod(buf, NULL);
        }
        return n;
    }
    case TK_STR: {
        if ((n = node(p, NK_STR, t->pos)) == NULL)
            return NULL;
        if (!is(p, TK_STR)) {
            n->s = t->s;
            n->len = t->len;
            return n;
        }
        struct fj_buf b = {0};
        int rc = fj_buf_append(&b, t->s, t->len);
        while (rc == 0 && is(p, TK_STR)) {
            const struct chat_token *u = &p->t[p->cur++];
            rc = fj_buf_append(&b, u->s, u->len);
        }
        char *s = rc == 0 ? chat_arena_alloc(p->arena, b.len + 1) : NULL;
        if (s != NULL)
            memcpy(s, b.data, b.len + 1);
        n->s = s;
        n->len = b.len;
        fj_buf_free(&b);
        if (s == NULL) {
            fj_err_set(p->err, FJ_ERR_NOMEM, "chat template: out of memory");
            return NULL;
        }
        return n;
    }
    case TK_IDENT:
        if ((n = node(p, NK_IDENT, t->pos)) != NULL) {
            n->s = t->s;
            n->len = t->len;
        }
        return n;
    case TK_LPAREN:
        if ((n = parse_sequence(p, false)) == NULL ||
            expect(p, TK_RPAREN, " to close the parenthesis") != 0)
            return NULL;
        return n;
    case TK_LBRACKET:
        if ((n = node(p, NK_ARRAY, t->pos)) == NULL)
            return NULL;
        while (!is(p, TK_RBRACKET)) {
            struct chat_node *x = parse_expression(p);
            if (x == NULL || list_push(p, &n->l1, &cap, x) != 0)
                return NULL;
            if (is(p, TK_COMMA))
                p->cur++;
        }
        p->cur++;
        return n;
    case TK_LBRACE:
        if ((n = node(p, NK_OBJECT, t->pos)) == NULL)
            return NULL;
        while (!is(p, TK_RBRACE)) {
            struct chat_node *k = parse_expression(p);
            if (k == NULL || expect(p, TK_COLON, " between key and value") != 0)
                return NULL;
            struct chat_node *v = parse_expression(p);
            if (v == NULL || list_push(p, &n->l1, &cap, k) != 0 ||
                list_push(p, &n->l2, &cap2, v) != 0)
                return NULL;
            if (is(p, TK_COMMA))
                p->cur++;
        }
        p->cur++;
        return n;
    default:
        p_fail(p, t->pos, FJ_ERR_FORMAT, "unexpected %s in an expression", tk_name(t->type));
        return NULL;
    }
}

int chat_parse(const struct chat_tokens_vec *toks, const char *src, size_t len,
               struct chat_arena *arena, struct chat_list *program, struct fj_err *err)
{
    struct parser p = {
        .t = toks->v, .n = toks->n, .src = src, .src_len = len, .arena = arena, .err = err};
    size_t cap = 0;
    memset(program, 0, sizeof *program);
    while (p.cur < p.n) {
        struct chat_node *s = parse_any(&p);
        if (s == NULL)
            return err != NULL && err->code != 0 ? err->code : FJ_ERR_FORMAT;
        if (list_push(&p, program, &cap, s) != 0)
            return FJ_ERR_NOMEM;
    }
    return 0;
}
