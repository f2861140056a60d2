/* deployments.c - deployments: a name bound to a model, kept as the ARM object the
 * management API returns (its provisioning state is the server's, at run time). */
#include <string.h>

#include "store/store_internal.h"

int store_deployment_put(struct store *s, const char *name, const char *model, const json_t *doc,
                         bool *created, struct fj_err *err)
{
    store_lock(s);
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT 1 FROM deployments WHERE name = ?1", &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, name);
        *created = sqlite3_step(st) != SQLITE_ROW;
        sqlite3_finalize(st);
        rc = store_prepare(s,
                           "INSERT INTO deployments(name, model, created_at, doc) "
                           "VALUES(?1, ?2, ?3, ?4) ON CONFLICT(name) DO UPDATE SET "
                           "model = excluded.model, doc = excluded.doc",
                           &st, err);
    }
    if (rc == 0) {
        store_bind_text(st, 1, name);
        store_bind_text(st, 2, model);
        sqlite3_bind_int64(st, 3, store_now());
        if ((rc = store_bind_json(st, 4, doc)) == 0)
            rc = store_step_done(s, st, err);
        else
            sqlite3_finalize(st);
    }
    store_unlock(s);
    return rc;
}

int store_deployment_get(struct store *s, const char *name, json_t **doc, struct fj_err *err)
{
    sqlite3_stmt *st;
    int rc = store_read(s, "SELECT doc FROM deployments WHERE name = ?1", &st, err);
    if (rc != 0)
        return rc;
    store_bind_text(st, 1, name);
    *doc = sqlite3_step(st) == SQLITE_ROW ? store_column_json(st, 0) : NULL;
    store_read_done(st);
    return *doc ? 0 : fj_err_set(err, FJ_ERR_NOT_FOUND, "The deployment '%s' does not exist", name);
}

int store_deployment_list(struct store *s, json_t **list, struct fj_err *err)
{
    sqlite3_stmt *st;
    int rc = store_read(s, "SELECT doc FROM deployments ORDER BY seq", &st, err);
    if (rc != 0)
        return rc;
    json_t *arr = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, store_column_json(st, 0));
    store_read_done(st);
    *list = arr;
    return 0;
}

int store_deployment_delete(struct store *s, const char *name, struct fj_err *err)
{
    store_lock(s);
    sqlite3_stmt *st;
    int rc = store_prepare(s, "DELETE FROM deployments WHERE name = ?1", &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, name);
        rc = store_step_done(s, st, err);
    }
    bool gone = rc == 0 && sqlite3_changes(s->db) > 0;
    store_unlock(s);
    if (rc == 0 && !gone)
        rc = fj_err_set(err, FJ_ERR_NOT_FOUND, "The deployment '%s' does not exist", name);
    return rc;
}
