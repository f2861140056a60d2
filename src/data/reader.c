/* reader.c - JSONL files as blocks of whole lines, in bounded memory.
 *
 * Memory is one read buffer plus the block being filled: a block ends at the first line end
 * after `target` bytes, and a line longer than max_line is counted and skipped instead of
 * stored, so a 2 GB line or a 2 GB file never needs 2 GB. Lines end at "\n"; a "\r" before
 * it is dropped (CRLF files); the last line may lack its "\n".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data.h"

#define READ_SIZE (1u << 20)

struct data_reader {
    int fd;
    bool own_fd;
    size_t max_line;
    uint8_t *rbuf;
    size_t rpos, rlen;
    bool eof;
    bool at_start;    /* the byte order mark has not been looked for yet */
    uint64_t line_no; /* lines finished so far */
    uint64_t bytes;
    bool skipping; /* inside a line longer than max_line */
    uint64_t skip_len;
};

struct data_reader *data_reader_open(const char *path, size_t max_line, struct fj_err *err)
{
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fj_err_set(err, FJ_ERR_IO, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (fd != STDIN_FILENO)
            close(fd);
        fj_err_set(err, FJ_ERR_IO, "is a directory, not a JSONL file");
        return NULL;
    }
    struct data_reader *r = calloc(1, sizeof *r);
    uint8_t *rbuf = malloc(READ_SIZE);
    if (r == NULL || rbuf == NULL) {
        free(r);
        free(rbuf);
        if (fd != STDIN_FILENO)
            close(fd);
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        return NULL;
    }
    r->fd = fd;
    r->own_fd = fd != STDIN_FILENO;
    r->max_line = max_line;
    r->rbuf = rbuf;
    r->at_start = true;
    return r;
}

void data_reader_close(struct data_reader *r)
{
    if (r == NULL)
        return;
    if (r->own_fd)
        close(r->fd);
    free(r->rbuf);
    free(r);
}

uint64_t data_reader_bytes(const struct data_reader *r)
{
    return r->bytes;
}

void data_block_free(struct data_block *b)
{
    if (b == NULL)
        return;
    free(b->buf);
    free(b->lines);
    memset(b, 0, sizeof *b);
}

/* Reads more input into rbuf (which is empty). At the start of the file, reads until three
 * bytes are there or the file ends, so a byte order mark split across reads is still seen. */
static int refill(struct data_reader *r, struct fj_err *err)
{
    r->rpos = r->rlen = 0;
    do {
        ssize_t k = read(r->fd, r->rbuf + r->rlen, READ_SIZE - r->rlen);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return fj_err_set(err, FJ_ERR_IO, "read failed: %s", strerror(errno));
        if (k == 0) {
            r->eof = true;
            break;
        }
        r->rlen += (size_t)k;
        r->bytes += (uint64_t)k;
    } while (r->at_start && r->rlen < 3);
    if (r->at_start) {
        r->at_start = false;
        if (r->rlen >= 3 && memcmp(r->rbuf, "\xEF\xBB\xBF", 3) == 0)
            r->rpos = 3;
    }
    return 0;
}

static int block_append(struct data_block *b, const uint8_t *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : READ_SIZE;
        while (cap < b->len + n)
            cap *= 2;
        char *q = realloc(b->buf, cap);
        if (q == NULL)
            return FJ_ERR_NOMEM;
        b->buf = q;
        b->cap = cap;
    }
    if (n > 0) /* p may be NULL then (memcpy's arguments must not be) */
        memcpy(b->buf + b->len, p, n);
    b->len += n;
    return 0;
}

static int finish_line(struct data_reader *r, struct data_block *b, size_t *line_start)
{
    if (b->n_lines == b->cap_lines) {
        size_t cap = b->cap_lines ? b->cap_lines * 2 : 1024;
        struct data_line *q = realloc(b->lines, cap * sizeof *q);
        if (q == NULL)
            return FJ_ERR_NOMEM;
        b->lines = q;
        b->cap_lines = cap;
    }
    struct data_line *l = &b->lines[b->n_lines++];
    l->number = ++r->line_no;
    l->off = *line_start;
    if (r->skipping) {
        l->len = (size_t)r->skip_len;
        l->flags = DATA_LINE_TOO_LONG;
        r->skipping = false;
    } else {
        l->len = b->len - *line_start;
        if (l->len > 0 && b->buf[*line_start + l->len - 1] == '\r')
            l->len--;
        l->flags = 0;
    }
    *line_start = b->len;
    return 0;
}

int data_reader_next(struct data_reader *r, struct data_block *b, size_t target, struct fj_err *err)
{
    b->len = 0;
    b->n_lines = 0;
    size_t line_start = 0;
    for (;;) {
        if (r->rpos == r->rlen) {
            if (r->eof)
                break;
            int rc = refill(r, err);
            if (rc != 0)
                return rc;
            continue;
        }
        const uint8_t *p = r->rbuf + r->rpos;
        size_t avail = r->rlen - r->rpos;
        const uint8_t *nl = memchr(p, '\n', avail);
        size_t take = nl ? (size_t)(nl - p) : avail;
        if (r->skipping) {
            r->skip_len += take;
        } else if (b->len - line_start + take > r->max_line) {
            r->skipping = true;
            r->skip_len = b->len - line_start + take;
            b->len = line_start;
        } else if (block_append(b, p, take) != 0) {
            return fj_err_set(err, FJ_ERR_NOMEM, "out of memory reading line %llu",
                              (unsigned long long)r->line_no + 1);
        }
        r->rpos += take;
        if (nl != NULL) {
            r->rpos++;
            if (finish_line(r, b, &line_start) != 0)
                return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
            if (b->len >= target)
                return 1;
        }
    }
    if (r->skipping || b->len > line_start) {
        if (finish_line(r, b, &line_start) != 0)
            return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    }
    return b->n_lines > 0;
}
