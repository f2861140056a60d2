/* safetensors.c - .safetensors files: checked, memory-mapped reading; atomic writing.
 *
 * Invariants once a file is open (docs/model-files.md lists every check):
 *   1. The header is a JSON object of at most MODEL_ST_MAX_HEADER bytes, kept alive (tensor
 *      names point into it) until model_st_close.
 *   2. Every tensor's bytes lie inside the data buffer, and the tensors of a file, in offset
 *      order, tile the buffer exactly (no shared byte, no hole, nothing after the last).
 *      The reference implementation (huggingface/safetensors) refuses holes too, so a file
 *      forja accepts is one every other reader accepts.
 *   3. Names are unique across all files of a model (the hash table holds each once).
 *
 * The host must be little-endian, as the file is: F32 data is used as is.
 */
#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors.c assumes little-endian");

/* ---------------------------------------------------------------------------------------
 * dtypes
 */

struct dtype_info {
    const char *name;
    enum model_dtype dtype;
    int bits; /* element size in bits */
};

/* Every dtype the reference implementation knows. F4 and F6 pack several elements into a
 * byte; the reference requires their byte count to be whole, and so does forja. */
static const struct dtype_info dtypes[] = {
    {"F32", MODEL_DTYPE_F32, 32},      {"F16", MODEL_DTYPE_F16, 16},
    {"BF16", MODEL_DTYPE_BF16, 16},    {"F64", MODEL_DTYPE_OTHER, 64},
    {"I64", MODEL_DTYPE_OTHER, 64},    {"U64", MODEL_DTYPE_OTHER, 64},
    {"I32", MODEL_DTYPE_OTHER, 32},    {"U32", MODEL_DTYPE_OTHER, 32},
    {"I16", MODEL_DTYPE_OTHER, 16},    {"U16", MODEL_DTYPE_OTHER, 16},
    {"I8", MODEL_DTYPE_OTHER, 8},      {"U8", MODEL_DTYPE_OTHER, 8},
    {"BOOL", MODEL_DTYPE_OTHER, 8},    {"F8_E5M2", MODEL_DTYPE_OTHER, 8},
    {"F8_E4M3", MODEL_DTYPE_OTHER, 8}, {"F8_E8M0", MODEL_DTYPE_OTHER, 8},
    {"C64", MODEL_DTYPE_OTHER, 64},    {"F6_E2M3", MODEL_DTYPE_OTHER, 6},
    {"F6_E3M2", MODEL_DTYPE_OTHER, 6}, {"F4", MODEL_DTYPE_OTHER, 4},
};

static const struct dtype_info *dtype_lookup(const char *name)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, name) == 0)
            return &dtypes[i];
    return NULL;
}

static const char *dtype_name(enum model_dtype d)
{
    switch (d) {
    case MODEL_DTYPE_F32: return "F32";
    case MODEL_DTYPE_F16: return "F16";
    case MODEL_DTYPE_BF16: return "BF16";
    case MODEL_DTYPE_OTHER: break;
    }
    return NULL;
}

static size_t dtype_size(enum model_dtype d)
{
    return d == MODEL_DTYPE_F32 ? 4 : 2;
}

/* ---------------------------------------------------------------------------------------
 * number conversions
 */

static uint32_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

uint16_t model_st_f32_to_bf16(float x)
{
    uint32_t u = f32_bits(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)
        return 0x7FC0; /* c10::BFloat16's NaN */
    /* Adding 0x7FFF plus the lowest kept bit rounds to nearest, ties to the even half;
     * a carry out of the mantissa bumps the exponent, up to infinity. */
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float model_st_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t model_st_f32_to_f16(float x)
{
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u)
        return sign | 0x7E00u; /* quiet NaN */
    if (a >= 0x477FF000u)      /* >= 65520: halfway past 65504 rounds (to even) to inf */
        return sign | 0x7C00u;
    if (a >= 0x38800000u) { /* >= 2^-14: normal half */
        a -= (uint32_t)(127 - 15) << 23;
        a += 0x0FFFu + ((a >> 13) & 1u); /* round the 13 dropped bits, ties to even */
        return sign | (uint16_t)(a >> 13);
    }
    if (a <= 0x33000000u) /* <= 2^-25: half of the smallest subnormal, ties to 0 */
        return sign;
    /* Subnormal half: value / 2^-24, rounded. The fp32 is m * 2^(e - 150) with the
     * implicit bit in m, so the quotient is m >> (126 - e), 14 <= shift <= 24. */
    uint32_t e = a >> 23;
    uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
    uint32_t shift = 126 - e;
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u)))
        q++; /* may carry into 0x400, the smallest normal: still the right encoding */
    return sign | (uint16_t)q;
}

