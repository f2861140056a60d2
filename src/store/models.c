/* models.c - the names of fine-tuned models and of their checkpoints, and the folders they
 * live in (inside the job's folder). Base models and aliases are not stored: they are the
 * folders of DIR/models and the server's configuration. */
#include <stdio.h>
#include <string.h>

#include "core/file.h"
#include "store/store_internal.h"

int store_model_add(struct store *s, const char *name, const char *job_id, const char *path,
                    const char *base, bool checkpoint, struct fj_err *err)
{
    store_lock(s);
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "INSERT OR REPLACE INTO models(name, job_id, path, base, checkpoint, "
                           "created_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                           &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, name);
        store_bind_text(st, 2, job_id);
        store_bind_text(st, 3, path);
        store_bind_text(st, 4, base);
        sqlite3_bind_int(st, 5, checkpoint);
        sqlite3_bind_int64(st, 6, store_now());
        rc = store_step_done(s, st, err);
    }
    store_unlock(s);
    return rc;
}

static json_t *model_object(sqlite3_stmt *st)
{
    /* columns: name, created_at, job_id, base, checkpoint; owned_by is the API's to say */
    return json_pack("{s:s, s:s, s:I, s:s?, s:s?, s:b}", "id", sqlite3_column_text(st, 0), "object",
                     "model", "created", (json_int_t)sqlite3_column_int64(st, 1), "job_id",
                     sqlite3_column_text(st, 2), "root", sqlite3_column_text(st, 3), "checkpoint",
                     sqlite3_column_int(st, 4) != 0);
}

int store_model_get(struct store *s, const char *name, char *path, size_t cap, json_t **obj,
                    struct fj_err *err)
{
    sqlite3_stmt *st;
    int rc = store_read(
        s, "SELECT name, created_at, job_id, base, checkpoint, path FROM models WHERE name = ?1",
        &st, err);
    bool found = false;
    if (rc == 0) {
        store_bind_text(st, 1, name);
        if (sqlite3_step(st) == SQLITE_ROW) {
            found = true;
            if (path)
                snprintf(path, cap, "%s", (const char *)sqlite3_column_text(st, 5));
            if (obj)
                *obj = model_object(st);
        }
        store_read_done(st);
    }
    if (rc == 0 && !found)
        rc = fj_err_set(err, FJ_ERR_NOT_FOUND, "The model '%s' does not exist", name);
    return rc;
}

int store_model_list(struct store *s, json_t **list, struct fj_err *err)
{
    sqlite3_stmt *st;
    int rc = store_read(
        s, "SELECT name, created_at, job_id, base, checkpoint FROM models ORDER BY seq", &st, err);
    if (rc != 0)
        return rc;
    json_t *arr = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, model_object(st));
    store_read_done(st);
    *list = arr;
    return 0;
}

int store_model_delete(struct store *s, const char *name, struct fj_err *err)
{
    store_lock(s);
    sqlite3_stmt *st;
    /* A fine-tuned model goes with its job's checkpoint names. */
    int rc = store_prepare(s,
                           "DELETE FROM models WHERE name = ?1 OR (checkpoint = 1 AND job_id = "
                           "(SELECT job_id FROM models WHERE name = ?1 AND checkpoint = 0))",
                           &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, name);
        rc = store_step_done(s, st, err);
        if (rc == 0 && sqlite3_changes(s->db) == 0)
            rc = fj_err_set(err, FJ_ERR_NOT_FOUND, "The model '%s' does not exist", name);
    }
    store_unlock(s);
    return rc;
}

int store_model_folders(struct store *s, const char *name, char *model, size_t cap, char *adapter,
                        size_t adapter_cap, struct fj_err *err)
{
    json_t *obj = NULL;
    char path[STORE_PATH_MAX], file[STORE_PATH_MAX + 32];
    adapter[0] = '\0';
    int rc = store_model_get(s, name, path, sizeof path, &obj, err);
    if (rc != 0)
        return rc;
    const char *root = json_string_value(json_object_get(obj, "root"));
    snprintf(file, sizeof file, "%s/config.json", path);
    if (fj_file_exists(file)) { /* a full fine-tune: a model folder of its own */
        snprintf(model, cap, "%s", path);
    } else { /* a LoRA fine-tune: an adapter on the base it was trained from */
        snprintf(file, sizeof file, "%s/adapter_config.json", path);
        snprintf(adapter, adapter_cap, "%s", path);
        snprintf(model, cap, "%s/models/%s", s->dir, root ? root : "");
        if (!fj_file_exists(file))
            rc = fj_err_set(err, FJ_ERR_IO, "the weights of %s are missing (%s)", name, path);
        else if (!root || strchr(root, '/') ||
                 !(snprintf(file, sizeof file, "%s/config.json", model) > 0 &&
                   fj_file_exists(file)))
            rc = fj_err_set(err, FJ_ERR_NOT_FOUND,
                            "the base model %s of %s is not installed in %s/models",
                            root ? root : "(unknown)", name, s->dir);
    }
    json_decref(obj);
    return rc;
}
