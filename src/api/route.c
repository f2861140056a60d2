/* route.c - the table of routes: method and path pattern (after the /v1 or /openai prefix)
 * to handler, with how each reads its body. */
#include <stdio.h>
#include <string.h>

#include "api/api_internal.h"

/* Azure Resource Manager's path to an account's deployments. */
#define ARM_DEPLOYMENTS                                                                            \
    "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.CognitiveServices/accounts/{}"        \
    "/deployments"

static const struct api_route routes[] = {
    {"POST", "/files", BODY_MULTIPART, SCOPE_BOTH, api_h_file_upload, "files.create"},
    {"GET", "/files", BODY_NONE, SCOPE_BOTH, api_h_file_list, "files.list"},
    {"GET", "/files/{}", BODY_NONE, SCOPE_BOTH, api_h_file_get, "files.retrieve"},
    {"DELETE", "/files/{}", BODY_NONE, SCOPE_BOTH, api_h_file_delete, "files.delete"},
    {"GET", "/files/{}/content", BODY_NONE, SCOPE_BOTH, api_h_file_content, "files.content"},
    {"POST", "/fine_tuning/jobs", BODY_JSON, SCOPE_BOTH, api_h_job_create, "jobs.create"},
    {"GET", "/fine_tuning/jobs", BODY_NONE, SCOPE_BOTH, api_h_job_list, "jobs.list"},
    {"GET", "/fine_tuning/jobs/{}", BODY_NONE, SCOPE_BOTH, api_h_job_get, "jobs.retrieve"},
    {"DELETE", "/fine_tuning/jobs/{}", BODY_NONE, SCOPE_AZURE, api_h_job_delete, "jobs.delete"},
    {"POST", "/fine_tuning/jobs/{}/cancel", BODY_JSON, SCOPE_BOTH, api_h_job_cancel, "jobs.cancel"},
    {"POST", "/fine_tuning/jobs/{}/pause", BODY_JSON, SCOPE_BOTH, api_h_job_pause, "jobs.pause"},
    {"POST", "/fine_tuning/jobs/{}/resume", BODY_JSON, SCOPE_BOTH, api_h_job_resume, "jobs.resume"},
    {"GET", "/fine_tuning/jobs/{}/events", BODY_NONE, SCOPE_BOTH, api_h_job_events, "jobs.events"},
    {"GET", "/fine_tuning/jobs/{}/checkpoints", BODY_NONE, SCOPE_BOTH, api_h_job_checkpoints,
     "jobs.checkpoints"},
    {"GET", "/models", BODY_NONE, SCOPE_BOTH, api_h_model_list, "models.list"},
    {"GET", "/models/{}", BODY_NONE, SCOPE_BOTH, api_h_model_get, "models.retrieve"},
    {"DELETE", "/models/{}", BODY_NONE, SCOPE_BOTH, api_h_model_delete, "models.delete"},
    {"POST", "/chat/completions", BODY_JSON, SCOPE_BOTH, api_h_chat, "chat.completions"},
    {"POST", "/deployments/{}/chat/completions", BODY_JSON, SCOPE_AZURE, api_h_chat,
     "chat.completions"},
    {"PUT", ARM_DEPLOYMENTS "/{}", BODY_JSON, SCOPE_ARM, api_h_deploy_put, "deployments.put"},
    {"GET", ARM_DEPLOYMENTS "/{}", BODY_NONE, SCOPE_ARM, api_h_deploy_get, "deployments.get"},
    {"DELETE", ARM_DEPLOYMENTS "/{}", BODY_NONE, SCOPE_ARM, api_h_deploy_delete,
     "deployments.delete"},
    {"GET", ARM_DEPLOYMENTS, BODY_NONE, SCOPE_ARM, api_h_deploy_list, "deployments.list"},
};

/* Matches path against pattern, copying the {} segments into r->params. */
static bool match(const char *pattern, const char *path, struct api_req *r)
{
    int k = 0;
    while (*pattern && *path) {
        if (pattern[0] == '{' && pattern[1] == '}') {
            const char *end = strchr(path, '/');
            size_t n = end ? (size_t)(end - path) : strlen(path);
            if (n == 0 || n >= sizeof r->params[0] || k == API_MAX_PARAMS)
                return false;
            memcpy(r->params[k], path, n);
            r->params[k++][n] = '\0';
            path += n;
            pattern += 2;
            continue;
        }
        if (*pattern++ != *path++)
            return false;
    }
    /* A trailing slash is forgiven, as most servers do. */
    return *pattern == '\0' && (*path == '\0' || (path[0] == '/' && path[1] == '\0'));
}

const struct api_route *api_route_find(const char *method, const char *path, enum api_family family,
                                       struct api_req *r, bool *path_known)
{
    *path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct api_route *rt = &routes[i];
        bool in_scope = family == API_ARM     ? rt->scope == SCOPE_ARM
                        : family == API_AZURE ? rt->scope != SCOPE_ARM
                                              : rt->scope == SCOPE_BOTH;
        if (!in_scope || !match(rt->pattern, path, r))
            continue;
        *path_known = true;
        if (strcmp(rt->method, method) == 0)
            return rt;
    }
    return NULL;
}
