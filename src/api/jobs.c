/* jobs.c - /fine_tuning/jobs. Creating a job checks the request the way OpenAI does
 * (required fields, types, ranges, unknown arguments), resolves the model (aliases, base
 * models, fine-tuned models), records the job as validating_files with the worker's spec,
 * and wakes the scheduler; the rest of a job's life is src/svc's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"

/* ---- hyperparameters -------------------------------------------------------------------- */

/* A hyperparameter: its API name, the trainer's option, and what it may be. */
struct hp_def {
    const char *name, *option;
    enum { HP_INT, HP_REAL, HP_TYPE, HP_TEXT } kind;
    double min, max;
};

static const struct hp_def hp_defs[] = {
    {"n_epochs", "--epochs", HP_INT, 1, 50},
    {"batch_size", "--batch-size", HP_INT, 1, 256},
    {"learning_rate_multiplier", "--lr-multiplier", HP_REAL, 1e-6, 1e3},
    /* forja's own, echoed back the same way */
    {"training_type", "--method", HP_TYPE, 0, 0},
    {"lora_rank", "--lora-rank", HP_INT, 1, 4096},
    {"lora_alpha", "--lora-alpha", HP_REAL, 1e-6, 1e6},
    {"lora_dropout", "--lora-dropout", HP_REAL, 0, 0.99},
    {"lora_targets", "--lora-targets", HP_TEXT, 0, 0},
    {"weight_decay", "--weight-decay", HP_REAL, 0, 10},
    {"warmup_steps", "--warmup-steps", HP_INT, 0, 1e9},
};

#define N_HP (sizeof hp_defs / sizeof hp_defs[0])

/* Checks hp (an object of "auto" or values), appending the trainer's options to args.
 * Returns false after replying 400. */
static bool check_hparams(struct api_req *r, const json_t *hp, const char *where, json_t *args)
{
    if (!hp || json_is_null(hp))
        return true;
    if (!json_is_object(hp)) {
        api_error(r, 400, "invalid_request_error", "invalid_type", where, "%s must be an object",
                  where);
        return false;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)hp, key, v)
    {
        const struct hp_def *d = NULL;
        for (size_t i = 0; i < N_HP && !d; i++)
            d = strcmp(hp_defs[i].name, key) == 0 ? &hp_defs[i] : NULL;
        if (!d) {
            api_error(r, 400, "invalid_request_error", "unknown_parameter", where,
                      "Unrecognized hyperparameter '%.60s' in %s", key, where);
            return false;
        }
        if (json_is_string(v) && strcmp(json_string_value(v), "auto") == 0)
            continue;
        char text[320];
        bool ok = false;
        if (d->kind == HP_TYPE) {
            const char *t = json_string_value(v);
            ok = t && (strcmp(t, "full") == 0 || strcmp(t, "lora") == 0);
            if (ok)
                snprintf(text, sizeof text, "%s", t);
        } else if (d->kind == HP_TEXT) {
            const char *t = json_string_value(v);
            ok = t && strlen(t) < 256 && strchr(t, '\n') == NULL && t[0] != '-';
            if (ok)
                snprintf(text, sizeof text, "%s", t);
        } else if (json_is_number(v)) {
            double x = json_number_value(v);
            ok = x >= d->min && x <= d->max && (d->kind == HP_REAL || json_is_integer(v));
            if (ok && d->kind == HP_INT)
                snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
            else if (ok)
                snprintf(text, sizeof text, "%.17g", x);
        }
        if (!ok) {
            char param[128];
            snprintf(param, sizeof param, "%s.%s", where, key);
            if (d->kind == HP_TYPE)
                api_error(r, 400, "invalid_request_error", "invalid_value", param,
                          "%s must be \"auto\", \"full\" or \"lora\"", param);
            else if (d->kind == HP_TEXT)
                api_error(r, 400, "invalid_request_error", "invalid_value", param,
                          "%s must be \"auto\" or a comma-separated list of module names", param);
            else
                api_error(r, 400, "invalid_request_error", "invalid_value", param,
                          "%s must be \"auto\" or %s from %g to %g", param,
                          d->kind == HP_INT ? "an integer" : "a number", d->min, d->max);
            return false;
        }
        json_array_append_new(args, json_string(d->option));
        json_array_append_new(args, json_string(text));
    }
    return true;
}

