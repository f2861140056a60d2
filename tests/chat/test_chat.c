/* test_chat.c - unit tests of src/chat: syntax errors and where they are reported, constructs
 * outside the subset, hostile templates (deep nesting, endless loops, runaway output,
 * recursion), the span rule's errors, and chat_tokenize's bookkeeping. What templates render
 * is checked against @huggingface/jinja in jinja_parity.mjs, not here.
 */
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "chat/chat.h"

/* Parses src; returns the template or NULL with err filled. */
static struct chat_template *parse(const char *src, struct fj_err *err)
{
    memset(err, 0, sizeof *err);
    return chat_template_new(src, strlen(src), err);
}

/* Parses and renders src with ctx (JSON text, may be NULL); returns the code, with the text
 * or the error message in out/err. */
static int render(const char *src, const char *ctx, struct fj_buf *out, struct fj_err *err)
{
    struct chat_template *t = parse(src, err);
    if (t == NULL)
        return err->code;
    json_t *j = ctx != NULL ? json_loads(ctx, 0, NULL) : NULL;
    int rc = chat_template_render(t, j, out, err);
    json_decref(j);
    chat_template_free(t);
    return rc;
}

static bool has(const char *s, const char *needle)
{
    return strstr(s, needle) != NULL;
}

static void test_syntax_errors(void)
{
    struct fj_err err;
    static const struct {
        const char *src, *where, *what;
    } cases[] = {
        {"hello\n{% if x %}no end", "chat template 2:", "endif"},
        {"{{ }}", "1:4", "unexpected"},
        {"ab\n  {{ 1 + }}", "2:", "unexpected"},
        {"{% endif %}", "1:", "endif"},
        {"{{ 'unterminated }}", "1:", "unterminated"},
        {"x {# comment", "1:3", "comment"},
        {"{{ @ }}", "1:4", "'@'"},
        {"{% for %}{% endfor %}", "1:8", "unexpected '%}'"},
        {"{{ x | }}", "1:8", "unexpected '}}'"},
        {"{{ x is }}", "1:9", "unexpected '}}'"},
        {"{% for 1 in x %}{% endfor %}", "1:8", "loop variable"},
        {"{{ x | 1 }}", "1:8", "filter name"},
        {"{{ x is 1 }}", "1:9", "test name"},
        {"{{ '\\q' }}", "1:5", "escape"},
        {"{{ f(a=1, 2) }}", "1:", "positional argument follows"},
        {"{% macro f(a, a) %}{% endmacro %}", "1:", "duplicate parameter"},
        {"{{ x[1:2:3:4] }}", "1:", "slice"},
        {"\xc3\xa9 {{ \xc3\xa9 }}", "1:6", "unexpected character"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct chat_template *t = parse(cases[i].src, &err);
        CHECK(t == NULL);
        chat_template_free(t);
        CHECK_EQ_U(err.code, (unsigned long long)FJ_ERR_FORMAT);
        if (!has(err.msg, cases[i].where) || !has(err.msg, cases[i].what))
            fprintf(stderr, "  case %zu: %s\n", i, err.msg);
        CHECK(has(err.msg, cases[i].where));
        CHECK(has(err.msg, cases[i].what));
    }
    /* invalid UTF-8 and oversized templates */
    memset(&err, 0, sizeof err);
    struct chat_template *t = chat_template_new("a\xff", 2, &err);
    CHECK(t == NULL);
    CHECK_EQ_U(err.code, (unsigned long long)FJ_ERR_UTF8);
    size_t big = (1u << 20) + 1;
    char *src = malloc(big);
    memset(src, 'a', big);
    memset(&err, 0, sizeof err);
    t = chat_template_new(src, big, &err);
    CHECK(t == NULL);
    CHECK_EQ_U(err.code, (unsigned long long)FJ_ERR_RANGE);
    free(src);
    /* NULL err is allowed */
    CHECK(chat_template_new("{{", 2, NULL) == NULL);
    chat_template_free(NULL);
}

static void test_unsupported(void)
{
    struct fj_err err;
    static const struct {
        const char *src, *what;
    } parse_cases[] = {
        {"{% include 'x.jinja' %}", "'include'"},    {"{% raw %}x{% endraw %}", "'raw'"},
        {"{% extends 'base' %}", "'extends'"},       {"{% block b %}{% endblock %}", "'block'"},
        {"{% with a = 1 %}{% endwith %}", "'with'"}, {"{{ x | f(1).y }}", "filter 'f'"},
    };
    for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
        struct chat_template *t = parse(parse_cases[i].src, &err);
        CHECK(t == NULL);
        CHECK_EQ_U(err.code, (unsigned long long)FJ_ERR_FORMAT);
        CHECK(has(err.msg, parse_cases[i].what));
    }
    static const struct {
        const char *src, *what;
    } run_cases[] = {
        {"{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}", "sort_keys"},
        {"{{ 'caf\xc3\xa9' | upper }}", "U+00E9"},
        {"{{ '\xc3\x9f'.upper() }}", "U+00DF"},
        {"{{ ['b', '\xc3\x89'] | sort }}", "U+00C9"},
        {"{{ '\xf0\x9f\xa6\x99'[0] }}", "surrogate"},
        {"{{ [1, 2] | map('upper') }}", "map without attribute"},
        {"{{ x | nosuch }}", "unknown filter 'nosuch'"},
        {"{{ 1 is nosuch }}", "unknown test 'nosuch'"},
        {"{{ range('3') }}", "range() with a string"},
        {"{{ [] | first }}", "empty list"},
        {"{{ 'a' < 'b' }}", "'<' between string and string"},
        {"{% break %}", "break outside of a loop"},
    };
    for (size_t i = 0; i < sizeof run_cases / sizeof run_cases[0]; i++) {
        struct fj_buf out = {0};
        int rc = render(run_cases[i].src, "{\"x\": 1}", &out, &err);
        CHECK_EQ_U(rc, (unsigned long long)FJ_ERR_INVALID);
        if (!has(err.msg, run_cases[i].what))
            fprintf(stderr, "  case %zu: %s\n", i, err.msg);
        CHECK(has(err.msg, run_cases[i].what));
        CHECK(has(err.msg, "chat template 1:"));
        fj_buf_free(&out);
    }
}

