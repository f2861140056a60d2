/* err.h - forja's error codes and the error record every library call fills in.
 *
 * Library functions return 0 on success or a negative FJ_ERR_* code, and take a
 * `struct fj_err *err` as their last argument (may be NULL). The first failure wins:
 * once err->code is set, later fj_err_set calls leave it alone, so the message a caller
 * sees names the root cause. Library code never prints; the CLI and the API do.
 */
#ifndef FJ_CORE_ERR_H
#define FJ_CORE_ERR_H

#include <stddef.h>

enum fj_code {
    FJ_OK = 0,
    FJ_ERR_NOMEM = -1,     /* allocation failed */
    FJ_ERR_IO = -2,        /* a system call on a file failed */
    FJ_ERR_INVALID = -3,   /* bad argument or bad input */
    FJ_ERR_UTF8 = -4,      /* text is not valid UTF-8 */
    FJ_ERR_SPECIAL = -5,   /* text holds a special token that was not allowed */
    FJ_ERR_NOT_FOUND = -6, /* unknown name or id */
    FJ_ERR_RANGE = -7,     /* a number or size out of its allowed range */
    FJ_ERR_FORMAT = -8,    /* a file or data structure is malformed */
    FJ_ERR_CANCELLED = -9, /* stopped on request (a signal, a cancelled job) */
    FJ_ERR_BUSY = -10,     /* in use (a file that a running job reads) */
    FJ_ERR_STATE = -11,    /* not allowed in the object's current state */
};

#define FJ_ERR_MSG_MAX 512

struct fj_err {
    int code;                 /* FJ_OK or the first FJ_ERR_* recorded */
    char msg[FJ_ERR_MSG_MAX]; /* human-readable, no trailing newline */
};

/* Records code and a printf-style message unless err is NULL or already holds an error.
 * Returns code, so callers can write `return fj_err_set(err, FJ_ERR_IO, ...)`. */
int fj_err_set(struct fj_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clears err back to FJ_OK. */
void fj_err_clear(struct fj_err *err);

/* A short stable name for a code: "nomem", "io", "invalid", ... */
const char *fj_code_name(int code);

#endif
