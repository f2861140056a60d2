/* db.c - the store's database: opening it in WAL mode, the versioned schema and its
 * migrations, the one lock, and the small query helpers the other store files share. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core/file.h"
#include "store/store_internal.h"

/* Each entry moves the schema from version i to i + 1; never edit one that has shipped,
 * append a new one. PRAGMA user_version records how many have run. */
static const char *const migrations[] = {
    /* 1: files, jobs, events, checkpoints, models, keys */
    "CREATE TABLE files(seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, purpose TEXT NOT NULL, sha256 TEXT,"
    "  created_at INTEGER NOT NULL, doc TEXT NOT NULL);"
    "CREATE INDEX files_purpose ON files(purpose, seq);"
    "CREATE TABLE jobs(seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, status TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL, training_file TEXT, validation_file TEXT, metadata TEXT,"
    "  idem_key TEXT UNIQUE, resume INTEGER NOT NULL DEFAULT 0,"
    "  last_step INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL, spec TEXT NOT NULL);"
    "CREATE INDEX jobs_status ON jobs(status, seq);"
    "CREATE TABLE events(seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL,"
    "  job_id TEXT NOT NULL, doc TEXT NOT NULL);"
    "CREATE INDEX events_job ON events(job_id, seq);"
    "CREATE TABLE checkpoints(seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL,"
    "  job_id TEXT NOT NULL, step INTEGER NOT NULL, path TEXT, doc TEXT NOT NULL);"
    "CREATE INDEX checkpoints_job ON checkpoints(job_id, seq);"
    "CREATE TABLE models(seq INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, job_id TEXT,"
    "  path TEXT NOT NULL, base TEXT, checkpoint INTEGER NOT NULL, created_at INTEGER NOT NULL);"
    "CREATE TABLE keys(seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, name TEXT,"
    "  hash BLOB NOT NULL, prefix TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  revoked_at INTEGER);",
};

#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

int store_sql_error(struct store *s, struct fj_err *err, const char *what)
{
    int code = sqlite3_extended_errcode(s->db);
    return fj_err_set(err, code == SQLITE_FULL || code == SQLITE_IOERR ? FJ_ERR_IO : FJ_ERR_FORMAT,
                      "database: %s: %s", what, sqlite3_errmsg(s->db));
}

int store_exec(struct store *s, const char *sql, struct fj_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    int rc = fj_err_set(err, FJ_ERR_IO, "database: %s", msg ? msg : "error");
    sqlite3_free(msg);
    return rc;
}

int store_prepare(struct store *s, const char *sql, sqlite3_stmt **st, struct fj_err *err)
{
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK)
        return store_sql_error(s, err, "prepare");
    return 0;
}

int store_step_done(struct store *s, sqlite3_stmt *st, struct fj_err *err)
{
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    return r == SQLITE_DONE || r == SQLITE_ROW ? 0 : store_sql_error(s, err, "write");
}

void store_bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

int store_bind_json(sqlite3_stmt *st, int i, const json_t *v)
{
    char *text = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (v && !text)
        return FJ_ERR_NOMEM;
    if (text)
        sqlite3_bind_text(st, i, text, -1, free);
    else
        sqlite3_bind_null(st, i);
    return 0;
}

json_t *store_column_json(sqlite3_stmt *st, int col)
{
    const char *text = (const char *)sqlite3_column_text(st, col);
    return text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
}

int store_collect_docs(struct store *s, sqlite3_stmt *st, int col, int limit, json_t **list,
                       bool *has_more, struct fj_err *err)
{
    json_t *arr = json_array();
    int r, n = 0;
    *has_more = false;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == limit) {
            *has_more = true;
            break;
        }
        json_t *doc = store_column_json(st, col);
        if (doc)
            json_array_append_new(arr, doc);
        n++;
    }
    int rc = r == SQLITE_ROW || r == SQLITE_DONE ? 0 : store_sql_error(s, err, "read");
    sqlite3_finalize(st);
    if (rc != 0) {
        json_decref(arr);
        return rc;
    }
    *list = arr;
    return 0;
}

