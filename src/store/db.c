/* db.c - the store's database: opening it in WAL mode, the versioned schema and its
 * migrations, the one lock, and the small query helpers the other store files share. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/file.h"
#include "store/store_internal.h"

/* Each entry moves the schema from version i to i + 1; never edit one that has shipped,
 * append a new one. PRAGMA user_version records how many have run. */
static const char *const migrations[] = {
    /* 1: files, jobs, events, checkpoints, models, keys */
    "CREATE TABLE files(seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, purpose TEXT NOT NULL, "
    "sha256 TEXT,"
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
    "  job_id TEXT NOT NULL, step INTEGER NOT NULL, doc TEXT NOT NULL);"
    "CREATE INDEX checkpoints_job ON checkpoints(job_id, seq);"
    "CREATE TABLE models(seq INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, job_id TEXT,"
    "  path TEXT NOT NULL, base TEXT, checkpoint INTEGER NOT NULL, created_at INTEGER NOT NULL);"
    "CREATE TABLE keys(seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, name TEXT,"
    "  hash BLOB NOT NULL, prefix TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  revoked_at INTEGER);",
    /* 2: deployments, and the secret management tokens are signed with */
    "CREATE TABLE deployments(seq INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
    "  model TEXT NOT NULL, created_at INTEGER NOT NULL, doc TEXT NOT NULL);"
    "CREATE TABLE secrets(name TEXT PRIMARY KEY, value BLOB NOT NULL);",
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

/* ---- readers ------------------------------------------------------------------------ */

static void reader_close(struct store_reader *r)
{
    for (int i = 0; i < STORE_READER_STMTS; i++)
        sqlite3_finalize(r->stmts[i].st);
    sqlite3_close(r->db);
    free(r);
}

/* Runs when a thread that read ends. */
static void reader_release(void *p)
{
    struct store_reader *r = p;
    struct store *s = r->owner;
    pthread_mutex_lock(&s->readers_lock);
    for (struct store_reader **pp = &s->readers; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    pthread_mutex_unlock(&s->readers_lock);
    reader_close(r);
}

static struct store_reader *reader_get(struct store *s, struct fj_err *err)
{
    struct store_reader *r = pthread_getspecific(s->reader_key);
    if (r)
        return r;
    if (!(r = calloc(1, sizeof *r))) {
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        return NULL;
    }
    r->owner = s;
    if (sqlite3_open_v2(s->db_path, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        fj_err_set(err, FJ_ERR_IO, "database: %s", r->db ? sqlite3_errmsg(r->db) : "cannot open");
        sqlite3_close(r->db);
        free(r);
        return NULL;
    }
    sqlite3_busy_timeout(r->db, 10000);
    pthread_mutex_lock(&s->readers_lock);
    r->next = s->readers;
    s->readers = r;
    pthread_mutex_unlock(&s->readers_lock);
    pthread_setspecific(s->reader_key, r);
    return r;
}

int store_read(struct store *s, const char *sql, sqlite3_stmt **st, struct fj_err *err)
{
    struct store_reader *r = reader_get(s, err);
    if (!r)
        return err && err->code ? err->code : FJ_ERR_IO;
    int free_slot = -1;
    for (int i = 0; i < STORE_READER_STMTS; i++) {
        if (r->stmts[i].sql == sql) {
            *st = r->stmts[i].st;
            return 0;
        }
        if (!r->stmts[i].sql && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0) { /* more queries than slots: the last slot is given up */
        free_slot = STORE_READER_STMTS - 1;
        sqlite3_finalize(r->stmts[free_slot].st);
        r->stmts[free_slot].sql = NULL;
        r->stmts[free_slot].st = NULL;
    }
    if (sqlite3_prepare_v3(r->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
        return fj_err_set(err, FJ_ERR_FORMAT, "database: prepare: %s", sqlite3_errmsg(r->db));
    r->stmts[free_slot].sql = sql;
    r->stmts[free_slot].st = *st;
    return 0;
}

void store_read_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

int store_read_error(sqlite3_stmt *st, struct fj_err *err)
{
    return fj_err_set(err, FJ_ERR_IO, "database: read: %s", sqlite3_errmsg(sqlite3_db_handle(st)));
}

int store_collect(sqlite3_stmt *st, int limit, struct store_list *out, struct fj_err *err)
{
    struct fj_buf b = {0};
    memset(out, 0, sizeof *out);
    int r, n = 0, rc = fj_buf_append(&b, "[", 1);
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == limit) {
            out->has_more = true;
            break;
        }
        const char *doc = (const char *)sqlite3_column_text(st, 0);
        const char *id = (const char *)sqlite3_column_text(st, 1);
        if (!doc || !id)
            continue;
        if (n > 0)
            rc = fj_buf_append(&b, ",", 1);
        if (rc == 0)
            rc = fj_buf_append(&b, doc, (size_t)sqlite3_column_bytes(st, 0));
        if (n == 0)
            snprintf(out->first_id, STORE_ID_MAX, "%s", id);
        snprintf(out->last_id, STORE_ID_MAX, "%s", id);
        n++;
    }
    if (rc == 0 && r != SQLITE_ROW && r != SQLITE_DONE)
        rc = store_read_error(st, err);
    store_read_done(st);
    if (rc == 0)
        rc = fj_buf_append(&b, "]", 2); /* with the NUL */
    if (rc != 0) {
        fj_buf_free(&b);
        return rc == FJ_ERR_NOMEM ? fj_err_set(err, FJ_ERR_NOMEM, "out of memory") : rc;
    }
    out->data = (char *)b.data;
    out->len = b.len - 1;
    return 0;
}

void store_list_free(struct store_list *l)
{
    free(l->data);
    l->data = NULL;
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

/* Whether this is the only process with the data directory open: only then may what looks
 * abandoned (tmp/, unrecorded files) be removed, since a running server's uploads in
 * progress look the same. Every open holds DIR/forja.lock shared; the first one takes it
 * exclusively, cleans up, and then shares it. */
static bool lock_alone(struct store *s)
{
    char path[STORE_PATH_MAX];
    snprintf(path, sizeof path, "%s/forja.lock", s->dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0)
        return false;
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) == 0)
        return true;
    flock(s->lock_fd, LOCK_SH);
    return false;
}

static int make_dirs(struct store *s, bool alone, struct fj_err *err)
{
    static const char *const sub[] = {"files", "jobs", "models", "tmp"};
    char path[STORE_PATH_MAX];
    int rc = fj_mkdirs(s->dir, err);
    for (size_t i = 0; rc == 0 && i < sizeof sub / sizeof sub[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", s->dir, sub[i]);
        /* Whatever is in tmp/ was never acknowledged: an upload cut short by a crash. */
        if (alone && strcmp(sub[i], "tmp") == 0)
            rc = fj_remove_tree(path, err);
        if (rc == 0)
            rc = fj_mkdirs(path, err);
    }
    return rc;
}

/* An upload is renamed into files/ before its row is committed: a crash between the two
 * leaves bytes that nothing refers to and nobody was told about. They go at the next open. */
static void remove_unrecorded_files(struct store *s)
{
    char path[STORE_PATH_MAX];
    snprintf(path, sizeof path, "%s/files", s->dir);
    DIR *d = opendir(path);
    sqlite3_stmt *st;
    if (!d || store_prepare(s, "SELECT 1 FROM files WHERE id = ?1", &st, NULL) != 0) {
        if (d)
            closedir(d);
        return;
    }
    for (struct dirent *e; (e = readdir(d));) {
        if (!store_id_valid(e->d_name, "file-"))
            continue;
        sqlite3_reset(st);
        store_bind_text(st, 1, e->d_name);
        if (sqlite3_step(st) == SQLITE_DONE) {
            char file[STORE_PATH_MAX + 256];
            snprintf(file, sizeof file, "%s/files/%s", s->dir, e->d_name);
            unlink(file);
        }
    }
    sqlite3_finalize(st);
    closedir(d);
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
    pthread_mutex_init(&s->readers_lock, NULL);
    pthread_key_create(&s->reader_key, reader_release);
    s->lock_fd = -1;
    int rc = fj_mkdirs(dir, err);
    /* absolute, so that the paths recorded in it mean the same from any working directory */
    char *abs = rc == 0 ? realpath(dir, NULL) : NULL;
    if (abs && strlen(abs) < sizeof s->dir)
        snprintf(s->dir, sizeof s->dir, "%s", abs);
    free(abs);
    bool alone = rc == 0 && lock_alone(s);
    if (rc == 0)
        rc = make_dirs(s, alone, err);
    snprintf(s->db_path, sizeof s->db_path, "%s/forja.db", dir);
    if (rc == 0 && sqlite3_open_v2(s->db_path, &s->db,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                   NULL) != SQLITE_OK)
        rc = fj_err_set(err, FJ_ERR_IO, "%s: %s", s->db_path,
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
    if (rc == 0 && alone)
        remove_unrecorded_files(s);
    if (alone)
        flock(s->lock_fd, LOCK_SH); /* others may open it now */
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
    /* Threads still alive keep no reader: the key goes first, so no destructor runs later. */
    pthread_key_delete(s->reader_key);
    while (s->readers) {
        struct store_reader *r = s->readers;
        s->readers = r->next;
        reader_close(r);
    }
    sqlite3_close(s->db);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->readers_lock);
    free(s);
}

const char *store_dir(const struct store *s)
{
    return s->dir;
}

int store_schema_version(struct store *s)
{
    return s->version;
}

void store_lock(struct store *s)
{
    pthread_mutex_lock(&s->lock);
}

void store_unlock(struct store *s)
{
    pthread_mutex_unlock(&s->lock);
}

int64_t store_now(void)
{
    return (int64_t)time(NULL);
}

void store_random(void *out, size_t n)
{
    unsigned char *p = out;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) /* no entropy source at all: not expected on Linux >= 3.17 */
            abort();
        p += got;
        n -= (size_t)got;
    }
}

void store_random_chars(char *out, size_t n)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    /* One getrandom for a whole id (it runs for every request id). Bytes from 248 up are
     * skipped (62 * 4 = 248) so every character is as likely; more are drawn if needed. */
    unsigned char r[128];
    size_t have = 0, used = 0;
    for (size_t i = 0; i < n;) {
        if (used == have) {
            have = n - i + 16 < sizeof r ? n - i + 16 : sizeof r;
            store_random(r, have);
            used = 0;
        }
        unsigned char b = r[used++];
        if (b < 248)
            out[i++] = alphabet[b % 62];
    }
    out[n] = '\0';
}

void store_new_id(const char *prefix, char out[STORE_ID_MAX])
{
    size_t p = strlen(prefix);
    memcpy(out, prefix, p);
    store_random_chars(out + p, 24);
}

bool store_name_valid(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool store_id_valid(const char *id, const char *prefix)
{
    size_t p = strlen(prefix);
    return strncmp(id, prefix, p) == 0 && store_name_valid(id + p, 1, 40);
}
