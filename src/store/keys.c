/* keys.c - API keys. A key is shown once, when it is made; the database keeps only its
 * SHA-256, so a copy of the data directory does not leak working keys. Checking a key
 * compares its hash with every live hash without stopping early. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "store/store_internal.h"

static void hash_key(const char *key, unsigned char out[32])
{
    unsigned len = 32;
    EVP_Digest(key, strlen(key), out, &len, EVP_sha256(), NULL);
}

int store_key_create(struct store *s, const char *name, char **key, json_t **info,
                     struct fj_err *err)
{
    char *k = malloc(48);
    if (!k)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    memcpy(k, "fj-", 3);
    store_random_chars(k + 3, 40);
    unsigned char h[32];
    hash_key(k, h);
    char id[STORE_ID_MAX], prefix[16];
    store_new_id("key-", id);
    snprintf(prefix, sizeof prefix, "%.7s...", k);
    int64_t now = store_now();
    store_lock(s);
    sqlite3_stmt *st;
    int rc = store_prepare(
        s, "INSERT INTO keys(id, name, hash, prefix, created_at) VALUES(?1, ?2, ?3, ?4, ?5)", &st,
        err);
    if (rc == 0) {
        store_bind_text(st, 1, id);
        store_bind_text(st, 2, name);
        sqlite3_bind_blob(st, 3, h, 32, SQLITE_TRANSIENT);
        store_bind_text(st, 4, prefix);
        sqlite3_bind_int64(st, 5, now);
        rc = store_step_done(s, st, err);
    }
    store_unlock(s);
    if (rc != 0) {
        free(k);
        return rc;
    }
    *key = k;
    if (info)
        *info = json_pack("{s:s, s:s?, s:s, s:I, s:n}", "id", id, "name", name, "prefix", prefix,
                          "created_at", (json_int_t)now, "revoked_at");
    return 0;
}

int store_key_list(struct store *s, json_t **list, struct fj_err *err)
{
    sqlite3_stmt *st;
    int rc = store_read(s, "SELECT id, name, prefix, created_at, revoked_at FROM keys ORDER BY seq",
                        &st, err);
    if (rc != 0)
        return rc;
    json_t *arr = json_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_t *o = json_pack("{s:s, s:s?, s:s, s:I}", "id", sqlite3_column_text(st, 0), "name",
                              sqlite3_column_text(st, 1), "prefix", sqlite3_column_text(st, 2),
                              "created_at", (json_int_t)sqlite3_column_int64(st, 3));
        json_object_set_new(o, "revoked_at",
                            sqlite3_column_type(st, 4) == SQLITE_NULL
                                ? json_null()
                                : json_integer(sqlite3_column_int64(st, 4)));
        json_array_append_new(arr, o);
    }
    store_read_done(st);
    *list = arr;
    return 0;
}

int store_key_revoke(struct store *s, const char *id, struct fj_err *err)
{
    store_lock(s);
    sqlite3_stmt *st;
    int rc = store_prepare(
        s, "UPDATE keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL", &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, id);
        sqlite3_bind_int64(st, 2, store_now());
        rc = store_step_done(s, st, err);
        if (rc == 0 && sqlite3_changes(s->db) == 0)
            rc = fj_err_set(err, FJ_ERR_NOT_FOUND, "no live key with id %s", id);
    }
    store_unlock(s);
    return rc;
}

int store_key_count(struct store *s, int *n, struct fj_err *err)
{
    sqlite3_stmt *st;
    int rc = store_read(s, "SELECT count(*) FROM keys WHERE revoked_at IS NULL", &st, err);
    if (rc == 0) {
        *n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
        store_read_done(st);
    }
    return rc;
}

bool store_key_check(struct store *s, const char *key)
{
    unsigned char h[32];
    hash_key(key, h);
    unsigned char diff_all = 1; /* becomes 0 when some live hash matches */
    sqlite3_stmt *st;
    if (store_read(s, "SELECT hash FROM keys WHERE revoked_at IS NULL", &st, NULL) == 0) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            const unsigned char *stored = sqlite3_column_blob(st, 0);
            if (!stored || sqlite3_column_bytes(st, 0) != 32)
                continue;
            unsigned char d = 0;
            for (int i = 0; i < 32; i++)
                d |= (unsigned char)(stored[i] ^ h[i]);
            diff_all &= (unsigned char)(d != 0);
        }
        store_read_done(st);
    }
    return diff_all == 0;
}
