/* chat_internal.h - the chat template engine's pieces, shared by the files of src/chat
 * (not a public API).
 *
 *   lex.c       preprocessing (trailing newline, lstrip_blocks, trim_blocks, generation
 *               tags) and tokens, as @huggingface/jinja's lexer.ts
 *   parse.c     tokens to syntax tree, as parser.ts
 *   value.c     scratch memory, runtime values, JavaScript conversions (numbers, strings in
 *               UTF-16 terms, equality), JSON in and out
 *   eval.c      the interpreter (statements, expressions, scopes, macros) and the public
 *               chat_template_* functions
 *   builtins.c  filters, tests, string and object methods, global functions
 *   case.c      which characters JavaScript's toUpperCase/toLowerCase change (generated)
 *   conversation.c  chat_render_conversation, chat_tokenize, the ChatML template
 *
 * Design notes and the supported subset: docs/chat-templates.md.
 */
#ifndef FJ_CHAT_INTERNAL_H
#define FJ_CHAT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat/chat.h"

/* ---- limits (see chat.h) ---------------------------------------------------------------- */

#define CHAT_MAX_SOURCE      (1u << 20)
#define CHAT_MAX_PARSE_DEPTH 100
#define CHAT_MAX_EVAL_DEPTH  600
#define CHAT_MAX_CALL_DEPTH  64
#define CHAT_MAX_STEPS       20000000u
#define CHAT_MAX_OUTPUT      ((size_t)64 << 20)
#define CHAT_MAX_MEMORY      ((size_t)256 << 20)
#define CHAT_MAX_RANGE       1000000u /* elements range() may produce */

/* ---- scratch memory ---------------------------------------------------------------------- */

/* A bump allocator: memory lives until chat_arena_free. Allocation past `limit` bytes in
 * all fails (NULL), as does malloc failure; *over_limit tells the two apart. */
struct chat_chunk;
struct chat_arena {
    struct chat_chunk *head;
    size_t total, limit;
    bool over_limit;
};

void *chat_arena_alloc(struct chat_arena *a, size_t n);
void chat_arena_free(struct chat_arena *a);

/* ---- tokens --------------------------------------------------------------------------- */

enum chat_tk {
    TK_TEXT,
    TK_NUM,
    TK_STR,
    TK_IDENT,
    TK_EQUALS,
    TK_LPAREN,
    TK_RPAREN,
    TK_OPEN_STMT,
    TK_CLOSE_STMT,
    TK_OPEN_EXPR,
    TK_CLOSE_EXPR,
    TK_LBRACKET,
    TK_RBRACKET,
    TK_LBRACE,
    TK_RBRACE,
    TK_COMMA,
    TK_DOT,
    TK_COLON,
    TK_PIPE,
    TK_ADD,   /* + - ~ */
    TK_MUL,   /* * / // % */
    TK_POW,   /* ** */
    TK_CMP,   /* < > <= >= == != */
    TK_UNARY, /* + - before an operand */
    TK_COMMENT,
};

struct chat_token {
    enum chat_tk type;
    const char *s; /* text (decoded for strings); lives in the template's arena */
    size_t len;
    uint32_t pos; /* byte offset of the token in the original source */
};

struct chat_tokens_vec {
    struct chat_token *v;
    size_t n, cap;
};

/* Preprocesses and tokenizes src. Token text lives in arena. Errors: FJ_ERR_FORMAT with
 * line:col (computed from src). */
int chat_lex(const char *src, size_t len, struct chat_arena *arena, struct chat_tokens_vec *out,
             struct fj_err *err);

/* Formats "chat template L:C: " for byte offset pos of src into buf. */
void chat_where(const char *src, size_t len, uint32_t pos, char *buf, size_t cap);

/* ---- syntax tree ---------------------------------------------------------------------- */

