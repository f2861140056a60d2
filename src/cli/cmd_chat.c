/* cmd_chat.c - `forja chat`: a conversation with a model in the terminal.
 *
 * Each line read is a user message; the answer is printed as its tokens come and the
 * conversation (a JSON array of {role, content}) grows turn by turn. Two ways to answer:
 *
 *   in process   the model is loaded with the inference engine (src/infer/infer.h): a base
 *                model folder, a full fine-tune's folder, or a LoRA adapter on its base,
 *                found from the name the way the server finds it (DATA/models/NAME, the
 *                store's models table, its deployments).
 *   --url URL    a running `forja serve` answers: POST /v1/chat/completions with
 *                "stream": true over one HTTP/1.1 connection per turn (plain TCP, no TLS),
 *                the reply read as server-sent events, chunked or not.
 *
 * A turn reports how it failed with a CLI_* code: CLI_DATA_ERROR for a request the model
 * refused (too long for its context, a 400), after which an interactive session goes on
 * without that message; anything else ends the session.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "api/api.h"
#include "cli/cli.h"
#include "core/file.h"
#include "infer/infer.h"
#include "model/folder.h"
#include "store/store.h"

/* What every turn is asked with. */
struct chat_opts {
    const char *model; /* the name as given */
    int max_tokens;
    double temperature;
    bool has_seed;
    int64_t seed;
};

/* ---- in process ------------------------------------------------------------------------ */

struct chat_local {
    struct infer *inf;
    struct infer_model *mdl;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool ready; /* under lock: the engine has output for us */
};

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* What store_folders says of a name it does not know (not a CLI_* code). */
#define CHAT_UNKNOWN (-1)

/* Whether name is for cli_model_path: a path, a folder of models/, or the built-in model. */
static bool names_base(const char *models, const char *name)
{
    char in_models[4400];
    snprintf(in_models, sizeof in_models, "%s/%s", models, name);
    return strchr(name, '/') || is_dir(name) || strcmp(name, MODEL_BUILTIN_NAME) == 0 ||
           (strcmp(name, ".") != 0 && strcmp(name, "..") != 0 && is_dir(in_models));
}

/* A fine-tuned model or checkpoint name of the store: its model folder, or its adapter and
 * its base's folder (store_model_folders). CHAT_UNKNOWN if the store does not know it. */
static int store_folders(struct store *st, const char *name, char *model, size_t cap, char *adapter,
                         size_t adapter_cap)
{
    struct fj_err err = {0};
    if (store_model_get(st, name, NULL, 0, NULL, NULL) != 0)
        return CHAT_UNKNOWN;
    if (store_model_folders(st, name, model, cap, adapter, adapter_cap, &err) != 0) {
        fprintf(stderr, "forja chat: %s\n", err.msg);
        return CLI_DATA_ERROR;
    }
    return CLI_OK;
}

/* The folders model `name` is answered from (adapter "" when there is none): a base model
 * name or path, else a fine-tuned model or checkpoint of the store, else a deployment of
 * one. Prints an error and returns a CLI_* code on failure. */
