/* reply.c - replies: JSON bodies with the headers every response carries
 * (content-type application/json, x-request-id), lists, and the error envelopes of the two
 * API families (OpenAI: {error:{message,type,param,code}}; Azure: {error:{code,message,
 * target,...}}). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"

static void queue(struct api_req *r, int status, struct MHD_Response *resp, const char *type,
                  const char *location)
{
    if (r->replied || !resp) {
        if (resp)
            MHD_destroy_response(resp);
        return;
    }
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_add_response_header(resp, "x-request-id", r->id);
    if (location)
        MHD_add_response_header(resp, "Location", location);
    if (r->retry_after > 0) {
        char v[32];
        snprintf(v, sizeof v, "%d", r->retry_after);
        MHD_add_response_header(resp, "retry-after", v);
        snprintf(v, sizeof v, "%d", r->retry_after * 1000);
        MHD_add_response_header(resp, "retry-after-ms", v);
    }
    MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    r->replied = true;
}

void api_reply_response(struct api_req *r, int status, struct MHD_Response *resp, const char *type)
{
    queue(r, status, resp, type, NULL);
}

void api_reply_text(struct api_req *r, int status, const char *type, char *text, size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp)
        free(text);
    queue(r, status, resp, type, NULL);
}

static void reply_json_at(struct api_req *r, int status, json_t *body, const char *location)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text) {
        text = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\"}}");
        status = 500;
    }
    size_t len = text ? strlen(text) : 0;
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp)
        free(text);
    queue(r, status, resp, "application/json", location);
}

void api_reply_json(struct api_req *r, int status, json_t *body)
{
    reply_json_at(r, status, body, NULL);
}

void api_reply_created(struct api_req *r, json_t *body, const char *location)
{
    /* Azure's creates answer 201 with the new object's address; OpenAI's answer 200. */
    if (r->family == API_AZURE) {
        char loc[2600];
        const char *v = api_query(r, "api-version");
        snprintf(loc, sizeof loc, "/openai%s?api-version=%s", location, v ? v : "");
        reply_json_at(r, 201, body, loc);
    } else {
        reply_json_at(r, 200, body, NULL);
    }
}

void api_reply_fd(struct api_req *r, int fd, uint64_t size, const char *type)
{
    struct MHD_Response *resp = MHD_create_response_from_fd64(size, fd);
    queue(r, 200, resp, type, NULL);
}

static json_t *envelope(const struct api_req *r, const char *type, const char *code,
                        const char *param, const char *msg)
{
    if (r->family == API_ARM) /* Azure Resource Manager's envelope */
        return json_pack("{s:{s:s, s:s}}", "error", "code", code ? code : type, "message", msg);
    if (r->family == API_AZURE)
        return json_pack("{s:{s:s, s:s, s:s?, s:s?, s:s, s:[]}}", "error", "code",
                         code ? code : type, "message", msg, "param", param, "target", param,
                         "type", type, "details");
    return json_pack("{s:{s:s, s:s, s:s?, s:s?}}", "error", "message", msg, "type", type, "param",
                     param, "code", code);
}

void api_error(struct api_req *r, int status, const char *type, const char *code, const char *param,
               const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *body = envelope(r, type, code, param, msg);
    if (!body) /* a message that is not UTF-8 (it quotes the request) */
        body = envelope(r, type, code, NULL, "invalid request");
    reply_json_at(r, status, body, NULL);
}

void api_error_from(struct api_req *r, int code, const char *msg, const char *param)
{
    switch (code) {
    case FJ_ERR_NOT_FOUND:
        api_error(r, 404, "invalid_request_error", NULL, param, "%s", msg);
        break;
    case FJ_ERR_BUSY:
    case FJ_ERR_STATE: api_error(r, 409, "invalid_request_error", NULL, param, "%s", msg); break;
    case FJ_ERR_INVALID:
    case FJ_ERR_UTF8:
    case FJ_ERR_RANGE: api_error(r, 400, "invalid_request_error", NULL, param, "%s", msg); break;
    default: api_error(r, 500, "server_error", NULL, NULL, "%s", msg); break;
    }
}

void api_error_later(struct api_req *r, int status, const char *type, const char *code,
                     const char *param, const char *msg)
{
    if (r->pending_status)
        return;
    r->pending_status = status;
    snprintf(r->pending_type, sizeof r->pending_type, "%s", type);
    snprintf(r->pending_code, sizeof r->pending_code, "%s", code ? code : "");
    snprintf(r->pending_param, sizeof r->pending_param, "%s", param ? param : "");
    snprintf(r->pending_msg, sizeof r->pending_msg, "%s", msg);
}

bool api_id_param(struct api_req *r, const char *prefix, const char *param, const char *what)
{
    if (store_id_valid(r->params[0], prefix))
        return true;
    api_error(r, 404, "invalid_request_error", NULL, param, "%s: %.100s", what, r->params[0]);
    return false;
}

const char *api_query(struct api_req *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

bool api_page(struct api_req *r, struct store_page *page)
{
    page->after = api_query(r, "after");
    page->limit = 20;
    const char *l = api_query(r, "limit");
    if (l) {
        char *end;
        long v = strtol(l, &end, 10);
        if (*l == '\0' || *end != '\0' || v < 1 || v > 100) {
            api_error(r, 400, "invalid_request_error", "invalid_value", "limit",
                      "limit must be an integer from 1 to 100, not '%.40s'", l);
            return false;
        }
        page->limit = (int)v;
    }
    return true;
}

void api_reply_list(struct api_req *r, struct store_list *l)
{
    /* The stored documents go out as they are: no parse and re-encode on the hot paths. */
    struct fj_buf b = {0};
    int rc = fj_buf_printf(&b, "{\"object\":\"list\",\"data\":");
    if (rc == 0)
        rc = fj_buf_append(&b, l->data, l->len);
    if (rc == 0 && l->first_id[0])
        rc = fj_buf_printf(&b, ",\"has_more\":%s,\"first_id\":\"%s\",\"last_id\":\"%s\"}",
                           l->has_more ? "true" : "false", l->first_id, l->last_id);
    else if (rc == 0)
        rc = fj_buf_printf(&b, ",\"has_more\":false,\"first_id\":null,\"last_id\":null}");
    store_list_free(l);
    if (rc != 0) {
        fj_buf_free(&b);
        api_error(r, 500, "server_error", NULL, NULL, "out of memory");
        return;
    }
    api_reply_text(r, 200, "application/json", (char *)b.data, b.len);
}

json_t *api_body_object(struct api_req *r)
{
    json_error_t je;
    json_t *o = r->body.len ? json_loadb((const char *)r->body.data, r->body.len, 0, &je) : NULL;
    if (!r->body.len) {
        api_error(r, 400, "invalid_request_error", NULL, NULL, "The request needs a JSON body");
        return NULL;
    }
    if (!o) {
        api_error(r, 400, "invalid_request_error", NULL, NULL,
                  "We could not parse the JSON body of your request: %s (line %d, column %d)",
                  je.text, je.line, je.column);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        api_error(r, 400, "invalid_request_error", NULL, NULL,
                  "The JSON body of your request must be an object");
        return NULL;
    }
    return o;
}
