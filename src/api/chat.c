/* chat.c - POST /v1/chat/completions and /openai/deployments/{d}/chat/completions.
 *
 * A request is checked (OpenAI's parameters and ranges), its messages rendered with the
 * model's chat template - the same rendering its fine-tuning used - and submitted to the
 * inference engine. The connection is then suspended: the engine's notify resumes it when
 * there is output, so no thread waits for tokens. A non-streaming answer is sent once every
 * choice has finished; a streaming one is a text/event-stream of chat.completion.chunk
 * objects written as tokens come (the role first, content deltas, finish_reason, usage
 * when asked, then [DONE]). A client that goes away cancels the generation.
 *
 * Lock order: the engine calls notify while holding the request's lock, and notify takes
 * the chat's; so the chat's lock is never held while calling into the request.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_internal.h"

/* Completion tokens reserved against a deployment's budget when max_tokens is not given. */
#define DEFAULT_RESERVE 256

struct api_chat {
    pthread_mutex_t lock;
    struct MHD_Connection *conn;
    bool suspended, pending;      /* under lock */
    bool closed;                  /* under lock: the server is stopping, answer now */
    struct api_chat *prev, *next; /* the server's chats (under srv->chats_lock) */
    struct api_server *srv;
    struct infer_request *rq;
    struct infer_model *mdl;
    bool stream, include_usage, logprobs;
    int n;
    char id[STORE_ID_MAX], model[512], deployment[512];
    int64_t created;
    int reserved; /* tokens taken from the deployment's budget */
    /* what has come so far */
    struct fj_buf text[INFER_MAX_CHOICES];
    json_t *lp[INFER_MAX_CHOICES];
    const char *finish[INFER_MAX_CHOICES];
    int prompt_tokens, completion_tokens;
    bool done;
    char error[512];
    /* streaming: bytes formatted and not yet sent */
    struct fj_buf out;
    size_t out_pos;
    bool ended; /* [DONE] is in out */
};

/* ---- checking the request -------------------------------------------------------------- */

/* A number field in [lo, hi] (integer if integral): false after replying 400. */
static bool number_field(struct api_req *r, json_t *body, const char *key, double lo, double hi,
                         bool integral, double *out)
{
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v))
        return true;
    if (integral ? !json_is_integer(v) : !json_is_number(v)) {
        api_error(r, 400, "invalid_request_error", "invalid_type", key,
                  "Invalid type for '%s': expected %s.", key, integral ? "an integer" : "a number");
        return false;
    }
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) {
        api_error(r, 400, "invalid_request_error", "invalid_value", key,
                  "Invalid '%s': %g is out of range; it must be from %g to %g.", key, x, lo, hi);
        return false;
    }
    *out = x;
    return true;
}

static bool bool_field(struct api_req *r, json_t *body, const char *key, bool *out)
{
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_boolean(v)) {
        api_error(r, 400, "invalid_request_error", "invalid_type", key,
                  "Invalid type for '%s': expected a boolean.", key);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

/* A message's content as text: a string, or an array of {type: "text", text} parts. */
static bool content_text(json_t *content, struct fj_buf *out)
{
    if (json_is_string(content))
        return fj_buf_append(out, json_string_value(content), json_string_length(content)) == 0;
    if (json_is_null(content))
        return true;
    if (!json_is_array(content))
        return false;
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        const char *type = json_string_value(json_object_get(part, "type"));
        json_t *text = json_object_get(part, "text");
        if (!type || strcmp(type, "text") != 0 || !json_is_string(text))
            return false;
        fj_buf_append(out, json_string_value(text), json_string_length(text));
    }
    return true;
}

/* The messages as the chat template takes them ([{role, content}]); NULL after 400. */
static json_t *read_messages(struct api_req *r, json_t *body)
{
    json_t *msgs = json_object_get(body, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        api_error(r, 400, "invalid_request_error",
                  msgs ? "invalid_value" : "missing_required_parameter", "messages",
                  msgs ? "Invalid 'messages': it must be a non-empty array of messages."
                       : "Missing required parameter: 'messages'.");
        return NULL;
    }
    json_t *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        char param[64];
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!role || (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") &&
                      strcmp(role, "developer"))) {
            api_error(r, 400, "invalid_request_error", "invalid_value", param,
                      "Invalid value: '%.40s'. Supported values are: 'system', 'assistant', "
                      "'user', and 'developer'.",
                      role ? role : "(missing)");
            json_decref(out);
            return NULL;
        }
        struct fj_buf text = {0};
        if (!content_text(json_object_get(m, "content"), &text)) {
            snprintf(param, sizeof param, "messages[%zu].content", i);
            api_error(r, 400, "invalid_request_error", "invalid_type", param,
                      "Invalid content: a message's content is a string or an array of text "
                      "parts ({\"type\": \"text\", \"text\": ...})");
            fj_buf_free(&text);
            json_decref(out);
            return NULL;
        }
        json_array_append_new(out, json_pack("{s:s, s:s%}", "role",
                                             strcmp(role, "developer") == 0 ? "system" : role,
                                             "content", text.data ? text.data : "", text.len));
        fj_buf_free(&text);
    }
    return out;
}