static int local_folders(const struct cli_cmd *cmd, const struct cli_args *a, const char *name,
                         char *model, size_t cap, char *adapter, size_t adapter_cap)
{
    adapter[0] = '\0';
    const char *data = cli_data_dir(cmd, a);
    char models[4096], db[4200];
    int rc = cli_models_dir(cmd, a, models, sizeof models);
    if (rc != CLI_OK)
        return rc;
    if (names_base(models, name))
        return cli_model_path(cmd, a, name, model, cap);

    /* Fine-tuned models and deployments are the store's; a data directory without one
     * has neither (and gets no database from a mistyped name). */
    struct store *st = NULL;
    struct fj_err err = {0};
    snprintf(db, sizeof db, "%s/forja.db", data);
    if (fj_file_exists(db) && store_open(&st, data, &err) != 0) {
        fprintf(stderr, "forja chat: %s\n", err.msg);
        return CLI_FAILURE;
    }
    rc = st ? store_folders(st, name, model, cap, adapter, adapter_cap) : CHAT_UNKNOWN;
    json_t *dep = NULL;
    char dep_model[512] = "";
    if (rc == CHAT_UNKNOWN && st && store_deployment_get(st, name, &dep, NULL) == 0) {
        const char *m = json_string_value(
            json_object_get(json_object_get(json_object_get(dep, "properties"), "model"), "name"));
        snprintf(dep_model, sizeof dep_model, "%s", m ? m : "");
        json_decref(dep);
        if (!dep_model[0] || strcmp(dep_model, name) == 0) {
            fprintf(stderr, "forja chat: the deployment %s names no model\n", name);
            rc = CLI_DATA_ERROR;
        } else {
            rc = names_base(models, dep_model)
                     ? cli_model_path(cmd, a, dep_model, model, cap)
                     : store_folders(st, dep_model, model, cap, adapter, adapter_cap);
            if (rc == CHAT_UNKNOWN)
                name = dep_model; /* the deployment's model is unknown: say which */
        }
    }
    store_close(st);
    if (rc != CHAT_UNKNOWN)
        return rc;
    json_t *aliases = api_default_aliases(MODEL_BUILTIN_NAME);
    const char *target = json_string_value(json_object_get(aliases, name));
    if (target)
        fprintf(stderr,
                "forja chat: %s is an alias that `forja serve` answers to (by default for %s); "
                "name the model itself (forja chat %s), or chat through the server with --url\n",
                name, target, target);
    else
        fprintf(stderr,
                "forja chat: no model, fine-tuned model or deployment named '%s' in %s "
                "(forja models list shows the base models)\n",
                name, data);
    json_decref(aliases);
    return CLI_USAGE;
}

static uint64_t memory_budget(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || page <= 0)
        return (uint64_t)8 << 30;
    uint64_t half = (uint64_t)pages * (uint64_t)page / 2;
    return half > ((uint64_t)1 << 30) ? half : (uint64_t)1 << 30;
}

static int local_open(struct chat_local *l, const struct cli_cmd *cmd, const struct cli_args *a,
                      const char *name, int threads)
{
    char model[4400], adapter[4400];
    int rc = local_folders(cmd, a, name, model, sizeof model, adapter, sizeof adapter);
    if (rc != CLI_OK)
        return rc;
    struct infer_config cfg = infer_config_default();
    cfg.memory_bytes = memory_budget();
    cfg.threads = threads;
    cfg.max_seqs = 1;
    struct fj_err err = {0};
    if (!(l->inf = infer_new(&cfg, &err)) ||
        !(l->mdl = infer_open(l->inf, model, adapter[0] ? adapter : NULL, &err))) {
        fprintf(stderr, "forja chat: %s\n", err.msg);
        infer_free(l->inf);
        l->inf = NULL;
        return err.code == FJ_ERR_NOMEM ? CLI_FAILURE : CLI_DATA_ERROR;
    }
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    return CLI_OK;
}

static void local_close(struct chat_local *l)
{
    if (!l->inf)
        return;
    infer_close(l->mdl);
    infer_free(l->inf);
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->cond);
}

