/* safetensors.h - reading and writing Hugging Face .safetensors weight files.
 *
 * Format (docs/model-files.md): 8 bytes, little-endian u64 N; N bytes of UTF-8 JSON, an
 * object {name: {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]}, ...}
 * with an optional "__metadata__": {string: string}; then the byte buffer. Offsets count
 * from the buffer's first byte; tensors are row-major, little-endian.
 *
 * Reading maps the files read-only and points into the map: tensor data is borrowed and
 * lives until model_st_close. Every header is checked before any tensor is handed out
 * (sizes, offsets, overlaps, coverage: see model_st_open_file), so a tensor's data[0..nbytes)
 * is always inside its file. Data may be unaligned; model_st_to_f32 copies with memcpy.
 * A file must not be truncated by another process while it is open: the map would fault.
 *
 * Writing takes fp32 arrays and stores F32, BF16 or F16, atomically (temp file, fsync,
 * rename).
 */
#ifndef FJ_MODEL_SAFETENSORS_H
#define FJ_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/err.h"

enum model_dtype {
    MODEL_DTYPE_F32,
    MODEL_DTYPE_F16,
    MODEL_DTYPE_BF16,
    MODEL_DTYPE_OTHER /* recognised (F64, I64, I32, I16, I8, U8, BOOL, F8_*) but not convertible */
};

#define MODEL_ST_MAX_DIMS 8

/* Largest header forja reads, as the reference implementation (100 MB). */
#define MODEL_ST_MAX_HEADER 100000000u

struct model_st_tensor {
    const char *name;       /* borrowed; valid until model_st_close */
    enum model_dtype dtype; /* MODEL_DTYPE_OTHER for types forja does not convert */
    const char *dtype_name; /* as in the file: "F32", "BF16", "I64", ... (static string) */
    int ndim;               /* 0 (a scalar) .. MODEL_ST_MAX_DIMS */
    int64_t shape[MODEL_ST_MAX_DIMS]; /* shape[0..ndim); the rest 0 */
    int64_t numel;                    /* product of shape (1 for a scalar; may be 0) */
    const void *data;                 /* nbytes bytes in the map, borrowed, maybe unaligned */
    size_t nbytes;                    /* numel * element size */
    int file;                         /* shard index: 0 for a single file */
};

struct model_st;

/* Opens one .safetensors file, memory-mapped read-only. Returns NULL and fills err if the
 * file cannot be opened (FJ_ERR_IO) or is not a valid safetensors file (FJ_ERR_FORMAT; the
 * message names the file and the problem). Checks, as the reference implementation does:
 * the file holds the 8-byte length and the header; the header is at most
 * MODEL_ST_MAX_HEADER bytes and is a JSON object (duplicate keys refused); each entry has a
 * known dtype string, a shape of at most MODEL_ST_MAX_DIMS non-negative integers whose
 * product does not overflow, and data_offsets [begin, end] of integers with begin <= end and
 * end - begin == numel * element size; "__metadata__", if present, maps strings to strings;
 * and the tensors, taken in offset order, tile the data buffer exactly: no two share a byte,
 * no byte is left between them, and the last ends where the file ends. Returns an object
 * the caller owns; free with model_st_close. */
struct model_st *model_st_open_file(const char *path, struct fj_err *err);

/* Opens a model folder's weights: dir/model.safetensors if it exists, else the shards
 * listed in dir/model.safetensors.index.json ("weight_map": tensor name -> shard file name,
 * a plain name inside dir). Each shard is checked as by model_st_open_file; then every
 * tensor the index lists must be in the shard it names, and no tensor name may appear in
 * two shards. Tensors a shard holds that the index does not list are kept. Shards are
 * numbered (model_st_tensor.file) in the order of their file names. Returns NULL with
 * FJ_ERR_NOT_FOUND if dir holds neither file, FJ_ERR_IO / FJ_ERR_FORMAT naming the file
 * otherwise. Free with model_st_close. */
struct model_st *model_st_open_dir(const char *dir, struct fj_err *err);

/* Unmaps the files and frees st. NULL is allowed. Every tensor, name and data pointer
 * taken from st becomes invalid. */
void model_st_close(struct model_st *st);

/* The number of tensors in all files. */
size_t model_st_count(const struct model_st *st);

/* The i-th tensor (i < model_st_count): files in shard order, and within a file in the
 * order of their data offsets (the order of the bytes in the file). Borrowed. */
const struct model_st_tensor *model_st_at(const struct model_st *st, size_t i);

/* The tensor called name, or NULL if there is none. A hash lookup. Borrowed. */
const struct model_st_tensor *model_st_find(const struct model_st *st, const char *name);

/* The number of files opened (1, or the number of shards). */
int model_st_n_files(const struct model_st *st);

/* The path of file i (< model_st_n_files). Borrowed; valid until model_st_close. */
const char *model_st_file_path(const struct model_st *st, int file);

/* File i's "__metadata__" object (string values only), or NULL if it has none. Borrowed;
 * valid until model_st_close. */
const json_t *model_st_metadata(const struct model_st *st, int file);

/* Converts a F32/F16/BF16 tensor to fp32 into out[numel]. Exact: BF16 is the top half of an
 * fp32; F16 subnormals, infinities and NaNs are kept. FJ_ERR_INVALID (naming the tensor and
 * its dtype) for other dtypes. */
int model_st_to_f32(const struct model_st_tensor *t, float *out, struct fj_err *err);

/* Rounds an fp32 to BF16 to nearest, ties to even, as torch's .to(torch.bfloat16) does.
 * Every NaN becomes 0x7FC0, as c10::BFloat16 makes it (torch 1.13's vectorised CPU copy
 * writes 0xFFFF instead: a NaN too). */
uint16_t model_st_f32_to_bf16(float x);

/* Rounds an fp32 to IEEE half to nearest, ties to even (overflow to infinity, subnormals
 * kept; a NaN becomes a quiet NaN of the same sign). */
uint16_t model_st_f32_to_f16(float x);

/* Exact widening conversions. */
float model_st_bf16_to_f32(uint16_t h);
float model_st_f16_to_f32(uint16_t h);

/* One tensor to write: data[numel] fp32 values (row-major), stored as dtype (F32, F16 or
 * BF16). data may be NULL only when numel is 0. */
struct model_st_entry {
    const char *name;
    enum model_dtype dtype;
    int ndim;
    int64_t shape[MODEL_ST_MAX_DIMS];
    const float *data;
};

/* Writes entries[0..n) to path, in the order given, with data converted from fp32 (BF16
 * and F16 rounded to nearest even, as torch does). The header is compact JSON,
 * "__metadata__" first, padded with spaces to a multiple of 8 bytes as the reference
 * implementation does. metadata, if not NULL, must be an object of string values; NULL
 * writes {"format": "pt"}, as transformers does. The file is written to "<path>.tmp",
 * fsync'ed, renamed over path and the folder fsync'ed: a crash at any moment leaves either
 * the old file or the new one at path (and perhaps a stale "<path>.tmp", which the next
 * write replaces). Two writers must not write the same path at once.
 * Returns 0, FJ_ERR_INVALID (bad entry: empty, duplicate or "__metadata__" name, dtype,
 * shape, NULL data, bad metadata), FJ_ERR_NOMEM or FJ_ERR_IO (path.tmp is removed then). */
int model_st_write(const char *path, const struct model_st_entry *entries, size_t n,
                   const json_t *metadata, struct fj_err *err);

#endif
