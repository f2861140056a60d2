/* conversation.c - conversations rendered for training: the text, the byte spans that count
 * in the loss, and their tokens with a 0/1 mask (chat.h states the span rule;
 * docs/chat-templates.md explains it; tests/chat/jinja_parity.mjs mirrors it with
 * @huggingface/jinja). Also the ChatML template forja uses for models without one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat_internal.h"

/* The ChatML template as published with the format (one <|im_start|>role\ncontent<|im_end|>
 * block per message; the generation prompt opens an assistant block). */
static const char CHATML[] =
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const char *chat_chatml_template(void)
{
    return CHATML;
}

void chat_rendered_free(struct chat_rendered *r)
{
    if (r == NULL)
        return;
    fj_buf_free(&r->text);
    free(r->spans);
    memset(r, 0, sizeof *r);
}

void chat_tokens_free(struct chat_tokens *ct)
{
    if (ct == NULL)
        return;
    tok_ids_free(&ct->ids);
    free(ct->mask);
    memset(ct, 0, sizeof *ct);
}

/* Content arrays of text parts become their joined text; other messages stay as they are.
 * Returns a new array (references to unchanged messages are shared). */
static json_t *normalize(const json_t *messages, struct fj_err *err)
{
    if (!json_is_array(messages)) {
        fj_err_set(err, FJ_ERR_INVALID, "chat: messages must be an array");
        return NULL;
    }
    json_t *out = json_array();
    if (out == NULL) {
        fj_err_set(err, FJ_ERR_NOMEM, "chat: out of memory");
        return NULL;
    }
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        if (!json_is_object(m)) {
            fj_err_set(err, FJ_ERR_INVALID, "chat: message %zu is not an object", i);
            json_decref(out);
            return NULL;
        }
        json_t *content = json_object_get(m, "content");
        json_t *msg = json_incref(m);
        if (json_is_array(content)) {
            struct fj_buf text = {0};
            size_t k;
            json_t *part;
            int rc = 0;
            json_array_foreach(content, k, part)
            {
                const char *type = json_string_value(json_object_get(part, "type"));
                json_t *t = json_object_get(part, "text");
                if (!json_is_object(part) || type == NULL || strcmp(type, "text") != 0 ||
                    !json_is_string(t)) {
                    fj_err_set(err, FJ_ERR_INVALID,
                               "chat: message %zu: content part %zu is not "
                               "{\"type\": \"text\", \"text\": string}",
                               i, k);
                    rc = FJ_ERR_INVALID;
                    break;
                }
                if (fj_buf_append(&text, json_string_value(t), json_string_length(t)) != 0) {
                    fj_err_set(err, FJ_ERR_NOMEM, "chat: out of memory");
                    rc = FJ_ERR_NOMEM;
                    break;
                }
            }
            json_decref(msg);
            msg = rc == 0 ? json_copy(m) : NULL;
            if (msg != NULL &&
                json_object_set_new(msg, "content",
                                    json_stringn(text.data ? text.data : "", text.len)) != 0) {
                json_decref(msg);
                msg = NULL;
            }
            fj_buf_free(&text);
            if (msg == NULL) {
                if (rc == 0)
                    fj_err_set(err, FJ_ERR_NOMEM, "chat: out of memory");
                json_decref(out);
                return NULL;
            }
        }
        if (json_array_append_new(out, msg) != 0) {
            fj_err_set(err, FJ_ERR_NOMEM, "chat: out of memory");
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* R(k, g): the template with messages[0..k) and add_generation_prompt g. */
static int render_prefix(const struct chat_template *t, const json_t *messages, size_t k, int gen,
                         const char *bos, const char *eos, struct fj_buf *out, struct fj_err *err)
{
    json_t *ctx = json_object();
    json_t *sub = json_array();
    bool ok = ctx != NULL && sub != NULL;
    for (size_t i = 0; ok && i < k; i++)
        ok = json_array_append(sub, json_array_get(messages, i)) == 0;
    if (!ok)
        json_decref(sub);
    /* json_object_set_new takes the value, even when it fails */
    ok = ok && json_object_set_new(ctx, "messages", sub) == 0;
    ok = ok && json_object_set_new(ctx, "add_generation_prompt", json_boolean(gen)) == 0;
    ok = ok && (bos == NULL || json_object_set_new(ctx, "bos_token", json_string(bos)) == 0);
    ok = ok && (eos == NULL || json_object_set_new(ctx, "eos_token", json_string(eos)) == 0);
    if (!ok) {
        json_decref(ctx);
        return fj_err_set(err, FJ_ERR_NOMEM, "chat: out of memory");
    }
    int rc;
    out->len = 0;
    rc = chat_template_render(t, ctx, out, err);
    json_decref(ctx);
    return rc;
}

static size_t common_prefix(const struct fj_buf *a, const struct fj_buf *b)
{
    size_t n = a->len < b->len ? a->len : b->len, i = 0;
    while (i < n && a->data[i] == b->data[i])
        i++;
    return i;
}

static bool is_prefix(const struct fj_buf *p, const struct fj_buf *s)
{
    return p->len <= s->len && (p->len == 0 || memcmp(p->data, s->data, p->len) == 0);
}

static int push_span(struct chat_rendered *r, size_t *cap, size_t b, size_t e, int train,
                     struct fj_err *err)
{
    if (e <= b)
        return 0;
    if (r->n_spans == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        struct chat_span *s = realloc(r->spans, c * sizeof *s);
        if (s == NULL)
            return fj_err_set(err, FJ_ERR_NOMEM, "chat: out of memory");
        r->spans = s;
        *cap = c;
    }
    r->spans[r->n_spans].begin = b;
    r->spans[r->n_spans].end = e;
    r->spans[r->n_spans].train = train;
    r->n_spans++;
    return 0;
}

/* weight absent or 1: 1; 0: 0; else an error. */
static int message_weight(const json_t *m, size_t i, int *train, struct fj_err *err)
{
    json_t *w = json_object_get(m, "weight");
    *train = 1;
    if (w == NULL)
        return 0;
    if (json_is_number(w) && (json_number_value(w) == 0 || json_number_value(w) == 1)) {
        *train = json_number_value(w) == 1;
        return 0;
    }
    return fj_err_set(err, FJ_ERR_INVALID, "chat: message %zu: weight must be 0 or 1", i);
}

int chat_render_conversation(const struct chat_template *t, const json_t *messages,
                             const char *bos_token, const char *eos_token,
                             struct chat_rendered *out, struct fj_err *err)
{
    struct fj_err local = {0};
    if (err == NULL)
        err = &local;
    memset(out, 0, sizeof *out);
    json_t *msgs = normalize(messages, err);
    if (msgs == NULL)
        return err->code;
    size_t n = json_array_size(msgs), cap = 0, pos = 0;
    struct fj_buf p = {0}, q = {0};
    int rc = render_prefix(t, msgs, n, 0, bos_token, eos_token, &out->text, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role == NULL || strcmp(role, "assistant") != 0)
            continue;
        int train;
        if ((rc = message_weight(m, i, &train, err)) != 0 ||
            (rc = render_prefix(t, msgs, i, 1, bos_token, eos_token, &p, err)) != 0 ||
            (rc = render_prefix(t, msgs, i + 1, 0, bos_token, eos_token, &q, err)) != 0)
            break;
        if (!is_prefix(&p, &q)) {
            rc = fj_err_set(err, FJ_ERR_INVALID,
                            "chat template is not prefix-stable: for assistant message %zu, "
                            "messages[0..%zu) rendered with add_generation_prompt=true is not a "
                            "prefix of messages[0..%zu] rendered without it (they part at byte "
                            "%zu)",
                            i, i, i, common_prefix(&p, &q));
            break;
        }
        if (!is_prefix(&q, &out->text)) {
            rc = fj_err_set(err, FJ_ERR_INVALID,
                            "chat template is not prefix-stable: messages[0..%zu] do not render "
                            "as a prefix of the whole conversation (they part at byte %zu)",
                            i, common_prefix(&q, &out->text));
            break;
        }
        if (p.len < pos) {
            rc = fj_err_set(err, FJ_ERR_INVALID,
                            "chat template is not prefix-stable: assistant message %zu starts "
                            "at byte %zu, before the previous one ends (byte %zu)",
                            i, p.len, pos);
            break;
        }
        if ((rc = push_span(out, &cap, pos, p.len, 0, err)) != 0 ||
            (rc = push_span(out, &cap, p.len, q.len, train, err)) != 0)
            break;
        pos = q.len > pos ? q.len : pos;
    }
    if (rc == 0)
        rc = push_span(out, &cap, pos, out->text.len, 0, err);
    fj_buf_free(&p);
    fj_buf_free(&q);
    json_decref(msgs);
    if (rc != 0)
        chat_rendered_free(out);
    return rc;
}

int chat_tokenize(const struct chat_rendered *r, const struct tok_encoding *enc,
                  struct chat_tokens *out, struct fj_err *err)
{
    size_t start = out->ids.len;
    for (size_t i = 0; i < r->n_spans; i++) {
        const struct chat_span *s = &r->spans[i];
        size_t before = out->ids.len;
        int rc = tok_encode(enc, r->text.data + s->begin, s->end - s->begin, TOK_SPECIAL_ALLOW,
                            &out->ids, err);
        if (rc == 0 && out->ids.len > out->mask_cap) {
            size_t cap = out->mask_cap ? out->mask_cap : 256;
            while (cap < out->ids.len)
                cap *= 2;
            uint8_t *m = realloc(out->mask, cap);
            if (m == NULL)
                rc = fj_err_set(err, FJ_ERR_NOMEM, "chat: out of memory");
            else {
                out->mask = m;
                out->mask_cap = cap;
            }
        }
        if (rc != 0) {
            out->ids.len = start;
            return rc;
        }
        memset(out->mask + before, s->train ? 1 : 0, out->ids.len - before);
    }
    return 0;
}