/* On the engine's thread: wakes the turn waiting for output. */
static void local_notify(void *ctx)
{
    struct chat_local *l = ctx;
    pthread_mutex_lock(&l->lock);
    l->ready = true;
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

static int local_turn(struct chat_local *l, const struct chat_opts *o, const json_t *messages,
                      struct fj_buf *answer)
{
    struct chat_tokens toks = {0};
    struct fj_err err = {0};
    if (model_info_render_prompt(infer_model_info(l->mdl), messages, NULL, &toks, &err) != 0) {
        fprintf(stderr, "forja chat: %s\n", err.msg);
        chat_tokens_free(&toks);
        return CLI_DATA_ERROR;
    }
    struct infer_params p = infer_params_default();
    p.max_tokens = o->max_tokens;
    p.temperature = o->temperature;
    p.has_seed = o->has_seed;
    p.seed = o->seed;
    l->ready = false;
    struct infer_request *rq =
        infer_submit(l->mdl, toks.ids.data, toks.ids.len, &p, local_notify, l, &err);
    chat_tokens_free(&toks);
    if (!rq) {
        fprintf(stderr, "forja chat: %s%s\n", err.msg,
                err.code == FJ_ERR_RANGE ? " (/reset starts a new conversation)" : "");
        return err.code == FJ_ERR_RANGE ? CLI_DATA_ERROR : CLI_FAILURE;
    }
    int rc = CLI_OK;
    for (bool done = false; !done;) {
        pthread_mutex_lock(&l->lock);
        while (!l->ready)
            pthread_cond_wait(&l->cond, &l->lock);
        l->ready = false;
        pthread_mutex_unlock(&l->lock);
        struct infer_output out;
        infer_take(rq, &out);
        for (size_t i = 0; i < out.n_deltas; i++) {
            const struct infer_delta *d = &out.deltas[i];
            if (d->choice != 0 || d->len == 0)
                continue;
            fwrite(d->text, 1, d->len, stdout);
            if (fj_buf_append(answer, d->text, d->len) != 0)
                rc = CLI_FAILURE;
        }
        fflush(stdout);
        if (out.error[0]) {
            fprintf(stderr, "%sforja chat: %s\n", answer->len ? "\n" : "", out.error);
            rc = CLI_FAILURE;
        }
        done = out.done;
        infer_output_free(&out);
    }
    infer_request_release(rq);
    return rc;
}

/* ---- over HTTP ------------------------------------------------------------------------- */

struct chat_remote {
    char host[256], port[16];
    char hostport[300]; /* the Host header */
    char path[2048];    /* .../v1/chat/completions */
    const char *key;    /* borrowed from the environment; NULL: none */
};

/* http://HOST[:PORT][/BASE]: BASE may be the API's root ("/v1", as OpenAI clients write
 * it) or empty. Prints an error and returns CLI_USAGE if the URL is not one we can use. */
static int remote_parse(struct chat_remote *r, const char *url)
{
    if (strncasecmp(url, "https://", 8) == 0) {
        fprintf(stderr, "forja chat: https is not supported; give the server's http:// URL\n");
        return CLI_USAGE;
    }
    if (strncasecmp(url, "http://", 7) != 0) {
        fprintf(stderr, "forja chat: --url must be http://HOST:PORT, not '%s'\n", url);
        return CLI_USAGE;
    }
    const char *h = url + 7, *end = h + strcspn(h, "/?#"), *colon;
    size_t hlen;
    if (*h == '[') { /* [an IPv6 address] */
        const char *close = memchr(h, ']', (size_t)(end - h));
        if (!close) {
            fprintf(stderr, "forja chat: bad address in --url '%s'\n", url);
            return CLI_USAGE;
        }
        h++;
        hlen = (size_t)(close - h);
        colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        hlen = (size_t)((colon ? colon : end) - h);
    }
    if (hlen == 0 || hlen >= sizeof r->host) {
        fprintf(stderr, "forja chat: bad host in --url '%s'\n", url);
        return CLI_USAGE;
    }
    memcpy(r->host, h, hlen);
    r->host[hlen] = '\0';
    size_t plen = colon ? (size_t)(end - colon - 1) : 2;
    const char *port = colon ? colon + 1 : "80";
    if (plen == 0 || plen > 5 || strspn(port, "0123456789") < plen) {
        fprintf(stderr, "forja chat: bad port in --url '%s'\n", url);
        return CLI_USAGE;
    }
    memcpy(r->port, port, plen);
    r->port[plen] = '\0';
    snprintf(r->hostport, sizeof r->hostport, "%.*s", (int)(end - (url + 7)), url + 7);
    size_t blen = strcspn(end, "?#");
    while (blen > 0 && end[blen - 1] == '/')
        blen--;
    if (blen > 1000) {
        fprintf(stderr, "forja chat: --url is too long\n");
        return CLI_USAGE;
    }
    bool v1 = blen >= 3 && strncmp(end + blen - 3, "/v1", 3) == 0;
    snprintf(r->path, sizeof r->path, "%.*s%s/chat/completions", (int)blen, end, v1 ? "" : "/v1");
    r->key = getenv("FORJA_API_KEY");
    if (!r->key || !*r->key)
        r->key = getenv("OPENAI_API_KEY");
    if (r->key && !*r->key)
        r->key = NULL;
    return CLI_OK;
}

static int remote_connect(const struct chat_remote *r)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
    int gai = getaddrinfo(r->host, r->port, &hints, &res);
    if (gai != 0) {
        fprintf(stderr, "forja chat: %s: %s\n", r->host, gai_strerror(gai));
        return -1;
    }
    int fd = -1, saved = 0;
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            saved = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        fprintf(stderr, "forja chat: cannot connect to %s:%s: %s (is `forja serve` running?)\n",
                r->host, r->port, strerror(saved));
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The response as it is read: buffered bytes, then a body decoder over them. */
struct http_in {
    int fd;
    char buf[16384];
    size_t pos, len;
    bool io_error;
    /* body */
    bool chunked;
    long long left; /* bytes left in this chunk / of the Content-Length body; -1: to EOF */
    bool body_done;
};

static int in_fill(struct http_in *in)
{
    if (in->pos < in->len)
        return 1;
    ssize_t n;
    do
        n = recv(in->fd, in->buf, sizeof in->buf, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        in->io_error = true;
    in->pos = 0;
    in->len = n > 0 ? (size_t)n : 0;
    return n > 0;
}

/* One line without its CRLF into out (at most cap-1 bytes kept): 0, or -1 at EOF. */
static int in_line(struct http_in *in, char *out, size_t cap)
{
    size_t n = 0;
    for (;;) {
        if (!in_fill(in))
            return -1;
        char c = in->buf[in->pos++];
        if (c == '\n')
            break;
        if (n + 1 < cap)
            out[n++] = c;
    }
    if (n > 0 && out[n - 1] == '\r')
        n--;
    out[n] = '\0';
    return 0;
}

/* Up to cap body bytes (the chunked framing removed): the count, 0 at the body's end, -1
 * if the connection broke inside it. */
static long long in_body(struct http_in *in, char *out, size_t cap)
{
    char line[256];
    if (in->body_done)
        return 0;
    if (in->chunked && in->left == 0) {
        if (in_line(in, line, sizeof line) != 0)
            return -1;
        char *end;
        in->left = strtoll(line, &end, 16);
        if (end == line || in->left < 0)
            return -1;
        if (in->left == 0) { /* the trailer, to its empty line */
            while (in_line(in, line, sizeof line) == 0 && line[0])
                ;
            in->body_done = true;
            return 0;
        }
    }
    if (!in->chunked && in->left == 0) {
        in->body_done = true;
        return 0;
    }
    if (!in_fill(in)) {
        in->body_done = true;
        return in->left < 0 && !in->io_error ? 0 : -1;
    }
    size_t n = in->len - in->pos;
    if (n > cap)
        n = cap;
    if (in->left >= 0 && (long long)n > in->left)
        n = (size_t)in->left;
    memcpy(out, in->buf + in->pos, n);
    in->pos += n;
    if (in->left > 0)
        in->left -= (long long)n;
    if (in->chunked && in->left == 0 && in_line(in, line, sizeof line) != 0)
        return -1; /* the CRLF after a chunk */
    return (long long)n;
}

/* The message of an OpenAI error object ({"error": {"message"}}), or NULL. */
static const char *error_message(const json_t *doc)
{
    const json_t *e = json_object_get(doc, "error");
    const char *msg = json_string_value(json_object_get(e, "message"));
    return msg ? msg : json_string_value(e);
}

/* The stream's state across events. */
struct sse {
    struct fj_buf line, data; /* the line being read; the event's data lines */
    struct fj_buf *answer;
    bool done, failed;
};

/* One event's data: a chat.completion.chunk, an error, or [DONE]. */
static void sse_event(struct sse *s)
{
    if (s->data.len == 0)
        return;
    if (strcmp(s->data.data, "[DONE]") == 0) {
        s->done = true;
        return;
    }
    json_t *doc = json_loads(s->data.data, 0, NULL);
    const char *msg = doc ? error_message(doc) : NULL;
    if (!doc || msg) {
        fprintf(stderr, "%sforja chat: %s\n", s->answer->len ? "\n" : "",
                msg ? msg : "the server sent an event that is not JSON");
        s->failed = true;
    } else {
        json_t *choice = json_array_get(json_object_get(doc, "choices"), 0);
        json_t *content = json_object_get(json_object_get(choice, "delta"), "content");
        const char *text = json_string_value(content);
        size_t n = json_string_length(content);
        if (text && n) {
            fwrite(text, 1, n, stdout);
            fflush(stdout);
            if (fj_buf_append(s->answer, text, n) != 0)
                s->failed = true;
        }
    }
    json_decref(doc);
    s->data.len = 0;
}

/* Feeds body bytes: lines, events at blank lines (the text/event-stream rules). */
static void sse_feed(struct sse *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n && !s->done && !s->failed; i++) {
        if (p[i] != '\n') {
            if (fj_buf_append(&s->line, p + i, 1) != 0)
                s->failed = true;
            continue;
        }
        char *l = s->line.data;
        size_t len = s->line.len;
        if (len > 0 && l[len - 1] == '\r')
            l[--len] = '\0';
        if (len == 0) {
            sse_event(s);
        } else if (strncmp(l, "data:", 5) == 0) {
            const char *v = l + 5 + (l[5] == ' ');
            if ((s->data.len && fj_buf_append(&s->data, "\n", 1) != 0) ||
                fj_buf_append(&s->data, v, strlen(v)) != 0)
                s->failed = true;
        } /* comments (":...") and other fields are not ours */
        s->line.len = 0;
    }
}

/* The request body (the caller frees it). */
static char *remote_body(const struct chat_opts *o, const json_t *messages)
{
    json_t *b = json_pack("{s:s, s:O, s:b, s:i, s:f}", "model", o->model, "messages", messages,
                          "stream", 1, "max_tokens", o->max_tokens, "temperature", o->temperature);
    if (b && o->has_seed)
        json_object_set_new(b, "seed", json_integer(o->seed));
    char *s = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    return s;
}

/* Reads the headers after the status line: the body's framing, and whether it is SSE. */
static int read_headers(struct http_in *in, bool *sse)
{
    char line[8192];
    *sse = false;
    in->left = -1;
    for (;;) {
        if (in_line(in, line, sizeof line) != 0)
            return -1;
        if (!line[0]) {
            if (in->chunked)
                in->left = 0; /* the first chunk's size comes first */
            return 0;
        }
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        const char *v = colon + 1 + strspn(colon + 1, " \t");
        if (strcasecmp(line, "transfer-encoding") == 0 && strcasestr(v, "chunked"))
            in->chunked = true;
        else if (strcasecmp(line, "content-length") == 0)
            in->left = strtoll(v, NULL, 10);
        else if (strcasecmp(line, "content-type") == 0)
            *sse = strncasecmp(v, "text/event-stream", 17) == 0;
    }
}

/* A reply that is not a stream (an error, or a whole chat.completion): its JSON. */
static json_t *whole_body(struct http_in *in)
{
    struct fj_buf b = {0};
    char chunk[8192];
    long long n;
    while ((n = in_body(in, chunk, sizeof chunk)) > 0 && b.len < (16u << 20))
        if (fj_buf_append(&b, chunk, (size_t)n) != 0)
            break;
    json_t *doc = b.data ? json_loadb(b.data, b.len, 0, NULL) : NULL;
    fj_buf_free(&b);
    return doc;
}

static int status_code(int status)
{
    if (status == 404)
        return CLI_USAGE; /* an unknown model, as in process */
    if (status == 400 || status == 413 || status == 422)
        return CLI_DATA_ERROR;
    return CLI_FAILURE;
}

static int remote_turn(const struct chat_remote *r, const struct chat_opts *o,
                       const json_t *messages, struct fj_buf *answer)
{
    char *body = remote_body(o, messages);
    if (!body) {
        fprintf(stderr, "forja chat: the message is not valid UTF-8\n");
        return CLI_DATA_ERROR;
    }
    struct fj_buf req = {0};
    fj_buf_printf(&req,
                  "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: forja/%s\r\n"
                  "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
                  "Content-Length: %zu\r\nConnection: close\r\n",
                  r->path, r->hostport, FORJA_VERSION, strlen(body));
    if (r->key)
        fj_buf_printf(&req, "Authorization: Bearer %s\r\n", r->key);
    fj_buf_printf(&req, "\r\n%s", body);
    free(body);
    int fd = req.data ? remote_connect(r) : -1;
    if (fd < 0 || send_all(fd, req.data, req.len) != 0) {
        if (fd >= 0)
            fprintf(stderr, "forja chat: sending the request failed: %s\n", strerror(errno));
        else if (!req.data)
            fprintf(stderr, "forja chat: out of memory\n");
        fj_buf_free(&req);
        if (fd >= 0)
            close(fd);
        return CLI_FAILURE;
    }
    fj_buf_free(&req);

    struct http_in *in = calloc(1, sizeof *in);
    if (!in) {
        close(fd);
        return CLI_FAILURE;
    }
    in->fd = fd;
    char line[1024];
    int status = 0, rc = CLI_OK;
    bool is_sse = false;
    do { /* 1xx answers come before the real one */
        if (in_line(in, line, sizeof line) != 0 || sscanf(line, "HTTP/%*d.%*d %d", &status) != 1 ||
            read_headers(in, &is_sse) != 0) {
            fprintf(stderr, "forja chat: %s:%s did not answer in HTTP\n", r->host, r->port);
            close(fd);
            free(in);
            return CLI_FAILURE;
        }
    } while (status >= 100 && status < 200);

    if (status < 200 || status > 299 || !is_sse) {
        json_t *doc = whole_body(in);
        const char *msg = error_message(doc);
        json_t *choice = json_array_get(json_object_get(doc, "choices"), 0);
        const char *text =
            json_string_value(json_object_get(json_object_get(choice, "message"), "content"));
        if (status >= 200 && status <= 299 && text) { /* a server that does not stream */
            fputs(text, stdout);
            if (fj_buf_append(answer, text, strlen(text)) != 0)
                rc = CLI_FAILURE;
        } else {
            if (status >= 200 && status <= 299)
                status = 502;
            fprintf(stderr, "forja chat: the server answered %d: %s%s\n", status,
                    msg ? msg : "(no error message)",
                    status == 401 && !r->key
                        ? " (forja chat sends $FORJA_API_KEY, else $OPENAI_API_KEY)"
                        : "");
            rc = status_code(status);
        }
        json_decref(doc);
    } else {
        struct sse s = {.answer = answer};
        char chunk[8192];
        long long n;
        while (!s.done && !s.failed && (n = in_body(in, chunk, sizeof chunk)) > 0)
            sse_feed(&s, chunk, (size_t)n);
        if (!s.done && !s.failed) {
            fprintf(stderr, "%sforja chat: the connection ended before the answer did\n",
                    answer->len ? "\n" : "");
            rc = CLI_FAILURE;
        }
        if (s.failed)
            rc = CLI_FAILURE;
        fj_buf_free(&s.line);
        fj_buf_free(&s.data);
    }
    fflush(stdout);
    close(fd);
    free(in);
    return rc;
}

/* ---- the conversation ------------------------------------------------------------------ */

struct chat {
    struct chat_opts o;
    struct chat_local *local; /* one of these two */
    struct chat_remote *remote;
    char *system;  /* owned; NULL: no system message */
    json_t *turns; /* the user and assistant messages so far */
};

/* Asks for the answer to the conversation plus `user`, printing it as it comes; on success
 * both messages join the conversation. */
static int chat_turn(struct chat *c, const char *user)
{
    json_t *msg = json_pack("{s:s, s:s}", "role", "user", "content", user);
    if (!msg) {
        fprintf(stderr, "forja chat: the message is not valid UTF-8\n");
        return CLI_DATA_ERROR;
    }
    json_t *messages = json_array();
    if (c->system)
        json_array_append_new(messages,
                              json_pack("{s:s, s:s}", "role", "system", "content", c->system));
    json_array_extend(messages, c->turns);
    json_array_append(messages, msg);
    struct fj_buf answer = {0};
    int rc = c->remote ? remote_turn(c->remote, &c->o, messages, &answer)
                       : local_turn(c->local, &c->o, messages, &answer);
    if (rc == CLI_OK || answer.len > 0)
        putchar('\n');
    fflush(stdout);
    if (rc == CLI_OK) {
        json_t *reply = json_pack("{s:s, s:s#}", "role", "assistant", "content",
                                  answer.data ? answer.data : "", answer.len);
        json_array_append(c->turns, msg);
        json_array_append_new(c->turns, reply);
    }
    json_decref(msg);
    json_decref(messages);
    fj_buf_free(&answer);
    return rc;
}

static int set_system(struct chat *c, const char *text)
{
    free(c->system);
    c->system = text && *text ? strdup(text) : NULL;
    if (text && *text && !c->system) {
        fprintf(stderr, "forja chat: out of memory\n");
        return CLI_FAILURE;
    }
    return CLI_OK;
}

/* Lines from stdin until /exit or EOF. The first failure is the exit status; a turn that
 * failed for its request (CLI_DATA_ERROR) leaves the session going. */
static int chat_loop(struct chat *c)
{
    bool tty = isatty(STDIN_FILENO);
    if (tty)
        fprintf(stderr,
                "forja chat with %s: type a message; /system TEXT sets the system message, "
                "/reset starts over, /exit or Ctrl-D ends\n",
                c->o.model);
    char *line = NULL;
    size_t cap = 0;
    int status = CLI_OK;
    for (;;) {
        if (tty) {
            fputs("> ", stderr);
            fflush(stderr);
        }
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0)
            break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        const char *text = line + strspn(line, " \t");
        if (!*text)
            continue;
        int rc = CLI_OK;
        bool go_on = true;
        if (text[0] != '/') {
            rc = chat_turn(c, line);
            go_on = rc == CLI_OK || rc == CLI_DATA_ERROR; /* else the model or server is gone */
        } else if (strcmp(text, "/exit") == 0 || strcmp(text, "/quit") == 0) {
            break;
        } else if (strcmp(text, "/reset") == 0) {
            json_array_clear(c->turns);
        } else if (strncmp(text, "/system", 7) == 0 && (!text[7] || text[7] == ' ')) {
            rc = set_system(c, text + 7 + strspn(text + 7, " \t"));
            go_on = rc == CLI_OK;
        } else {
            fprintf(stderr,
                    "forja chat: unknown command '%s' (commands: /system TEXT, /reset, /exit)\n",
                    text);
            rc = CLI_USAGE;
        }
        if (status == CLI_OK)
            status = rc;
        if (!go_on)
            break;
    }
    free(line);
    return status;
}