/* stop: a string or up to 4 strings. */
static bool read_stop(struct api_req *r, json_t *body, struct infer_params *p)
{
    json_t *v = json_object_get(body, "stop");
    if (!v || json_is_null(v))
        return true;
    if (json_is_string(v)) {
        if (json_string_length(v) > 0)
            p->stop[p->n_stop++] = json_string_value(v);
        return true;
    }
    if (json_is_array(v) && json_array_size(v) <= INFER_MAX_STOP) {
        size_t i;
        json_t *s;
        json_array_foreach(v, i, s)
        {
            if (!json_is_string(s))
                goto bad;
            if (json_string_length(s) > 0)
                p->stop[p->n_stop++] = json_string_value(s);
        }
        return true;
    }
bad:
    api_error(r, 400, "invalid_request_error", "invalid_value", "stop",
              "Invalid 'stop': a string or an array of up to %d strings.", INFER_MAX_STOP);
    return false;
}

/* Sampling parameters; max_tokens is -1 when not given. */
static bool read_params(struct api_req *r, json_t *body, struct infer_params *p, bool *stream,
                        bool *usage)
{
    *p = infer_params_default();
    double n = 1, temp = 1, top_p = 1, pres = 0, freq = 0, max = -1, max2 = -1, top = 0;
    double seed = 0;
    bool logprobs = false;
    *stream = *usage = false;
    if (!number_field(r, body, "n", 1, INFER_MAX_CHOICES, true, &n) ||
        !number_field(r, body, "temperature", 0, 2, false, &temp) ||
        !number_field(r, body, "top_p", 0, 1, false, &top_p) ||
        !number_field(r, body, "presence_penalty", -2, 2, false, &pres) ||
        !number_field(r, body, "frequency_penalty", -2, 2, false, &freq) ||
        !number_field(r, body, "max_tokens", 1, 1e9, true, &max) ||
        !number_field(r, body, "max_completion_tokens", 1, 1e9, true, &max2) ||
        !number_field(r, body, "top_logprobs", 0, INFER_MAX_TOP, true, &top) ||
        !number_field(r, body, "seed", -9.2e18, 9.2e18, true, &seed) ||
        !bool_field(r, body, "logprobs", &logprobs) || !bool_field(r, body, "stream", stream) ||
        !read_stop(r, body, p))
        return false;
    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so) || !*stream) {
            api_error(r, 400, "invalid_request_error", "invalid_value", "stream_options",
                      "stream_options is an object, allowed only with stream: true");
            return false;
        }
        if (!bool_field(r, so, "include_usage", usage))
            return false;
    }
    if (top > 0 && !logprobs) {
        api_error(r, 400, "invalid_request_error", "invalid_value", "top_logprobs",
                  "top_logprobs needs logprobs: true");
        return false;
    }
    p->n = (int)n;
    p->temperature = top_p == 0 ? 0 : temp; /* an empty nucleus is the top token: greedy */
    p->top_p = top_p == 0 ? 1 : top_p;
    p->presence_penalty = pres;
    p->frequency_penalty = freq;
    p->max_tokens = (int)(max2 > 0 ? fmin(max2, 2e9) : max > 0 ? fmin(max, 2e9) : -1);
    p->logprobs = logprobs;
    p->top_logprobs = (int)top;
    if (json_is_integer(json_object_get(body, "seed"))) {
        p->has_seed = true;
        p->seed = json_integer_value(json_object_get(body, "seed"));
    }
    return true;
}