/* The hyperparameters as the job shows them before validation resolves them. */
static json_t *echo_hparams(const json_t *hp)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "n_epochs", "auto", "batch_size", "auto",
                          "learning_rate_multiplier", "auto");
    if (json_is_object(hp))
        json_object_update(o, (json_t *)hp);
    return o;
}

/* ---- the request -------------------------------------------------------------------------- */

static const char *const create_fields[] = {
    "model",    "training_file",   "validation_file", "seed",         "suffix",
    "metadata", "hyperparameters", "method",          "integrations", NULL};

static bool known_field(const char *k)
{
    for (int i = 0; create_fields[i]; i++)
        if (strcmp(create_fields[i], k) == 0)
            return true;
    return false;
}

static bool check_fields(struct api_req *r, const json_t *body)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        if (!known_field(key)) {
            api_error(r, 400, "invalid_request_error", "unknown_parameter", key,
                      "Unrecognized request argument supplied: %.60s", key);
            return false;
        }
    }
    static const char *const strings[] = {"model", "training_file", "validation_file", "suffix"};
    for (size_t i = 0; i < 4; i++) {
        v = json_object_get(body, strings[i]);
        if (v && !json_is_null(v) && !json_is_string(v)) {
            api_error(r, 400, "invalid_request_error", "invalid_type", strings[i],
                      "%s must be a string", strings[i]);
            return false;
        }
    }
    for (size_t i = 0; i < 2; i++) {
        if (!json_is_string(json_object_get(body, strings[i]))) {
            api_error(r, 400, "invalid_request_error", NULL, strings[i],
                      "Missing required parameter: '%s'", strings[i]);
            return false;
        }
    }
    return true;
}

static bool check_metadata(struct api_req *r, const json_t *md)
{
    if (!md || json_is_null(md))
        return true;
    if (!json_is_object(md) || json_object_size(md) > 16) {
        api_error(r, 400, "invalid_request_error", "invalid_value", "metadata",
                  "metadata must be an object of at most 16 string values");
        return false;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)md, key, v)
    {
        if (strlen(key) > 64 || strchr(key, '"') || !json_is_string(v) ||
            json_string_length(v) > 512) {
            api_error(r, 400, "invalid_request_error", "invalid_value", "metadata",
                      "metadata keys are at most 64 characters (no quotes) and values strings "
                      "of at most 512");
            return false;
        }
    }
    return true;
}

static bool check_suffix(struct api_req *r, const char *suffix)
{
    if (!suffix)
        return true;
    bool ok = store_name_valid(suffix, 1, 64);
    if (!ok)
        api_error(r, 400, "invalid_request_error", "invalid_value", "suffix",
                  "suffix is 1 to 64 characters of A-Z, a-z, 0-9, - and _");
    return ok;
}

/* seed: given (0 .. 2^31 - 1) or drawn now, so that the job records the one it used. */
static bool check_seed(struct api_req *r, const json_t *v, json_int_t *seed)
{
    if (!v || json_is_null(v)) {
        uint32_t x;
        store_random(&x, sizeof x);
        *seed = (json_int_t)(x & 0x7fffffff);
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 2147483647) {
        api_error(r, 400, "invalid_request_error", "invalid_value", "seed",
                  "seed must be an integer from 0 to 2147483647");
        return false;
    }
    *seed = json_integer_value(v);
    return true;
}

/* A file for the job: it exists, its purpose is fine-tune and its quick check passed. */
static json_t *job_file(struct api_req *r, const char *id, const char *param)
{
    json_t *file = NULL;
    if (!store_id_valid(id, "file-") || store_file_get(r->srv->st, id, &file, NULL) != 0) {
        api_error(r, 400, "invalid_request_error", "invalid_file_id", param,
                  "invalid %s: %.100s (no such file)", param, id);
        return NULL;
    }
    const char *purpose = json_string_value(json_object_get(file, "purpose"));
    const char *status = json_string_value(json_object_get(file, "status"));
    if (!purpose || strcmp(purpose, "fine-tune") != 0) {
        api_error(r, 400, "invalid_request_error", "invalid_file_purpose", param,
                  "%s %s has purpose '%s'; a fine-tuning file must be uploaded with purpose "
                  "'fine-tune'",
                  param, id, purpose ? purpose : "");
    } else if (!status || strcmp(status, "processed") != 0) {
        api_error(r, 400, "invalid_request_error", "invalid_file_format", param,
                  "%s %s is not a valid fine-tuning file: %s", param, id,
                  json_string_value(json_object_get(file, "status_details")));
    } else {
        return file;
    }
    json_decref(file);
    return NULL;
}