static int migrate(struct store *s, struct fj_err *err)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "PRAGMA user_version", &st, err);
    if (rc != 0)
        return rc;
    int version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    if (version > N_MIGRATIONS)
        return fj_err_set(err, FJ_ERR_FORMAT,
                          "%s/forja.db has schema version %d; this forja knows up to %d (a newer "
                          "forja wrote it)",
                          s->dir, version, N_MIGRATIONS);
    for (; version < N_MIGRATIONS; version++) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d;", version + 1);
        if ((rc = store_exec(s, "BEGIN IMMEDIATE", err)) != 0)
            return rc;
        if ((rc = store_exec(s, migrations[version], err)) == 0)
            rc = store_exec(s, pragma, err);
        if (rc == 0)
            rc = store_exec(s, "COMMIT", err);
        if (rc != 0) {
            store_exec(s, "ROLLBACK", NULL);
            return rc;
        }
    }
    s->version = version;
    return 0;
}

static int make_dirs(struct store *s, struct fj_err *err)
{
    static const char *const sub[] = {"files", "tmp", "jobs", "models"};
    char path[STORE_PATH_MAX];
    int rc = fj_mkdirs(s->dir, err);
    for (size_t i = 0; rc == 0 && i < sizeof sub / sizeof sub[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", s->dir, sub[i]);
        rc = fj_mkdirs(path, err);
    }
    /* Whatever is in tmp/ was never acknowledged: an upload cut short by a crash. */
    snprintf(path, sizeof path, "%s/tmp", s->dir);
    if (rc == 0 && (rc = fj_remove_tree(path, err)) == 0)
        rc = fj_mkdirs(path, err);
    return rc;
}

int store_open(struct store **out, const char *dir, struct fj_err *err)
{
    if (strlen(dir) >= STORE_DIR_MAX)
        return fj_err_set(err, FJ_ERR_RANGE, "data directory path is too long");
    struct store *s = calloc(1, sizeof *s);
    if (!s)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    pthread_mutex_init(&s->lock, NULL);
    int rc = make_dirs(s, err);
    char path[STORE_PATH_MAX];
    snprintf(path, sizeof path, "%s/forja.db", dir);
    if (rc == 0 && sqlite3_open_v2(path, &s->db,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                       SQLITE_OPEN_NOMUTEX,
                                   NULL) != SQLITE_OK)
        rc = fj_err_set(err, FJ_ERR_IO, "%s: %s", path,
                        s->db ? sqlite3_errmsg(s->db) : "cannot open");
    if (rc == 0)
        sqlite3_busy_timeout(s->db, 10000);
    /* WAL: readers do not wait for the writer; synchronous=FULL: a committed row is on disk
     * before the call returns, so what the API acknowledged survives a power cut too. */
    if (rc == 0)
        rc = store_exec(s,
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                        "PRAGMA foreign_keys=ON;",
                        err);
    if (rc == 0)
        rc = migrate(s, err);
    if (rc != 0) {
        store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

const char *store_dir(const struct store *s) { return s->dir; }

int store_schema_version(struct store *s) { return s->version; }

void store_lock(struct store *s) { pthread_mutex_lock(&s->lock); }

void store_unlock(struct store *s) { pthread_mutex_unlock(&s->lock); }

int64_t store_now(void) { return (int64_t)time(NULL); }

void store_random(void *out, size_t n)
{
    unsigned char *p = out;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) { /* no entropy source at all: not expected on Linux >= 3.17 */
            abort();
        }
        p += got;
        n -= (size_t)got;
    }
}

void store_random_chars(char *out, size_t n)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[64];
    for (size_t i = 0; i < n; i++) {
        /* 62 * 4 = 248: bytes from 248 up are drawn again so every character is as likely. */
        unsigned char b;
        do {
            store_random(r, 1);
            b = r[0];
        } while (b >= 248);
        out[i] = alphabet[b % 62];
    }
    out[n] = '\0';
}

void store_new_id(const char *prefix, char out[STORE_ID_MAX])
{
    size_t p = strlen(prefix);
    memcpy(out, prefix, p);
    store_random_chars(out + p, 24);
}

bool store_id_valid(const char *id, const char *prefix)
{
    size_t p = strlen(prefix), n = strlen(id);
    if (n <= p || n > p + 40 || strncmp(id, prefix, p) != 0)
        return false;
    for (size_t i = p; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}
