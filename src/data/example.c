/* example.c - one line of a fine-tuning file: the format rules and the lab's token count.
 *
 * The rules are OpenAI's for fine-tuning data (docs/data-format.md): chat, prompt/completion
 * and preference (DPO) examples, told apart by their keys. The count is the lab's notebook:
 * for each message 3 tokens plus the tokens of every string value (role, content, name, ...)
 * plus 1 for a name; plus 3 for the reply's priming. Values that are not
 * strings (weight, tool_calls) are not counted: the notebook would stop with a TypeError
 * there instead. Assistant tokens are the tokens of the assistant messages' content. The
 * other formats count the same way where they have messages (a preference example's input
 * and preferred output); a prompt/completion example is the tokens of its two strings.
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
/* Top-level keys of each format, and of a preference example's "input". */
static const char *const chat_keys[] = {"messages", "tools", "functions", "parallel_tool_calls",
                                        NULL};
static const char *const completion_keys[] = {"prompt", "completion", NULL};
static const char *const preference_keys[] = {"input", "preferred_output", "non_preferred_output",
                                              NULL};
static const char *const input_keys[] = {"messages", "tools", "functions", "parallel_tool_calls",
                                         NULL};

const char *data_format_name(enum data_format format)
{
    switch (format) {
    case DATA_FORMAT_CHAT: return "chat";
    case DATA_FORMAT_COMPLETION: return "prompt/completion";
    case DATA_FORMAT_PREFERENCE: return "preference";
    }
    return "unknown";
}

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

/* Tokens of one string value, the lab's way; `where` names it in a problem ("prompt",
 * "messages[1].content"). Special-token text is reported once per line when it is not
 * allowed, and then counted as ordinary text so the numbers stay defined. */
static int count_string(struct line_ctx *c, const json_t *s, const char *where, uint64_t *n)
{
    size_t count;
    struct fj_err e = {0};
    int rc = tok_count(c->opts->enc, json_string_value(s), json_string_length(s), c->opts->special,
                       &count, &e);
    if (rc == FJ_ERR_SPECIAL) {
        if (!c->special_reported)
            PROBLEM(c, DATA_ERROR, "%s: %s (tiktoken's encode() refuses it)", where, e.msg);
        c->special_reported = true;
        rc = tok_count(c->opts->enc, json_string_value(s), json_string_length(s),
                       TOK_SPECIAL_AS_TEXT, &count, &e);
    }
    if (rc != 0)
        return fj_err_set(c->err, rc, "%s", e.msg);
    *n = count;
    return 0;
}

/* What check_message found in one message. */
struct message_info {
    bool is_assistant;
    bool weighted;           /* an assistant message with weight 1 (the default) */
    uint64_t total;          /* the lab's count of the message: 3 + string values + 1 per name */
    uint64_t content_tokens; /* tokens of its content when that is a string */
};

/* Checks list[i], named "<list>[i]" in problems. With only_role, the role must be that one and
 * the content a string even beside tool calls (a preference output). */
