/* files.c - uploaded files: the bytes are streamed to DIR/tmp while being hashed, fsynced,
 * renamed into DIR/files/ID, and only then recorded, so a file the API acknowledged is
 * whole on disk and a crash mid-upload leaves nothing but a temporary file, or bytes that no
 * row names (both removed at the next open, db.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/file.h"
#include "store/store_internal.h"

struct store_upload {
    int fd;
    char tmp[STORE_PATH_MAX];
    EVP_MD_CTX *sha;
    uint64_t bytes, max_bytes;
    bool failed;
};

void store_sha256_hex(const unsigned char digest[32], char hex[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
}

int store_upload_begin(struct store *s, uint64_t max_bytes, struct store_upload **out,
                       struct fj_err *err)
{
    struct store_upload *up = calloc(1, sizeof *up);
    if (!up)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    char name[32];
    store_random_chars(name, 20);
    snprintf(up->tmp, sizeof up->tmp, "%s/tmp/upload-%s", s->dir, name);
    up->max_bytes = max_bytes;
    up->fd = open(up->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    up->sha = EVP_MD_CTX_new();
    if (up->fd < 0 || !up->sha || EVP_DigestInit_ex(up->sha, EVP_sha256(), NULL) != 1) {
        int rc = fj_err_set(err, FJ_ERR_IO, "%s: %s", up->tmp, strerror(errno));
        store_upload_abort(up);
        return rc;
    }
    *out = up;
    return 0;
}

int store_upload_write(struct store_upload *up, const void *data, size_t n, struct fj_err *err)
{
    if (up->failed)
        return fj_err_set(err, FJ_ERR_IO, "upload already failed");
    if (up->max_bytes && up->bytes + n > up->max_bytes) {
        up->bytes += n;
        up->failed = true;
        return fj_err_set(err, FJ_ERR_RANGE, "the file is larger than the %llu bytes allowed",
                          (unsigned long long)up->max_bytes);
    }
    EVP_DigestUpdate(up->sha, data, n);
    const char *p = data;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(up->fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            up->failed = true;
            return fj_err_set(err, FJ_ERR_IO, "writing the upload: %s", strerror(errno));
        }
        p += w;
        left -= (size_t)w;
    }
    up->bytes += n;
    return 0;
}

uint64_t store_upload_bytes(const struct store_upload *up)
{
    return up->bytes;
}

void store_upload_abort(struct store_upload *up)
{
    if (!up)
        return;
    if (up->fd >= 0)
        close(up->fd);
    unlink(up->tmp);
    EVP_MD_CTX_free(up->sha);
    free(up);
}

static int record_file(struct store *s, const char *id, const char *filename, const char *purpose,
                       const char *problem, uint64_t bytes, const char *sha, json_t **file,
                       struct fj_err *err)
{
    int64_t now = store_now();
    json_t *doc = json_pack(
        "{s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s?, s:n}", "id", id, "object", "file", "bytes",
        (json_int_t)bytes, "created_at", (json_int_t)now, "filename", filename, "purpose", purpose,
        "status", problem ? "error" : "processed", "status_details", problem, "expires_at");
    if (!doc)
        return fj_err_set(err, FJ_ERR_INVALID, "the filename or purpose is not valid UTF-8");
    store_lock(s);
    sqlite3_stmt *st;
    int rc = store_prepare(
        s, "INSERT INTO files(id, purpose, sha256, created_at, doc) VALUES(?1, ?2, ?3, ?4, ?5)",
        &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, id);
        store_bind_text(st, 2, purpose);
        store_bind_text(st, 3, sha);
        sqlite3_bind_int64(st, 4, now);
        store_bind_json(st, 5, doc);
        rc = store_step_done(s, st, err);
    }
    store_unlock(s);
    if (rc != 0) {
        json_decref(doc);
        return rc;
    }
    *file = doc;
    return 0;
}

int store_upload_commit(struct store *s, struct store_upload *up, const char *filename,
                        const char *purpose, const char *problem, json_t **file, struct fj_err *err)
{
    char id[STORE_ID_MAX], path[STORE_PATH_MAX], dir[STORE_PATH_MAX], hex[65];
    unsigned char digest[32];
    unsigned len = 0;
    int rc = 0;
    if (up->failed)
        rc = fj_err_set(err, FJ_ERR_IO, "the upload failed");
    if (rc == 0 && fsync(up->fd) != 0)
        rc = fj_err_set(err, FJ_ERR_IO, "fsync of the upload: %s", strerror(errno));
    EVP_DigestFinal_ex(up->sha, digest, &len);
    store_sha256_hex(digest, hex);
    store_new_id("file-", id);
    store_file_path(s, id, path, sizeof path);
    snprintf(dir, sizeof dir, "%s/files", s->dir);
    if (rc == 0 && rename(up->tmp, path) != 0)
        rc = fj_err_set(err, FJ_ERR_IO, "storing the upload: %s", strerror(errno));
    if (rc == 0)
        rc = fj_file_sync_dir(dir, err);
    if (rc == 0)
        rc = record_file(s, id, filename, purpose, problem, up->bytes, hex, file, err);
    if (rc != 0)
        unlink(path);
    store_upload_abort(up);
    return rc;
}

int store_file_import(struct store *s, const char *path, const char *filename, const char *purpose,
                      json_t **file, struct fj_err *err)
{
    struct store_upload *up;
    int rc = store_upload_begin(s, 0, &up, err);
    if (rc != 0)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        store_upload_abort(up);
        return fj_err_set(err, FJ_ERR_IO, "%s: %s", path, strerror(errno));
    }
    char buf[65536];
    ssize_t got;
    while (rc == 0 && (got = read(fd, buf, sizeof buf)) != 0) {
        if (got < 0 && errno == EINTR)
            continue;
        rc = got < 0 ? fj_err_set(err, FJ_ERR_IO, "%s: %s", path, strerror(errno))
                     : store_upload_write(up, buf, (size_t)got, err);
    }
    close(fd);
    if (rc != 0) {
        store_upload_abort(up);
        return rc;
    }
    return store_upload_commit(s, up, filename, purpose, NULL, file, err);
}

int store_file_get(struct store *s, const char *id, json_t **file, struct fj_err *err)
{
    sqlite3_stmt *st;
    int rc = store_read(s, "SELECT doc FROM files WHERE id = ?1", &st, err);
    json_t *doc = NULL;
    if (rc == 0) {
        store_bind_text(st, 1, id);
        if (sqlite3_step(st) == SQLITE_ROW)
            doc = store_column_json(st, 0);
        store_read_done(st);
    }
    if (rc == 0 && !doc)
        rc = fj_err_set(err, FJ_ERR_NOT_FOUND, "No such File object: %s", id);
    if (rc == 0)
        *file = doc;
    return rc;
}

int store_file_list(struct store *s, const char *purpose, const struct store_page *page,
                    struct store_list *out, struct fj_err *err)
{
    int limit = store_limit(page);
    sqlite3_stmt *st;
    int rc = store_read(s,
                        "SELECT doc, id FROM files WHERE (?1 IS NULL OR purpose = ?1) AND "
                        "(?2 IS NULL OR seq < (SELECT seq FROM files WHERE id = ?2)) "
                        "ORDER BY seq DESC LIMIT ?3",
                        &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, purpose);
        store_bind_text(st, 2, page ? page->after : NULL);
        sqlite3_bind_int(st, 3, limit + 1);
        rc = store_collect(st, limit, out, err);
    }
    return rc;
}

int store_file_path(const struct store *s, const char *id, char *out, size_t cap)
{
    if (!store_id_valid(id, "file-"))
        return FJ_ERR_NOT_FOUND;
    int n = snprintf(out, cap, "%s/files/%s", s->dir, id);
    return n < 0 || (size_t)n >= cap ? FJ_ERR_RANGE : 0;
}

int store_file_delete(struct store *s, const char *id, struct fj_err *err)
{
    store_lock(s);
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "SELECT id FROM jobs WHERE (training_file = ?1 OR validation_file = ?1) "
                           "AND status NOT IN ('succeeded', 'failed', 'cancelled') LIMIT 1",
                           &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, id);
        if (sqlite3_step(st) == SQLITE_ROW)
            rc = fj_err_set(err, FJ_ERR_BUSY,
                            "File %s is used by fine-tuning job %s, which has "
                            "not ended; cancel the job or wait for it to end",
                            id, (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    if (rc == 0 && (rc = store_prepare(s, "DELETE FROM files WHERE id = ?1", &st, err)) == 0) {
        store_bind_text(st, 1, id);
        rc = store_step_done(s, st, err);
        if (rc == 0 && sqlite3_changes(s->db) == 0)
            rc = fj_err_set(err, FJ_ERR_NOT_FOUND, "No such File object: %s", id);
    }
    store_unlock(s);
    char path[STORE_PATH_MAX];
    if (rc == 0 && store_file_path(s, id, path, sizeof path) == 0)
        unlink(path);
    return rc;
}