float model_st_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1Fu;
    uint32_t m = h & 0x3FFu;
    if (e == 0x1F)
        return bits_f32(sign | 0x7F800000u | (m << 13)); /* inf, NaN with its payload */
    if (e != 0)
        return bits_f32(sign | ((e + 112) << 23) | (m << 13));
    if (m == 0)
        return bits_f32(sign);
    /* Subnormal: shift the leading 1 up to the implicit position. */
    e = 113;
    while ((m & 0x400u) == 0) {
        m <<= 1;
        e--;
    }
    return bits_f32(sign | (e << 23) | ((m & 0x3FFu) << 13));
}

int model_st_to_f32(const struct model_st_tensor *t, float *out, struct fj_err *err)
{
    const uint8_t *p = t->data;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case MODEL_DTYPE_F32:
        if (n > 0)
            memcpy(out, p, n * sizeof(float));
        return 0;
    case MODEL_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, sizeof h);
            out[i] = model_st_bf16_to_f32(h);
        }
        return 0;
    case MODEL_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, sizeof h);
            out[i] = model_st_f16_to_f32(h);
        }
        return 0;
    case MODEL_DTYPE_OTHER: break;
    }
    return fj_err_set(err, FJ_ERR_INVALID,
                      "tensor \"%s\" has dtype %s, which forja cannot convert to fp32 "
                      "(it reads F32, F16 and BF16)",
                      t->name, t->dtype_name);
}

/* ---------------------------------------------------------------------------------------
 * name hash: open addressing over indices, slot value index + 1 (0 = empty)
 */

struct name_table {
    size_t *slots;
    size_t mask;
};

static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

static int table_init(struct name_table *t, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    t->slots = calloc(cap, sizeof *t->slots);
    t->mask = cap - 1;
    return t->slots == NULL ? FJ_ERR_NOMEM : 0;
}

/* The slot for name: empty, or holding the entry whose name equals it. names(ctx, i) gives
 * entry i's name. */
static size_t *table_slot(const struct name_table *t, const char *name,
                          const char *(*names)(const void *ctx, size_t i), const void *ctx)
{
    size_t i = (size_t)name_hash(name) & t->mask;
    while (t->slots[i] != 0 && strcmp(names(ctx, t->slots[i] - 1), name) != 0)
        i = (i + 1) & t->mask;
    return &t->slots[i];
}

/* ---------------------------------------------------------------------------------------
 * reading
 */

struct st_file {
    char *path;
    uint8_t *map;   /* the whole file, read-only */
    size_t size;    /* bytes in the file */
    json_t *header; /* owned; tensor names point into it */
    json_t *meta;   /* "__metadata__" inside header, or NULL */
};

struct model_st {
    struct st_file *files;
    int n_files;
    struct model_st_tensor *tensors; /* in file order, then offset order */
    size_t n, cap;
    struct name_table table;
};

void model_st_close(struct model_st *st)
{
    if (st == NULL)
        return;
    for (int i = 0; i < st->n_files; i++) {
        struct st_file *f = &st->files[i];
        if (f->map != NULL)
            munmap(f->map, f->size);
        json_decref(f->header);
        free(f->path);
    }
    free(st->files);
    free(st->tensors);
    free(st->table.slots);
    free(st);
}

size_t model_st_count(const struct model_st *st)
{
    return st->n;
}

const struct model_st_tensor *model_st_at(const struct model_st *st, size_t i)
{
    return i < st->n ? &st->tensors[i] : NULL;
}

static const char *tensor_name(const void *ctx, size_t i)
{
    const struct model_st *st = ctx;
    return st->tensors[i].name;
}

const struct model_st_tensor *model_st_find(const struct model_st *st, const char *name)
{
    size_t *slot = table_slot(&st->table, name, tensor_name, st);
    return *slot == 0 ? NULL : &st->tensors[*slot - 1];
}

int model_st_n_files(const struct model_st *st)
{
    return st->n_files;
}

