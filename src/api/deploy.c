/* deploy.c - deployments in Azure Resource Manager's shape: PUT binds a name to a model and
 * loads it in the background (provisioningState Creating, then Succeeded or Failed), GET
 * shows one or all, DELETE unbinds it. The stored ARM object survives restarts; the server
 * loads every stored deployment again when it starts.
 *
 * Each deployment has a token budget of sku.capacity x 1000 tokens per minute, kept as a
 * bucket that refills continuously: a chat reserves its prompt plus its most completion
 * tokens when it is admitted (429 with retry-after when the bucket lacks them) and gives
 * back what it did not use when it ends.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_internal.h"

enum deploy_state { DEPLOY_CREATING, DEPLOY_SUCCEEDED, DEPLOY_FAILED };

struct api_deploy {
    struct api_deploy *next;
    char name[128];
    char model[512];
    int capacity;
    uint64_t gen; /* which PUT this entry is (a load checks it is still wanted) */
    enum deploy_state state;
    char error[600];
    struct infer_model *mdl; /* held while the deployment exists */
    double tokens, refilled; /* the bucket and when it was last refilled */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Under deploy_lock. */
static struct api_deploy *find(struct api_server *srv, const char *name)
{
    for (struct api_deploy *d = srv->deploys; d; d = d->next)
        if (strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

static const char *state_name(enum deploy_state s)
{
    return s == DEPLOY_SUCCEEDED ? "Succeeded" : s == DEPLOY_FAILED ? "Failed" : "Creating";
}

/* The stored object with the run-time state (a new reference). Under deploy_lock. */
static json_t *with_state(const struct api_deploy *d, json_t *doc)
{
    json_t *o = json_deep_copy(doc);
    json_t *props = json_object_get(o, "properties");
    if (!json_is_object(props))
        json_object_set_new(o, "properties", props = json_object());
    json_object_set_new(props, "provisioningState",
                        json_string(d ? state_name(d->state) : "Creating"));
    if (d && d->state == DEPLOY_FAILED)
        json_object_set_new(
            props, "error",
            json_pack("{s:s, s:s}", "code", "DeploymentFailed", "message", d->error));
    return o;
}

/* ---- loading --------------------------------------------------------------------------- */

struct load_job {
    struct api_server *srv;
    char name[128], model[512];
    uint64_t gen;
};

static void *load_main(void *arg)
{
    struct load_job *job = arg;
    struct api_server *srv = job->srv;
    char dir[4400], adapter[4400];
    struct fj_err err = {0};
    struct infer_model *mdl = NULL;
    if (api_model_folders(srv, job->model, dir, sizeof dir, adapter, sizeof adapter, &err) == 0)
        mdl = infer_open(srv->inf, dir, adapter[0] ? adapter : NULL, &err);
    pthread_mutex_lock(&srv->deploy_lock);
    struct api_deploy *d = find(srv, job->name);
    if (d && d->gen == job->gen && !srv->stopping) {
        d->mdl = mdl;
        d->state = mdl ? DEPLOY_SUCCEEDED : DEPLOY_FAILED;
        snprintf(d->error, sizeof d->error, "%s", err.msg);
        mdl = NULL;
    }
    srv->loaders--;
    pthread_cond_broadcast(&srv->deploy_cond);
    pthread_mutex_unlock(&srv->deploy_lock);
    infer_close(mdl); /* the deployment was replaced or deleted meanwhile */
    if (srv->cfg.log) {
        char line[1400];
        snprintf(line, sizeof line, "deployment %s (%s): %s", job->name, job->model,
                 err.msg[0] ? err.msg : "loaded");
        srv->cfg.log(srv->cfg.log_ctx, line);
    }
    free(job);
    return NULL;
}

/* Starts loading d's model. Under deploy_lock. */
static void start_load(struct api_server *srv, struct api_deploy *d)
{
    struct load_job *job = calloc(1, sizeof *job);
    pthread_t t;
    pthread_attr_t attr;
    d->state = DEPLOY_CREATING;
    d->gen = ++srv->deploy_gen;
    if (job) {
        job->srv = srv;
        job->gen = d->gen;
        snprintf(job->name, sizeof job->name, "%s", d->name);
        snprintf(job->model, sizeof job->model, "%s", d->model);
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (job && pthread_create(&t, &attr, load_main, job) == 0) {
        srv->loaders++;
    } else {
        free(job);
        d->state = DEPLOY_FAILED;
        snprintf(d->error, sizeof d->error, "the model could not be loaded: out of resources");
    }
    pthread_attr_destroy(&attr);
}

static struct api_deploy *deploy_new(const char *name, const char *model, int capacity)
{
    struct api_deploy *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    snprintf(d->name, sizeof d->name, "%s", name);
    snprintf(d->model, sizeof d->model, "%s", model);
    d->capacity = capacity;
    d->tokens = capacity * 1000.0;
    d->refilled = now_s();
    return d;
}

void api_deploy_start(struct api_server *srv)
{
    json_t *list = NULL;
    if (store_deployment_list(srv->st, &list, NULL) != 0)
        return;
    size_t i;
    json_t *doc;
    pthread_mutex_lock(&srv->deploy_lock);
    json_array_foreach(list, i, doc)
    {
        const char *name = json_string_value(json_object_get(doc, "name"));
        const char *model = json_string_value(
            json_object_get(json_object_get(json_object_get(doc, "properties"), "model"), "name"));
        json_t *cap = json_object_get(json_object_get(doc, "sku"), "capacity");
        struct api_deploy *d =
            name && model ? deploy_new(name, model, (int)json_integer_value(cap)) : NULL;
        if (!d)
            continue;
        d->next = srv->deploys;
        srv->deploys = d;
        start_load(srv, d);
    }
    pthread_mutex_unlock(&srv->deploy_lock);
    json_decref(list);
}

void api_deploy_stop(struct api_server *srv)
{
    pthread_mutex_lock(&srv->deploy_lock);
    srv->stopping = true;
    while (srv->loaders > 0)
        pthread_cond_wait(&srv->deploy_cond, &srv->deploy_lock);
    struct api_deploy *d = srv->deploys;
    srv->deploys = NULL;
    pthread_mutex_unlock(&srv->deploy_lock);
    while (d) {
        struct api_deploy *next = d->next;
        infer_close(d->mdl);
        free(d);
        d = next;
    }
}

/* ---- the routes ------------------------------------------------------------------------ */

static bool deploy_name_ok(struct api_req *r, const char *name)
{
    if (store_name_valid(name, 2, 64))
        return true;
    api_error(r, 400, "invalid_request_error", "InvalidResourceName", NULL,
              "The deployment name '%.100s' is invalid: use 2 to 64 letters, digits, '-' and "
              "'_'",
              name);
    return false;
}

/* sku.capacity (default 1) and properties.model.name from a PUT body; false after
 * replying 400. */
static bool read_put(struct api_req *r, json_t *body, int *capacity, const char **model)
{
    json_t *sku = json_object_get(body, "sku"), *cap = json_object_get(sku, "capacity");
    json_t *mdl = json_object_get(json_object_get(body, "properties"), "model");
    *model = json_string_value(json_object_get(mdl, "name"));
    *capacity = cap ? (int)json_integer_value(cap) : 1;
    if ((sku && !json_is_object(sku)) ||
        (cap && (!json_is_integer(cap) || json_integer_value(cap) < 1 ||
                 json_integer_value(cap) > 1000000))) {
        api_error(r, 400, "invalid_request_error", "InvalidResourceProperties", NULL,
                  "sku.capacity must be an integer from 1 to 1000000 (thousands of tokens per "
                  "minute)");
        return false;
    }
    if (!*model || !**model) {
        api_error(r, 400, "invalid_request_error", "InvalidResourceProperties", NULL,
                  "properties.model.name is required: the fine-tuned model (or any model of "
                  "GET /v1/models) to deploy");
        return false;
    }
    return true;
}

void api_h_deploy_put(struct api_req *r)
{
    const char *name = r->params[3];
    if (!deploy_name_ok(r, name))
        return;
    json_t *body = api_body_object(r);
    int capacity;
    const char *model;
    if (!body || !read_put(r, body, &capacity, &model)) {
        json_decref(body);
        return;
    }
    char dir[4400], adapter[4400];
    struct fj_err err = {0};
    if (api_model_folders(r->srv, model, dir, sizeof dir, adapter, sizeof adapter, &err) != 0) {
        api_error(r, 400, "invalid_request_error", "DeploymentModelNotSupported", NULL, "%s",
                  err.msg);
        json_decref(body);
        return;
    }
    char id[1200];
    snprintf(id, sizeof id, "%.1100s", r->path);
    json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:{s:s, s:i}, s:{s:{s:s, s:s, s:s}, s:[{s:s, s:i, s:i}]}}", "id", id,
        "name", name, "type", "Microsoft.CognitiveServices/accounts/deployments", "sku", "name",
        json_string_value(json_object_get(json_object_get(body, "sku"), "name"))
            ? json_string_value(json_object_get(json_object_get(body, "sku"), "name"))
            : "standard",
        "capacity", capacity, "properties", "model", "format", "OpenAI", "name", model, "version",
        "1", "rateLimits", "key", "token", "renewalPeriod", 60, "count", capacity * 1000);
    bool created = false;
    pthread_mutex_lock(&r->srv->deploy_lock);
    int rc = doc ? store_deployment_put(r->srv->st, name, model, doc, &created, &err)
                 : fj_err_set(&err, FJ_ERR_NOMEM, "out of memory");
    struct api_deploy *d = rc == 0 ? find(r->srv, name) : NULL;
    struct infer_model *old = NULL;
    if (rc == 0 && !d && (d = deploy_new(name, model, capacity))) {
        d->next = r->srv->deploys;
        r->srv->deploys = d;
        start_load(r->srv, d);
    } else if (d && (strcmp(d->model, model) != 0 || d->state == DEPLOY_FAILED)) {
        /* another model, or another try at one that failed: load it */
        old = d->mdl;
        d->mdl = NULL;
        snprintf(d->model, sizeof d->model, "%s", model);
        start_load(r->srv, d);
    }
    if (d && d->capacity != capacity) {
        d->capacity = capacity;
        d->tokens = fmin(d->tokens, capacity * 1000.0);
    }
    json_t *reply = rc == 0 ? with_state(d, doc) : NULL;
    pthread_mutex_unlock(&r->srv->deploy_lock);
    infer_close(old);
    json_decref(doc);
    json_decref(body); /* model pointed into it */
    if (rc != 0) {
        api_error_from(r, err.code, err.msg, NULL);
        return;
    }
    api_reply_json(r, created ? 201 : 200, reply);
}

void api_h_deploy_get(struct api_req *r)
{
    json_t *doc = NULL;
    struct fj_err err = {0};
    if (store_deployment_get(r->srv->st, r->params[3], &doc, &err) != 0) {
        api_error(r, 404, "invalid_request_error", "DeploymentNotFound", NULL,
                  "The deployment '%.100s' does not exist", r->params[3]);
        return;
    }
    pthread_mutex_lock(&r->srv->deploy_lock);
    json_t *reply = with_state(find(r->srv, r->params[3]), doc);
    pthread_mutex_unlock(&r->srv->deploy_lock);
    json_decref(doc);
    api_reply_json(r, 200, reply);
}

void api_h_deploy_list(struct api_req *r)
{
    json_t *list = NULL;
    struct fj_err err = {0};
    if (store_deployment_list(r->srv->st, &list, &err) != 0) {
        api_error_from(r, err.code, err.msg, NULL);
        return;
    }
    json_t *value = json_array();
    size_t i;
    json_t *doc;
    pthread_mutex_lock(&r->srv->deploy_lock);
    json_array_foreach(list, i, doc)
    {
        const char *name = json_string_value(json_object_get(doc, "name"));
        json_array_append_new(value, with_state(name ? find(r->srv, name) : NULL, doc));
    }
    pthread_mutex_unlock(&r->srv->deploy_lock);
    json_decref(list);
    api_reply_json(r, 200, json_pack("{s:o}", "value", value));
}

void api_h_deploy_delete(struct api_req *r)
{
    struct fj_err err = {0};
    struct api_server *srv = r->srv;
    pthread_mutex_lock(&srv->deploy_lock);
    int rc = store_deployment_delete(srv->st, r->params[3], &err);
    struct api_deploy *d = NULL;
    for (struct api_deploy **pp = &srv->deploys; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->name, r->params[3]) == 0) {
            d = *pp;
            *pp = d->next;
            break;
        }
    pthread_mutex_unlock(&srv->deploy_lock);
    if (d) {
        infer_close(d->mdl); /* requests still running hold the model themselves */
        free(d);
    }
    if (rc != 0 && err.code == FJ_ERR_NOT_FOUND) {
        api_error(r, 404, "invalid_request_error", "DeploymentNotFound", NULL, "%s", err.msg);
        return;
    }
    if (rc != 0) {
        api_error_from(r, err.code, err.msg, NULL);
        return;
    }
    api_reply_text(r, 204, "application/json", NULL, 0);
}