/* ---- options --------------------------------------------------------------------------- */

static int parse_opts(const struct cli_cmd *cmd, const struct cli_args *a, struct chat_opts *o,
                      int *threads)
{
    const char *v;
    o->max_tokens = 256;
    if ((v = cli_get(cmd, a, "max-tokens"))) {
        long long n = cli_parse_count("max-tokens", v, 1 << 22);
        if (n < 0)
            return CLI_USAGE;
        if (n == 0) {
            fprintf(stderr, "forja chat: --max-tokens must be at least 1\n");
            return CLI_USAGE;
        }
        o->max_tokens = (int)n;
    }
    o->temperature = 0;
    if ((v = cli_get(cmd, a, "temperature"))) {
        char *end;
        errno = 0;
        o->temperature = strtod(v, &end);
        if (errno || end == v || *end || !(o->temperature >= 0 && o->temperature <= 2)) {
            fprintf(stderr, "forja chat: --temperature expects a number from 0 to 2, not '%s'\n",
                    v);
            return CLI_USAGE;
        }
    }
    if ((v = cli_get(cmd, a, "seed"))) {
        char *end;
        errno = 0;
        long long s = strtoll(v, &end, 10);
        if (errno || end == v || *end) {
            fprintf(stderr, "forja chat: --seed expects a whole number, not '%s'\n", v);
            return CLI_USAGE;
        }
        o->has_seed = true;
        o->seed = s;
    }
    long long t = (v = cli_get(cmd, a, "threads")) ? cli_parse_count("threads", v, 1024) : 0;
    if (t < 0)
        return CLI_USAGE;
    *threads = (int)t;
    return CLI_OK;
}