const char *model_st_file_path(const struct model_st *st, int file)
{
    return file >= 0 && file < st->n_files ? st->files[file].path : NULL;
}

const json_t *model_st_metadata(const struct model_st *st, int file)
{
    return file >= 0 && file < st->n_files ? st->files[file].meta : NULL;
}

/* A tensor's place in the buffer while a file's layout is checked. */
struct span {
    uint64_t begin, end;
    size_t index; /* into model_st.tensors */
};

static int span_cmp(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Reads a non-negative JSON integer. */
static bool get_uint(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Checks one header entry and fills t (but for data). buf_size: bytes in the data buffer. */
static int parse_entry(struct model_st_tensor *t, struct span *sp, const char *path,
                       const char *name, const json_t *v, uint64_t buf_size, struct fj_err *err)
{
    if (!json_is_object(v))
        return fj_err_set(err, FJ_ERR_FORMAT, "%s: tensor \"%s\": entry is not an object", path,
                          name);
    const json_t *jd = json_object_get(v, "dtype");
    if (!json_is_string(jd))
        return fj_err_set(err, FJ_ERR_FORMAT, "%s: tensor \"%s\": \"dtype\" %s", path, name,
                          jd == NULL ? "is missing" : "is not a string");
    const struct dtype_info *di = dtype_lookup(json_string_value(jd));
    if (di == NULL)
        return fj_err_set(err, FJ_ERR_FORMAT, "%s: tensor \"%s\": unknown dtype \"%.32s\"", path,
                          name, json_string_value(jd));
    const json_t *js = json_object_get(v, "shape");
    if (!json_is_array(js))
        return fj_err_set(err, FJ_ERR_FORMAT, "%s: tensor \"%s\": \"shape\" %s", path, name,
                          js == NULL ? "is missing" : "is not an array");
    size_t ndim = json_array_size(js);
    if (ndim > MODEL_ST_MAX_DIMS)
        return fj_err_set(err, FJ_ERR_FORMAT,
                          "%s: tensor \"%s\": %zu dimensions (forja reads at most %d)", path, name,
                          ndim, MODEL_ST_MAX_DIMS);
    memset(t, 0, sizeof *t);
    t->name = name;
    t->dtype = di->dtype;
    t->dtype_name = di->name;
    t->ndim = (int)ndim;
    uint64_t numel = 1;
    bool overflow = false;
    for (size_t i = 0; i < ndim; i++) {
        uint64_t d;
        if (!get_uint(json_array_get(js, i), &d))
            return fj_err_set(err, FJ_ERR_FORMAT,
                              "%s: tensor \"%s\": shape[%zu] is not a non-negative integer", path,
                              name, i);
        t->shape[i] = (int64_t)d;
        if (d != 0 && numel > (uint64_t)INT64_MAX / d)
            overflow = true;
        else
            numel *= d;
    }
    /* A zero dimension makes the product 0 however large the others are: the reference
     * multiplies left to right with checked_mul and fails on any overflow on the way, so a
     * product that overflows before the 0 is refused there too. */
    if (overflow || numel > (uint64_t)INT64_MAX / (uint64_t)di->bits)
        return fj_err_set(err, FJ_ERR_FORMAT,
                          "%s: tensor \"%s\": the shape's element count overflows", path, name);
    t->numel = (int64_t)numel;
    uint64_t bits = numel * (uint64_t)di->bits;
    if (bits % 8 != 0)
        return fj_err_set(err, FJ_ERR_FORMAT,
                          "%s: tensor \"%s\": %llu elements of %s do not fill whole bytes", path,
                          name, (unsigned long long)numel, di->name);
    uint64_t nbytes = bits / 8;

    const json_t *jo = json_object_get(v, "data_offsets");
    uint64_t begin, end;
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        !get_uint(json_array_get(jo, 0), &begin) || !get_uint(json_array_get(jo, 1), &end))
        return fj_err_set(err, FJ_ERR_FORMAT, "%s: tensor \"%s\": \"data_offsets\" %s", path, name,
                          jo == NULL ? "is missing"
                                     : "is not [begin, end] with non-negative integers");
    if (end < begin)
        return fj_err_set(err, FJ_ERR_FORMAT,
                          "%s: tensor \"%s\": data_offsets [%llu, %llu] end before they begin",
                          path, name, (unsigned long long)begin, (unsigned long long)end);
    if (end > buf_size)
        return fj_err_set(err, FJ_ERR_FORMAT,
                          "%s: tensor \"%s\": data_offsets [%llu, %llu] run past the end of the "
                          "data buffer (%llu bytes; is the file truncated?)",
                          path, name, (unsigned long long)begin, (unsigned long long)end,
                          (unsigned long long)buf_size);
    if (end - begin != nbytes)
        return fj_err_set(err, FJ_ERR_FORMAT,
                          "%s: tensor \"%s\": %llu elements of %s take %llu bytes, but "
                          "data_offsets [%llu, %llu] hold %llu",
                          path, name, (unsigned long long)numel, di->name,
                          (unsigned long long)nbytes, (unsigned long long)begin,
                          (unsigned long long)end, (unsigned long long)(end - begin));
    t->nbytes = (size_t)nbytes;
    sp->begin = begin;
    sp->end = end;
    return 0;
}

static int check_metadata(const char *path, const json_t *meta, struct fj_err *err)
{
    if (!json_is_object(meta))
        return fj_err_set(err, FJ_ERR_FORMAT, "%s: \"__metadata__\" is not an object", path);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)meta, key, v)
    {
        if (!json_is_string(v))
            return fj_err_set(err, FJ_ERR_FORMAT,
                              "%s: \"__metadata__\" value \"%s\" is not a string", path, key);
    }
    return 0;
}