static int check_message(struct line_ctx *c, const json_t *m, const char *list, size_t i,
                         const char *only_role, struct message_info *mi)
{
    char at[64];
    snprintf(at, sizeof at, "%s[%zu]", list, i);
    memset(mi, 0, sizeof *mi);
    if (!json_is_object(m)) {
        PROBLEM(c, DATA_ERROR, "%s is %s, not an object", at, json_type_name(m));
        return 0;
    }
    const json_t *role = json_object_get(m, "role");
    const char *r = json_is_string(role) ? json_string_value(role) : NULL;
    if (role == NULL)
        PROBLEM(c, DATA_ERROR, "%s has no \"role\"", at);
    else if (r == NULL)
        PROBLEM(c, DATA_ERROR, "%s.role is %s, not a string", at, json_type_name(role));
    else if (only_role != NULL && strcmp(r, only_role) != 0)
        PROBLEM(c, DATA_ERROR, "%s.role must be \"%s\"", at, only_role);
    else if (!in_list(r, roles))
        PROBLEM(c, DATA_ERROR,
                "%s.role \"%.40s\" is not one of system, developer, user, assistant, tool, "
                "function",
                at, r);
    mi->is_assistant = r != NULL && strcmp(r, "assistant") == 0;

    const json_t *content = json_object_get(m, "content");
    bool has_calls =
        json_object_get(m, "tool_calls") != NULL || json_object_get(m, "function_call") != NULL;
    if (content == NULL || json_is_null(content)) {
        if (!(mi->is_assistant && has_calls && only_role == NULL))
            PROBLEM(c, DATA_ERROR, "%s has no \"content\"", at);
    } else if (!json_is_string(content)) {
        PROBLEM(c, DATA_ERROR, "%s.content is %s, not a string", at, json_type_name(content));
    }
    const json_t *name = json_object_get(m, "name");
    if (name != NULL && !json_is_string(name))
        PROBLEM(c, DATA_ERROR, "%s.name is %s, not a string", at, json_type_name(name));
    const json_t *tool_calls = json_object_get(m, "tool_calls");
    if (tool_calls != NULL && !(mi->is_assistant && json_is_array(tool_calls)))
        PROBLEM(c, DATA_ERROR, "%s.tool_calls must be a list on an assistant message", at);

    const json_t *weight = json_object_get(m, "weight");
    mi->weighted = mi->is_assistant;
    if (weight != NULL) {
        double w = json_is_number(weight) ? json_number_value(weight) : -1;
        if (!mi->is_assistant)
            PROBLEM(c, DATA_ERROR, "%s has a \"weight\"; only assistant messages may", at);
        else if (w != 0 && w != 1)
            PROBLEM(c, DATA_ERROR, "%s.weight must be 0 or 1", at);
        else
            mi->weighted = w == 1;
    }

    /* The lab's count: 3 per message, every string value, 1 more for a name. */
    mi->total = 3;
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)m, key, value)
    {
        if (!in_list(key, message_keys))
            PROBLEM(c, DATA_WARNING, "%s has an unknown key \"%.40s\" (ignored)", at, key);
        if (!json_is_string(value))
            continue;
        char where[112];
        snprintf(where, sizeof where, "%s.%.40s", at, key);
        uint64_t n = 0;
        int rc = count_string(c, value, where, &n);
        if (rc != 0)
            return rc;
        mi->total += n;
        if (strcmp(key, "name") == 0)
            mi->total += 1;
        if (strcmp(key, "content") == 0)
            mi->content_tokens = n;
    }
    return 0;
}

/* Checks the messages list `v` (chat's "messages", a preference example's "input.messages"):
 * a non-empty list of valid messages. Adds the lab's count of every message to res->total,
 * and, with count_assistant, the assistant messages' content to res->assistant. Returns
 * through *is_list whether v is a list at all. */
static int check_messages(struct line_ctx *c, const json_t *v, const char *name,
                          bool count_assistant, struct data_line_result *res, size_t *assistants,
                          size_t *weighted, bool *is_list)
{
    *is_list = json_is_array(v);
    if (!*is_list) {
        PROBLEM(c, DATA_ERROR, "\"%s\" is %s, not a list", name, json_type_name(v));
        return 0;
    }
    size_t n = json_array_size(v);
    if (n == 0)
        PROBLEM(c, DATA_ERROR, "\"%s\" is empty", name);
    for (size_t i = 0; i < n; i++) {
        struct message_info mi;
        int rc = check_message(c, json_array_get(v, i), name, i, NULL, &mi);
        if (rc != 0)
            return rc;
        res->total += mi.total;
        if (count_assistant && mi.is_assistant)
            res->assistant += mi.content_tokens;
        *assistants += mi.is_assistant;
        *weighted += mi.weighted;
    }
    return 0;
}

/* The keys beside the messages that chat examples and preference inputs share: "tools" and
 * the legacy "functions" are lists of objects, "parallel_tool_calls" a boolean. Any other key
 * is a warning. `prefix` is "" or "input." and names the keys in problems. */
