/* example.c - one line of a chat fine-tuning file: the format rules and the lab's token count.
 *
 * The rules are OpenAI's for chat fine-tuning data (docs/data-format.md). The count is the
 * lab's notebook: for each message 3 tokens plus the tokens of every string value (role,
 * content, name, ...) plus 1 for a name; plus 3 for the reply's priming. Values that are not
 * strings (weight, tool_calls) are not counted: the notebook would stop with a TypeError
 * there instead. Assistant tokens are the tokens of the assistant messages' content.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/utf8.h"
#include "data/data.h"

int data_problems_add(struct data_problems *p, uint64_t line, uint32_t column,
                      enum data_severity severity, const char *fmt, ...)
{
    if (severity == DATA_ERROR)
        p->errors++;
    else
        p->warnings++;
    if (p->len >= p->limit)
        return 0;
    if (p->len == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        if (cap > p->limit)
            cap = p->limit;
        struct data_problem *q = realloc(p->items, cap * sizeof *q);
        if (q == NULL)
            return FJ_ERR_NOMEM;
        p->items = q;
        p->cap = cap;
    }
    struct data_problem *d = &p->items[p->len++];
    d->line = line;
    d->column = column;
    d->severity = severity;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->message, sizeof d->message, fmt, ap);
    va_end(ap);
    return 0;
}

int data_problems_merge(struct data_problems *dst, const struct data_problems *src)
{
    for (size_t i = 0; i < src->len; i++) {
        const struct data_problem *s = &src->items[i];
        if (data_problems_add(dst, s->line, s->column, s->severity, "%s", s->message) != 0)
            return FJ_ERR_NOMEM;
    }
    /* Problems src counted but did not keep are counted here too. */
    uint64_t kept_err = 0, kept_warn = 0;
    for (size_t i = 0; i < src->len; i++)
        *(src->items[i].severity == DATA_ERROR ? &kept_err : &kept_warn) += 1;
    dst->errors += src->errors - kept_err;
    dst->warnings += src->warnings - kept_warn;
    return 0;
}

void data_problems_free(struct data_problems *p)
{
    if (p == NULL)
        return;
    free(p->items);
    p->items = NULL;
    p->len = p->cap = 0;
}

static const char *const roles[] = {"system", "developer", "user", "assistant",
                                    "tool",   "function",  NULL};
static const char *const message_keys[] = {"role",          "content",    "name",
                                           "weight",        "tool_calls", "tool_call_id",
                                           "function_call", "refusal",    NULL};

static bool in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

struct line_ctx {
    const struct data_check_opts *opts;
    uint64_t line;
    struct data_problems *probs;
    struct fj_err *err;
    bool special_reported;
};

#define PROBLEM(c, sev, ...)                                                                       \
    do {                                                                                           \
        if (data_problems_add((c)->probs, (c)->line, 0, (sev), __VA_ARGS__) != 0)                  \
            return fj_err_set((c)->err, FJ_ERR_NOMEM, "out of memory");                            \
    } while (0)

/* Tokens of one string value, the lab's way. Special-token text is reported once per line
 * when it is not allowed, and then counted as ordinary text so the numbers stay defined. */
static int count_string(struct line_ctx *c, const json_t *s, const char *where, size_t i,
                        uint64_t *n)
{
    size_t count;
    struct fj_err e = {0};
    int rc = tok_count(c->opts->enc, json_string_value(s), json_string_length(s), c->opts->special,
                       &count, &e);
    if (rc == FJ_ERR_SPECIAL) {
        if (!c->special_reported)
            PROBLEM(c, DATA_ERROR, "messages[%zu].%s: %s (tiktoken's encode() refuses it)", i,
                    where, e.msg);
        c->special_reported = true;
        rc = tok_count(c->opts->enc, json_string_value(s), json_string_length(s),
                       TOK_SPECIAL_AS_TEXT, &count, &e);
    }
    if (rc != 0)
        return fj_err_set(c->err, rc, "%s", e.msg);
    *n = count;
    return 0;
}