/* Maps path, checks its header and appends its tensors (in offset order) to st as file
 * number st->n_files. */
static int load_file(struct model_st *st, const char *path, struct fj_err *err)
{
    struct st_file *files = realloc(st->files, (size_t)(st->n_files + 1) * sizeof *files);
    if (files == NULL)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    st->files = files;
    struct st_file *f = &files[st->n_files];
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (f->path == NULL)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    st->n_files++; /* from here on model_st_close cleans f up */

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fj_err_set(err, FJ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return fj_err_set(err, FJ_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return fj_err_set(err, FJ_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return fj_err_set(err, FJ_ERR_FORMAT, "%s: empty file, not a safetensors file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return fj_err_set(err, FJ_ERR_FORMAT,
                          "%s: truncated: %lld bytes, shorter than the 8-byte header length", path,
                          (long long)sb.st_size);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return fj_err_set(err, FJ_ERR_RANGE, "%s: too large to map", path);
    }
    f->size = (size_t)sb.st_size;
    void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED)
        return fj_err_set(err, FJ_ERR_IO, "%s: cannot map: %s", path, strerror(map_errno));
    f->map = map;

    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | f->map[i];
    if (hlen > MODEL_ST_MAX_HEADER)
        return fj_err_set(err, FJ_ERR_FORMAT,
                          "%s: header length %llu is absurd (the limit is %u bytes); "
                          "not a safetensors file?",
                          path, (unsigned long long)hlen, MODEL_ST_MAX_HEADER);
    if (hlen > f->size - 8)
        return fj_err_set(err, FJ_ERR_FORMAT,
                          "%s: header length %llu runs past the end of the file (%zu bytes); "
                          "truncated?",
                          path, (unsigned long long)hlen, f->size);
    json_error_t jerr;
    f->header = json_loadb((const char *)f->map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (f->header == NULL)
        return fj_err_set(err, FJ_ERR_FORMAT, "%s: header is not valid JSON: %s (byte %d)", path,
                          jerr.text, jerr.position);
    if (!json_is_object(f->header))
        return fj_err_set(err, FJ_ERR_FORMAT, "%s: header is not a JSON object", path);

    const uint8_t *buf = f->map + 8 + hlen;
    uint64_t buf_size = f->size - 8 - hlen;
    size_t n_new = json_object_size(f->header);
    if (st->cap - st->n < n_new) {
        size_t cap = st->n + n_new;
        struct model_st_tensor *t = realloc(st->tensors, cap * sizeof *t);
        if (t == NULL)
            return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        st->tensors = t;
        st->cap = cap;
    }
    struct span *spans = malloc((n_new ? n_new : 1) * sizeof *spans);
    struct model_st_tensor *tmp = malloc((n_new ? n_new : 1) * sizeof *tmp);
    if (spans == NULL || tmp == NULL) {
        free(spans);
        free(tmp);
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    }
    size_t k = 0;
    int rc = 0;
    const char *key;
    json_t *v;
    json_object_foreach(f->header, key, v)
    {
        if (strcmp(key, "__metadata__") == 0) {
            rc = check_metadata(path, v, err);
            f->meta = v;
        } else {
            rc = parse_entry(&tmp[k], &spans[k], path, key, v, buf_size, err);
            spans[k].index = k;
            k++;
        }
        if (rc != 0)
            break;
    }
    if (rc == 0) {
        /* Offset order; a stable tie-break keeps zero-size tensors in header order. */
        qsort(spans, k, sizeof *spans, span_cmp);
        uint64_t pos = 0;
        for (size_t i = 0; i < k && rc == 0; i++) {
            const struct span *s = &spans[i];
            if (s->begin < pos)
                rc = fj_err_set(err, FJ_ERR_FORMAT,
                                "%s: tensors \"%s\" [%llu, %llu) and \"%s\" [%llu, %llu) share "
                                "bytes",
                                path, tmp[spans[i - 1].index].name,
                                (unsigned long long)spans[i - 1].begin,
                                (unsigned long long)spans[i - 1].end, tmp[s->index].name,
                                (unsigned long long)s->begin, (unsigned long long)s->end);
            else if (s->begin > pos)
                rc = fj_err_set(err, FJ_ERR_FORMAT,
                                "%s: bytes [%llu, %llu) of the data buffer belong to no tensor "
                                "(safetensors requires the tensors to cover it exactly)",
                                path, (unsigned long long)pos, (unsigned long long)s->begin);
            pos = s->end;
        }
        if (rc == 0 && pos != buf_size)
            rc = fj_err_set(err, FJ_ERR_FORMAT,
                            "%s: the data buffer has %llu bytes but the tensors end at byte %llu "
                            "(safetensors requires the tensors to cover it exactly)",
                            path, (unsigned long long)buf_size, (unsigned long long)pos);
    }
    if (rc == 0) {
        for (size_t i = 0; i < k; i++) {
            struct model_st_tensor *t = &st->tensors[st->n + i];
            *t = tmp[spans[i].index];
            t->data = buf + spans[i].begin;
            t->file = st->n_files - 1;
        }
        st->n += k;
    }
    free(spans);
    free(tmp);
    return rc;
}

/* Builds the name table over all tensors; a name held twice is an error naming both files. */
static int build_table(struct model_st *st, struct fj_err *err)
{
    if (table_init(&st->table, st->n) != 0)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < st->n; i++) {
        size_t *slot = table_slot(&st->table, st->tensors[i].name, tensor_name, st);
        if (*slot != 0) {
            const struct model_st_tensor *a = &st->tensors[*slot - 1];
            return fj_err_set(err, FJ_ERR_FORMAT, "tensor \"%s\" is in two files: %s and %s",
                              a->name, st->files[a->file].path,
                              st->files[st->tensors[i].file].path);
        }
        *slot = i + 1;
    }
    return 0;
}

struct model_st *model_st_open_file(const char *path, struct fj_err *err)
{
    struct model_st *st = calloc(1, sizeof *st);
    if (st == NULL) {
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (load_file(st, path, err) != 0 || build_table(st, err) != 0) {
        model_st_close(st);
        return NULL;
    }
    return st;
}

static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (p == NULL)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* Reads a whole file of at most limit bytes into *text (NUL-terminated; the caller frees). */
static int read_small(const char *path, size_t limit, char **text, size_t *len, struct fj_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fj_err_set(err, FJ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > limit) {
        close(fd);
        return fj_err_set(err, FJ_ERR_FORMAT, "%s: not a regular file of at most %zu bytes", path,
                          limit);
    }
    size_t size = (size_t)sb.st_size;
    char *t = malloc(size + 1);
    if (t == NULL) {
        close(fd);
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, t + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int rc = fj_err_set(err, FJ_ERR_IO, "%s: cannot read: %s", path,
                                r < 0 ? strerror(errno) : "the file shrank");
            close(fd);
            free(t);
            return rc;
        }
        got += (size_t)r;
    }
    close(fd);
    t[size] = '\0';
    *text = t;
    *len = size;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A shard name must stay inside the model folder. */
static bool plain_file_name(const char *s)
{
    return s[0] != '\0' && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int open_sharded(struct model_st *st, const char *dir, const char *index_path,
                        struct fj_err *err)
{
    size_t len = 0;
    char *text = NULL;
    int rc = read_small(index_path, MODEL_ST_MAX_HEADER, &text, &len, err);
    if (rc != 0)
        return rc;
    json_error_t jerr;
    json_t *index = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (index == NULL)
        return fj_err_set(err, FJ_ERR_FORMAT, "%s: not valid JSON: %s (line %d)", index_path,
                          jerr.text, jerr.line);
    const char **shards = NULL;
    const json_t *map = json_object_get(index, "weight_map");
    size_t n_map = json_object_size(map);
    if (!json_is_object(map) || n_map == 0) {
        rc = fj_err_set(err, FJ_ERR_FORMAT, "%s: \"weight_map\" %s", index_path,
                        map == NULL            ? "is missing"
                        : !json_is_object(map) ? "is not an object"
                                               : "lists no tensors");
        goto done;
    }
    shards = malloc(n_map * sizeof *shards);
    if (shards == NULL) {
        rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        goto done;
    }
    size_t n_shards = 0;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)map, key, v)
    {
        if (!json_is_string(v) || !plain_file_name(json_string_value(v))) {
            rc = fj_err_set(err, FJ_ERR_FORMAT,
                            "%s: weight_map[\"%s\"] is not a file name inside the folder",
                            index_path, key);
            goto done;
        }
        shards[n_shards++] = json_string_value(v);
    }
    qsort(shards, n_shards, sizeof *shards, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < n_shards; i++)
        if (u == 0 || strcmp(shards[u - 1], shards[i]) != 0)
            shards[u++] = shards[i];
    n_shards = u;
    for (size_t i = 0; i < n_shards && rc == 0; i++) {
        char *p = path_join(dir, shards[i]);
        if (p == NULL) {
            rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
            break;
        }
        if (access(p, F_OK) != 0)
            rc = fj_err_set(err, FJ_ERR_FORMAT, "%s: lists shard \"%s\", which is missing (%s)",
                            index_path, shards[i], strerror(errno));
        else
            rc = load_file(st, p, err);
        free(p);
    }
    if (rc == 0)
        rc = build_table(st, err);
    json_object_foreach((json_t *)map, key, v)
    {
        if (rc != 0)
            break;
        const struct model_st_tensor *t = model_st_find(st, key);
        const char *want = json_string_value(v);
        if (t == NULL)
            rc = fj_err_set(err, FJ_ERR_FORMAT,
                            "%s: lists tensor \"%s\" in shard \"%s\", but no shard holds it",
                            index_path, key, want);
        else if (strcmp(strrchr(st->files[t->file].path, '/') + 1, want) != 0)
            rc = fj_err_set(err, FJ_ERR_FORMAT,
                            "%s: lists tensor \"%s\" in shard \"%s\", but it is in %s", index_path,
                            key, want, st->files[t->file].path);
    }
done:
    free(shards);
    json_decref(index);
    return rc;
}

struct model_st *model_st_open_dir(const char *dir, struct fj_err *err)
{
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        fj_err_set(err, errno == ENOENT ? FJ_ERR_NOT_FOUND : FJ_ERR_IO, "%s: %s", dir,
                   strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(sb.st_mode)) {
        fj_err_set(err, FJ_ERR_INVALID, "%s: not a directory", dir);
        return NULL;
    }
    struct model_st *st = calloc(1, sizeof *st);
    char *single = path_join(dir, "model.safetensors");
    char *index = path_join(dir, "model.safetensors.index.json");
    int rc = 0;
    if (st == NULL || single == NULL || index == NULL)
        rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    else if (access(single, F_OK) == 0) {
        rc = load_file(st, single, err);
        if (rc == 0)
            rc = build_table(st, err);
    } else if (access(index, F_OK) == 0)
        rc = open_sharded(st, dir, index, err);
    else
        rc = fj_err_set(err, FJ_ERR_NOT_FOUND,
                        "%s: no model weights (neither model.safetensors nor "
                        "model.safetensors.index.json)",
                        dir);
    free(single);
    free(index);
    if (rc != 0) {
        model_st_close(st);
        return NULL;
    }
    return st;
}

/* ---------------------------------------------------------------------------------------
 * writing
 */

static const char *entry_name(const void *ctx, size_t i)
{
    const struct model_st_entry *e = ctx;
    return e[i].name;
}

/* Checks the entries and returns each one's byte count in nbytes[]. */
static int check_entries(const struct model_st_entry *e, size_t n, uint64_t *nbytes,
                         struct fj_err *err)
{
    struct name_table t;
    if (table_init(&t, n) != 0)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *name = e[i].name;
        if (name == NULL || name[0] == '\0' || strcmp(name, "__metadata__") == 0) {
            rc = fj_err_set(err, FJ_ERR_INVALID, "entry %zu: tensor name %s%s%s is not allowed", i,
                            name ? "\"" : "", name ? name : "NULL", name ? "\"" : "");
            break;
        }
        size_t *slot = table_slot(&t, name, entry_name, e);
        if (*slot != 0) {
            rc = fj_err_set(err, FJ_ERR_INVALID, "tensor \"%s\" is given twice", name);
            break;
        }
        *slot = i + 1;
        if (dtype_name(e[i].dtype) == NULL) {
            rc = fj_err_set(err, FJ_ERR_INVALID,
                            "tensor \"%s\": forja writes only F32, F16 and BF16", name);
            break;
        }
        if (e[i].ndim < 0 || e[i].ndim > MODEL_ST_MAX_DIMS) {
            rc = fj_err_set(err, FJ_ERR_INVALID, "tensor \"%s\": %d dimensions", name, e[i].ndim);
            break;
        }
        uint64_t numel = 1;
        for (int d = 0; d < e[i].ndim && rc == 0; d++) {
            int64_t s = e[i].shape[d];
            if (s < 0 || (s != 0 && numel > (uint64_t)(INT64_MAX / 8) / (uint64_t)s))
                rc = fj_err_set(err, FJ_ERR_INVALID, "tensor \"%s\": bad shape[%d] = %lld", name, d,
                                (long long)s);
            else
                numel *= (uint64_t)s;
        }
        if (rc == 0 && numel > 0 && e[i].data == NULL)
            rc = fj_err_set(err, FJ_ERR_INVALID, "tensor \"%s\": data is NULL", name);
        nbytes[i] = numel * dtype_size(e[i].dtype);
    }
    free(t.slots);
    return rc;
}