/* The method object, and which hyperparameters count (method's, or the legacy top-level). */
static bool check_method(struct api_req *r, const json_t *body, const json_t **hp)
{
    const json_t *method = json_object_get(body, "method");
    const json_t *legacy = json_object_get(body, "hyperparameters");
    *hp = legacy;
    if (!method || json_is_null(method))
        return true;
    const char *type = json_string_value(json_object_get(method, "type"));
    if (!json_is_object(method) || !type) {
        api_error(r, 400, "invalid_request_error", "invalid_value", "method",
                  "method must be an object with a type");
        return false;
    }
    if (strcmp(type, "supervised") != 0) {
        api_error(r, 400, "invalid_request_error", "invalid_value", "method.type",
                  "method.type '%.40s' is not supported by this server; use 'supervised'", type);
        return false;
    }
    const json_t *sup = json_object_get(method, "supervised");
    const json_t *mhp = json_is_object(sup) ? json_object_get(sup, "hyperparameters") : NULL;
    if (mhp && json_object_size(mhp) > 0 && legacy && json_object_size(legacy) > 0) {
        api_error(r, 400, "invalid_request_error", "invalid_value", "hyperparameters",
                  "Give hyperparameters in method.supervised.hyperparameters only (the "
                  "top-level hyperparameters are deprecated)");
        return false;
    }
    if (mhp && !json_is_null(mhp))
        *hp = mhp;
    return true;
}

struct create {
    json_t *body, *doc, *spec, *args, *train, *valid;
};

static void create_free(struct create *c)
{
    json_decref(c->body);
    json_decref(c->doc);
    json_decref(c->spec);
    json_decref(c->args);
    json_decref(c->train);
    json_decref(c->valid);
}