enum chat_nk {
    NK_STR,
    NK_INT,
    NK_FLOAT,
    NK_ARRAY,    /* l1 elements */
    NK_TUPLE,    /* l1 elements */
    NK_OBJECT,   /* l1 keys, l2 values */
    NK_IDENT,    /* s */
    NK_MEMBER,   /* a object, b property, flag: computed ([...]) */
    NK_SLICE,    /* a start, b stop, c step (NULL: omitted) */
    NK_CALL,     /* a callee, l1 arguments */
    NK_KWARG,    /* s name, a value */
    NK_SPREAD,   /* *a */
    NK_KWSPREAD, /* **a */
    NK_UNARY,    /* op, a */
    NK_BINARY,   /* op, a, b */
    NK_FILTER,   /* a operand, s name, flag: called with (l1) */
    NK_TEST,     /* a operand, s name, flag: negated */
    NK_SELECT,   /* a if b (no else) */
    NK_TERNARY,  /* b if a else c */
    /* statements */
    NK_IF,          /* a test, l1 body, l2 else */
    NK_FOR,         /* a target, b iterable, l1 body, l2 else */
    NK_SET,         /* a target, b value or NULL for a block set with body l1 */
    NK_MACRO,       /* s name, l1 parameters, l2 body, flag: CHAT_USES_* */
    NK_CALLBLOCK,   /* a call (NK_CALL), l1 caller parameters, l2 body, flag: CHAT_USES_* */
    NK_FILTERBLOCK, /* a filter (NK_FILTER without operand), l1 body */
    NK_BREAK,
    NK_CONTINUE,
    NK_COMMENT,
};

enum chat_op {
    OP_NONE,
    OP_ADD,
    OP_SUB,
    OP_CONCAT,
    OP_MUL,
    OP_DIV,
    OP_FLOORDIV,
    OP_MOD,
    OP_POW,
    OP_EQ,
    OP_NE,
    OP_LT,
    OP_GT,
    OP_LE,
    OP_GE,
    OP_IN,
    OP_NOTIN,
    OP_AND,
    OP_OR,
    OP_NOT,
    OP_NEG,
    OP_POS,
};

enum { CHAT_USES_KWARGS = 1, CHAT_USES_VARARGS = 2 };

struct chat_node;
struct chat_list {
    struct chat_node **v;
    size_t n;
};

struct chat_node {
    enum chat_nk kind;
    enum chat_op op;
    uint32_t pos; /* byte offset in the original source, for error messages */
    int flag;
    const char *s;
    size_t len;
    double num;
    struct chat_node *a, *b, *c;
    struct chat_list l1, l2;
};

/* Parses tokens into the program's statement list. Nodes live in arena. */
int chat_parse(const struct chat_tokens_vec *toks, const char *src, size_t len,
               struct chat_arena *arena, struct chat_list *program, struct fj_err *err);

struct chat_template {
    char *src; /* the original source, owned */
    size_t len;
    struct chat_arena arena; /* tokens, preprocessed text, nodes */
    struct chat_list program;
};

/* ---- runtime values ------------------------------------------------------------------- */

/* The kinds mirror @huggingface/jinja's runtime classes. V_JSUNDEF is JavaScript's bare
 * `undefined` (what `[] | first` yields): `set` stores it as undefined, almost anything
 * else that touches it fails, as in JavaScript. */
enum chat_vk {
    V_UNDEF,
    V_NULL,
    V_BOOL,
    V_INT,
    V_FLOAT,
    V_STR,
    V_ARRAY,
    V_TUPLE,
    V_OBJECT,
    V_KWARGS,
    V_NS,
    V_FUNC,
    V_JSUNDEF,
};

struct chat_value;
struct chat_array;
struct chat_map;
struct chat_func;

struct chat_value {
    enum chat_vk k;
    size_t len; /* V_STR: bytes */
    union {
        int b;
        double n; /* V_INT and V_FLOAT: JavaScript numbers */
        const char *s;
        struct chat_array *a;
        struct chat_map *m;
        struct chat_func *f;
    } u;
};

struct chat_array {
    size_t n;
    struct chat_value *v;
};

struct chat_kv {
    const char *k;
    size_t klen;
    struct chat_value v;
};

/* Insertion-ordered, as a JavaScript Map. */
struct chat_map {
    size_t n, cap;
    struct chat_kv *kv;
};

enum chat_fk {
    FN_MACRO,  /* node: NK_MACRO */
    FN_CALLER, /* node: NK_CALLBLOCK, env: where the block stands */
    FN_GLOBAL, /* id: CHAT_G_* */
    FN_METHOD, /* id: CHAT_M_*, self: the string or object */
};

enum { CHAT_G_RAISE, CHAT_G_RANGE, CHAT_G_STRFTIME, CHAT_G_NAMESPACE };