static int run_chat(const struct cli_cmd *cmd, const struct cli_args *a)
{
    struct chat c = {0};
    int threads = 0, n_pos = 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->items[i].opt == -1 && n_pos++ == 0)
            c.o.model = a->items[i].value;
    if (n_pos != 1 || !c.o.model[0]) {
        fprintf(stderr, "forja chat: name one model or deployment (forja chat MODEL)\n");
        return CLI_USAGE;
    }
    int rc = parse_opts(cmd, a, &c.o, &threads);
    if (rc != CLI_OK)
        return rc;
    const char *url = cli_get(cmd, a, "url");
    if (!url)
        url = getenv("FORJA_URL");
    struct chat_remote remote;
    struct chat_local local = {0};
    if (url && *url) {
        if ((rc = remote_parse(&remote, url)) != CLI_OK)
            return rc;
        c.remote = &remote;
    } else {
        if ((rc = local_open(&local, cmd, a, c.o.model, threads)) != CLI_OK)
            return rc;
        c.local = &local;
    }
    c.turns = json_array();
    if (!c.turns || set_system(&c, cli_get(cmd, a, "system")) != CLI_OK)
        rc = CLI_FAILURE;
    else if (cli_get(cmd, a, "once"))
        rc = chat_turn(&c, cli_get(cmd, a, "once"));
    else
        rc = chat_loop(&c);
    json_decref(c.turns);
    free(c.system);
    local_close(&local);
    return rc;
}