/* The header: compact JSON, "__metadata__" first, then the entries in order, padded with
 * spaces to a multiple of 8. Returns a malloc'ed string (caller frees) and its length. */
static char *build_header(const struct model_st_entry *e, size_t n, const uint64_t *nbytes,
                          const json_t *metadata, size_t *len, struct fj_err *err)
{
    json_t *root = json_object();
    json_t *meta = metadata ? json_deep_copy(metadata) : json_pack("{s:s}", "format", "pt");
    bool ok = root != NULL && meta != NULL && json_object_set_new(root, "__metadata__", meta) == 0;
    uint64_t offset = 0;
    for (size_t i = 0; i < n && ok; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < e[i].ndim && shape != NULL; d++)
            if (json_array_append_new(shape, json_integer(e[i].shape[d])) != 0) {
                json_decref(shape);
                shape = NULL;
            }
        /* "o" hands shape to the new object (released by json_pack on failure too). */
        json_t *t = shape == NULL ? NULL
                                  : json_pack("{s:s,s:o,s:[I,I]}", "dtype", dtype_name(e[i].dtype),
                                              "shape", shape, "data_offsets", (json_int_t)offset,
                                              (json_int_t)(offset + nbytes[i]));
        ok = t != NULL;
        /* set_new takes t even when it fails, which it does only for a key not UTF-8. */
        if (ok && json_object_set_new(root, e[i].name, t) != 0) {
            json_decref(root);
            fj_err_set(err, FJ_ERR_INVALID, "tensor name \"%s\" is not valid UTF-8", e[i].name);
            return NULL;
        }
        offset += nbytes[i];
    }
    char *text = ok ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (text == NULL) {
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory building the header");
        return NULL;
    }
    size_t l = strlen(text);
    size_t padded = (l + 7) / 8 * 8;
    char *out = realloc(text, padded + 1);
    if (out == NULL) {
        free(text);
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        return NULL;
    }
    memset(out + l, ' ', padded - l);
    out[padded] = '\0';
    *len = padded;
    return out;
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