enum {
    CHAT_M_UPPER,
    CHAT_M_LOWER,
    CHAT_M_STRIP,
    CHAT_M_TITLE,
    CHAT_M_CAPITALIZE,
    CHAT_M_RSTRIP,
    CHAT_M_LSTRIP,
    CHAT_M_STARTSWITH,
    CHAT_M_ENDSWITH,
    CHAT_M_SPLIT,
    CHAT_M_REPLACE,
    CHAT_M_GET,
    CHAT_M_ITEMS,
    CHAT_M_KEYS,
    CHAT_M_VALUES,
    CHAT_M_DICTSORT,
};

struct chat_scope;

struct chat_func {
    enum chat_fk kind;
    int id;
    const struct chat_node *node;
    struct chat_scope *env;
    struct chat_value self;
};

struct chat_scope {
    struct chat_scope *parent;
    struct chat_map vars;
};

/* One render's state. */
struct chat_rx {
    const struct chat_template *t;
    struct chat_arena arena;
    struct fj_err *err;
    struct fj_buf *out; /* where statements write now */
    uint64_t steps;
    int depth; /* evaluation recursion */
    int calls; /* macro calls in progress */
    struct chat_scope *root;
    struct chat_value fn_namespace;  /* every scope's own `namespace` */
    const struct chat_node *ctrl_at; /* the break or continue travelling */
};

/* Control flow besides errors (negative): a break or continue travelling to its loop. */
enum { CHAT_BREAK = 1, CHAT_CONTINUE = 2 };

