/* err.c - the error record (see err.h). */
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>

int fj_err_set(struct fj_err *err, int code, const char *fmt, ...)
{
    if (err == NULL || err->code != FJ_OK)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

void fj_err_clear(struct fj_err *err)
{
    if (err == NULL)
        return;
    err->code = FJ_OK;
    err->msg[0] = '\0';
}

const char *fj_code_name(int code)
{
    switch (code) {
    case FJ_OK: return "ok";
    case FJ_ERR_NOMEM: return "nomem";
    case FJ_ERR_IO: return "io";
    case FJ_ERR_INVALID: return "invalid";
    case FJ_ERR_UTF8: return "utf8";
    case FJ_ERR_SPECIAL: return "special_token";
    case FJ_ERR_NOT_FOUND: return "not_found";
    case FJ_ERR_RANGE: return "range";
    case FJ_ERR_FORMAT: return "format";
    case FJ_ERR_CANCELLED: return "cancelled";
    case FJ_ERR_BUSY: return "busy";
    case FJ_ERR_STATE: return "state";
    }
    return "unknown";
}