static bool build_job(struct api_req *r, struct create *c)
{
    const json_t *b = c->body, *hp;
    const char *model = json_string_value(json_object_get(b, "model"));
    const char *train_id = json_string_value(json_object_get(b, "training_file"));
    const char *valid_id = json_string_value(json_object_get(b, "validation_file"));
    const char *suffix = json_string_value(json_object_get(b, "suffix"));
    const json_t *md = json_object_get(b, "metadata");
    const json_t *integ = json_object_get(b, "integrations");
    json_int_t seed;
    c->args = json_array();
    if (!check_method(r, b, &hp) ||
        !check_hparams(r, hp,
                       hp == json_object_get(b, "hyperparameters")
                           ? "hyperparameters"
                           : "method.supervised.hyperparameters",
                       c->args) ||
        !check_metadata(r, md) || !check_suffix(r, suffix) ||
        !check_seed(r, json_object_get(b, "seed"), &seed))
        return false;
    if (integ && !json_is_null(integ) && !(json_is_array(integ) && json_array_size(integ) == 0)) {
        api_error(r, 400, "invalid_request_error", "invalid_value", "integrations",
                  "integrations are not supported by this server (forja records every job as an "
                  "MLflow run instead)");
        return false;
    }
    char trainer_model[4400], base[512];
    bool alias = false;
    struct fj_err err = {0};
    if (api_model_resolve(r->srv, model, trainer_model, sizeof trainer_model, base, sizeof base,
                          &alias, &err) != 0) {
        api_error(r, 400, "invalid_request_error", "model_not_available", "model", "%s", err.msg);
        return false;
    }
    if (!(c->train = job_file(r, train_id, "training_file")))
        return false;
    if (valid_id && !(c->valid = job_file(r, valid_id, "validation_file")))
        return false;

    char id[STORE_ID_MAX], ft[1024], org_id[128];
    store_new_id("ftjob-", id);
    snprintf(ft, sizeof ft, "ft:%s:%s:%s:%.8s", strncmp(model, "ft:", 3) == 0 ? base : model,
             r->srv->cfg.org, suffix ? suffix : "", id + 6);
    snprintf(org_id, sizeof org_id, "org-%s", r->srv->cfg.org);
    json_t *echo = echo_hparams(hp);
    c->doc = json_pack(
        "{s:s, s:s, s:I, s:n, s:n, s:n, s:n, s:O, s:s, s:s, s:[], s:I, s:s, s:n, s:s, s:s?, "
        "s:[], s:O, s:{s:s, s:{s:O}}, s:s?, s:s?}",
        "id", id, "object", "fine_tuning.job", "created_at", (json_int_t)store_now(), "finished_at",
        "error", "fine_tuned_model", "estimated_finish", "hyperparameters", echo, "model", model,
        "organization_id", org_id, "result_files", "seed", seed, "status", "validating_files",
        "trained_tokens", "training_file", train_id, "validation_file", valid_id, "integrations",
        "metadata", md ? md : json_null(), "method", "type", "supervised", "supervised",
        "hyperparameters", echo, "suffix", suffix, "user_provided_suffix", suffix);
    json_decref(echo);
    c->spec = json_pack(
        "{s:s, s:s, s:b, s:s, s:s, s:s?, s:O, s:O?, s:I, s:O}", "model", trainer_model, "base",
        base, "alias", alias, "fine_tuned_model", ft, "training_file", train_id, "validation_file",
        valid_id, "training_filename", json_object_get(c->train, "filename"), "validation_filename",
        c->valid ? json_object_get(c->valid, "filename") : NULL, "seed", seed, "args", c->args);
    if (!c->doc || !c->spec) {
        api_error(r, 400, "invalid_request_error", NULL, NULL,
                  "The request holds text that is not valid UTF-8");
        return false;
    }
    return true;
}

static void first_events(struct api_req *r, const json_t *doc, const json_t *spec)
{
    struct store *st = r->srv->st;
    const char *id = json_string_value(json_object_get(doc, "id"));
    char msg[1400];
    snprintf(msg, sizeof msg, "Created fine-tuning job: %s", id);
    store_event_add(st, id, "info", "message", msg, NULL, NULL);
    if (json_is_true(json_object_get(spec, "alias"))) {
        snprintf(msg, sizeof msg,
                 "Model %s is an alias: this job fine-tunes %s (forja's built-in base model "
                 "unless the server's aliases say otherwise)",
                 json_string_value(json_object_get(doc, "model")),
                 json_string_value(json_object_get(spec, "base")));
        store_event_add(st, id, "info", "message", msg, NULL, NULL);
    }
    const char *valid = json_string_value(json_object_get(doc, "validation_file"));
    snprintf(msg, sizeof msg, "Validating training file: %s%s%s",
             json_string_value(json_object_get(doc, "training_file")),
             valid ? " and validation file: " : "", valid ? valid : "");
    store_event_add(st, id, "info", "message", msg, NULL, NULL);
}

void api_h_job_create(struct api_req *r)
{
    struct create c = {0};
    if (!(c.body = api_body_object(r)))
        return;
    if (!check_fields(r, c.body) || !build_job(r, &c)) {
        create_free(&c);
        return;
    }
    /* The SDKs retry a create that timed out; the same Idempotency-Key gets the same job. */
    const char *idem = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Idempotency-Key");
    json_t *existing = NULL;
    struct fj_err err = {0};
    if (store_job_create(r->srv->st, c.doc, c.spec, idem, &existing, &err) != 0) {
        api_error_from(r, err.code, err.msg, NULL);
        create_free(&c);
        return;
    }
    json_t *doc = existing ? existing : json_incref(c.doc);
    if (!existing) {
        first_events(r, c.doc, c.spec);
        svc_wake(r->srv->svc);
    }
    char loc[128];
    snprintf(loc, sizeof loc, "/fine_tuning/jobs/%s",
             json_string_value(json_object_get(doc, "id")));
    api_reply_created(r, doc, loc);
    create_free(&c);
}