static void test_runtime_errors(void)
{
    struct fj_err err;
    struct fj_buf out = {0};
    /* raise_exception: the message is the error as it is */
    CHECK_EQ_U(render("{% if messages|length == 0 %}{{ raise_exception('No messages: ' ~ 0) }}"
                      "{% endif %}",
                      "{\"messages\": []}", &out, &err),
               (unsigned long long)FJ_ERR_INVALID);
    CHECK_STR(err.msg, "No messages: 0");
    /* a failed render leaves out as it was */
    fj_buf_append(&out, "kept", 4);
    CHECK(render("abc{{ undefined_thing + 1 }}", NULL, &out, &err) == FJ_ERR_INVALID);
    CHECK_EQ_U(out.len, 4);
    CHECK_STR(out.data, "kept");
    CHECK(has(err.msg, "chat template 1:"));
    CHECK(has(err.msg, "undefined"));
    /* a context that is not an object, and one naming a global */
    CHECK(render("x", "[1]", &out, &err) == FJ_ERR_INVALID);
    CHECK(render("x", "{\"range\": 1}", &out, &err) == FJ_ERR_INVALID);
    CHECK(has(err.msg, "'range'"));
    CHECK(render("x", "{\"namespace\": 1}", &out, &err) == FJ_ERR_INVALID);
    /* success appends */
    CHECK(render("{{ a }}+{{ b|length }}", "{\"a\": \"x\", \"b\": [1, 2]}", &out, &err) == 0);
    CHECK_STR(out.data, "keptx+2");
    fj_buf_free(&out);
}