/* Errors at a node: "chat template L:C: message". */
int chat_fail(struct chat_rx *rx, const struct chat_node *at, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Allocation from the render's arena; NULL after recording FJ_ERR_NOMEM / FJ_ERR_RANGE. */
void *chat_alloc(struct chat_rx *rx, size_t n);

static inline struct chat_value chat_undef(void)
{
    struct chat_value v = {.k = V_UNDEF};
    return v;
}
static inline struct chat_value chat_null(void)
{
    struct chat_value v = {.k = V_NULL};
    return v;
}
static inline struct chat_value chat_bool(bool b)
{
    struct chat_value v = {.k = V_BOOL};
    v.u.b = b;
    return v;
}
static inline struct chat_value chat_int(double n)
{
    struct chat_value v = {.k = V_INT};
    v.u.n = n;
    return v;
}
static inline struct chat_value chat_float(double n)
{
    struct chat_value v = {.k = V_FLOAT};
    v.u.n = n;
    return v;
}
/* A string value over bytes that outlive the render (no copy). */
static inline struct chat_value chat_str_ref(const char *s, size_t len)
{
    struct chat_value v = {.k = V_STR, .len = len};
    v.u.s = s;
    return v;
}
static inline bool chat_is_num(const struct chat_value *v)
{
    return v->k == V_INT || v->k == V_FLOAT;
}
static inline bool chat_is_array(const struct chat_value *v)
{
    return v->k == V_ARRAY || v->k == V_TUPLE;
}
/* ObjectValue in JavaScript terms (keyword arguments are objects too). */
static inline bool chat_is_object(const struct chat_value *v)
{
    return v->k == V_OBJECT || v->k == V_KWARGS;
}
static inline bool chat_is_attr_container(const struct chat_value *v)
{
    return chat_is_object(v) || v->k == V_NS;
}

/* value.c */
int chat_str_copy(struct chat_rx *rx, const char *s, size_t len, struct chat_value *out);
int chat_str_from_buf(struct chat_rx *rx, const struct fj_buf *b, struct chat_value *out);
struct chat_array *chat_array_new(struct chat_rx *rx, size_t n);
struct chat_map *chat_map_new(struct chat_rx *rx, size_t cap);
struct chat_value *chat_map_get(const struct chat_map *m, const char *k, size_t klen);
int chat_map_set(struct chat_rx *rx, struct chat_map *m, const char *k, size_t klen,
                 struct chat_value v);
int chat_from_json(struct chat_rx *rx, const json_t *j, struct chat_value *out);
const char *chat_kind_name(enum chat_vk k);
bool chat_truthy(const struct chat_value *v);

/* JavaScript text conversions. mode CHAT_STR_RUNTIME is RuntimeValue.toString() (what
 * {{ }} prints), CHAT_STR_RAW is String(value.value) (what ~ and + use), CHAT_STR_JOIN is an
 * element of Array.prototype.join (null and undefined give ""). none's value is undefined in
 * @huggingface/jinja (NullValue is built without one), so it reads "undefined". */
enum chat_str_mode { CHAT_STR_RUNTIME, CHAT_STR_RAW, CHAT_STR_JOIN };
int chat_to_text(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *v,
                 enum chat_str_mode mode, struct fj_buf *out);
/* Number::toString(10). */
int chat_js_number(double x, struct fj_buf *out);

struct chat_json_opts {
    long indent; /* 0: none */
    bool ensure_ascii;
    const char *item_sep, *key_sep; /* NULL: the defaults */
    size_t item_sep_len, key_sep_len;
    bool undefined_as_null;
};
int chat_to_json(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *v,
                 const struct chat_json_opts *o, int depth, struct fj_buf *out);

/* a.value == b.value, a.value === b.value in JavaScript. */
int chat_loose_eq(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *a,
                  const struct chat_value *b, bool *eq);
bool chat_strict_eq(const struct chat_value *a, const struct chat_value *b);
/* compareRuntimeValues: -1, 0, 1 in *res. */
int chat_compare(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *a,
                 const struct chat_value *b, bool case_sensitive, int *res);

/* UTF-16 views of UTF-8 text (JavaScript string semantics). */
size_t chat_u16_len(const char *s, size_t n);
/* Length of the JavaScript whitespace character (\s, String.prototype.trim) at s[i], or 0. */
size_t chat_js_space(const char *s, size_t n, size_t i);
/* Bounds of s without JavaScript whitespace at the start and/or end. */
void chat_js_trim(const char *s, size_t n, bool start, bool end, size_t *b, size_t *e);
/* UTF-16 order of two strings (as JavaScript's < compares them). */
int chat_u16_cmp(const char *a, size_t an, const char *b, size_t bn);
/* parseInt(s, 10), parseFloat(s), Number(s): NaN when JavaScript gives NaN. */
double chat_parse_int(const char *s, size_t n);
double chat_parse_float(const char *s, size_t n);
double chat_to_number(const char *s, size_t n);

/* case.c: does JavaScript's toUpperCase or toLowerCase change code point cp (>= 0x80)? */
bool chat_case_changes(uint32_t cp);
/* ASCII case mapping of s into out; fails (FJ_ERR_INVALID) when s holds a non-ASCII
 * character whose case JavaScript would change. upper: 1 upper, 0 lower. */
int chat_case_map(struct chat_rx *rx, const struct chat_node *at, const char *s, size_t n,
                  int upper, struct chat_value *out);

/* eval.c */
int chat_eval(struct chat_rx *rx, const struct chat_node *n, struct chat_scope *env,
              struct chat_value *out);
int chat_call(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *fn,
              struct chat_value *args, size_t n_args, struct chat_scope *env,
              struct chat_value *out);
/* Evaluates call arguments: positional values (spread expanded) and keyword ones. */
int chat_eval_args(struct chat_rx *rx, const struct chat_list *args, struct chat_scope *env,
                   struct chat_value **pos, size_t *n_pos, struct chat_map **kw);
struct chat_scope *chat_scope_new(struct chat_rx *rx, struct chat_scope *parent);
int chat_scope_set(struct chat_rx *rx, struct chat_scope *s, const char *name, size_t len,
                   struct chat_value v);
struct chat_value chat_lookup(struct chat_rx *rx, struct chat_scope *s, const char *name,
                              size_t len);
int chat_member(struct chat_rx *rx, const struct chat_node *at, const struct chat_value *obj,
                const struct chat_value *prop, struct chat_value *out);

/* builtins.c */
int chat_apply_filter(struct chat_rx *rx, const struct chat_node *f, struct chat_value *operand,
                      struct chat_scope *env, struct chat_value *out);
int chat_apply_test(struct chat_rx *rx, const struct chat_node *at, const char *name, size_t len,
                    const struct chat_value *a, const struct chat_value *b, bool has_b, bool *res);
bool chat_test_exists(const char *name, size_t len);
int chat_call_global(struct chat_rx *rx, const struct chat_node *at, int id,
                     struct chat_value *args, size_t n, struct chat_value *out);
int chat_call_method(struct chat_rx *rx, const struct chat_node *at, const struct chat_func *f,
                     struct chat_value *args, size_t n, struct chat_value *out);
/* The builtin property `name` of a string, array or object (methods and length), or
 * V_UNDEF. */
int chat_builtin_prop(struct chat_rx *rx, const struct chat_value *obj, const char *name,
                      size_t len, struct chat_value *out);

#endif