/* ---- reading jobs ------------------------------------------------------------------------ */

static enum MHD_Result collect_metadata(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    (void)kind;
    size_t n = strlen(key);
    if (n > 10 && strncmp(key, "metadata[", 9) == 0 && key[n - 1] == ']' && value) {
        char k[128];
        snprintf(k, sizeof k, "%.*s", (int)(n - 10), key + 9);
        json_object_set_new(cls, k, json_string(value));
    }
    return MHD_YES;
}

void api_h_job_list(struct api_req *r)
{
    struct store_page page;
    if (!api_page(r, &page))
        return;
    json_t *md = json_object();
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_metadata, md);
    struct store_list list;
    struct fj_err err = {0};
    int rc = store_job_list(r->srv->st, md, &page, &list, &err);
    json_decref(md);
    if (rc != 0)
        api_error_from(r, err.code, err.msg, NULL);
    else
        api_reply_list(r, &list);
}

static bool job_id_ok(struct api_req *r)
{
    return api_id_param(r, "ftjob-", "fine_tuning_job_id", "No such fine-tuning job");
}

void api_h_job_get(struct api_req *r)
{
    char *text;
    struct fj_err err = {0};
    if (!job_id_ok(r))
        return;
    if (store_job_get_text(r->srv->st, r->params[0], &text, &err) != 0)
        api_error_from(r, err.code, err.msg, "fine_tuning_job_id");
    else
        api_reply_text(r, 200, "application/json", text, strlen(text));
}

typedef int (*job_control)(struct svc *s, const char *id, json_t **doc, struct fj_err *err);

static void control(struct api_req *r, job_control fn)
{
    json_t *doc;
    struct fj_err err = {0};
    if (!job_id_ok(r))
        return;
    int rc = fn(r->srv->svc, r->params[0], &doc, &err);
    if (rc == FJ_ERR_STATE) /* OpenAI answers 400 here; 409 would make the SDKs retry */
        api_error(r, 400, "invalid_request_error", NULL, NULL, "%s", err.msg);
    else if (rc != 0)
        api_error_from(r, rc, err.msg, "fine_tuning_job_id");
    else
        api_reply_json(r, 200, doc);
}

void api_h_job_cancel(struct api_req *r)
{
    control(r, svc_cancel);
}
void api_h_job_pause(struct api_req *r)
{
    control(r, svc_pause);
}
void api_h_job_resume(struct api_req *r)
{
    control(r, svc_resume);
}

void api_h_job_delete(struct api_req *r)
{
    struct fj_err err = {0};
    if (!job_id_ok(r))
        return;
    int rc = svc_delete(r->srv->svc, r->params[0], &err);
    if (rc == FJ_ERR_STATE)
        api_error(r, 409, "invalid_request_error", "jobNotDeletable", NULL, "%s", err.msg);
    else if (rc != 0)
        api_error_from(r, rc, err.msg, "fine_tuning_job_id");
    else
        api_reply_text(r, 204, "application/json", NULL, 0);
}

typedef int (*job_list_fn)(struct store *s, const char *job_id, const struct store_page *page,
                           struct store_list *out, struct fj_err *err);

static void list_of_job(struct api_req *r, job_list_fn fn)
{
    struct store_page page;
    struct store_list list;
    struct fj_err err = {0};
    if (!job_id_ok(r) || !api_page(r, &page))
        return;
    /* An unknown job is a 404, not an empty list. */
    if (fn(r->srv->st, r->params[0], &page, &list, &err) != 0) {
        api_error_from(r, err.code, err.msg, NULL);
        return;
    }
    if (!list.first_id[0]) {
        char *doc;
        if (store_job_get_text(r->srv->st, r->params[0], &doc, &err) != 0) {
            store_list_free(&list);
            api_error_from(r, err.code, err.msg, "fine_tuning_job_id");
            return;
        }
        free(doc);
    }
    api_reply_list(r, &list);
}

void api_h_job_events(struct api_req *r)
{
    list_of_job(r, store_event_list);
}
void api_h_job_checkpoints(struct api_req *r)
{
    list_of_job(r, store_checkpoint_list);
}