static int check_chat_extras(struct line_ctx *c, const json_t *obj, const char *prefix,
                             const char *const *known, const char *owner)
{
    static const char *const lists[] = {"tools", "functions"};
    for (size_t k = 0; k < 2; k++) {
        const json_t *l = json_object_get(obj, lists[k]);
        if (l == NULL)
            continue;
        if (!json_is_array(l)) {
            PROBLEM(c, DATA_ERROR, "\"%s%s\" is %s, not a list", prefix, lists[k],
                    json_type_name(l));
            continue;
        }
        for (size_t i = 0; i < json_array_size(l); i++) {
            const json_t *t = json_array_get(l, i);
            if (!json_is_object(t))
                PROBLEM(c, DATA_ERROR, "%s%s[%zu] is %s, not an object", prefix, lists[k], i,
                        json_type_name(t));
        }
    }
    const json_t *p = json_object_get(obj, "parallel_tool_calls");
    if (p != NULL && !json_is_boolean(p))
        PROBLEM(c, DATA_ERROR, "\"%sparallel_tool_calls\" is %s, not a boolean", prefix,
                json_type_name(p));
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)obj, key, value)
    {
        if (!in_list(key, known))
            PROBLEM(c, DATA_WARNING, "%s has an unknown key \"%.40s\" (ignored)", owner, key);
    }
    return 0;
}

static int warn_unknown_keys(struct line_ctx *c, const json_t *obj, const char *const *known)
{
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)obj, key, value)
    {
        if (!in_list(key, known))
            PROBLEM(c, DATA_WARNING, "the example has an unknown key \"%.40s\" (ignored)", key);
    }
    return 0;
}

/* {"messages": [...], "tools"?: [...], "parallel_tool_calls"?: bool} */
static int check_chat(struct line_ctx *c, const json_t *root, struct data_line_result *res)
{
    size_t assistants = 0, weighted = 0;
    bool is_list;
    int rc = check_messages(c, json_object_get(root, "messages"), "messages", true, res,
                            &assistants, &weighted, &is_list);
    if (rc != 0)
        return rc;
    if (is_list) {
        res->counted = true;
        res->total += 3;
        if (json_array_size(json_object_get(root, "messages")) > 0 && assistants == 0)
            PROBLEM(c, DATA_ERROR, "no assistant message: there is nothing to learn from");
        else if (assistants > 0 && weighted == 0)
            PROBLEM(c, DATA_WARNING, "every assistant message has weight 0: nothing to learn from");
    }
    return check_chat_extras(c, root, "", chat_keys, "the example");
}

/* One string field of a prompt/completion example; *n its tokens. Returns 0 with *ok false
 * when it is missing or not a string. */
static int check_text(struct line_ctx *c, const json_t *root, const char *key, bool *ok,
                      uint64_t *n)
{
    const json_t *v = json_object_get(root, key);
    *ok = false;
    *n = 0;
    if (v == NULL) {
        PROBLEM(c, DATA_ERROR,
                "no \"%s\" (a prompt/completion example is {\"prompt\": \"...\", "
                "\"completion\": \"...\"})",
                key);
        return 0;
    }
    if (!json_is_string(v)) {
        PROBLEM(c, DATA_ERROR, "\"%s\" is %s, not a string", key, json_type_name(v));
        return 0;
    }
    *ok = true;
    return count_string(c, v, key, n);
}

/* {"prompt": "...", "completion": "..."}: the prompt may be empty, the completion not. */
static int check_completion(struct line_ctx *c, const json_t *root, struct data_line_result *res)
{
    bool prompt_ok, completion_ok;
    uint64_t prompt_n, completion_n;
    int rc = check_text(c, root, "prompt", &prompt_ok, &prompt_n);
    if (rc == 0)
        rc = check_text(c, root, "completion", &completion_ok, &completion_n);
    if (rc != 0)
        return rc;
    if (completion_ok && json_string_length(json_object_get(root, "completion")) == 0)
        PROBLEM(c, DATA_ERROR, "\"completion\" is empty: there is nothing to learn from");
    if (prompt_ok && completion_ok) {
        res->counted = true;
        res->total = prompt_n + completion_n;
        res->assistant = completion_n;
    }
    return warn_unknown_keys(c, root, completion_keys);
}

/* preferred_output or non_preferred_output: a list of exactly one assistant message with
 * string content. With count, its messages enter the line's counts. Returns through *is_list
 * whether the field is a list. */
