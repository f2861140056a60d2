/* jobs.c - fine-tuning jobs, their events and their checkpoints. A job row holds the API
 * object (doc), what its worker needs (spec) and the scheduler's bookkeeping (status,
 * resume, last_step); events and checkpoints are rows of their own, listed newest first. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"

void store_job_row_free(struct store_job_row *r)
{
    json_decref(r->doc);
    json_decref(r->spec);
    r->doc = r->spec = NULL;
}

static const char *doc_str(const json_t *doc, const char *key)
{
    return json_string_value(json_object_get(doc, key));
}

static json_t *find_idem(struct store *s, const char *idem_key)
{
    sqlite3_stmt *st;
    json_t *doc = NULL;
    if (store_prepare(s, "SELECT doc FROM jobs WHERE idem_key = ?1", &st, NULL) != 0)
        return NULL;
    store_bind_text(st, 1, idem_key);
    if (sqlite3_step(st) == SQLITE_ROW)
        doc = store_column_json(st, 0);
    sqlite3_finalize(st);
    return doc;
}

int store_job_create(struct store *s, const json_t *doc, const json_t *spec, const char *idem_key,
                     json_t **existing, struct fj_err *err)
{
    *existing = NULL;
    store_lock(s);
    int rc = 0;
    if (idem_key && (*existing = find_idem(s, idem_key)) != NULL) {
        store_unlock(s);
        return 0;
    }
    sqlite3_stmt *st;
    rc = store_prepare(s,
                       "INSERT INTO jobs(id, status, created_at, training_file, validation_file, "
                       "metadata, idem_key, doc, spec) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                       &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, doc_str(doc, "id"));
        store_bind_text(st, 2, doc_str(doc, "status"));
        sqlite3_bind_int64(st, 3, json_integer_value(json_object_get(doc, "created_at")));
        store_bind_text(st, 4, doc_str(doc, "training_file"));
        store_bind_text(st, 5, doc_str(doc, "validation_file"));
        const json_t *md = json_object_get(doc, "metadata");
        store_bind_json(st, 6, json_is_object(md) ? md : NULL);
        store_bind_text(st, 7, idem_key);
        store_bind_json(st, 8, doc);
        store_bind_json(st, 9, spec);
        rc = store_step_done(s, st, err);
    }
    store_unlock(s);
    return rc;
}

static int get_one(struct store *s, const char *sql, const char *id,
                   void (*fill)(sqlite3_stmt *, void *), void *ctx, struct fj_err *err)
{
    sqlite3_stmt *st;
    int rc = store_read(s, sql, &st, err);
    bool found = false;
    if (rc == 0) {
        store_bind_text(st, 1, id);
        if (sqlite3_step(st) == SQLITE_ROW) {
            fill(st, ctx);
            found = true;
        }
        store_read_done(st);
    }
    if (rc == 0 && !found)
        rc = fj_err_set(err, FJ_ERR_NOT_FOUND, "No such fine-tuning job: %s", id);
    return rc;
}

static void fill_doc(sqlite3_stmt *st, void *ctx)
{
    *(json_t **)ctx = store_column_json(st, 0);
}

int store_job_get(struct store *s, const char *id, json_t **doc, struct fj_err *err)
{
    *doc = NULL;
    int rc = get_one(s, "SELECT doc FROM jobs WHERE id = ?1", id, fill_doc, doc, err);
    if (rc == 0 && !*doc)
        rc = fj_err_set(err, FJ_ERR_FORMAT, "job %s: its stored object is damaged", id);
    return rc;
}

static void fill_text(sqlite3_stmt *st, void *ctx)
{
    const char *t = (const char *)sqlite3_column_text(st, 0);
    *(char **)ctx = t ? strdup(t) : NULL;
}

int store_job_get_text(struct store *s, const char *id, char **text, struct fj_err *err)
{
    *text = NULL;
    int rc = get_one(s, "SELECT doc FROM jobs WHERE id = ?1", id, fill_text, text, err);
    if (rc == 0 && !*text)
        rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    return rc;
}

static void fill_row(sqlite3_stmt *st, void *ctx)
{
    struct store_job_row *r = ctx;
    snprintf(r->id, sizeof r->id, "%s", (const char *)sqlite3_column_text(st, 0));
    r->resume = sqlite3_column_int(st, 1) != 0;
    r->last_step = sqlite3_column_int64(st, 2);
    r->doc = store_column_json(st, 3);
    r->spec = store_column_json(st, 4);
}

#define ROW_COLS "id, resume, last_step, doc, spec"

int store_job_row_get(struct store *s, const char *id, struct store_job_row *r, struct fj_err *err)
{
    memset(r, 0, sizeof *r);
    int rc = get_one(s, "SELECT " ROW_COLS " FROM jobs WHERE id = ?1", id, fill_row, r, err);
    if (rc == 0 && (!r->doc || !r->spec)) {
        store_job_row_free(r);
        rc = fj_err_set(err, FJ_ERR_FORMAT, "job %s: its stored object is damaged", id);
    }
    return rc;
}

int store_job_next(struct store *s, const char *status, const char *skip_ids, bool *found,
                   struct store_job_row *r, struct fj_err *err)
{
    memset(r, 0, sizeof *r);
    *found = false;
    sqlite3_stmt *st;
    /* skip_ids: a JSON array of ids already being handled. */
    int rc = store_read(s,
                        "SELECT " ROW_COLS " FROM jobs WHERE status = ?1 AND id NOT IN "
                        "(SELECT value FROM json_each(?2)) ORDER BY seq LIMIT 1",
                        &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, status);
        store_bind_text(st, 2, skip_ids ? skip_ids : "[]");
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            fill_row(st, r);
            *found = r->doc && r->spec;
            if (!*found)
                store_job_row_free(r);
        } else if (step != SQLITE_DONE) {
            rc = store_read_error(st, err);
        }
        store_read_done(st);
    }
    return rc;
}

