/* store.h - what `forja serve` keeps: one data directory holding an SQLite database (WAL
 * mode, versioned schema) for metadata and plain folders for contents (docs/service.md).
 *
 *     DIR/forja.db        files, jobs, events, checkpoints, models, API keys
 *     DIR/files/ID        an uploaded file's bytes, exactly as received
 *     DIR/tmp/            uploads in progress (removed at open: never acknowledged)
 *     DIR/jobs/ID/        a job's trainer output (model/, checkpoints/, results.csv)
 *     DIR/models/NAME/    base models (src/model/folder.c)
 *
 * API objects (a job, an event, a checkpoint) are stored as the JSON the API returns, next
 * to the columns that queries need, so a read is one indexed lookup. Every function is
 * safe to call from several threads (one connection behind a mutex). The pieces:
 *   db.c      opening, the schema and its migrations, the lock, ids and time
 *   files.c   uploads (streamed to disk, checksummed, fsynced, then recorded) and files
 *   jobs.c    fine-tuning jobs, their events and checkpoints
 *   models.c  fine-tuned models and checkpoint names
 *   keys.c    API keys (stored as SHA-256 hashes)
 *   tokens.c  management tokens (signed, expiring)
 *   deployments.c  deployments (their ARM objects)
 */
#ifndef FJ_STORE_STORE_H
#define FJ_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/err.h"

struct store;

/* Opens (creating what is missing) the store in dir and migrates its schema to the
 * current version. Partial uploads left by a crash are removed. */
int store_open(struct store **out, const char *dir, struct fj_err *err);
void store_close(struct store *s);
const char *store_dir(const struct store *s);
int store_schema_version(struct store *s);

/* n bytes from the kernel's random source. */
void store_random(void *out, size_t n);

/* Whether s is min..max characters of [A-Za-z0-9_-] (ids, suffixes, organizations). */
bool store_name_valid(const char *s, size_t min, size_t max);

/* A new id: prefix followed by 24 random characters [A-Za-z0-9]. */
#define STORE_ID_MAX 48
void store_new_id(const char *prefix, char out[STORE_ID_MAX]);

/* Whether id looks like one of ours (prefix, then 1..40 of [A-Za-z0-9_-]): ids that reach
 * a path are checked with this first. */
bool store_id_valid(const char *id, const char *prefix);

int64_t store_now(void); /* unix seconds */

/* A page of a list: rows newest first or oldest first as the call says, `after` the id of
 * the last row of the previous page (NULL: from the start). */
struct store_page {
    const char *after;
    int limit; /* 1 .. 100 */
};

/* A page of a list as stored text, for replies that send it on unchanged: data is a JSON
 * array of the rows' objects; release with store_list_free. */
struct store_list {
    char *data; /* owned, NUL-terminated */
    size_t len;
    bool has_more;
    char first_id[STORE_ID_MAX], last_id[STORE_ID_MAX]; /* "" for an empty list */
};
void store_list_free(struct store_list *l);

/* ---- files ---------------------------------------------------------------------------- */

struct store_upload;

/* Starts an upload to DIR/tmp. At most max_bytes may be written (0: no limit). */
int store_upload_begin(struct store *s, uint64_t max_bytes, struct store_upload **out,
                       struct fj_err *err);
/* Appends bytes; FJ_ERR_RANGE once the upload would pass max_bytes (the bytes are dropped). */
int store_upload_write(struct store_upload *up, const void *data, size_t n, struct fj_err *err);
uint64_t store_upload_bytes(const struct store_upload *up);
/* Fsyncs the bytes, moves them to DIR/files/ID and records the file; *file (owned by the
 * caller) is its API object, status "processed", or "error" with problem as its
 * status_details when problem is not NULL. Frees up in all cases. */
int store_upload_commit(struct store *s, struct store_upload *up, const char *filename,
                        const char *purpose, const char *problem, json_t **file,
                        struct fj_err *err);
void store_upload_abort(struct store_upload *up);

/* A copy of a file already on disk (a job's results.csv) recorded as a new file. */
int store_file_import(struct store *s, const char *path, const char *filename, const char *purpose,
                      json_t **file, struct fj_err *err);

/* The file's API object (FJ_ERR_NOT_FOUND if none). Owned by the caller. */
int store_file_get(struct store *s, const char *id, json_t **file, struct fj_err *err);
/* Newest first; purpose NULL for all. */
int store_file_list(struct store *s, const char *purpose, const struct store_page *page,
                    struct store_list *out, struct fj_err *err);
/* Removes the record, then the bytes. FJ_ERR_BUSY while a job that has not ended uses it. */
int store_file_delete(struct store *s, const char *id, struct fj_err *err);
/* Where the file's bytes are (the id is checked). */
int store_file_path(const struct store *s, const char *id, char *out, size_t cap);

/* ---- jobs ----------------------------------------------------------------------------- */

/* What the scheduler needs of a job, beside its API object. */
struct store_job_row {
    char id[STORE_ID_MAX];
    bool resume;       /* a worker ran before: continue from the newest checkpoint */
    int64_t last_step; /* the highest step whose metrics are recorded */
    json_t *doc;       /* the API object; owned by the row */
    json_t *spec;      /* what the worker needs (model path, files, options); owned */
};
void store_job_row_free(struct store_job_row *r);

/* Records a new job (status taken from doc) with its worker spec. Both are borrowed. If
 * idem_key is not NULL and a job was created with it before, *existing gets that job's
 * object instead and nothing is recorded. */
int store_job_create(struct store *s, const json_t *doc, const json_t *spec, const char *idem_key,
                     json_t **existing, struct fj_err *err);