/* ---- use by chats -------------------------------------------------------------------- */

static void refill(struct api_deploy *d)
{
    double t = now_s(), limit = d->capacity * 1000.0;
    d->tokens = fmin(limit, d->tokens + (t - d->refilled) * limit / 60.0);
    d->refilled = t;
}

struct infer_model *api_deploy_acquire(struct api_req *r, const char *name, char *model_name,
                                       size_t cap)
{
    struct api_server *srv = r->srv;
    pthread_mutex_lock(&srv->deploy_lock);
    struct api_deploy *d = find(srv, name);
    if (!d || d->state != DEPLOY_SUCCEEDED) {
        char state[700] = "";
        if (d)
            snprintf(state, sizeof state, " (its provisioningState is %s%s%.600s)",
                     state_name(d->state), d->error[0] ? ": " : "", d->error);
        pthread_mutex_unlock(&srv->deploy_lock);
        api_error(r, 404, "invalid_request_error", "DeploymentNotFound", NULL,
                  "The API deployment %.100s does not exist%s. If you created the deployment "
                  "just now, wait until its provisioningState is Succeeded.",
                  name, d ? state : "");
        return NULL;
    }
    snprintf(model_name, cap, "%s", d->model);
    struct infer_model *mdl = infer_hold(d->mdl);
    pthread_mutex_unlock(&srv->deploy_lock);
    return mdl;
}

