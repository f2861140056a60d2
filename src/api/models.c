/* models.c - /models: the base models (folders of DIR/models, the built-in one among them),
 * the aliases that OpenAI and Azure code uses (gpt-4o, ...), and the fine-tuned models and
 * checkpoints that jobs made. Also what a job's `model` resolves to. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "api/api_internal.h"
#include "core/file.h"
#include "model/folder.h"

static bool plain_name(const char *name)
{
    return name[0] && name[0] != '.' && !strchr(name, '/') && strlen(name) < 200;
}

/* DIR/models/NAME holds a model (its config.json). */
static bool base_exists(struct api_server *srv, const char *name, char *path, size_t cap)
{
    char cfg[4400];
    if (!plain_name(name))
        return false;
    snprintf(path, cap, "%s/models/%s", store_dir(srv->st), name);
    snprintf(cfg, sizeof cfg, "%s/models/%s/config.json", store_dir(srv->st), name);
    return fj_file_exists(cfg);
}

int api_model_resolve(struct api_server *srv, const char *name, char *model, size_t cap, char *base,
                      size_t base_cap, bool *alias, struct fj_err *err)
{
    *alias = false;
    const char *target = json_string_value(json_object_get(srv->aliases, name));
    if (target) {
        *alias = true;
        name = target;
    }
    if (base_exists(srv, name, model, cap)) {
        snprintf(base, base_cap, "%s", name);
        return 0;
    }
    json_t *obj = NULL;
    char path[4400], cfg[4500];
    if (store_model_get(srv->st, name, path, sizeof path, &obj, NULL) == 0) {
        snprintf(base, base_cap, "%s", json_string_value(json_object_get(obj, "root")));
        json_decref(obj);
        snprintf(cfg, sizeof cfg, "%s/config.json", path);
        if (!fj_file_exists(cfg))
            return fj_err_set(err, FJ_ERR_INVALID,
                              "Model %s is a LoRA adapter; fine-tune its base model %s instead "
                              "(continuing from an adapter is not supported yet)",
                              name, base);
        snprintf(model, cap, "%s", path);
        return 0;
    }
    return fj_err_set(err, FJ_ERR_NOT_FOUND,
                      "Model %.200s is not available on this server (GET /v1/models lists the "
                      "ones that are)",
                      name);
}

int api_model_folders(struct api_server *srv, const char *name, char *model, size_t cap,
                      char *adapter, size_t adapter_cap, struct fj_err *err)
{
    adapter[0] = '\0';
    const char *target = json_string_value(json_object_get(srv->aliases, name));
    if (base_exists(srv, target ? target : name, model, cap))
        return 0;
    if (store_model_folders(srv->st, name, model, cap, adapter, adapter_cap, err) == 0)
        return 0;
    if (err && err->code == FJ_ERR_NOT_FOUND && !strstr(err->msg, "base model"))
        fj_err_set(err, FJ_ERR_NOT_FOUND,
                   "The model `%.200s` does not exist or you do not have access to it (GET "
                   "/v1/models lists the models of this server)",
                   name);
    return err ? err->code : FJ_ERR_NOT_FOUND;
}

static json_t *model_obj(const char *id, int64_t created, const char *owner)
{
    return json_pack("{s:s, s:s, s:I, s:s}", "id", id, "object", "model", "created",
                     (json_int_t)created, "owned_by", owner);
}

/* Every model the server knows, oldest kinds first: bases, aliases, fine-tuned. */
static json_t *all_models(struct api_server *srv)
{
    json_t *list = json_array();
    char dir[4200], path[4400];
    snprintf(dir, sizeof dir, "%s/models", store_dir(srv->st));
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        struct stat st;
        if (!base_exists(srv, e->d_name, path, sizeof path) || stat(path, &st) != 0)
            continue;
        json_array_append_new(
            list, model_obj(e->d_name, (int64_t)st.st_mtime,
                            strcmp(e->d_name, MODEL_BUILTIN_NAME) == 0 ? "forja" : "system"));
    }
    if (d)
        closedir(d);
    const char *alias;
    json_t *target;
    json_object_foreach(srv->aliases, alias, target)
    {
        json_t *o = model_obj(alias, 0, "forja");
        json_object_set(o, "root", target);
        json_array_append_new(list, o);
    }
    json_t *fine;
    if (store_model_list(srv->st, &fine, NULL) == 0) {
        size_t i;
        json_t *v;
        json_array_foreach(fine, i, v)
        {
            json_object_set_new(v, "owned_by", json_string(srv->cfg.org));
            json_array_append(list, v);
        }
        json_decref(fine);
    }
    return list;
}

void api_h_model_list(struct api_req *r)
{
    api_reply_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", all_models(r->srv)));
}

static json_t *find_model(struct api_req *r, const char *id)
{
    json_t *list = all_models(r->srv), *found = NULL;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (strcmp(json_string_value(json_object_get(v, "id")), id) == 0) {
            found = json_incref(v);
            break;
        }
    }
    json_decref(list);
    return found;
}

void api_h_model_get(struct api_req *r)
{
    json_t *m = find_model(r, r->params[0]);
    if (m)
        api_reply_json(r, 200, m);
    else
        api_error(r, 404, "invalid_request_error", "model_not_found", "model",
                  "The model '%.200s' does not exist", r->params[0]);
}

void api_h_model_delete(struct api_req *r)
{
    const char *id = r->params[0];
    json_t *m = find_model(r, id);
    if (!m) {
        api_error(r, 404, "invalid_request_error", "model_not_found", "model",
                  "The model '%.200s' does not exist", id);
        return;
    }
    bool fine_tuned = json_object_get(m, "job_id") != NULL;
    bool checkpoint = json_is_true(json_object_get(m, "checkpoint"));
    json_decref(m);
    if (!fine_tuned || checkpoint) {
        api_error(r, 403, "invalid_request_error", NULL, "model",
                  "%s: only fine-tuned models can be deleted (base models are folders of the "
                  "data directory, aliases are configuration, checkpoints go with their job)",
                  fine_tuned ? "A checkpoint" : "A base model or alias");
        return;
    }
    char deployment[256];
    if (api_deploy_of_model(r->srv, id, deployment, sizeof deployment)) {
        api_error(r, 409, "invalid_request_error", NULL, "model",
                  "The model is deployed as '%s'; delete the deployment first", deployment);
        return;
    }
    struct fj_err err = {0};
    char path[4400] = "";
    json_t *obj = NULL;
    store_model_get(r->srv->st, id, path, sizeof path, &obj, NULL);
    if (store_model_delete(r->srv->st, id, &err) != 0) {
        json_decref(obj);
        api_error_from(r, err.code, err.msg, "model");
        return;
    }
    /* The weights go with the name (the job that made them has ended), and so do its
     * checkpoints, whose names were deleted with it. */
    const char *job = json_string_value(json_object_get(obj, "job_id"));
    char ckpts[4400];
    if (path[0] && fj_remove_tree(path, &err) != 0 && r->srv->cfg.log)
        r->srv->cfg.log(r->srv->cfg.log_ctx, err.msg);
    if (job && svc_job_dir(r->srv->st, job, ckpts, sizeof ckpts - 16) == 0) {
        strcat(ckpts, "/checkpoints");
        fj_remove_tree(ckpts, NULL);
    }
    json_decref(obj);
    api_reply_json(r, 200, json_pack("{s:s, s:s, s:b}", "id", id, "object", "model", "deleted", 1));
}
