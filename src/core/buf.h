/* buf.h - a growable byte buffer.
 *
 * The buffer owns data; fj_buf_free releases it. data is always NUL-terminated after a
 * successful append (the NUL is not counted in len), so text can be passed to C APIs.
 */
#ifndef FJ_CORE_BUF_H
#define FJ_CORE_BUF_H

#include <stddef.h>

struct fj_buf {
    char *data; /* owned; NULL until the first append */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
};

/* Makes room for `extra` more bytes (plus a NUL). Returns 0 or FJ_ERR_NOMEM. */
int fj_buf_reserve(struct fj_buf *b, size_t extra);

/* Appends n bytes. Returns 0 or FJ_ERR_NOMEM (b is unchanged then). */
int fj_buf_append(struct fj_buf *b, const void *bytes, size_t n);

/* Appends a printf-formatted string. Returns 0 or FJ_ERR_NOMEM. */
int fj_buf_printf(struct fj_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Frees the data; b may be reused afterwards. NULL is allowed. */
void fj_buf_free(struct fj_buf *b);

#endif