int store_job_ids(struct store *s, const char *status, json_t **ids, struct fj_err *err)
{
    sqlite3_stmt *st;
    int rc = store_read(s, "SELECT id FROM jobs WHERE status = ?1 ORDER BY seq", &st, err);
    if (rc != 0)
        return rc;
    store_bind_text(st, 1, status);
    json_t *arr = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, json_string((const char *)sqlite3_column_text(st, 0)));
    store_read_done(st);
    *ids = arr;
    return 0;
}

int store_job_list(struct store *s, const json_t *metadata, const struct store_page *page,
                   struct store_list *out, struct fj_err *err)
{
    int limit = store_limit(page);
    sqlite3_stmt *st;
    /* ?3: an object of pairs that must all be in the job's metadata. */
    int rc = store_read(
        s,
        "SELECT doc, id FROM jobs WHERE (?1 IS NULL OR seq < (SELECT seq FROM jobs WHERE id = ?1)) "
        "AND NOT EXISTS (SELECT 1 FROM json_each(?3) AS w WHERE "
        "  metadata IS NULL OR json_extract(metadata, '$.\"' || w.key || '\"') IS NOT w.value) "
        "ORDER BY seq DESC LIMIT ?2",
        &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, page ? page->after : NULL);
        sqlite3_bind_int(st, 2, limit + 1);
        if (metadata && json_object_size(metadata) > 0)
            store_bind_json(st, 3, metadata);
        else
            store_bind_text(st, 3, "{}");
        rc = store_collect(st, limit, out, err);
    }
    return rc;
}

static int update(struct store *s, const char *sql, const char *id, const json_t *doc, int64_t n,
                  struct fj_err *err)
{
    store_lock(s);
    sqlite3_stmt *st;
    int rc = store_prepare(s, sql, &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, id);
        if (doc) {
            store_bind_json(st, 2, doc);
            store_bind_text(st, 3, doc_str(doc, "status"));
        } else {
            sqlite3_bind_int64(st, 2, n);
        }
        rc = store_step_done(s, st, err);
        if (rc == 0 && sqlite3_changes(s->db) == 0)
            rc = fj_err_set(err, FJ_ERR_NOT_FOUND, "No such fine-tuning job: %s", id);
    }
    store_unlock(s);
    return rc;
}

int store_job_put(struct store *s, const char *id, const json_t *doc, struct fj_err *err)
{
    return update(s, "UPDATE jobs SET doc = ?2, status = ?3 WHERE id = ?1", id, doc, 0, err);
}

int store_job_set_resume(struct store *s, const char *id, bool resume, struct fj_err *err)
{
    return update(s, "UPDATE jobs SET resume = ?2 WHERE id = ?1", id, NULL, resume, err);
}

