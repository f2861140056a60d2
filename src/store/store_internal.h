/* store_internal.h - what the store's files share: the handle and the query helpers of
 * db.c. Not for use outside src/store. */
#ifndef FJ_STORE_INTERNAL_H
#define FJ_STORE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>

#include "store/store.h"

#define STORE_PATH_MAX 4096
#define STORE_DIR_MAX  3840 /* leaves room in a path for what goes under the folder */

/* A thread's own read-only connection, with the statements it has prepared. */
#define STORE_READER_STMTS 32
struct store_reader {
    struct store *owner;
    sqlite3 *db;
    struct {
        const char *sql; /* the caller's static text: compared by address */
        sqlite3_stmt *st;
    } stmts[STORE_READER_STMTS];
    struct store_reader *next;
};

struct store {
    char dir[STORE_DIR_MAX];
    char db_path[STORE_PATH_MAX];
    sqlite3 *db;          /* the writer */
    pthread_mutex_t lock; /* held for every statement on the writer */
    int version;
    /* Readers: one connection per thread that reads (WAL lets them run beside the writer
     * and each other), made on first use and closed when the thread ends or the store
     * closes. */
    pthread_key_t reader_key;
    pthread_mutex_t readers_lock;
    struct store_reader *readers;
    int lock_fd; /* DIR/forja.lock, held shared while open (exclusive while cleaning up) */
};

void store_lock(struct store *s);
void store_unlock(struct store *s);

/* Records sqlite's message for the last failure in err. */
int store_sql_error(struct store *s, struct fj_err *err, const char *what);
int store_exec(struct store *s, const char *sql, struct fj_err *err);
int store_prepare(struct store *s, const char *sql, sqlite3_stmt **st, struct fj_err *err);
/* Steps a write statement once and finalizes it. */
int store_step_done(struct store *s, sqlite3_stmt *st, struct fj_err *err);
void store_bind_text(sqlite3_stmt *st, int i, const char *v);  /* NULL binds NULL */
int store_bind_json(sqlite3_stmt *st, int i, const json_t *v); /* compact text */
json_t *store_column_json(sqlite3_stmt *st, int col);          /* new reference */
/* A read statement on this thread's reader, prepared on first use and kept: sql must be a
 * string that lives as long as the program (a literal). Give it back with store_read_done. */
int store_read(struct store *s, const char *sql, sqlite3_stmt **st, struct fj_err *err);
void store_read_done(sqlite3_stmt *st);
/* sqlite's message for a failed read statement. */
int store_read_error(sqlite3_stmt *st, struct fj_err *err);
/* Steps a read statement (then store_read_done) into a page: column 0 of up to limit rows
 * (stored JSON, not re-encoded) and the first and last rows' ids (column 1); has_more tells
 * whether a row beyond limit exists (queries ask for limit + 1). */
int store_collect(sqlite3_stmt *st, int limit, struct store_list *out, struct fj_err *err);

void store_random_chars(char *out, size_t n); /* n of [A-Za-z0-9], then a NUL */

/* SHA-256 of data, or of a file streamed through; hex is 65 bytes. */
void store_sha256_hex(const unsigned char digest[32], char hex[65]);

static inline int store_limit(const struct store_page *page)
{
    int limit = page && page->limit > 0 ? page->limit : 20;
    return limit > 100 ? 100 : limit;
}

#endif
