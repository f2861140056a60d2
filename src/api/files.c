/* files.c - /files: uploads (multipart/form-data, read by libmicrohttpd's post processor as
 * the bytes arrive and streamed into the store, fields in any order), lists, retrieval,
 * contents and deletion. The upload check here is quick (the first line is a JSON object);
 * the full validation of a fine-tuning file is the job's. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api_internal.h"

static const char *const purposes[] = {"fine-tune", "assistants", "batch",
                                       "vision",    "user_data",  "evals"};

static enum MHD_Result on_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *filename, const char *content_type,
                                const char *transfer_encoding, const char *data, uint64_t off,
                                size_t size)
{
    (void)kind;
    (void)content_type;
    (void)transfer_encoding;
    struct api_req *r = cls;
    if (strcmp(key, "purpose") == 0) {
        size_t have = strlen(r->purpose);
        if (off == have && have + size < sizeof r->purpose) {
            memcpy(r->purpose + have, data, size);
            r->purpose[have + size] = '\0';
        }
        return MHD_YES;
    }
    if (strcmp(key, "file") != 0 || r->upload_failed)
        return MHD_YES;
    if (!r->up) {
        if (r->have_file)
            return MHD_YES; /* a second file part: only the first counts */
        struct fj_err err = {0};
        if (store_upload_begin(r->srv->st, r->srv->cfg.max_upload_bytes, &r->up, &err) != 0) {
            r->upload_failed = true;
            api_error_later(r, 500, "server_error", NULL, NULL, err.msg);
            return MHD_YES;
        }
        r->have_file = true;
        snprintf(r->filename, sizeof r->filename, "%s", filename ? filename : "file");
    }
    if (size == 0)
        return MHD_YES;
    if (r->head_len < sizeof r->head) {
        size_t n = size < sizeof r->head - r->head_len ? size : sizeof r->head - r->head_len;
        memcpy(r->head + r->head_len, data, n);
        r->head_len += n;
    }
    struct fj_err err = {0};
    int rc = store_upload_write(r->up, data, size, &err);
    if (rc != 0) {
        r->upload_failed = true;
        if (rc == FJ_ERR_RANGE)
            api_error_later(r, 413, "invalid_request_error", "file_too_large", "file", err.msg);
        else
            api_error_later(r, 500, "server_error", NULL, NULL, err.msg);
    }
    return MHD_YES;
}

int api_upload_begin(struct api_req *r)
{
    const char *type = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
    if (!type || strncasecmp(type, "multipart/form-data", 19) != 0)
        return -1;
    r->pp = MHD_create_post_processor(r->conn, 65536, on_field, r);
    return r->pp ? 0 : -1;
}

int api_upload_chunk(struct api_req *r, const char *data, size_t size)
{
    if (!r->pp)
        return -1;
    uint64_t before = r->up ? store_upload_bytes(r->up) : 0;
    int rc = MHD_post_process(r->pp, data, size) == MHD_YES ? 0 : -1;
    uint64_t after = r->up ? store_upload_bytes(r->up) : 0;
    pthread_mutex_lock(&r->srv->metrics_lock);
    r->srv->upload_bytes += after - before;
    pthread_mutex_unlock(&r->srv->metrics_lock);
    return rc;
}

void api_upload_free(struct api_req *r)
{
    if (r->pp)
        MHD_destroy_post_processor(r->pp);
    r->pp = NULL;
    store_upload_abort(r->up);
    r->up = NULL;
}

/* The quick check of a fine-tuning file: not empty, and its first line a JSON object. */
static const char *quick_check(const struct api_req *r, char *why, size_t cap)
{
    if (r->head_len == 0)
        return "The file is empty";
    const char *nl = memchr(r->head, '\n', r->head_len);
    if (!nl && r->head_len == sizeof r->head)
        return NULL; /* a first line longer than we keep: the job's validation reads it */
    size_t n = nl ? (size_t)(nl - r->head) : r->head_len;
    json_error_t je;
    json_t *o = json_loadb(r->head, n, 0, &je);
    bool ok = json_is_object(o);
    json_decref(o);
    if (ok)
        return NULL;
    snprintf(why, cap,
             "Line 1 is not a JSON object: %s. A fine-tuning file has one JSON object "
             "per line",
             o ? "not an object" : je.text);
    return why;
}