static void test_hostile(void)
{
    struct fj_err err;
    struct fj_buf out = {0};
    /* deep expression nesting is refused at parse time */
    size_t depth = 5000;
    char *src = malloc(2 * depth + 16);
    char *p = src;
    p += sprintf(p, "{{ ");
    for (size_t i = 0; i < depth; i++)
        *p++ = '(';
    *p++ = '1';
    for (size_t i = 0; i < depth; i++)
        *p++ = ')';
    sprintf(p, " }}");
    struct chat_template *t = parse(src, &err);
    CHECK(t == NULL);
    CHECK_EQ_U(err.code, (unsigned long long)FJ_ERR_RANGE);
    CHECK(has(err.msg, "nested"));
    /* so are deeply nested statements, unary chains and not-chains */
    struct fj_buf b = {0};
    for (size_t i = 0; i < 1000; i++)
        fj_buf_append(&b, "{% if true %}", 13);
    t = parse(b.data, &err);
    CHECK(t == NULL);
    CHECK_EQ_U(err.code, (unsigned long long)FJ_ERR_RANGE);
    b.len = 0;
    for (int k = 0; k < 2; k++) {
        b.len = 0;
        fj_buf_append(&b, "{{ ", 3);
        for (size_t i = 0; i < 3000; i++)
            fj_buf_append(&b, k ? "- " : "not ", k ? 2 : 4);
        fj_buf_append(&b, "1 }}", 4);
        t = parse(b.data, &err);
        CHECK(t == NULL);
        CHECK_EQ_U(err.code, (unsigned long long)FJ_ERR_RANGE);
    }
    fj_buf_free(&b);
    free(src);
    /* loops without end in sight stop at the step or the memory limit */
    CHECK(render("{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% endfor %}"
                 "{% endfor %}",
                 NULL, &out, &err) == FJ_ERR_RANGE);
    CHECK(has(err.msg, "steps") || has(err.msg, "memory"));
    CHECK(render("{% set r = range(5000) %}{% for i in r %}{% for j in r %}{{ 1 if 1 and 1 and 1 }}"
                 "{% endfor %}{% endfor %}",
                 NULL, &out, &err) == FJ_ERR_RANGE);
    CHECK(render("{{ range(1000000000) | length }}", NULL, &out, &err) == FJ_ERR_RANGE);
    /* output that doubles each iteration stops at the size limits */
    CHECK(render("{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(40) %}"
                 "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
                 NULL, &out, &err) == FJ_ERR_RANGE);
    CHECK(render("{% for i in range(100000) %}{{ 'x' * 1 }}{% endfor %}", NULL, &out, &err) ==
          FJ_ERR_INVALID); /* string * int is not supported */
    CHECK(render("{% macro m(s) %}{{ s }}{{ s }}{% endmacro %}{% set ns = namespace(s='x') %}"
                 "{% for i in range(40) %}{% set ns.s = m(ns.s) %}{% endfor %}",
                 NULL, &out, &err) == FJ_ERR_RANGE);
    CHECK(render("{{ 'a'|indent(100000000) }}", NULL, &out, &err) != 0);
    /* unbounded recursion stops at the call depth */
    CHECK(render("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", NULL, &out, &err) ==
          FJ_ERR_RANGE);
    CHECK(has(err.msg, "nested macro calls"));
    CHECK(render("{% macro a() %}{{ caller() }}{% endmacro %}{% macro b() %}{% call a() %}"
                 "{{ b() }}{% endcall %}{% endmacro %}{{ b() }}",
                 NULL, &out, &err) == FJ_ERR_RANGE);
    CHECK_EQ_U(out.len, 0);
    fj_buf_free(&out);
}

static json_t *msgs(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    CHECK(j != NULL);
    return j;
}

