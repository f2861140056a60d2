/* api_internal.h - what the API's files share: the server, one request, the reply helpers
 * and the handlers. Not for use outside src/api. */
#ifndef FJ_API_INTERNAL_H
#define FJ_API_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <microhttpd.h>

#include "api/api.h"
#include "core/buf.h"
#include "infer/infer.h"

/* /v1, /openai, Azure's management paths (/subscriptions/...: deployments), neither */
enum api_family { API_OPENAI, API_AZURE, API_ARM, API_BARE };

struct api_counter {
    const char *route; /* a route's name: static storage */
    int status;
    uint64_t n;
};

#define API_MAX_COUNTERS 512

struct api_server {
    struct MHD_Daemon *daemon;
    struct store *st;
    struct svc *svc;
    struct api_config cfg;
    json_t *aliases; /* owned copy */
    int port;
    pthread_mutex_t metrics_lock;
    struct api_counter counters[API_MAX_COUNTERS];
    int n_counters;
    uint64_t upload_bytes;
    /* deployments (deploy.c) */
    struct infer *inf; /* borrowed */
    pthread_mutex_t deploy_lock;
    pthread_cond_t deploy_cond;
    struct api_deploy *deploys;
    int loaders;         /* deployment loads in flight */
    uint64_t deploy_gen; /* counts PUTs, so that a load knows whether it is still wanted */
    bool stopping;
    /* chats in progress (chat.c), so that stopping can wake every suspended connection */
    pthread_mutex_t chats_lock;
    struct api_chat *chats;
    bool chats_closed;
};

struct api_req;
typedef void (*api_handler)(struct api_req *r);

#define API_MAX_PARAMS 4

/* How a route reads its body. */
enum api_body { BODY_NONE, BODY_JSON, BODY_MULTIPART };

/* Which families a route belongs to. */
enum api_scope { SCOPE_BOTH, SCOPE_AZURE, SCOPE_ARM };

struct api_route {
    const char *method;
    const char *pattern; /* "/files/{}/content": {} matches one path segment */
    enum api_body body;
    enum api_scope scope;
    api_handler fn;
    const char *name; /* for logs and metrics */
};

struct api_req {
    struct api_server *srv;
    struct MHD_Connection *conn;
    char id[STORE_ID_MAX]; /* x-request-id */
    char method[16];
    char path[2048]; /* decoded, without the query */
    enum api_family family;
    const struct api_route *route;
    char params[API_MAX_PARAMS][512];
    double t0;
    int status; /* once replied */
    bool replied;
    /* a problem found while the body was still arriving, answered once it has */
    int pending_status;
    char pending_type[48], pending_code[48], pending_param[32];
    char pending_msg[512];
    /* JSON body */
    struct fj_buf body;
    /* multipart upload */
    struct MHD_PostProcessor *pp;
    struct store_upload *up;
    char filename[256], purpose[64], field[64];
    bool have_file, upload_failed;
    char head[8192]; /* the upload's first bytes, for the quick check */
    size_t head_len;
    /* a chat completion answered later (chat.c): the connection is suspended meanwhile */
    struct api_chat *chat;
    int retry_after; /* seconds, sent as retry-after when > 0 */
};

/* reply.c */
void api_reply_json(struct api_req *r, int status, json_t *body);              /* takes body */
void api_reply_created(struct api_req *r, json_t *body, const char *location); /* 200 or 201 */
void api_reply_text(struct api_req *r, int status, const char *type, char *text, size_t len);
void api_reply_fd(struct api_req *r, int fd, uint64_t size, const char *type);
/* Queues resp (a streaming response) with the common headers; takes resp. */
void api_reply_response(struct api_req *r, int status, struct MHD_Response *resp, const char *type);
/* An error in the envelope of r's family: type is OpenAI's ("invalid_request_error", ...),
 * code may be NULL (then the type stands in on Azure), param may be NULL. */