/* Fits max_tokens to the context (default: the rest of it); false after replying 400. */
static bool fit_context(struct api_req *r, struct infer_params *p, int prompt, int n_ctx)
{
    if (p->max_tokens > n_ctx) {
        api_error(r, 400, "invalid_request_error", "invalid_value", "max_tokens",
                  "max_tokens is too large: %d. This model supports at most %d completion "
                  "tokens (its context is %d tokens).",
                  p->max_tokens, n_ctx - 1, n_ctx);
        return false;
    }
    int want = p->max_tokens > 0 ? p->max_tokens : 1;
    if (prompt + want > n_ctx) {
        api_error(r, 400, "invalid_request_error", "context_length_exceeded", "messages",
                  "This model's maximum context length is %d tokens. However, you requested "
                  "%d tokens (%d in the messages, %d in the completion). Please reduce the "
                  "length of the messages or completion.",
                  n_ctx, prompt + want, prompt, want);
        return false;
    }
    if (p->max_tokens < 0)
        p->max_tokens = n_ctx - prompt;
    return true;
}

/* ---- output ---------------------------------------------------------------------------- */

static json_t *usage_obj(const struct api_chat *c)
{
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", c->prompt_tokens, "completion_tokens",
                     c->completion_tokens, "total_tokens", c->prompt_tokens + c->completion_tokens);
}

static json_t *chunk_new(const struct api_chat *c, json_t *choices)
{
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:o}", "id", c->id, "object",
                          "chat.completion.chunk", "created", (json_int_t)c->created, "model",
                          c->model, "system_fingerprint", "fp_forja", "choices", choices);
    if (c->include_usage)
        json_object_set_new(o, "usage", json_null());
    return o;
}

static void sse(struct api_chat *c, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (s)
        fj_buf_printf(&c->out, "data: %s\n\n", s);
    free(s);
}

static json_t *choice_chunk(int index, json_t *delta, json_t *logprobs, const char *finish)
{
    return json_pack("{s:i, s:o, s:o, s:s?}", "index", index, "delta", delta, "logprobs",
                     logprobs ? logprobs : json_null(), "finish_reason", finish);
}

/* Takes the engine's new output: accumulates it, and for a stream formats its chunks. */
static void take(struct api_chat *c)
{
    struct infer_output out;
    infer_take(c->rq, &out);
    for (size_t i = 0; i < out.n_deltas; i++) {
        struct infer_delta *d = &out.deltas[i];
        if (c->stream && d->len > 0) {
            json_t *lp =
                d->logprobs ? json_pack("{s:O, s:n}", "content", d->logprobs, "refusal") : NULL;
            sse(c, chunk_new(c, json_pack("[o]", choice_chunk(d->choice,
                                                              json_pack("{s:s%}", "content",
                                                                        d->text, d->len),
                                                              lp, NULL))));
        }
        if (c->stream && d->finish)
            sse(c, chunk_new(c, json_pack("[o]", choice_chunk(d->choice, json_object(), NULL,
                                                              d->finish))));
        if (!c->stream) {
            fj_buf_append(&c->text[d->choice], d->text ? d->text : "", d->len);
            if (d->logprobs) {
                if (!c->lp[d->choice])
                    c->lp[d->choice] = json_array();
                json_array_extend(c->lp[d->choice], d->logprobs);
            }
        }
        if (d->finish)
            c->finish[d->choice] = d->finish;
    }
    c->prompt_tokens = out.prompt_tokens;
    c->completion_tokens = out.completion_tokens;
    if (out.error[0])
        snprintf(c->error, sizeof c->error, "%s", out.error);
    c->done = out.done;
    infer_output_free(&out);
    if (c->stream && c->done && !c->ended) {
        if (c->error[0])
            sse(c, json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", c->error, "type",
                             "server_error", "param", "code"));
        else if (c->include_usage) {
            json_t *chunk = chunk_new(c, json_array());
            json_object_set_new(chunk, "usage", usage_obj(c));
            sse(c, chunk);
        }
        fj_buf_append(&c->out, "data: [DONE]\n\n", 14);
        c->ended = true;
    }
}

static void reply_completion(struct api_req *r, struct api_chat *c)
{
    if (c->error[0]) {
        api_error(r, 500, "server_error", NULL, NULL, "%s", c->error);
        return;
    }
    json_t *choices = json_array();
    for (int i = 0; i < c->n; i++) {
        json_t *lp = c->logprobs
                         ? json_pack("{s:o, s:n}", "content",
                                     c->lp[i] ? json_incref(c->lp[i]) : json_array(), "refusal")
                         : json_null();
        json_array_append_new(
            choices, json_pack("{s:i, s:{s:s, s:s%, s:n}, s:o, s:s}", "index", i, "message", "role",
                               "assistant", "content", c->text[i].data ? c->text[i].data : "",
                               c->text[i].len, "refusal", "logprobs", lp, "finish_reason",
                               c->finish[i] ? c->finish[i] : "stop"));
    }
    api_reply_json(r, 200,
                   json_pack("{s:s, s:s, s:I, s:s, s:o, s:o, s:s}", "id", c->id, "object",
                             "chat.completion", "created", (json_int_t)c->created, "model",
                             c->model, "choices", choices, "usage", usage_obj(c),
                             "system_fingerprint", "fp_forja"));
}

