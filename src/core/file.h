/* file.h - whole-file reads, atomic whole-file writes, and making folders.
 *
 * Writes go to PATH.tmp, are fsync'ed and renamed over PATH, and the folder is fsync'ed:
 * after a kill at any moment PATH holds either its old content or the new one.
 */
#ifndef FJ_CORE_FILE_H
#define FJ_CORE_FILE_H

#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

/* Appends the content of path to out. Files larger than max_bytes fail with FJ_ERR_RANGE;
 * errors name the path (FJ_ERR_IO, FJ_ERR_NOT_FOUND when it does not exist). */
int fj_file_read(const char *path, size_t max_bytes, struct fj_buf *out, struct fj_err *err);

/* Replaces path with data[0..len) atomically (see above). */
int fj_file_write_atomic(const char *path, const void *data, size_t len, struct fj_err *err);

/* fsyncs the folder that holds path, so a rename into it survives a crash. */
int fj_file_sync_dir(const char *path, struct fj_err *err);

/* Creates path and its missing parents (mode 0755). An existing folder is fine. */
int fj_mkdirs(const char *path, struct fj_err *err);

/* Removes path and, for a folder, everything under it (symbolic links are removed, never
 * followed). A missing path is fine. Returns 0 or FJ_ERR_IO naming what could not go. */
int fj_remove_tree(const char *path, struct fj_err *err);

/* Copies the regular file src to dst atomically (as fj_file_write_atomic); files larger than
 * max_bytes fail with FJ_ERR_RANGE. */
int fj_file_copy(const char *src, const char *dst, size_t max_bytes, struct fj_err *err);

/* 1 if path exists (any type), 0 if not. */
int fj_file_exists(const char *path);

#endif
