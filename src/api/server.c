/* server.c - the HTTP server: libmicrohttpd with a pool of threads (HTTP/1.1 keep-alive,
 * chunked request bodies, idle timeouts), one api_req per request from its first header to
 * its log line. A request's path picks the API family (/v1 or /openai) and the route; its
 * key is checked before anything else happens; its body is read as JSON (bounded), streamed
 * into an upload, or ignored. A problem found while a body is still arriving is answered
 * once the body has been read, so that clients that send the whole body before reading
 * (the SDKs do) see the answer rather than a reset connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/api_internal.h"
#include "store/store.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct api_config api_config_default(void)
{
    return (struct api_config){.host = "127.0.0.1",
                               .port = 8080,
                               .threads = 4,
                               .max_upload_bytes = (uint64_t)1 << 30,
                               .max_body_bytes = (uint64_t)1 << 20,
                               .timeout_s = 60,
                               .org = "forja"};
}

json_t *api_default_aliases(const char *target)
{
    static const char *const names[] = {
        "gpt-4o",       "gpt-4o-2024-08-06",      "gpt-4o-mini",   "gpt-4o-mini-2024-07-18",
        "gpt-35-turbo", "gpt-35-turbo-0125",      "gpt-3.5-turbo", "gpt-3.5-turbo-0125",
        "gpt-4.1",      "gpt-4.1-2025-04-14",     "gpt-4.1-mini",  "gpt-4.1-mini-2025-04-14",
        "gpt-4.1-nano", "gpt-4.1-nano-2025-04-14"};
    json_t *o = json_object();
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        json_object_set_new(o, names[i], json_string(target));
    return o;
}

/* ---- authentication ------------------------------------------------------------------ */

static const char *presented_key(struct api_req *r)
{
    const char *k = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "api-key");
    if (k && *k)
        return k;
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    if (h && strncasecmp(h, "Bearer ", 7) == 0)
        return h + 7;
    return NULL;
}

static void auth_failed(struct api_req *r, const char *key)
{
    if (r->family == API_AZURE)
        api_error_later(r, 401, "invalid_request_error", "401", NULL,
                        "Access denied due to invalid subscription key or wrong API endpoint. "
                        "Make sure to provide a valid key for an active subscription and use a "
                        "correct regional API endpoint for your resource.");
    else if (key && strncmp(key, "fjm_", 4) == 0)
        api_error_later(r, 401, "invalid_request_error", "invalid_api_key", NULL,
                        "A management token (forja token) is for the deployment routes only; "
                        "this route takes an API key (forja keys create).");
    else if (!key)
        api_error_later(r, 401, "invalid_request_error", NULL, NULL,
                        "You didn't provide an API key. You need to provide your API key in an "
                        "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                        "YOUR_KEY). `forja keys create` makes one.");
    else
        api_error_later(r, 401, "invalid_request_error", "invalid_api_key", NULL,
                        "Incorrect API key provided. `forja keys list` shows the server's keys.");
}

/* Azure Resource Manager routes take only a management token (forja token). */
static void arm_auth(struct api_req *r)
{
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    const char *token = h && strncasecmp(h, "Bearer ", 7) == 0 ? h + 7 : NULL;
    if (!token)
        api_error_later(r, 401, "invalid_request_error", "AuthenticationFailed", NULL,
                        "Authentication failed. The 'Authorization' header is missing; send "
                        "'Authorization: Bearer TOKEN' with a token from `forja token`.");
    else if (!store_token_check(r->srv->st, token))
        api_error_later(r, 401, "invalid_request_error", "InvalidAuthenticationToken", NULL,
                        strncmp(token, "fj-", 3) == 0
                            ? "An API key cannot manage deployments; use a management token "
                              "from `forja token`."
                            : "The access token is invalid or has expired; get a new one with "
                              "`forja token`.");
}

/* ---- a request's first call: family, route, key, limits ------------------------------------ */

