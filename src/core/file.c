/* file.c - whole-file reads, atomic writes and folder creation (see file.h). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"

int fj_file_read(const char *path, size_t max_bytes, struct fj_buf *out, struct fj_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fj_err_set(err, errno == ENOENT ? FJ_ERR_NOT_FOUND : FJ_ERR_IO, "%s: %s", path,
                          strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fj_err_set(err, FJ_ERR_IO, "%s: not a regular file", path);
    }
    if ((size_t)st.st_size > max_bytes) {
        close(fd);
        return fj_err_set(err, FJ_ERR_RANGE, "%s: %lld bytes is more than the %zu allowed", path,
                          (long long)st.st_size, max_bytes);
    }
    int rc = fj_buf_reserve(out, (size_t)st.st_size);
    while (rc == 0) {
        if (out->len > max_bytes) {
            rc = fj_err_set(err, FJ_ERR_RANGE, "%s: grew beyond %zu bytes", path, max_bytes);
            break;
        }
        if ((rc = fj_buf_reserve(out, 65536)) != 0)
            break;
        ssize_t got = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = fj_err_set(err, FJ_ERR_IO, "%s: %s", path, strerror(errno));
            break;
        }
        if (got == 0)
            break;
        out->len += (size_t)got;
        out->data[out->len] = '\0';
    }
    if (rc == FJ_ERR_NOMEM)
        fj_err_set(err, rc, "%s: out of memory", path);
    close(fd);
    return rc;
}

int fj_file_sync_dir(const char *path, struct fj_err *err)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fj_err_set(err, FJ_ERR_IO, "%s: %s", dir, strerror(errno));
    /* some filesystems cannot fsync a folder (EINVAL); the rename is all they offer */
    int rc = fsync(fd) != 0 && errno != EINVAL
                 ? fj_err_set(err, FJ_ERR_IO, "%s: fsync: %s", dir, strerror(errno))
                 : 0;
    close(fd);
    return rc;
}

int fj_file_write_atomic(const char *path, const void *data, size_t len, struct fj_err *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return fj_err_set(err, FJ_ERR_RANGE, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return fj_err_set(err, FJ_ERR_IO, "%s: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    int rc = 0;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = fj_err_set(err, FJ_ERR_IO, "%s: %s", tmp, strerror(errno));
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = fj_err_set(err, FJ_ERR_IO, "%s: fsync: %s", tmp, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = fj_err_set(err, FJ_ERR_IO, "%s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = fj_err_set(err, FJ_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (rc != 0) {
        unlink(tmp);
        return rc;
    }
    return fj_file_sync_dir(path, err);
}

int fj_mkdirs(const char *path, struct fj_err *err)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p)
        return fj_err_set(err, FJ_ERR_RANGE, "%s: path too long", path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return fj_err_set(err, FJ_ERR_IO, "%s: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return fj_err_set(err, FJ_ERR_IO, "%s: %s", p, strerror(errno));
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
        return fj_err_set(err, FJ_ERR_IO, "%s: not a folder", p);
    return 0;
}

int fj_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (type == FTW_DP ? rmdir(path) : unlink(path)) == 0 || errno == ENOENT ? 0 : -1;
}

int fj_remove_tree(const char *path, struct fj_err *err)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : fj_err_set(err, FJ_ERR_IO, "%s: %s", path, strerror(errno));
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return fj_err_set(err, FJ_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    return 0;
}

int fj_file_copy(const char *src, const char *dst, size_t max_bytes, struct fj_err *err)
{
    struct fj_buf b = {0};
    int rc = fj_file_read(src, max_bytes, &b, err);
    if (rc == 0)
        rc = fj_file_write_atomic(dst, b.data ? b.data : "", b.len, err);
    fj_buf_free(&b);
    return rc;
}