bool api_deploy_reserve(struct api_req *r, const char *name, int tokens)
{
    struct api_server *srv = r->srv;
    pthread_mutex_lock(&srv->deploy_lock);
    struct api_deploy *d = find(srv, name);
    if (!d) { /* deleted meanwhile: the request goes on with the model it holds */
        pthread_mutex_unlock(&srv->deploy_lock);
        return true;
    }
    refill(d);
    double limit = d->capacity * 1000.0;
    /* a request bigger than the whole budget goes through when the bucket is full */
    if (d->tokens >= tokens || (tokens > limit && d->tokens >= limit)) {
        d->tokens -= tokens;
        pthread_mutex_unlock(&srv->deploy_lock);
        return true;
    }
    double need = fmin((double)tokens, limit) - d->tokens;
    int wait = (int)ceil(need * 60.0 / limit);
    pthread_mutex_unlock(&srv->deploy_lock);
    r->retry_after = wait < 1 ? 1 : wait;
    api_error(r, 429, "rate_limit_exceeded", "429", NULL,
              "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
              "%.40s have exceeded token rate limit of your current deployment (%d tokens per "
              "minute; this request reserves %d). Please retry after %d seconds.",
              api_query(r, "api-version") ? api_query(r, "api-version") : "", (int)limit, tokens,
              r->retry_after);
    return false;
}

void api_deploy_settle(struct api_server *srv, const char *name, int reserved, int used)
{
    pthread_mutex_lock(&srv->deploy_lock);
    struct api_deploy *d = find(srv, name);
    if (d) {
        refill(d);
        d->tokens = fmin(d->capacity * 1000.0, d->tokens + reserved - used);
    }
    pthread_mutex_unlock(&srv->deploy_lock);
}

bool api_deploy_of_model(struct api_server *srv, const char *model, char *name, size_t cap)
{
    pthread_mutex_lock(&srv->deploy_lock);
    bool found = false;
    for (struct api_deploy *d = srv->deploys; d && !found; d = d->next)
        if (strcmp(d->model, model) == 0) {
            snprintf(name, cap, "%s", d->name);
            found = true;
        }
    pthread_mutex_unlock(&srv->deploy_lock);
    return found;
}

bool api_deploy_exists(struct api_server *srv, const char *name)
{
    pthread_mutex_lock(&srv->deploy_lock);
    bool found = find(srv, name) != NULL;
    pthread_mutex_unlock(&srv->deploy_lock);
    return found;
}