#define WRITE_CHUNK 16384 /* elements converted per write */

static int write_tensor(int fd, const struct model_st_entry *e, uint64_t nbytes, uint16_t *buf)
{
    if (e->dtype == MODEL_DTYPE_F32)
        return write_all(fd, e->data, (size_t)nbytes);
    size_t numel = (size_t)(nbytes / 2);
    for (size_t i = 0; i < numel; i += WRITE_CHUNK) {
        size_t m = numel - i < WRITE_CHUNK ? numel - i : WRITE_CHUNK;
        if (e->dtype == MODEL_DTYPE_BF16)
            for (size_t j = 0; j < m; j++)
                buf[j] = model_st_f32_to_bf16(e->data[i + j]);
        else
            for (size_t j = 0; j < m; j++)
                buf[j] = model_st_f32_to_f16(e->data[i + j]);
        if (write_all(fd, buf, m * sizeof *buf) != 0)
            return -1;
    }
    return 0;
}

/* fsyncs the folder holding path, so the rename survives a crash. Filesystems that cannot
 * sync a folder (EINVAL) are let through. */
static int sync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir =
        slash == NULL ? strdup(".") : strndup(path, slash == path ? 1 : (size_t)(slash - path));
    if (dir == NULL)
        return -1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return -1;
    int rc = fsync(fd) != 0 && errno != EINVAL ? -1 : 0;
    close(fd);
    return rc;
}

