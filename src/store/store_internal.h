/* store_internal.h - what the store's files share: the handle and the query helpers of
 * db.c. Not for use outside src/store. */
#ifndef FJ_STORE_INTERNAL_H
#define FJ_STORE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>

#include "store/store.h"

#define STORE_PATH_MAX 4096
#define STORE_DIR_MAX 3840 /* leaves room in a path for what goes under the folder */

struct store {
    char dir[STORE_DIR_MAX];
    sqlite3 *db;
    pthread_mutex_t lock; /* held for every statement: one connection, many threads */
    int version;
};

void store_lock(struct store *s);
void store_unlock(struct store *s);

/* Records sqlite's message for the last failure in err. */
int store_sql_error(struct store *s, struct fj_err *err, const char *what);
int store_exec(struct store *s, const char *sql, struct fj_err *err);
int store_prepare(struct store *s, const char *sql, sqlite3_stmt **st, struct fj_err *err);
/* Steps a write statement once and finalizes it. */
int store_step_done(struct store *s, sqlite3_stmt *st, struct fj_err *err);
void store_bind_text(sqlite3_stmt *st, int i, const char *v);       /* NULL binds NULL */
int store_bind_json(sqlite3_stmt *st, int i, const json_t *v);      /* compact text */
json_t *store_column_json(sqlite3_stmt *st, int col);               /* new reference */
/* Steps st (finalizing it), collecting column col of up to limit rows as JSON; has_more
 * tells whether a row beyond limit exists (queries ask for limit + 1). */
int store_collect_docs(struct store *s, sqlite3_stmt *st, int col, int limit, json_t **list,
                       bool *has_more, struct fj_err *err);

void store_random(void *out, size_t n);
void store_random_chars(char *out, size_t n); /* n of [A-Za-z0-9], then a NUL */

/* SHA-256 of data, or of a file streamed through; hex is 65 bytes. */
void store_sha256_hex(const unsigned char digest[32], char hex[65]);

static inline int store_limit(const struct store_page *page)
{
    int limit = page && page->limit > 0 ? page->limit : 20;
    return limit > 100 ? 100 : limit;
}

#endif
