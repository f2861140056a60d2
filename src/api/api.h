/* api.h - forja's HTTP API: the OpenAI (/v1, Bearer key) and Azure OpenAI (/openai,
 * api-key header, api-version) fine-tuning routes over libmicrohttpd (docs/service.md,
 * ../shared/docs/API.md).
 *
 *     struct api_config cfg = api_config_default();
 *     cfg.port = 8080;
 *     api_start(&srv, store, svc, &cfg, &err);   // serves on its own threads
 *     ...
 *     api_stop(srv);
 *
 * The pieces:
 *   server.c    the HTTP server: requests, bodies, limits, request ids, logs, auth
 *   reply.c     JSON replies and the error envelopes of both API families
 *   route.c     paths to handlers
 *   files.c     /files: multipart uploads streamed to the store, lists, content
 *   jobs.c      /fine_tuning/jobs: create (the request checked and resolved), list, controls,
 *               events, checkpoints
 *   models.c    /models: base models, aliases, fine-tuned models and checkpoints
 *   metrics.c   /healthz and /metrics (Prometheus text)
 */
#ifndef FJ_API_API_H
#define FJ_API_API_H

#include <stdint.h>

#include <jansson.h>

#include "core/err.h"
#include "infer/infer.h"
#include "store/store.h"
#include "svc/svc.h"

struct api_config {
    const char *host;                         /* address to listen on (default 127.0.0.1) */
    int port;                                 /* 0: any free port (see api_port) */
    int threads;                              /* request threads (default 4) */
    uint64_t max_upload_bytes;                /* a larger upload is refused with 413 */
    uint64_t max_body_bytes;                  /* a larger JSON body is refused with 413 */
    int timeout_s;                            /* an idle connection is closed after this */
    const char *org;                          /* the organization in fine-tuned model names */
    json_t *aliases;                          /* {"gpt-4o": "forja-base", ...}; borrowed */
    struct infer *inf;                        /* the inference engine (chat); borrowed */
    void (*log)(void *ctx, const char *line); /* one line per request (may be NULL) */
    void *log_ctx;
};

/* Defaults: 127.0.0.1:8080, 4 threads, 1 GiB uploads, 1 MiB JSON bodies, 60 s timeout,
 * organization "forja", no aliases. */
struct api_config api_config_default(void);

/* The model names OpenAI and Azure code uses, as a new object {alias: target}. */
json_t *api_default_aliases(const char *target);

struct api_server;

int api_start(struct api_server **out, struct store *st, struct svc *svc,
              const struct api_config *cfg, struct fj_err *err);
int api_port(const struct api_server *srv);
void api_stop(struct api_server *srv);

#endif