void api_error(struct api_req *r, int status, const char *type, const char *code, const char *param,
               const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* The error for a store or service failure: NOT_FOUND -> 404, BUSY/STATE -> 409, ... */
void api_error_from(struct api_req *r, int code, const char *msg, const char *param);
/* Remembers an error to send when the body has been read. */
void api_error_later(struct api_req *r, int status, const char *type, const char *code,
                     const char *param, const char *msg);

/* Whether path parameter 0 can be an id with this prefix; if not, 404 "what: ID" has been
 * replied (param names the parameter in the error). */
bool api_id_param(struct api_req *r, const char *prefix, const char *param, const char *what);
/* Query helpers: NULL if absent. */
const char *api_query(struct api_req *r, const char *key);
/* ?after= and ?limit= (1..100, default 20); false after replying 400. */
bool api_page(struct api_req *r, struct store_page *page);
/* {object:"list", data, has_more, first_id, last_id} from a page of the store; frees l's
 * data. */
void api_reply_list(struct api_req *r, struct store_list *l);
/* The JSON body as an object (400 replied and NULL if it is not one). Owned by the caller. */
json_t *api_body_object(struct api_req *r);

/* route.c */
const struct api_route *api_route_find(const char *method, const char *path, enum api_family family,
                                       struct api_req *r, bool *path_known);

/* metrics.c */
void api_count(struct api_server *srv, const char *route, int status);
void api_h_healthz(struct api_req *r);
void api_h_metrics(struct api_req *r);

/* files.c */
void api_h_file_upload(struct api_req *r);
void api_h_file_list(struct api_req *r);
void api_h_file_get(struct api_req *r);
void api_h_file_delete(struct api_req *r);
void api_h_file_content(struct api_req *r);
int api_upload_chunk(struct api_req *r, const char *data, size_t size); /* from server.c */
int api_upload_begin(struct api_req *r);
void api_upload_free(struct api_req *r);

/* jobs.c */
void api_h_job_create(struct api_req *r);
void api_h_job_list(struct api_req *r);
void api_h_job_get(struct api_req *r);
void api_h_job_cancel(struct api_req *r);
void api_h_job_pause(struct api_req *r);
void api_h_job_resume(struct api_req *r);
void api_h_job_delete(struct api_req *r);
void api_h_job_events(struct api_req *r);
void api_h_job_checkpoints(struct api_req *r);

/* models.c */
void api_h_model_list(struct api_req *r);
void api_h_model_get(struct api_req *r);
void api_h_model_delete(struct api_req *r);
/* What a model name means for training: the --model value for the trainer (a base name or
 * a folder), the base it descends from and whether it is an alias. FJ_ERR_NOT_FOUND if the
 * name is unknown, FJ_ERR_INVALID if it cannot be trained from. */
int api_model_resolve(struct api_server *srv, const char *name, char *model, size_t cap, char *base,
                      size_t base_cap, bool *alias, struct fj_err *err);
/* The folders a model name is served from: a model folder, and for a LoRA fine-tune or
 * checkpoint its adapter folder (adapter is "" otherwise). FJ_ERR_NOT_FOUND if unknown. */
int api_model_folders(struct api_server *srv, const char *name, char *model, size_t cap,
                      char *adapter, size_t adapter_cap, struct fj_err *err);

/* chat.c */
void api_h_chat(struct api_req *r);
/* The next step of a chat whose connection was resumed (server.c). */
void api_chat_resume(struct api_req *r);
/* The request is over (answered, or the client went away): stops the generation. */
void api_chat_free(struct api_req *r);
/* Ends every chat in progress and resumes their connections (libmicrohttpd cannot stop
 * with suspended ones); new chats are refused from now on. */
void api_chat_close_all(struct api_server *srv);

/* deploy.c */
void api_h_deploy_put(struct api_req *r);
void api_h_deploy_get(struct api_req *r);
void api_h_deploy_list(struct api_req *r);
void api_h_deploy_delete(struct api_req *r);
/* Loads the stored deployments (at start) / stops their loads and drops them (at stop). */
void api_deploy_start(struct api_server *srv);
void api_deploy_stop(struct api_server *srv);
/* A held model for deployment name (and its model's name): NULL and 404 replied when it is
 * unknown or not loaded yet. */
struct infer_model *api_deploy_acquire(struct api_req *r, const char *name, char *model_name,
                                       size_t cap);
/* Takes tokens from the deployment's per-minute budget: false and 429 (with retry-after)
 * replied when it lacks them. api_deploy_settle gives back what was not used. */
bool api_deploy_reserve(struct api_req *r, const char *name, int tokens);
void api_deploy_settle(struct api_server *srv, const char *name, int reserved, int used);
/* Whether a deployment of that name exists (in any state). */
bool api_deploy_exists(struct api_server *srv, const char *name);
/* The name of a deployment of model, or false. */
bool api_deploy_of_model(struct api_server *srv, const char *model, char *name, size_t cap);

#endif
