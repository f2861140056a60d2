/* metrics.c - GET /healthz (no key needed: for load balancers and scripts) and GET /metrics
 * in Prometheus' text format: requests by route and status, jobs by status, training tokens
 * per second and bytes uploaded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"

void api_count(struct api_server *srv, const char *route, int status)
{
    pthread_mutex_lock(&srv->metrics_lock);
    int i = 0;
    while (i < srv->n_counters &&
           !(srv->counters[i].status == status && strcmp(srv->counters[i].route, route) == 0))
        i++;
    if (i == srv->n_counters && i < API_MAX_COUNTERS)
        srv->counters[srv->n_counters++] = (struct api_counter){route, status, 0};
    if (i < API_MAX_COUNTERS)
        srv->counters[i].n++;
    pthread_mutex_unlock(&srv->metrics_lock);
}

void api_h_healthz(struct api_req *r)
{
    api_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

void api_h_metrics(struct api_req *r)
{
    struct api_server *srv = r->srv;
    struct fj_buf b = {0};
    fj_buf_printf(&b, "# HELP forja_http_requests_total Requests answered, by route and status.\n"
                      "# TYPE forja_http_requests_total counter\n");
    pthread_mutex_lock(&srv->metrics_lock);
    for (int i = 0; i < srv->n_counters; i++)
        fj_buf_printf(&b, "forja_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                      srv->counters[i].route, srv->counters[i].status,
                      (unsigned long long)srv->counters[i].n);
    uint64_t up = srv->upload_bytes;
    pthread_mutex_unlock(&srv->metrics_lock);
    fj_buf_printf(&b,
                  "# HELP forja_upload_bytes_total Bytes of uploaded files received.\n"
                  "# TYPE forja_upload_bytes_total counter\nforja_upload_bytes_total %llu\n",
                  (unsigned long long)up);
    static const char *const statuses[] = {"validating_files", "queued", "running",  "paused",
                                           "succeeded",        "failed", "cancelled"};
    json_t *counts = NULL;
    store_job_counts(srv->st, &counts, NULL);
    fj_buf_printf(&b, "# HELP forja_jobs Fine-tuning jobs by status.\n# TYPE forja_jobs gauge\n");
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
        fj_buf_printf(&b, "forja_jobs{status=\"%s\"} %lld\n", statuses[i],
                      (long long)json_integer_value(json_object_get(counts, statuses[i])));
    json_decref(counts);
    fj_buf_printf(&b,
                  "# HELP forja_training_tokens_per_second Training tokens per second of the "
                  "running jobs together.\n# TYPE forja_training_tokens_per_second gauge\n"
                  "forja_training_tokens_per_second %.3f\n",
                  svc_tokens_per_s(srv->svc));
    if (srv->inf) {
        struct infer_stats is;
        uint64_t used, budget;
        infer_stats(srv->inf, &is);
        infer_memory(srv->inf, &used, &budget);
        fj_buf_printf(&b,
                      "# HELP forja_inference_tokens_total Tokens processed by the inference "
                      "engine.\n# TYPE forja_inference_tokens_total counter\n"
                      "forja_inference_tokens_total{kind=\"prompt\"} %llu\n"
                      "forja_inference_tokens_total{kind=\"generated\"} %llu\n"
                      "# HELP forja_inference_sequences Sequences running and requests "
                      "waiting.\n# TYPE forja_inference_sequences gauge\n"
                      "forja_inference_sequences{state=\"running\"} %d\n"
                      "forja_inference_sequences{state=\"queued\"} %d\n"
                      "# HELP forja_inference_memory_bytes Inference memory in use and its "
                      "budget.\n# TYPE forja_inference_memory_bytes gauge\n"
                      "forja_inference_memory_bytes{kind=\"used\"} %llu\n"
                      "forja_inference_memory_bytes{kind=\"budget\"} %llu\n",
                      (unsigned long long)is.prompt_tokens, (unsigned long long)is.generated_tokens,
                      is.running, is.queued, (unsigned long long)used, (unsigned long long)budget);
    }
    if (!b.data) {
        api_error(r, 500, "server_error", NULL, NULL, "out of memory");
        return;
    }
    api_reply_text(r, 200, "text/plain; version=0.0.4", (char *)b.data, b.len);
}
