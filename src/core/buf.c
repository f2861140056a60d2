/* buf.c - the growable byte buffer (see buf.h). */
#include "core/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

int fj_buf_reserve(struct fj_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return FJ_ERR_NOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return FJ_ERR_NOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int fj_buf_append(struct fj_buf *b, const void *bytes, size_t n)
{
    if (fj_buf_reserve(b, n) != 0)
        return FJ_ERR_NOMEM;
    if (n > 0)
        memcpy(b->data + b->len, bytes, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int fj_buf_printf(struct fj_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || fj_buf_reserve(b, (size_t)n) != 0)
        return FJ_ERR_NOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void fj_buf_free(struct fj_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