static int check_output(struct line_ctx *c, const json_t *root, const char *name, bool count,
                        struct data_line_result *res, bool *is_list)
{
    const json_t *v = json_object_get(root, name);
    *is_list = json_is_array(v);
    if (v == NULL) {
        PROBLEM(c, DATA_ERROR, "no \"%s\" (a list of one assistant message)", name);
        return 0;
    }
    if (!*is_list) {
        PROBLEM(c, DATA_ERROR, "\"%s\" is %s, not a list", name, json_type_name(v));
        return 0;
    }
    size_t n = json_array_size(v);
    if (n != 1)
        PROBLEM(c, DATA_ERROR, "\"%s\" has %zu messages; it must have exactly one, the assistant's",
                name, n);
    for (size_t i = 0; i < n; i++) {
        struct message_info mi;
        int rc = check_message(c, json_array_get(v, i), name, i, "assistant", &mi);
        if (rc != 0)
            return rc;
        if (count) {
            res->total += mi.total;
            res->assistant += mi.content_tokens;
        }
    }
    return 0;
}

/* {"input": {"messages": [...], "tools"?: [...]}, "preferred_output": [assistant],
 *  "non_preferred_output": [assistant]} */
static int check_preference(struct line_ctx *c, const json_t *root, struct data_line_result *res)
{
    const json_t *input = json_object_get(root, "input");
    bool input_list = false;
    if (input == NULL) {
        PROBLEM(c, DATA_ERROR,
                "no \"input\" (a preference example is {\"input\": {\"messages\": [...]}, "
                "\"preferred_output\": [...], \"non_preferred_output\": [...]})");
    } else if (!json_is_object(input)) {
        PROBLEM(c, DATA_ERROR, "\"input\" is %s, not an object", json_type_name(input));
    } else {
        const json_t *messages = json_object_get(input, "messages");
        size_t assistants = 0, weighted = 0;
        int rc = 0;
        if (messages == NULL)
            PROBLEM(c, DATA_ERROR, "no \"input.messages\" list");
        else
            rc = check_messages(c, messages, "input.messages", false, res, &assistants, &weighted,
                                &input_list);
        if (rc == 0)
            rc = check_chat_extras(c, input, "input.", input_keys, "input");
        if (rc != 0)
            return rc;
    }
    bool preferred_list, non_preferred_list;
    int rc = check_output(c, root, "preferred_output", true, res, &preferred_list);
    if (rc == 0)
        rc = check_output(c, root, "non_preferred_output", false, res, &non_preferred_list);
    if (rc == 0)
        rc = warn_unknown_keys(c, root, preference_keys);
    if (rc != 0)
        return rc;
    res->total += 3;
    res->counted = input_list && preferred_list;
    if (!res->counted)
        res->total = res->assistant = 0;
    return 0;
}

/* The format is told by its keys, in this order: "messages" is chat; "prompt" or "completion"
 * prompt/completion; "input", "preferred_output" or "non_preferred_output" preference. */
static bool detect_format(const json_t *root, enum data_format *format)
{
    if (json_object_get(root, "messages") != NULL)
        *format = DATA_FORMAT_CHAT;
    else if (json_object_get(root, "prompt") != NULL || json_object_get(root, "completion") != NULL)
        *format = DATA_FORMAT_COMPLETION;
    else if (json_object_get(root, "input") != NULL ||
             json_object_get(root, "preferred_output") != NULL ||
             json_object_get(root, "non_preferred_output") != NULL)
        *format = DATA_FORMAT_PREFERENCE;
    else
        return false;
    return true;
}

static int check_example(struct line_ctx *c, const json_t *root, struct data_line_result *res)
{
    if (!detect_format(root, &res->format)) {
        PROBLEM(c, DATA_ERROR,
                "no \"messages\" list (a chat example is {\"messages\": [...]}; "
                "prompt/completion {\"prompt\": ..., \"completion\": ...} and preference "
                "{\"input\": ..., \"preferred_output\": ..., \"non_preferred_output\": ...} "
                "examples are accepted too)");
        return 0;
    }
    res->recognised = true;
    int rc = 0;
    switch (res->format) {
    case DATA_FORMAT_CHAT: rc = check_chat(c, root, res); break;
    case DATA_FORMAT_COMPLETION: rc = check_completion(c, root, res); break;
    case DATA_FORMAT_PREFERENCE: rc = check_preference(c, root, res); break;
    }
    if (rc != 0)
        return rc;
    if (res->counted && c->opts->context > 0 && res->total > c->opts->context)
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