int store_job_delete(struct store *s, const char *id, struct fj_err *err)
{
    store_lock(s);
    int rc = store_exec(s, "BEGIN IMMEDIATE", err);
    static const char *const sql[] = {"DELETE FROM events WHERE job_id = ?1",
                                      "DELETE FROM checkpoints WHERE job_id = ?1",
                                      "DELETE FROM jobs WHERE id = ?1"};
    for (size_t i = 0; rc == 0 && i < 3; i++) {
        sqlite3_stmt *st;
        if ((rc = store_prepare(s, sql[i], &st, err)) == 0) {
            store_bind_text(st, 1, id);
            rc = store_step_done(s, st, err);
        }
    }
    if (rc == 0 && sqlite3_changes(s->db) == 0)
        rc = fj_err_set(err, FJ_ERR_NOT_FOUND, "No such fine-tuning job: %s", id);
    store_exec(s, rc == 0 ? "COMMIT" : "ROLLBACK", NULL);
    store_unlock(s);
    return rc;
}

int store_job_counts(struct store *s, json_t **counts, struct fj_err *err)
{
    sqlite3_stmt *st;
    int rc = store_read(s, "SELECT status, count(*) FROM jobs GROUP BY status", &st, err);
    if (rc != 0)
        return rc;
    json_t *o = json_object();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_object_set_new(o, (const char *)sqlite3_column_text(st, 0),
                            json_integer(sqlite3_column_int64(st, 1)));
    store_read_done(st);
    *counts = o;
    return 0;
}

/* ---- events ----------------------------------------------------------------------------- */

/* Inserts an event on the writer (the caller holds the lock); takes data. */
static int insert_event(struct store *s, const char *job_id, const char *level, const char *type,
                        const char *message, json_t *data, struct fj_err *err)
{
    char id[STORE_ID_MAX];
    store_new_id("ftevent-", id);
    json_t *doc =
        json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:o}", "id", id, "object",
                  "fine_tuning.job.event", "created_at", (json_int_t)store_now(), "level", level,
                  "message", message, "type", type, "data", data ? data : json_null());
    if (!doc)
        return fj_err_set(err, FJ_ERR_INVALID, "event message is not valid UTF-8");
    sqlite3_stmt *st;
    int rc = store_prepare(s, "INSERT INTO events(id, job_id, doc) VALUES(?1, ?2, ?3)", &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, id);
        store_bind_text(st, 2, job_id);
        store_bind_json(st, 3, doc);
        rc = store_step_done(s, st, err);
    }
    json_decref(doc);
    return rc;
}

int store_event_add(struct store *s, const char *job_id, const char *level, const char *type,
                    const char *message, json_t *data, struct fj_err *err)
{
    store_lock(s);
    int rc = insert_event(s, job_id, level, type, message, data, err);
    store_unlock(s);
    return rc;
}

int store_job_step(struct store *s, const char *id, int64_t step, int64_t estimated_finish,
                   const char *message, json_t *data, bool *recorded, struct fj_err *err)
{
    *recorded = false;
    store_lock(s);
    sqlite3_stmt *st;
    int rc = store_exec(s, "BEGIN IMMEDIATE", err);
    if (rc == 0 && (rc = store_prepare(s,
                                       "UPDATE jobs SET last_step = ?2, doc = json_set(doc, "
                                       "'$.estimated_finish', ?3) WHERE id = ?1 AND status = "
                                       "'running' AND last_step < ?2",
                                       &st, err)) == 0) {
        store_bind_text(st, 1, id);
        sqlite3_bind_int64(st, 2, step);
        sqlite3_bind_int64(st, 3, estimated_finish);
        rc = store_step_done(s, st, err);
        *recorded = rc == 0 && sqlite3_changes(s->db) == 1;
    }
    if (rc == 0 && *recorded)
        rc = insert_event(s, id, "info", "metrics", message, json_incref(data), err);
    store_exec(s, rc == 0 ? "COMMIT" : "ROLLBACK", NULL);
    store_unlock(s);
    json_decref(data);
    if (rc != 0)
        *recorded = false;
    return rc;
}

static int list_of_job(struct store *s, const char *sql, const char *job_id,
                       const struct store_page *page, struct store_list *out, struct fj_err *err)
{
    sqlite3_stmt *st;
    int rc = store_read(s, sql, &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, job_id);
        store_bind_text(st, 2, page ? page->after : NULL);
        sqlite3_bind_int(st, 3, store_limit(page) + 1);
        rc = store_collect(st, store_limit(page), out, err);
    }
    return rc;
}