static void classify(struct api_req *r, const char *url)
{
    snprintf(r->path, sizeof r->path, "%s", url);
    const char *rest = r->path;
    if (strncmp(r->path, "/v1/", 4) == 0 || strcmp(r->path, "/v1") == 0) {
        r->family = API_OPENAI;
        rest = r->path + 3;
    } else if (strncmp(r->path, "/openai/", 8) == 0 || strcmp(r->path, "/openai") == 0) {
        r->family = API_AZURE;
        rest = r->path + 7;
    } else if (strncmp(r->path, "/subscriptions/", 15) == 0) {
        r->family = API_ARM;
    } else {
        r->family = API_BARE;
    }
    if (r->family == API_BARE) {
        if (strcmp(r->path, "/healthz") == 0 && strcmp(r->method, "GET") == 0) {
            static const struct api_route healthz = {"GET",      "/healthz",    BODY_NONE,
                                                     SCOPE_BOTH, api_h_healthz, "healthz"};
            r->route = &healthz;
            return;
        }
        if (strcmp(r->path, "/metrics") == 0 && strcmp(r->method, "GET") == 0) {
            static const struct api_route metrics = {"GET",      "/metrics",    BODY_NONE,
                                                     SCOPE_BOTH, api_h_metrics, "metrics"};
            r->route = &metrics;
        }
        if (!presented_key(r) || !store_key_check(r->srv->st, presented_key(r)))
            auth_failed(r, presented_key(r));
        else if (!r->route)
            api_error_later(r, 404, "invalid_request_error", NULL, NULL, "Invalid URL");
        return;
    }
    bool known = false;
    r->route = api_route_find(r->method, rest, r->family, r, &known);
    if (r->family != API_OPENAI && !api_query(r, "api-version")) {
        api_error_later(r, 400, "invalid_request_error", "MissingApiVersionParameter",
                        "api-version",
                        "The api-version query parameter (?api-version=) is required for all "
                        "requests.");
        return;
    }
    const char *key = presented_key(r);
    if (r->family == API_ARM) {
        arm_auth(r);
        if (r->pending_status)
            return;
    } else if (!key || !store_key_check(r->srv->st, key)) {
        auth_failed(r, key);
        return;
    }
    if (!r->route) {
        char msg[512];
        snprintf(msg, sizeof msg, "Invalid URL (%s %.300s)%s", r->method, r->path,
                 known ? ": the method is not allowed here" : "");
        api_error_later(r, known ? 405 : 404, "invalid_request_error", NULL, NULL, msg);
    }
}

static bool content_length_over(struct api_req *r, uint64_t limit)
{
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");
    return cl && strtoull(cl, NULL, 10) > limit;
}

static struct api_req *request_new(struct api_server *srv, struct MHD_Connection *conn,
                                   const char *url, const char *method)
{
    struct api_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->srv = srv;
    r->conn = conn;
    r->t0 = now_s();
    store_new_id("req_", r->id);
    snprintf(r->method, sizeof r->method, "%s", method);
    classify(r, url);
    if (r->pending_status || !r->route)
        return r;
    if (r->route->body == BODY_MULTIPART) {
        if (content_length_over(r, srv->cfg.max_upload_bytes + 65536))
            api_error_later(r, 413, "invalid_request_error", "file_too_large", "file",
                            "The upload is larger than this server's limit");
        else if (api_upload_begin(r) != 0)
            api_error_later(r, 400, "invalid_request_error", NULL, NULL,
                            "An upload is a multipart/form-data body with the fields file and "
                            "purpose");
    } else if (content_length_over(r, srv->cfg.max_body_bytes)) {
        api_error_later(r, 413, "invalid_request_error", "request_too_large", NULL,
                        "The request body is larger than this server's limit");
    }
    return r;
}

/* ---- bodies ----------------------------------------------------------------------------- */

static void body_data(struct api_req *r, const char *data, size_t size)
{
    if (r->pending_status || !r->route)
        return; /* read and dropped: the answer is already decided */
    if (r->route->body == BODY_MULTIPART) {
        if (api_upload_chunk(r, data, size) != 0 && !r->pending_status)
            api_error_later(r, 400, "invalid_request_error", NULL, NULL,
                            "The multipart body could not be read");
        return;
    }
    if (r->body.len + size > r->srv->cfg.max_body_bytes) {
        api_error_later(r, 413, "invalid_request_error", "request_too_large", NULL,
                        "The request body is larger than this server's limit");
        fj_buf_free(&r->body);
        return;
    }
    if (fj_buf_append(&r->body, data, size) != 0)
        api_error_later(r, 500, "server_error", NULL, NULL, "out of memory");
}