static int check_message(struct line_ctx *c, const json_t *m, size_t i, bool *is_assistant,
                         bool *weighted, struct data_line_result *res)
{
    if (!json_is_object(m)) {
        PROBLEM(c, DATA_ERROR, "messages[%zu] is %s, not an object", i, json_type_name(m));
        return 0;
    }
    const json_t *role = json_object_get(m, "role");
    const char *r = json_is_string(role) ? json_string_value(role) : NULL;
    if (role == NULL)
        PROBLEM(c, DATA_ERROR, "messages[%zu] has no \"role\"", i);
    else if (r == NULL)
        PROBLEM(c, DATA_ERROR, "messages[%zu].role is %s, not a string", i, json_type_name(role));
    else if (!in_list(r, roles))
        PROBLEM(c, DATA_ERROR,
                "messages[%zu].role \"%.40s\" is not one of system, developer, user, assistant, "
                "tool, function",
                i, r);
    *is_assistant = r != NULL && strcmp(r, "assistant") == 0;

    const json_t *content = json_object_get(m, "content");
    bool has_calls =
        json_object_get(m, "tool_calls") != NULL || json_object_get(m, "function_call") != NULL;
    if (content == NULL || json_is_null(content)) {
        if (!(*is_assistant && has_calls))
            PROBLEM(c, DATA_ERROR, "messages[%zu] has no \"content\"", i);
    } else if (!json_is_string(content)) {
        PROBLEM(c, DATA_ERROR, "messages[%zu].content is %s, not a string", i,
                json_type_name(content));
    }
    const json_t *name = json_object_get(m, "name");
    if (name != NULL && !json_is_string(name))
        PROBLEM(c, DATA_ERROR, "messages[%zu].name is %s, not a string", i, json_type_name(name));
    const json_t *tool_calls = json_object_get(m, "tool_calls");
    if (tool_calls != NULL && !(*is_assistant && json_is_array(tool_calls)))
        PROBLEM(c, DATA_ERROR, "messages[%zu].tool_calls must be a list on an assistant message",
                i);

    const json_t *weight = json_object_get(m, "weight");
    *weighted = *is_assistant;
    if (weight != NULL) {
        double w = json_is_number(weight) ? json_number_value(weight) : -1;
        if (!*is_assistant)
            PROBLEM(c, DATA_ERROR, "messages[%zu] has a \"weight\"; only assistant messages may",
                    i);
        else if (w != 0 && w != 1)
            PROBLEM(c, DATA_ERROR, "messages[%zu].weight must be 0 or 1", i);
        else
            *weighted = w == 1;
    }

    /* The lab's count: 3 per message, every string value, 1 more for a name. */
    res->total += 3;
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)m, key, value)
    {
        if (!in_list(key, message_keys))
            PROBLEM(c, DATA_WARNING, "messages[%zu] has an unknown key \"%.40s\" (ignored)", i,
                    key);
        if (!json_is_string(value))
            continue;
        uint64_t n = 0;
        int rc = count_string(c, value, key, i, &n);
        if (rc != 0)
            return rc;
        res->total += n;
        if (strcmp(key, "name") == 0)
            res->total += 1;
        if (*is_assistant && strcmp(key, "content") == 0)
            res->assistant += n;
    }
    return 0;
}

static int check_example(struct line_ctx *c, const json_t *root, struct data_line_result *res)
{
    const json_t *messages = json_object_get(root, "messages");
    if (messages == NULL) {
        PROBLEM(c, DATA_ERROR, "no \"messages\" list (a chat example is {\"messages\": [...]})");
        return 0;
    }
    if (!json_is_array(messages)) {
        PROBLEM(c, DATA_ERROR, "\"messages\" is %s, not a list", json_type_name(messages));
        return 0;
    }
    res->counted = true;
    size_t n = json_array_size(messages);
    if (n == 0)
        PROBLEM(c, DATA_ERROR, "\"messages\" is empty");
    size_t assistants = 0, weighted = 0;
    for (size_t i = 0; i < n; i++) {
        bool is_assistant = false, w = false;
        int rc = check_message(c, json_array_get(messages, i), i, &is_assistant, &w, res);
        if (rc != 0)
            return rc;
        assistants += is_assistant;
        weighted += w;
    }
    res->total += 3;
    if (n > 0 && assistants == 0)
        PROBLEM(c, DATA_ERROR, "no assistant message: there is nothing to learn from");
    else if (assistants > 0 && weighted == 0)
        PROBLEM(c, DATA_WARNING, "every assistant message has weight 0: nothing to learn from");
    if (c->opts->context > 0 && res->total > c->opts->context)
        PROBLEM(c, DATA_WARNING,
                "%llu tokens, more than the context of %llu: the example will be truncated",
                (unsigned long long)res->total, (unsigned long long)c->opts->context);
    return 0;
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

int data_check_line(const char *text, size_t len, uint64_t line, const struct data_check_opts *opts,
                    struct data_line_result *res, struct data_problems *probs, struct fj_err *err)
{
    struct line_ctx c = {opts, line, probs, err, false};
    memset(res, 0, sizeof *res);
    if (blank(text, len)) {
        PROBLEM(&c, DATA_WARNING, "blank line (skipped)");
        return 0;
    }
    size_t bad;
    if (!fj_utf8_valid(text, len, &bad)) {
        if (data_problems_add(probs, line, (uint32_t)fj_utf8_count(text, bad) + 1, DATA_ERROR,
                              "invalid UTF-8 (byte 0x%02X at byte offset %zu)",
                              (unsigned char)text[bad], bad) != 0)
            return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        return 0;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (root == NULL) {
        int col = jerr.column > 0 ? jerr.column : 1;
        if (data_problems_add(probs, line, (uint32_t)col, DATA_ERROR, "invalid JSON: %s",
                              jerr.text) != 0)
            return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        return 0;
    }
    int rc = 0;
    if (!json_is_object(root)) {
        if (data_problems_add(probs, line, 0, DATA_ERROR, "expected a JSON object, found %s",
                              json_type_name(root)) != 0)
            rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    } else {
        rc = check_example(&c, root, res);
    }
    json_decref(root);
    return rc;
}