int store_job_get(struct store *s, const char *id, json_t **doc, struct fj_err *err);
/* The job's object as stored (JSON text, owned by the caller). */
int store_job_get_text(struct store *s, const char *id, char **text, struct fj_err *err);
int store_job_row_get(struct store *s, const char *id, struct store_job_row *r, struct fj_err *err);
/* Newest first, optionally only jobs whose metadata holds every pair of `metadata`. */
int store_job_list(struct store *s, const json_t *metadata, const struct store_page *page,
                   struct store_list *out, struct fj_err *err);
/* Replaces the job's object (its status column follows doc's "status"). */
int store_job_put(struct store *s, const char *id, const json_t *doc, struct fj_err *err);
int store_job_set_resume(struct store *s, const char *id, bool resume, struct fj_err *err);
/* A running job's step: if the job is still running and step is beyond its last recorded
 * one, records step as the last, sets estimated_finish in its object and appends a
 * "metrics" event (message, data; data is taken). *recorded tells whether it did. One
 * transaction. */
int store_job_step(struct store *s, const char *id, int64_t step, int64_t estimated_finish,
                   const char *message, json_t *data, bool *recorded, struct fj_err *err);
/* The oldest job with this status, if any (*found false if none). */
int store_job_next(struct store *s, const char *status, const char *skip_ids, bool *found,
                   struct store_job_row *r, struct fj_err *err);
/* Ids of the jobs with this status, oldest first: a JSON array owned by the caller. */
int store_job_ids(struct store *s, const char *status, json_t **ids, struct fj_err *err);
int store_job_delete(struct store *s, const char *id, struct fj_err *err);
/* Jobs per status, as a JSON object {status: count}. */
int store_job_counts(struct store *s, json_t **counts, struct fj_err *err);

/* Appends an event (fills in its id and object; data, which may be NULL, is taken); events
 * of a job list newest first. */
int store_event_add(struct store *s, const char *job_id, const char *level, const char *type,
                    const char *message, json_t *data, struct fj_err *err);
int store_event_list(struct store *s, const char *job_id, const struct store_page *page,
                     struct store_list *out, struct fj_err *err);

/* Records a checkpoint object (borrowed; its id and fine_tuned_model_checkpoint name set by
 * the caller) at step, and that name as a model in model_dir descending from base; keeps
 * the newest `keep` checkpoints of the job, the names of the others going too. One
 * transaction. */
int store_checkpoint_add(struct store *s, const char *job_id, int64_t step, const json_t *doc,
                         const char *model_dir, const char *base, int keep, struct fj_err *err);
int store_checkpoint_list(struct store *s, const char *job_id, const struct store_page *page,
                          struct store_list *out, struct fj_err *err);

/* ---- models --------------------------------------------------------------------------- */

/* A fine-tuned model or a checkpoint of one: name -> folder. */
int store_model_add(struct store *s, const char *name, const char *job_id, const char *path,
                    const char *base, bool checkpoint, struct fj_err *err);
/* Folder and base of a model name (FJ_ERR_NOT_FOUND if none). */
int store_model_get(struct store *s, const char *name, char *path, size_t cap, json_t **obj,
                    struct fj_err *err);
/* The folders a fine-tuned model or checkpoint is served from: its model folder (a full
 * fine-tune), or its adapter folder and the folder of the base it was trained from
 * (DIR/models/BASE); adapter is "" for a full one. FJ_ERR_NOT_FOUND if the name is unknown
 * or the base is not installed. */
int store_model_folders(struct store *s, const char *name, char *model, size_t cap,
                        char *adapter, size_t adapter_cap, struct fj_err *err);
/* API model objects of every fine-tuned model and checkpoint, oldest first. */
int store_model_list(struct store *s, json_t **list, struct fj_err *err);
int store_model_delete(struct store *s, const char *name, struct fj_err *err);

/* ---- API keys ------------------------------------------------------------------------- */

/* A new key "fj-" + 40 random characters: *key (caller frees) is shown once; only its hash
 * is kept. */
int store_key_create(struct store *s, const char *name, char **key, json_t **info,
                     struct fj_err *err);
/* The keys (id, name, created_at, revoked_at, prefix), oldest first. */
int store_key_list(struct store *s, json_t **list, struct fj_err *err);
int store_key_revoke(struct store *s, const char *id, struct fj_err *err);
int store_key_count(struct store *s, int *n, struct fj_err *err);
/* Whether key is a live key; the comparison takes the same time whatever the key. */
bool store_key_check(struct store *s, const char *key);

/* ---- management tokens ---------------------------------------------------------------- */

/* A management token (for the ARM deployment routes) valid for ttl_s seconds: "fjm_" +
 * expiry + nonce + an HMAC-SHA256 of both under a secret made on first use and kept in the
 * database. *token (caller frees) is not stored. */
int store_token_create(struct store *s, int64_t ttl_s, char **token, int64_t *expires_at,
                       struct fj_err *err);
/* Whether token is a management token of this data directory that has not expired. */
bool store_token_check(struct store *s, const char *token);

/* ---- deployments ---------------------------------------------------------------------- */

/* Creates or replaces deployment name (its ARM object as text); *created tells which. */
int store_deployment_put(struct store *s, const char *name, const char *model, const json_t *doc,
                         bool *created, struct fj_err *err);
/* The deployment's ARM object (new reference), FJ_ERR_NOT_FOUND if none. */
int store_deployment_get(struct store *s, const char *name, json_t **doc, struct fj_err *err);
/* Every deployment's object, oldest first. */
int store_deployment_list(struct store *s, json_t **list, struct fj_err *err);
int store_deployment_delete(struct store *s, const char *name, struct fj_err *err);

#endif