static const struct cli_opt chat_opts[] = {
    {"once", "TEXT", "Ask TEXT as the one user message, print the answer and exit (for scripts)."},
    {"system", "TEXT", "The system message to start with (/system TEXT changes it)."},
    {"max-tokens", "N", "At most N tokens per answer (default 256)."},
    {"temperature", "T",
     "Sampling temperature, 0 to 2 (default 0: greedy, the same answer every time)."},
    {"seed", "N", "Seed of the sampler, for reproducible answers at a temperature above 0."},
    {"url", "URL",
     "Chat through the `forja serve` at URL (http://HOST:PORT; default $FORJA_URL) instead of "
     "loading the model; the key comes from $FORJA_API_KEY, else $OPENAI_API_KEY."},
    {"threads", "N", "In process: threads to compute with (default: all cores)."},
    CLI_OPT_DATA_DIR,
    {NULL, NULL, NULL},
};

const struct cli_cmd cli_cmd_chat = {
    "chat",
    "MODEL",
    "Chat with a model or deployment in the terminal",
    "Reads lines from standard input, each a user message, and prints the model's answer as "
    "its tokens come, keeping the conversation: every answer sees the messages before it. "
    "Commands: /system TEXT sets or replaces the system message (/system alone removes it), "
    "/reset forgets the conversation but keeps the system message, /exit (or end of input) "
    "ends. With --once the one question is answered and the command exits.\n\n"
    "MODEL is a base model (a name in DATA/models or a folder; the built-in forja-base is "
    "created on first use), a fine-tuned model or checkpoint that `forja serve` made "
    "(ft:...; ...:ckpt-step-N; a LoRA fine-tune runs as its adapter on its base), or a "
    "deployment of one: it is loaded in this process. With --url (or $FORJA_URL) the "
    "running server answers instead (POST /v1/chat/completions, streamed) and MODEL is any "
    "name it knows, its aliases (gpt-4o, ...) and deployments included. At the default "
    "temperature 0 the same conversation gets the same answer, in process or from the "
    "server. Exit status: 2 for an unknown model, 1 when a message was refused (too long for "
    "the model's context), 3 for other failures.",
    chat_opts,
    run_chat,
};