int model_st_write(const char *path, const struct model_st_entry *entries, size_t n,
                   const json_t *metadata, struct fj_err *err)
{
    if (n > 0 && entries == NULL)
        return fj_err_set(err, FJ_ERR_INVALID, "%s: entries is NULL", path);
    if (metadata != NULL) {
        const char *key;
        const json_t *v;
        if (!json_is_object(metadata))
            return fj_err_set(err, FJ_ERR_INVALID, "%s: metadata is not a JSON object", path);
        json_object_foreach((json_t *)metadata, key, v)
        {
            if (!json_is_string(v))
                return fj_err_set(err, FJ_ERR_INVALID, "%s: metadata \"%s\" is not a string", path,
                                  key);
        }
    }
    uint64_t *nbytes = malloc((n ? n : 1) * sizeof *nbytes);
    if (nbytes == NULL)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    size_t hlen = 0;
    char *header = NULL;
    int rc = check_entries(entries, n, nbytes, err);
    if (rc == 0) {
        header = build_header(entries, n, nbytes, metadata, &hlen, err);
        if (header == NULL)
            rc = err != NULL && err->code != 0 ? err->code : FJ_ERR_NOMEM;
    }
    char *tmp = NULL;
    uint16_t *buf = NULL;
    int fd = -1;
    if (rc == 0) {
        tmp = malloc(strlen(path) + 5);
        buf = malloc(WRITE_CHUNK * sizeof *buf);
        if (tmp == NULL || buf == NULL)
            rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    }
    if (rc == 0) {
        size_t plen = strlen(path);
        memcpy(tmp, path, plen);
        memcpy(tmp + plen, ".tmp", 5);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            rc = fj_err_set(err, FJ_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    if (rc == 0) {
        uint8_t len8[8];
        for (int i = 0; i < 8; i++)
            len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
        bool ok = write_all(fd, len8, 8) == 0 && write_all(fd, header, hlen) == 0;
        for (size_t i = 0; i < n && ok; i++)
            ok = write_tensor(fd, &entries[i], nbytes[i], buf) == 0;
        if (!ok)
            rc = fj_err_set(err, FJ_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
        else if (fsync(fd) != 0)
            rc = fj_err_set(err, FJ_ERR_IO, "%s: cannot sync: %s", tmp, strerror(errno));
        if (close(fd) != 0 && rc == 0)
            rc = fj_err_set(err, FJ_ERR_IO, "%s: cannot close: %s", tmp, strerror(errno));
        if (rc == 0 && rename(tmp, path) != 0)
            rc = fj_err_set(err, FJ_ERR_IO, "%s: cannot rename to %s: %s", tmp, path,
                            strerror(errno));
        if (rc != 0)
            unlink(tmp);
        else if (sync_parent(path) != 0)
            rc =
                fj_err_set(err, FJ_ERR_IO, "%s: cannot sync its folder: %s", path, strerror(errno));
    }
    free(buf);
    free(tmp);
    free(header);
    free(nbytes);
    return rc;
}