/* ---- waiting without a thread ---------------------------------------------------------- */

/* From the engine's thread (request lock held): there is output. */
static void on_output(void *ctx)
{
    struct api_chat *c = ctx;
    pthread_mutex_lock(&c->lock);
    c->pending = true;
    if (c->suspended) {
        c->suspended = false;
        MHD_resume_connection(c->conn);
    }
    pthread_mutex_unlock(&c->lock);
}

/* Suspends the connection unless output came meanwhile; true if it did (look again). */
static bool wait_output(struct api_chat *c)
{
    pthread_mutex_lock(&c->lock);
    bool again = c->pending;
    c->pending = false;
    if (c->closed) { /* the server is stopping: never suspend again */
        if (!c->done)
            snprintf(c->error, sizeof c->error, "the server is stopping");
        c->done = true;
        c->ended = c->ended || !c->stream;
        again = false;
    } else if (!again) {
        c->suspended = true;
        MHD_suspend_connection(c->conn);
    }
    pthread_mutex_unlock(&c->lock);
    return again;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct api_chat *c = cls;
    for (;;) {
        if (c->out_pos < c->out.len) {
            size_t n = c->out.len - c->out_pos < max ? c->out.len - c->out_pos : max;
            memcpy(buf, c->out.data + c->out_pos, n);
            c->out_pos += n;
            if (c->out_pos == c->out.len)
                c->out.len = c->out_pos = 0;
            return (ssize_t)n;
        }
        if (c->ended)
            return c->error[0] && c->closed ? MHD_CONTENT_READER_END_WITH_ERROR
                                            : MHD_CONTENT_READER_END_OF_STREAM;
        take(c);
        if (c->out.len == 0 && !wait_output(c) && !c->done)
            return 0; /* suspended: on_output resumes the connection */
        if (c->done && c->closed && c->out.len == 0)
            c->ended = true;
    }
}

void api_chat_resume(struct api_req *r)
{
    struct api_chat *c = r->chat;
    do
        take(c);
    while (!c->done && wait_output(c));
    if (c->done)
        reply_completion(r, c);
}

/* Adds c to the server's chats; false if the server is stopping. */
static bool chat_register(struct api_server *srv, struct api_chat *c)
{
    pthread_mutex_lock(&srv->chats_lock);
    bool open = !srv->chats_closed;
    if (open) {
        c->next = srv->chats;
        if (srv->chats)
            srv->chats->prev = c;
        srv->chats = c;
    }
    pthread_mutex_unlock(&srv->chats_lock);
    return open;
}

void api_chat_close_all(struct api_server *srv)
{
    pthread_mutex_lock(&srv->chats_lock);
    srv->chats_closed = true;
    for (struct api_chat *c = srv->chats; c; c = c->next) {
        pthread_mutex_lock(&c->lock);
        c->closed = true;
        if (c->suspended) {
            c->suspended = false;
            MHD_resume_connection(c->conn);
        }
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&srv->chats_lock);
}

void api_chat_free(struct api_req *r)
{
    struct api_chat *c = r->chat;
    if (!c)
        return;
    pthread_mutex_lock(&c->srv->chats_lock);
    if (c->prev)
        c->prev->next = c->next;
    else if (c->srv->chats == c)
        c->srv->chats = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&c->srv->chats_lock);
    infer_request_release(c->rq); /* no notify after this */
    if (c->rq && c->deployment[0])
        api_deploy_settle(c->srv, c->deployment, c->reserved,
                          c->prompt_tokens + c->completion_tokens);
    infer_close(c->mdl);
    for (int i = 0; i < INFER_MAX_CHOICES; i++) {
        fj_buf_free(&c->text[i]);
        json_decref(c->lp[i]);
    }
    fj_buf_free(&c->out);
    pthread_mutex_destroy(&c->lock);
    free(c);
    r->chat = NULL;
}

/* ---- the handler ----------------------------------------------------------------------- */

/* The model to run: the deployment of the Azure path, or the body's model (a deployment
 * name too, or any model of /v1/models, loaded on first use). */