static void test_conversation(void)
{
    struct fj_err err = {0};
    struct chat_template *t =
        chat_template_new(chat_chatml_template(), strlen(chat_chatml_template()), &err);
    CHECK(t != NULL);
    json_t *m =
        msgs("[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"U\"},"
             "{\"role\":\"assistant\",\"content\":\"A\"},{\"role\":\"user\",\"content\":"
             "[{\"type\":\"text\",\"text\":\"V\"},{\"type\":\"text\",\"text\":\"W\"}]},"
             "{\"role\":\"assistant\",\"content\":\"B\",\"weight\":0}]");
    struct chat_rendered r = {0};
    CHECK(chat_render_conversation(t, m, NULL, NULL, &r, &err) == 0);
    CHECK_STR(r.text.data, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
                           "<|im_start|>assistant\nA<|im_end|>\n<|im_start|>user\nVW<|im_end|>\n"
                           "<|im_start|>assistant\nB<|im_end|>\n");
    /* spans: in order, no gaps, the assistant turns after their headers */
    CHECK_EQ_U(r.n_spans, 4);
    size_t at = 0;
    for (size_t i = 0; i < r.n_spans; i++) {
        CHECK_EQ_U(r.spans[i].begin, at);
        CHECK(r.spans[i].end > r.spans[i].begin);
        at = r.spans[i].end;
    }
    CHECK_EQ_U(at, r.text.len);
    CHECK(r.n_spans == 4 && r.spans[1].train == 1 && r.spans[3].train == 0);
    CHECK(r.n_spans == 4 && strncmp(r.text.data + r.spans[1].begin, "A<|im_end|>\n",
                                    r.spans[1].end - r.spans[1].begin) == 0);

    /* tokens: one mask byte per id, appended after what is there */
    struct chat_tokens ct = {0};
    struct tok_encoding *enc = tok_encoding_new("cl100k_base", &err);
    CHECK(enc != NULL);
    CHECK(tok_ids_push(&ct.ids, 7) == 0);
    ct.mask = malloc(1);
    ct.mask[0] = 1;
    ct.mask_cap = 1;
    CHECK(chat_tokenize(&r, enc, &ct, &err) == 0);
    CHECK(ct.ids.len > 10);
    CHECK(ct.mask_cap >= ct.ids.len);
    CHECK_EQ_U(ct.ids.data[0], 7);
    CHECK_EQ_U(ct.mask[0], 1);
    size_t ones = 0;
    for (size_t i = 1; i < ct.ids.len; i++)
        ones += ct.mask[i];
    CHECK(ones >= 2); /* "A", "<|im_end|>" as text, "\n" at least */
    chat_tokens_free(&ct);
    chat_tokens_free(NULL);
    tok_encoding_free(enc);
    chat_rendered_free(&r);
    chat_rendered_free(NULL);
    json_decref(m);

    /* bad weight, bad content parts, not an array */
    m = msgs("[{\"role\":\"user\",\"content\":\"U\"},{\"role\":\"assistant\",\"content\":\"A\","
             "\"weight\":2}]");
    CHECK(chat_render_conversation(t, m, NULL, NULL, &r, &err) == FJ_ERR_INVALID);
    CHECK(has(err.msg, "weight"));
    CHECK(r.n_spans == 0 && r.text.len == 0);
    json_decref(m);
    memset(&err, 0, sizeof err);
    m = msgs("[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]");
    CHECK(chat_render_conversation(t, m, NULL, NULL, &r, &err) == FJ_ERR_INVALID);
    CHECK(has(err.msg, "content part"));
    json_decref(m);
    memset(&err, 0, sizeof err);
    m = msgs("{\"role\":\"user\"}");
    CHECK(chat_render_conversation(t, m, NULL, NULL, &r, &err) == FJ_ERR_INVALID);
    json_decref(m);
    /* no assistant message: one span, not trained */
    memset(&err, 0, sizeof err);
    m = msgs("[{\"role\":\"user\",\"content\":\"U\"}]");
    CHECK(chat_render_conversation(t, m, NULL, NULL, &r, &err) == 0);
    CHECK(r.n_spans == 1 && r.spans[0].train == 0 && r.spans[0].end == r.text.len);
    chat_rendered_free(&r);
    json_decref(m);
    chat_template_free(t);

    /* templates that are not prefix-stable are refused, naming the message */
    static const char *const unstable[] = {
        /* the generation prompt is not how the assistant turn starts */
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}<bot>{% endif %}",
        /* the last message renders differently from earlier ones */
        "{% for m in messages %}{{ m.content }}{% if loop.last %}!{% endif %}{% endfor %}",
    };
    for (size_t i = 0; i < 2; i++) {
        memset(&err, 0, sizeof err);
        t = chat_template_new(unstable[i], strlen(unstable[i]), &err);
        CHECK(t != NULL);
        m = msgs(
            "[{\"role\":\"user\",\"content\":\"U\"},{\"role\":\"assistant\",\"content\":\"A\"},"
            "{\"role\":\"user\",\"content\":\"V\"}]");
        CHECK(chat_render_conversation(t, m, NULL, NULL, &r, &err) == FJ_ERR_INVALID);
        CHECK(has(err.msg, "prefix-stable"));
        CHECK(has(err.msg, "1"));
        json_decref(m);
        chat_template_free(t);
    }
}

int main(void)
{
    RUN(test_syntax_errors);
    RUN(test_unsupported);
    RUN(test_runtime_errors);
    RUN(test_hostile);
    RUN(test_conversation);
    return TEST_DONE();
}