#define EVENTS_SQL                                                                                 \
    "SELECT doc, id FROM events WHERE job_id = ?1 AND (?2 IS NULL OR seq < "                       \
    "(SELECT seq FROM events WHERE id = ?2)) ORDER BY seq DESC LIMIT ?3"
#define CHECKPOINTS_SQL                                                                            \
    "SELECT doc, id FROM checkpoints WHERE job_id = ?1 AND (?2 IS NULL OR seq < "                  \
    "(SELECT seq FROM checkpoints WHERE id = ?2)) ORDER BY seq DESC LIMIT ?3"

int store_event_list(struct store *s, const char *job_id, const struct store_page *page,
                     struct store_list *out, struct fj_err *err)
{
    return list_of_job(s, EVENTS_SQL, job_id, page, out, err);
}

/* ---- checkpoints ------------------------------------------------------------------------ */

/* Statements of store_checkpoint_add, each bound to ?1 job id and one more value. */
static int checkpoint_step(struct store *s, const char *sql, const char *job_id, int64_t n,
                           struct fj_err *err)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, sql, &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, job_id);
        sqlite3_bind_int64(st, 2, n);
        rc = store_step_done(s, st, err);
    }
    return rc;
}

int store_checkpoint_add(struct store *s, const char *job_id, int64_t step, const json_t *doc,
                         const char *model_dir, const char *base, int keep, struct fj_err *err)
{
    const char *name = json_string_value(json_object_get(doc, "fine_tuned_model_checkpoint"));
    store_lock(s);
    int rc = store_exec(s, "BEGIN IMMEDIATE", err);
    /* A resumed run writes a checkpoint of a step again: the newer row replaces it. */
    if (rc == 0)
        rc = checkpoint_step(s, "DELETE FROM checkpoints WHERE job_id = ?1 AND step = ?2", job_id,
                             step, err);
    sqlite3_stmt *st;
    if (rc == 0 && (rc = store_prepare(s,
                                       "INSERT INTO checkpoints(id, job_id, step, doc) "
                                       "VALUES(?1, ?2, ?3, ?4)",
                                       &st, err)) == 0) {
        store_bind_text(st, 1, json_string_value(json_object_get(doc, "id")));
        store_bind_text(st, 2, job_id);
        sqlite3_bind_int64(st, 3, step);
        store_bind_json(st, 4, doc);
        rc = store_step_done(s, st, err);
    }
    if (rc == 0 && (rc = store_prepare(s,
                                       "INSERT OR REPLACE INTO models(name, job_id, path, base, "
                                       "checkpoint, created_at) VALUES(?1, ?2, ?3, ?4, 1, ?5)",
                                       &st, err)) == 0) {
        store_bind_text(st, 1, name);
        store_bind_text(st, 2, job_id);
        store_bind_text(st, 3, model_dir);
        store_bind_text(st, 4, base);
        sqlite3_bind_int64(st, 5, store_now());
        rc = store_step_done(s, st, err);
    }
    /* All but the newest `keep`: their model names, then the rows. */
    if (rc == 0)
        rc = checkpoint_step(s,
                             "DELETE FROM models WHERE checkpoint = 1 AND job_id = ?1 AND name IN "
                             "(SELECT json_extract(doc, '$.fine_tuned_model_checkpoint') FROM "
                             "checkpoints WHERE job_id = ?1 ORDER BY step DESC LIMIT -1 "
                             "OFFSET ?2)",
                             job_id, keep, err);
    if (rc == 0)
        rc = checkpoint_step(s,
                             "DELETE FROM checkpoints WHERE job_id = ?1 AND seq NOT IN "
                             "(SELECT seq FROM checkpoints WHERE job_id = ?1 "
                             "ORDER BY step DESC LIMIT ?2)",
                             job_id, keep, err);
    store_exec(s, rc == 0 ? "COMMIT" : "ROLLBACK", NULL);
    store_unlock(s);
    return rc;
}

int store_checkpoint_list(struct store *s, const char *job_id, const struct store_page *page,
                          struct store_list *out, struct fj_err *err)
{
    return list_of_job(s, CHECKPOINTS_SQL, job_id, page, out, err);
}
