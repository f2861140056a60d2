/* tokens.c - management tokens: what `forja token` prints and the deployment (ARM) routes
 * accept, as `az account get-access-token` is for Azure. A token is
 *     fjm_EXPIRY_NONCE_MAC
 * with EXPIRY in unix seconds and MAC = hex HMAC-SHA256(secret, "fjm_EXPIRY_NONCE"); the
 * secret is 32 random bytes made on first use and kept in the database, so tokens need no
 * storage and a copy of the data directory's tokens works only with that directory. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "store/store_internal.h"

#define SECRET_NAME "management-token"

/* The signing secret, made on first use. */
static int secret_get(struct store *s, unsigned char out[32], struct fj_err *err)
{
    unsigned char fresh[32];
    if (RAND_bytes(fresh, sizeof fresh) != 1)
        return fj_err_set(err, FJ_ERR_IO, "no randomness for the token secret");
    store_lock(s);
    sqlite3_stmt *st;
    int rc =
        store_prepare(s, "INSERT OR IGNORE INTO secrets(name, value) VALUES(?1, ?2)", &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, SECRET_NAME);
        sqlite3_bind_blob(st, 2, fresh, sizeof fresh, SQLITE_TRANSIENT);
        rc = store_step_done(s, st, err);
    }
    if (rc == 0)
        rc = store_prepare(s, "SELECT value FROM secrets WHERE name = ?1", &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, SECRET_NAME);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 32)
            memcpy(out, sqlite3_column_blob(st, 0), 32);
        else
            rc = fj_err_set(err, FJ_ERR_FORMAT, "the token secret is damaged");
        sqlite3_finalize(st);
    }
    store_unlock(s);
    OPENSSL_cleanse(fresh, sizeof fresh);
    return rc;
}

static void mac_hex(const unsigned char secret[32], const char *msg, size_t len, char hex[65])
{
    unsigned char mac[32];
    unsigned mac_len = 32;
    HMAC(EVP_sha256(), secret, 32, (const unsigned char *)msg, len, mac, &mac_len);
    store_sha256_hex(mac, hex);
}

int store_token_create(struct store *s, int64_t ttl_s, char **token, int64_t *expires_at,
                       struct fj_err *err)
{
    unsigned char secret[32];
    if (ttl_s < 1)
        return fj_err_set(err, FJ_ERR_RANGE, "a token must live at least a second");
    int rc = secret_get(s, secret, err);
    if (rc != 0)
        return rc;
    int64_t exp = store_now() + ttl_s;
    char nonce[17], head[64], hex[65];
    store_random_chars(nonce, 16);
    int n = snprintf(head, sizeof head, "fjm_%" PRId64 "_%s", exp, nonce);
    mac_hex(secret, head, (size_t)n, hex);
    OPENSSL_cleanse(secret, sizeof secret);
    size_t cap = sizeof head + sizeof hex + 1;
    if (!(*token = malloc(cap)))
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    snprintf(*token, cap, "%s_%s", head, hex);
    if (expires_at)
        *expires_at = exp;
    return 0;
}

bool store_token_check(struct store *s, const char *token)
{
    const char *mac = strrchr(token, '_');
    char *end;
    if (strncmp(token, "fjm_", 4) != 0 || !mac || strlen(mac + 1) != 64 ||
        (size_t)(mac - token) >= 64)
        return false;
    long long exp = strtoll(token + 4, &end, 10);
    if (*end != '_' || exp < store_now())
        return false;
    unsigned char secret[32];
    if (secret_get(s, secret, NULL) != 0)
        return false;
    char hex[65];
    mac_hex(secret, token, (size_t)(mac - token), hex);
    OPENSSL_cleanse(secret, sizeof secret);
    return CRYPTO_memcmp(hex, mac + 1, 64) == 0;
}