void api_h_file_upload(struct api_req *r)
{
    if (r->pp && MHD_destroy_post_processor(r->pp) != MHD_YES && !r->upload_failed) {
        r->pp = NULL;
        api_error(r, 400, "invalid_request_error", NULL, NULL,
                  "The multipart body ended before its last part did");
        return;
    }
    r->pp = NULL;
    if (r->upload_failed)
        return; /* answered by the pending error */
    if (!r->have_file || !r->up) {
        api_error(r, 400, "invalid_request_error", NULL, "file",
                  "Missing required parameter: 'file'");
        return;
    }
    if (!r->purpose[0]) {
        api_error(r, 400, "invalid_request_error", NULL, "purpose",
                  "Missing required parameter: 'purpose'");
        return;
    }
    bool known = false;
    for (size_t i = 0; i < sizeof purposes / sizeof purposes[0]; i++)
        known |= strcmp(r->purpose, purposes[i]) == 0;
    if (!known) {
        api_error(r, 400, "invalid_request_error", "invalid_value", "purpose",
                  "'%.60s' is not one of fine-tune, assistants, batch, vision, user_data, evals "
                  "- 'purpose'",
                  r->purpose);
        return;
    }
    char why[512];
    const char *problem =
        strcmp(r->purpose, "fine-tune") == 0 ? quick_check(r, why, sizeof why) : NULL;
    json_t *file = NULL;
    struct fj_err err = {0};
    struct store_upload *up = r->up;
    r->up = NULL;
    if (store_upload_commit(r->srv->st, up, r->filename, r->purpose, problem, &file, &err) != 0) {
        api_error_from(r, err.code == FJ_ERR_INVALID ? FJ_ERR_INVALID : FJ_ERR_IO, err.msg, "file");
        return;
    }
    char loc[128];
    snprintf(loc, sizeof loc, "/files/%s", json_string_value(json_object_get(file, "id")));
    api_reply_created(r, file, loc);
}

void api_h_file_list(struct api_req *r)
{
    struct store_page page;
    if (!api_page(r, &page))
        return;
    struct store_list list;
    struct fj_err err = {0};
    if (store_file_list(r->srv->st, api_query(r, "purpose"), &page, &list, &err) != 0) {
        api_error_from(r, err.code, err.msg, NULL);
        return;
    }
    api_reply_list(r, &list);
}

static bool known_id(struct api_req *r)
{
    return api_id_param(r, "file-", "id", "No such File object");
}

void api_h_file_get(struct api_req *r)
{
    json_t *file;
    struct fj_err err = {0};
    if (!known_id(r))
        return;
    if (store_file_get(r->srv->st, r->params[0], &file, &err) != 0)
        api_error_from(r, err.code, err.msg, "id");
    else
        api_reply_json(r, 200, file);
}

void api_h_file_delete(struct api_req *r)
{
    struct fj_err err = {0};
    if (!known_id(r))
        return;
    if (store_file_delete(r->srv->st, r->params[0], &err) != 0)
        api_error_from(r, err.code, err.msg, "id");
    else
        api_reply_json(
            r, 200,
            json_pack("{s:s, s:s, s:b}", "id", r->params[0], "object", "file", "deleted", 1));
}

void api_h_file_content(struct api_req *r)
{
    json_t *file;
    struct fj_err err = {0};
    char path[4200];
    if (!known_id(r))
        return;
    if (store_file_get(r->srv->st, r->params[0], &file, &err) != 0) {
        api_error_from(r, err.code, err.msg, "id");
        return;
    }
    json_decref(file);
    int fd = -1;
    struct stat st;
    if (store_file_path(r->srv->st, r->params[0], path, sizeof path) == 0)
        fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        api_error(r, 500, "server_error", NULL, NULL, "The file's contents are missing");
        return;
    }
    api_reply_fd(r, fd, (uint64_t)st.st_size, "application/octet-stream");
}