static struct infer_model *pick_model(struct api_req *r, json_t *body, struct api_chat *c)
{
    if (r->family == API_AZURE) {
        snprintf(c->deployment, sizeof c->deployment, "%s", r->params[0]);
        return api_deploy_acquire(r, c->deployment, c->model, sizeof c->model);
    }
    const char *name = json_string_value(json_object_get(body, "model"));
    if (!name) {
        api_error(r, 400, "invalid_request_error", "missing_required_parameter", "model",
                  "you must provide a model parameter");
        return NULL;
    }
    if (strlen(name) < sizeof c->deployment && api_deploy_exists(r->srv, name)) {
        char model[512];
        snprintf(c->deployment, sizeof c->deployment, "%s", name);
        snprintf(c->model, sizeof c->model, "%s", name);
        return api_deploy_acquire(r, name, model, sizeof model);
    }
    snprintf(c->model, sizeof c->model, "%s", name);
    char dir[4400], adapter[4400];
    struct fj_err err = {0};
    struct infer_model *m = NULL;
    if (api_model_folders(r->srv, name, dir, sizeof dir, adapter, sizeof adapter, &err) == 0)
        m = infer_open(r->srv->inf, dir, adapter[0] ? adapter : NULL, &err);
    if (!m && err.code == FJ_ERR_NOT_FOUND)
        api_error(r, 404, "invalid_request_error", "model_not_found", "model", "%s", err.msg);
    else if (!m && err.code == FJ_ERR_NOMEM)
        api_error(r, 503, "server_error", "insufficient_memory", "model", "%s", err.msg);
    else if (!m)
        api_error(r, 500, "server_error", NULL, "model", "%s", err.msg);
    return m;
}

void api_h_chat(struct api_req *r)
{
    json_t *body = api_body_object(r);
    if (!body)
        return;
    struct api_chat *c = calloc(1, sizeof *c);
    struct infer_params p;
    json_t *msgs = NULL;
    struct chat_tokens toks = {0};
    bool stream, usage;
    if (!c) {
        api_error(r, 500, "server_error", NULL, NULL, "out of memory");
        json_decref(body);
        return;
    }
    pthread_mutex_init(&c->lock, NULL);
    c->conn = r->conn;
    c->srv = r->srv;
    c->created = (int64_t)time(NULL);
    store_new_id("chatcmpl-", c->id);
    r->chat = c; /* freed with the request, whatever happens */
    if (!chat_register(r->srv, c)) {
        api_error(r, 503, "server_error", NULL, NULL, "The server is stopping");
        json_decref(body);
        return;
    }
    if (!(msgs = read_messages(r, body)) || !read_params(r, body, &p, &stream, &usage) ||
        !(c->mdl = pick_model(r, body, c)))
        goto out;
    const struct model_info *info = infer_model_info(c->mdl);
    struct fj_err err = {0};
    if (model_info_render_prompt(info, msgs, NULL, &toks, &err) != 0) {
        api_error(r, 400, "invalid_request_error", "invalid_value", "messages",
                  "The messages cannot be rendered with this model's chat template: %s", err.msg);
        goto out;
    }
    bool given = p.max_tokens > 0;
    int prompt = (int)toks.ids.len;
    if (!fit_context(r, &p, prompt, info->cfg.n_ctx))
        goto out;
    if (c->deployment[0]) {
        int each = given ? p.max_tokens
                         : (p.max_tokens < DEFAULT_RESERVE ? p.max_tokens : DEFAULT_RESERVE);
        c->reserved = prompt + p.n * each;
        if (!api_deploy_reserve(r, c->deployment, c->reserved)) {
            c->reserved = 0;
            goto out;
        }
    }
    c->stream = stream;
    c->include_usage = usage;
    c->logprobs = p.logprobs;
    c->n = p.n;
    c->prompt_tokens = prompt;
    c->rq = infer_submit(c->mdl, toks.ids.data, toks.ids.len, &p, on_output, c, &err);
    if (!c->rq) {
        api_error_from(r, err.code, err.msg, "messages");
        goto out;
    }
    if (stream) {
        for (int i = 0; i < p.n; i++) /* the role first, as OpenAI's streams begin */
            sse(c, chunk_new(c, json_pack("[o]", choice_chunk(i,
                                                              json_pack("{s:s, s:s, s:n}", "role",
                                                                        "assistant", "content", "",
                                                                        "refusal"),
                                                              NULL, NULL))));
        struct MHD_Response *resp =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, c, NULL);
        if (resp)
            MHD_add_response_header(resp, "Cache-Control", "no-cache");
        api_reply_response(r, 200, resp, "text/event-stream; charset=utf-8");
    } else {
        api_chat_resume(r);
    }
out:
    chat_tokens_free(&toks);
    json_decref(msgs);
    json_decref(body);
    if (!r->replied && !c->rq) /* an error was replied before anything ran */
        api_chat_free(r);
}