static void dispatch(struct api_req *r)
{
    if (r->pending_status) {
        api_error(r, r->pending_status, r->pending_type,
                  r->pending_code[0] ? r->pending_code : NULL,
                  r->pending_param[0] ? r->pending_param : NULL, "%s", r->pending_msg);
        return;
    }
    if (r->route)
        r->route->fn(r);
    if (!r->replied && !r->chat) /* a chat answers later, from its generation */
        api_error(r, 500, "server_error", NULL, NULL, "The request was not answered");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct api_server *srv = cls;
    struct api_req *r = *con_cls;
    if (!r) {
        if (!(r = request_new(srv, conn, url, method)))
            return MHD_NO;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        body_data(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->chat && !r->replied)
        api_chat_resume(r);
    else if (!r->replied)
        dispatch(r);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    struct api_server *srv = cls;
    struct api_req *r = *con_cls;
    if (!r)
        return;
    int status = r->replied ? r->status : 0;
    api_count(srv, r->route ? r->route->name : "unknown", status);
    if (srv->cfg.log) {
        char line[2600];
        snprintf(line, sizeof line, "%s %s %d %.1fms %s%s", r->method, r->path, status,
                 (now_s() - r->t0) * 1000.0, r->id,
                 toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed early)");
        srv->cfg.log(srv->cfg.log_ctx, line);
    }
    api_chat_free(r);
    api_upload_free(r);
    fj_buf_free(&r->body);
    free(r);
    *con_cls = NULL;
}

/* ---- start and stop ------------------------------------------------------------------ */

#include <arpa/inet.h>
#include <netinet/in.h>

int api_start(struct api_server **out, struct store *st, struct svc *svc,
              const struct api_config *cfg, struct fj_err *err)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->port)};
    if (inet_pton(AF_INET, cfg->host, &addr.sin_addr) != 1)
        return fj_err_set(err, FJ_ERR_INVALID, "'%s' is not an IPv4 address to listen on",
                          cfg->host);
    struct api_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    srv->st = st;
    srv->svc = svc;
    srv->cfg = *cfg;
    srv->aliases = cfg->aliases ? json_deep_copy(cfg->aliases) : json_object();
    srv->cfg.aliases = srv->aliases;
    srv->inf = cfg->inf;
    pthread_mutex_init(&srv->metrics_lock, NULL);
    pthread_mutex_init(&srv->deploy_lock, NULL);
    pthread_mutex_init(&srv->chats_lock, NULL);
    pthread_cond_init(&srv->deploy_cond, NULL);
    /* suspend/resume: a chat's connection waits for its tokens without holding a thread */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
                     MHD_ALLOW_SUSPEND_RESUME;
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(cfg->threads > 0 ? cfg->threads : 4),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(cfg->timeout_s > 0 ? cfg->timeout_s : 60),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_END);
    if (!srv->daemon) {
        json_decref(srv->aliases);
        free(srv);
        return fj_err_set(err, FJ_ERR_IO, "cannot listen on %s:%d (in use, or not allowed)",
                          cfg->host, cfg->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : cfg->port;
    api_deploy_start(srv);
    *out = srv;
    return 0;
}

int api_port(const struct api_server *srv)
{
    return srv->port;
}

void api_stop(struct api_server *srv)
{
    if (!srv)
        return;
    api_chat_close_all(srv);
    MHD_stop_daemon(srv->daemon);
    api_deploy_stop(srv);
    pthread_mutex_destroy(&srv->metrics_lock);
    pthread_mutex_destroy(&srv->deploy_lock);
    pthread_mutex_destroy(&srv->chats_lock);
    pthread_cond_destroy(&srv->deploy_cond);
    json_decref(srv->aliases);
    free(srv);
}
