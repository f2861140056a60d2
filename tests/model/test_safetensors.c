/* test_safetensors.c - reading, writing and refusing .safetensors files.
 *
 * Hostile files are built here, byte by byte, in a fresh temporary folder; run under
 * -DFORJA_SANITIZE=ON they also show that refusing them reads nothing out of bounds. The
 * cross-check with an independent writer and reader (Python, numpy, torch) is st_cross.py.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../test.h"
#include "model/safetensors.h"

static char tmp_dir[256];

static void path_in(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmp_dir, name);
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    CHECK(fwrite(p, 1, n, f) == n);
    fclose(f);
}

/* Writes an 8-byte length field (hlen, or the header's length when hlen is UINT64_MAX), the
 * header bytes and data_len bytes of data. */
static void write_raw(const char *path, const char *header, size_t header_len, uint64_t hlen,
                      size_t data_len)
{
    if (hlen == UINT64_MAX)
        hlen = header_len;
    size_t n = 8 + header_len + data_len;
    uint8_t *b = calloc(1, n ? n : 1);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(b + 8, header, header_len);
    for (size_t i = 0; i < data_len; i++)
        b[8 + header_len + i] = (uint8_t)(i * 7 + 1);
    write_bytes(path, b, n);
    free(b);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n)
        n = 0;
    b[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Opening path must fail with code, and the message must name the file and hold want. */
static void expect_refused(const char *path, int code, const char *want, int line)
{
    struct fj_err err = {0};
    struct model_st *st = model_st_open_file(path, &err);
    CHECK(st == NULL);
    model_st_close(st);
    bool ok = err.code == code && strstr(err.msg, path) != NULL && strstr(err.msg, want) != NULL;
    if (!ok)
        fprintf(stderr, "line %d: code %s, message \"%s\"; expected %s with \"%s\"\n", line,
                fj_code_name(err.code), err.msg, fj_code_name(code), want);
    CHECK(ok);
}

#define REFUSED(path, code, want) expect_refused(path, code, want, __LINE__)

static bool same_bits(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* ---------------------------------------------------------------------------------------
 * conversions
 */

static void test_f16_exhaustive(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = model_st_f16_to_f32((uint16_t)h);
        uint16_t back = model_st_f32_to_f16(f);
        bool nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0;
        if (nan ? !(isnan(f) && back == ((h & 0x8000) | 0x7E00)) : back != h)
            bad++;
    }
    CHECK_EQ_U(bad, 0);
    /* Known values: the largest half, overflow, subnormals, ties to even. */
    CHECK_EQ_U(model_st_f32_to_f16(65504.0f), 0x7BFF);
    CHECK_EQ_U(model_st_f32_to_f16(65519.0f), 0x7BFF);
    CHECK_EQ_U(model_st_f32_to_f16(65520.0f), 0x7C00);
    CHECK_EQ_U(model_st_f32_to_f16(-1e10f), 0xFC00);
    CHECK_EQ_U(model_st_f32_to_f16(ldexpf(1, -24)), 0x0001);
    CHECK_EQ_U(model_st_f32_to_f16(ldexpf(1, -25)), 0x0000); /* tie to 0 */
    CHECK_EQ_U(model_st_f32_to_f16(nextafterf(ldexpf(1, -25), 1)), 0x0001);
    CHECK_EQ_U(model_st_f32_to_f16(ldexpf(3, -25)), 0x0002);        /* 1.5 -> 2 */
    CHECK_EQ_U(model_st_f32_to_f16(ldexpf(5, -25)), 0x0002);        /* 2.5 -> 2 */
    CHECK_EQ_U(model_st_f32_to_f16(ldexpf(0x7FF, -25)), 0x0400);    /* into normal */
    CHECK_EQ_U(model_st_f32_to_f16(1.0f + ldexpf(1, -11)), 0x3C00); /* tie to even */
    CHECK_EQ_U(model_st_f32_to_f16(1.0f + ldexpf(3, -11)), 0x3C02);
    CHECK_EQ_U(model_st_f32_to_f16(-0.0f), 0x8000);
    CHECK(same_bits(model_st_f16_to_f32(0x0001), ldexpf(1, -24)));
    CHECK(same_bits(model_st_f16_to_f32(0x03FF), ldexpf(0x3FF, -24)));
    CHECK(same_bits(model_st_f16_to_f32(0xFC00), -INFINITY));
}

static void test_bf16(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = model_st_bf16_to_f32((uint16_t)h);
        bool nan = (h & 0x7F80) == 0x7F80 && (h & 0x7F) != 0;
        uint16_t back = model_st_f32_to_bf16(f);
        if (nan ? back != 0x7FC0 : back != h)
            bad++;
    }
    CHECK_EQ_U(bad, 0);
    CHECK_EQ_U(model_st_f32_to_bf16(1.0f + ldexpf(1, -8)), 0x3F80); /* tie to even */
    CHECK_EQ_U(model_st_f32_to_bf16(1.0f + ldexpf(3, -8)), 0x3F82);
    CHECK_EQ_U(model_st_f32_to_bf16(nextafterf(1.0f + ldexpf(1, -8), 2)), 0x3F81);
    CHECK_EQ_U(model_st_f32_to_bf16(3.4e38f), 0x7F80); /* rounds past the largest: inf */
    CHECK_EQ_U(model_st_f32_to_bf16(-NAN), 0x7FC0);
}

/* ---------------------------------------------------------------------------------------
 * writing and reading back
 */

static void test_roundtrip(void)
{
    char path[512];
    path_in(path, sizeof path, "round.safetensors");
    float a[6] = {1, -2, 3.5f, 1e-30f, INFINITY, -0.0f};
    float b[4] = {1.0f + ldexpf(1, -8), 3.14159f, -65504, 1e-40f};
    float c[6] = {0.1f, 65520, ldexpf(3, -25), -1, 2, 3};
    float s[1] = {42};
    struct model_st_entry e[] = {
        {"layer.0.a", MODEL_DTYPE_F32, 2, {2, 3}, a}, {"b", MODEL_DTYPE_BF16, 1, {4}, b},
        {"c", MODEL_DTYPE_F16, 3, {3, 1, 2}, c},      {"scalar", MODEL_DTYPE_F32, 0, {0}, s},
        {"empty", MODEL_DTYPE_BF16, 2, {0, 5}, NULL}, {"ünï/çødé", MODEL_DTYPE_F32, 1, {1}, s},
    };
    struct fj_err err = {0};
    CHECK(model_st_write(path, e, 6, NULL, &err) == 0);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0);

    size_t len;
    char *raw = read_all(path, &len);
    CHECK(raw != NULL && len > 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | (uint8_t)raw[i];
    CHECK(hlen % 8 == 0);
    const char *want = "{\"__metadata__\":{\"format\":\"pt\"},\"layer.0.a\":{\"dtype\":\"F32\","
                       "\"shape\":[2,3],\"data_offsets\":[0,24]},\"b\":{\"dtype\":\"BF16\"";
    CHECK(strncmp(raw + 8, want, strlen(want)) == 0);
    size_t hl = (size_t)hlen;
    while (hl > 0 && raw[8 + hl - 1] == ' ')
        hl--;
    CHECK(raw[8 + hl - 1] == '}' && (size_t)hlen - hl < 8);
    /* bytes: 24 + 8 + 12 + 4 + 0 + 4 */
    CHECK_EQ_U(len, 8 + hlen + 52);
    free(raw);

    struct model_st *st = model_st_open_file(path, &err);
    CHECK(st != NULL);
    if (st == NULL) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK_EQ_U(model_st_count(st), 6);
    CHECK_EQ_U(model_st_n_files(st), 1);
    CHECK_STR(model_st_file_path(st, 0), path);
    const json_t *meta = model_st_metadata(st, 0);
    CHECK(meta != NULL && json_object_size(meta) == 1);
    CHECK_STR(json_string_value(json_object_get(meta, "format")), "pt");
    /* Offset order: "empty" [48, 48) comes before "ünï/çødé" [48, 52). */
    const char *order[] = {"layer.0.a", "b", "c", "scalar", "empty", "ünï/çødé"};
    for (size_t i = 0; i < 6; i++)
        CHECK_STR(model_st_at(st, i)->name, order[i]);
    const struct model_st_tensor *t = model_st_at(st, 0);
    CHECK_STR(t->name, "layer.0.a");
    CHECK(t->dtype == MODEL_DTYPE_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    CHECK(t->numel == 6 && t->nbytes == 24 && t->file == 0);
    CHECK(model_st_at(st, 6) == NULL);
    float out[8];
    CHECK(model_st_to_f32(t, out, &err) == 0);
    for (int i = 0; i < 6; i++)
        CHECK(same_bits(out[i], a[i]));

    t = model_st_find(st, "b");
    CHECK(t != NULL && t->dtype == MODEL_DTYPE_BF16 && t->nbytes == 8);
    CHECK_STR(t->dtype_name, "BF16");
    CHECK(model_st_to_f32(t, out, &err) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(same_bits(out[i], model_st_bf16_to_f32(model_st_f32_to_bf16(b[i]))));
    CHECK(out[0] == 1.0f && out[2] == -65536.0f);

    t = model_st_find(st, "c");
    CHECK(t != NULL && t->dtype == MODEL_DTYPE_F16 && t->ndim == 3 && t->shape[1] == 1);
    CHECK(model_st_to_f32(t, out, &err) == 0);
    CHECK(isinf(out[1]) && out[2] == ldexpf(2, -24) && out[3] == -1);
    CHECK(fabsf(out[0] - 0.1f) < 1e-4f);

    t = model_st_find(st, "scalar");
    CHECK(t != NULL && t->ndim == 0 && t->numel == 1 && t->nbytes == 4);
    CHECK(model_st_to_f32(t, out, &err) == 0 && out[0] == 42);
    t = model_st_find(st, "empty");
    CHECK(t != NULL && t->numel == 0 && t->nbytes == 0 && t->shape[1] == 5);
    CHECK(model_st_to_f32(t, out, &err) == 0);
    CHECK(model_st_find(st, "ünï/çødé") != NULL);
    CHECK(model_st_find(st, "missing") == NULL);
    CHECK(model_st_find(st, "") == NULL);
    CHECK(err.code == 0);
    model_st_close(st);

    /* Metadata given: written first, as given; overwriting an existing file. */
    json_t *m = json_pack("{s:s,s:s}", "format", "pt", "note", "ñ \"quoted\"");
    CHECK(model_st_write(path, e, 1, m, &err) == 0);
    json_decref(m);
    st = model_st_open_file(path, &err);
    CHECK(st != NULL && model_st_count(st) == 1);
    if (st != NULL)
        CHECK_STR(json_string_value(json_object_get(model_st_metadata(st, 0), "note")),
                  "ñ \"quoted\"");
    model_st_close(st);
    model_st_close(NULL);

    /* No tensors at all is a valid file. */
    CHECK(model_st_write(path, NULL, 0, NULL, &err) == 0);
    st = model_st_open_file(path, &err);
    CHECK(st != NULL && model_st_count(st) == 0 && model_st_find(st, "x") == NULL);
    model_st_close(st);
}

static void test_many_tensors(void)
{
    enum { N = 3000 };
    struct model_st_entry *e = calloc(N, sizeof *e);
    char(*names)[32] = calloc(N, sizeof *names);
    float *v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "model.layers.%d.w", N - 1 - i);
        v[i] = (float)i;
        e[i] = (struct model_st_entry){names[i], MODEL_DTYPE_F32, 1, {1}, &v[i]};
    }
    char path[512];
    path_in(path, sizeof path, "many.safetensors");
    struct fj_err err = {0};
    CHECK(model_st_write(path, e, N, NULL, &err) == 0);
    struct model_st *st = model_st_open_file(path, &err);
    CHECK(st != NULL && model_st_count(st) == N);
    int bad = 0;
    for (int i = 0; st != NULL && i < N; i++) {
        const struct model_st_tensor *t = model_st_find(st, names[i]);
        float x;
        if (t == NULL || model_st_to_f32(t, &x, &err) != 0 || x != (float)i ||
            model_st_at(st, (size_t)i) != t)
            bad++;
    }
    CHECK_EQ_U(bad, 0);
    model_st_close(st);
    free(e);
    free(names);
    free(v);
}

static void test_write_refusals(void)
{
    char path[512], tmp[600];
    path_in(path, sizeof path, "refused.safetensors");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    float x[4] = {0};
    struct {
        struct model_st_entry e[2];
        size_t n;
        const char *want;
    } cases[] = {
        {{{"a", MODEL_DTYPE_F32, 1, {4}, x}, {"a", MODEL_DTYPE_F32, 1, {4}, x}}, 2, "twice"},
        {{{"__metadata__", MODEL_DTYPE_F32, 1, {4}, x}}, 1, "not allowed"},
        {{{"", MODEL_DTYPE_F32, 1, {4}, x}}, 1, "not allowed"},
        {{{NULL, MODEL_DTYPE_F32, 1, {4}, x}}, 1, "NULL"},
        {{{"a", MODEL_DTYPE_OTHER, 1, {4}, x}}, 1, "only F32"},
        {{{"a", MODEL_DTYPE_F32, 1, {-4}, x}}, 1, "shape"},
        {{{"a", MODEL_DTYPE_F32, 9, {4}, x}}, 1, "dimensions"},
        {{{"a", MODEL_DTYPE_F32, 2, {INT64_MAX / 2, 4}, x}}, 1, "shape"},
        {{{"a", MODEL_DTYPE_F32, 1, {4}, NULL}}, 1, "NULL"},
        {{{"bad\xff", MODEL_DTYPE_F32, 1, {4}, x}}, 1, "UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fj_err err = {0};
        int rc = model_st_write(path, cases[i].e, cases[i].n, NULL, &err);
        CHECK(rc == FJ_ERR_INVALID && strstr(err.msg, cases[i].want) != NULL);
        if (rc != FJ_ERR_INVALID || strstr(err.msg, cases[i].want) == NULL)
            fprintf(stderr, "write case %zu: %s\n", i, err.msg);
        CHECK(access(path, F_OK) != 0 && access(tmp, F_OK) != 0);
    }
    struct model_st_entry ok = {"a", MODEL_DTYPE_F32, 1, {4}, x};
    json_t *m = json_pack("{s:i}", "n", 1);
    struct fj_err err = {0};
    CHECK(model_st_write(path, &ok, 1, m, &err) == FJ_ERR_INVALID);
    json_decref(m);
    m = json_array();
    fj_err_clear(&err);
    CHECK(model_st_write(path, &ok, 1, m, &err) == FJ_ERR_INVALID);
    json_decref(m);
    /* A folder that does not exist: an I/O error and no file left behind. */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.safetensors", tmp_dir);
    fj_err_clear(&err);
    CHECK(model_st_write(bad, &ok, 1, NULL, &err) == FJ_ERR_IO);
    CHECK(strstr(err.msg, "no/such/dir") != NULL);
    /* A path that is a folder: the rename fails, the temp file is removed. */
    fj_err_clear(&err);
    CHECK(model_st_write(tmp_dir, &ok, 1, NULL, &err) == FJ_ERR_IO);
    char tmp2[600];
    snprintf(tmp2, sizeof tmp2, "%s.tmp", tmp_dir);
    CHECK(access(tmp2, F_OK) != 0);
}

/* A writer killed at random moments leaves the old file or the new one, never a mix. */
static void test_atomic_write(void)
{
    char path[512];
    path_in(path, sizeof path, "atomic.safetensors");
    enum { N = 1 << 20 };
    float *v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++)
        v[i] = 1.0f;
    struct model_st_entry e = {"w", MODEL_DTYPE_BF16, 1, {N}, v};
    struct fj_err err = {0};
    CHECK(model_st_write(path, &e, 1, NULL, &err) == 0);
    for (int i = 0; i < N; i++)
        v[i] = 2.0f;
    int seen_old = 0, seen_new = 0, bad = 0;
    for (int round = 0; round < 12; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (;;)
                if (model_st_write(path, &e, 1, NULL, NULL) != 0)
                    _exit(1);
        }
        struct timespec ts = {0, (round + 1) * 7000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        struct model_st *st = model_st_open_file(path, &err);
        const struct model_st_tensor *t = st ? model_st_find(st, "w") : NULL;
        if (t == NULL || t->numel != N) {
            bad++;
        } else {
            float first, last;
            uint16_t h0, h1;
            memcpy(&h0, t->data, 2);
            memcpy(&h1, (const char *)t->data + t->nbytes - 2, 2);
            first = model_st_bf16_to_f32(h0);
            last = model_st_bf16_to_f32(h1);
            if (first == 1.0f && last == 1.0f)
                seen_old++;
            else if (first == 2.0f && last == 2.0f)
                seen_new++;
            else
                bad++;
        }
        model_st_close(st);
    }
    CHECK_EQ_U(bad, 0);
    CHECK(seen_old + seen_new == 12);
    free(v);
}

/* ---------------------------------------------------------------------------------------
 * hostile files
 */

#define T_A "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

static void test_hostile(void)
{
    char p[512];
    path_in(p, sizeof p, "hostile.safetensors");
    static const struct {
        const char *header;
        size_t data;
        const char *want;
    } cases[] = {
        /* header contents */
        {"hello world", 0, "not valid JSON"},
        {"[]", 0, "not a JSON object"},
        {"{\"a\":{\"dtype\":\"F32\",", 8, "not valid JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8, "not valid JSON"},
        {"{" T_A ",\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16,
         "duplicate"},
        {"{\"a\":3}", 0, "not an object"},
        {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "\"dtype\" is missing"},
        {"{\"a\":{\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "not a string"},
        {"{\"a\":{\"dtype\":\"F17\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype"},
        {"{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "\"shape\" is missing"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, "not an array"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,\"2\"],\"data_offsets\":[0,8]}}", 8, "shape[1]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
         "9 dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
         "overflows"},
        {"{\"a\":{\"dtype\":\"F64\",\"shape\":[1152921504606846976,1],\"data_offsets\":[0,8]}}", 8,
         "overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[9223372036854775807,2,0],"
         "\"data_offsets\":[0,0]}}",
         0, "overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}}", 8,
         "not valid JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "\"data_offsets\" is missing"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "[begin, end]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,16]}}", 8, "[begin, end]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{\"0\":8}}}", 8, "[begin, end]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",\"8\"]}}", 8,
         "[begin, end]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, "[begin, end]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0.0,8.0]}}", 8, "[begin, end]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "end before"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 12, "take 8 bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "run past"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
         "\"data_offsets\":[18446744073709551608,18446744073709551615]}}",
         8, "not valid JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
         "\"data_offsets\":[9223372036854775800,9223372036854775807]}}",
         8, "run past"},
        /* layout */
        {"{" T_A ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
         "share bytes"},
        {"{" T_A ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
         "share bytes"},
        {"{" T_A ",\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8,
         "share bytes"},
        {"{" T_A ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}", 24,
         "bytes [8, 16)"},
        {"{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "bytes [0, 4)"},
        {"{" T_A "}", 16, "end at byte 8"},
        {"{}", 8, "end at byte 0"},
        {"{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, "whole bytes"},
        /* metadata */
        {"{\"__metadata__\":[],\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
         "\"__metadata__\" is not an object"},
        {"{\"__metadata__\":{\"k\":1}," T_A "}", 8, "value \"k\" is not a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_raw(p, cases[i].header, strlen(cases[i].header), UINT64_MAX, cases[i].data);
        expect_refused(p, FJ_ERR_FORMAT, cases[i].want, (int)i);
    }

    /* Bytes JSON text cannot hold: NUL, invalid UTF-8, a \u0000 name. */
    write_raw(p, "{\"a\0\":{}}", 9, UINT64_MAX, 0);
    REFUSED(p, FJ_ERR_FORMAT, "not valid JSON");
    write_raw(p, "{\"\xc3\x28\":{}}", 8, UINT64_MAX, 0);
    REFUSED(p, FJ_ERR_FORMAT, "not valid JSON");
    write_raw(p, "{\"a\\u0000b\":{}}", 15, UINT64_MAX, 0);
    REFUSED(p, FJ_ERR_FORMAT, "not valid JSON");
    /* Deep nesting: jansson's depth limit, not a stack overflow. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    write_raw(p, deep, 2 * depth, UINT64_MAX, 0);
    REFUSED(p, FJ_ERR_FORMAT, "not valid JSON");
    free(deep);

    /* The length field. */
    write_bytes(p, "", 0);
    REFUSED(p, FJ_ERR_FORMAT, "empty file");
    write_bytes(p, "\x10\0\0\0\0", 5);
    REFUSED(p, FJ_ERR_FORMAT, "truncated");
    write_raw(p, "{}", 2, 10000000000ull, 0); /* 10 GB */
    REFUSED(p, FJ_ERR_FORMAT, "absurd");
    write_raw(p, "{}", 2, 100000001ull, 0); /* just past 100 MB */
    REFUSED(p, FJ_ERR_FORMAT, "absurd");
    write_raw(p, "{}", 2, UINT64_MAX - 1, 0);
    REFUSED(p, FJ_ERR_FORMAT, "absurd");
    write_raw(p, "{}      ", 8, 1000, 0);
    REFUSED(p, FJ_ERR_FORMAT, "runs past the end");
    write_raw(p, "{}      ", 8, 9, 0);
    REFUSED(p, FJ_ERR_FORMAT, "runs past the end");
    write_raw(p, "{}      ", 8, 0, 0);
    REFUSED(p, FJ_ERR_FORMAT, "not valid JSON");
    /* A valid file cut short: the last tensor runs past the end. */
    write_raw(p, "{" T_A ",\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[8,14]}}",
              strlen("{" T_A ",\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[8,14]}}"),
              UINT64_MAX, 11);
    REFUSED(p, FJ_ERR_FORMAT, "run past");

    /* Not files. */
    REFUSED(tmp_dir, FJ_ERR_IO, "not a regular file");
    char missing[600];
    snprintf(missing, sizeof missing, "%s/missing.safetensors", tmp_dir);
    REFUSED(missing, FJ_ERR_IO, "cannot open");

    /* Accepted oddities: header padded with spaces, any key order, zero-size tensors at any
     * boundary, an entry with extra keys, every dtype the reference knows. */
    const char *okh = "{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]},"
                      "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16],\"x\":1},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"c\":{\"dtype\":\"F4\",\"shape\":[2,3],\"data_offsets\":[16,19]},"
                      "\"d\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[19,20]}}   ";
    write_raw(p, okh, strlen(okh), UINT64_MAX, 20);
    struct fj_err err = {0};
    struct model_st *st = model_st_open_file(p, &err);
    CHECK(st != NULL);
    if (st == NULL) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK_EQ_U(model_st_count(st), 5);
    CHECK_STR(model_st_at(st, 0)->name, "a");
    CHECK_STR(model_st_at(st, 1)->name, "z");
    CHECK_STR(model_st_at(st, 2)->name, "b");
    CHECK_STR(model_st_at(st, 3)->name, "c");
    const struct model_st_tensor *b = model_st_find(st, "b");
    CHECK(b->dtype == MODEL_DTYPE_OTHER && b->nbytes == 8);
    CHECK_STR(b->dtype_name, "I64");
    CHECK(model_st_find(st, "c")->nbytes == 3);
    float out[2];
    CHECK(model_st_to_f32(b, out, &err) == FJ_ERR_INVALID);
    CHECK(strstr(err.msg, "\"b\"") != NULL && strstr(err.msg, "I64") != NULL);
    CHECK(model_st_metadata(st, 0) == NULL);
    model_st_close(st);
}

/* Random corruption of a valid header: refused cleanly or accepted with every tensor
 * inside the file (under ASan, reading every byte proves it). */
static void test_fuzz(void)
{
    char p[512];
    path_in(p, sizeof p, "fuzz.safetensors");
    float v[12];
    for (int i = 0; i < 12; i++)
        v[i] = (float)i;
    struct model_st_entry e[] = {
        {"a", MODEL_DTYPE_F32, 2, {2, 3}, v},
        {"b", MODEL_DTYPE_BF16, 1, {4}, v},
        {"cc", MODEL_DTYPE_F16, 1, {2}, v},
    };
    struct fj_err err = {0};
    CHECK(model_st_write(p, e, 3, NULL, &err) == 0);
    size_t len;
    char *orig = read_all(p, &len);
    const char digits[] = "0123456789[]{},:\" -.e";
    srand(12345);
    int accepted = 0;
    for (int iter = 0; iter < 4000; iter++) {
        char *m = malloc(len);
        memcpy(m, orig, len);
        int flips = 1 + rand() % 3;
        for (int f = 0; f < flips; f++) {
            size_t at = (size_t)rand() % len;
            m[at] = rand() % 2 ? digits[rand() % (int)(sizeof digits - 1)] : (char)rand();
        }
        write_bytes(p, m, len);
        free(m);
        fj_err_clear(&err);
        struct model_st *st = model_st_open_file(p, &err);
        if (st == NULL) {
            CHECK(err.code != 0 && strstr(err.msg, p) != NULL);
            continue;
        }
        accepted++;
        float out[64];
        for (size_t i = 0; i < model_st_count(st); i++) {
            const struct model_st_tensor *t = model_st_at(st, i);
            volatile uint8_t sum = 0;
            for (size_t k = 0; k < t->nbytes; k++)
                sum += ((const uint8_t *)t->data)[k];
            if (t->dtype != MODEL_DTYPE_OTHER && t->numel <= 64)
                model_st_to_f32(t, out, NULL);
            CHECK(model_st_find(st, t->name) == t);
        }
        model_st_close(st);
    }
    CHECK(accepted > 0);
    free(orig);
}

/* ---------------------------------------------------------------------------------------
 * model folders
 */

static void make_dir(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmp_dir, name);
    CHECK(mkdir(out, 0755) == 0 || errno == EEXIST);
}

static void put_text(const char *dir, const char *name, const char *text)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    write_bytes(p, text, strlen(text));
}

static void put_shard(const char *dir, const char *name, const char *const *tensors, size_t n)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    float v[2] = {1, 2};
    struct model_st_entry e[8];
    for (size_t i = 0; i < n; i++)
        e[i] = (struct model_st_entry){tensors[i], MODEL_DTYPE_F32, 1, {2}, v};
    CHECK(model_st_write(p, e, n, NULL, NULL) == 0);
}

static void expect_dir_refused(const char *dir, int code, const char *want, int line)
{
    struct fj_err err = {0};
    struct model_st *st = model_st_open_dir(dir, &err);
    CHECK(st == NULL);
    model_st_close(st);
    bool ok = err.code == code && strstr(err.msg, want) != NULL;
    if (!ok)
        fprintf(stderr, "line %d: code %s, message \"%s\"; expected %s with \"%s\"\n", line,
                fj_code_name(err.code), err.msg, fj_code_name(code), want);
    CHECK(ok);
}

#define DIR_REFUSED(dir, code, want) expect_dir_refused(dir, code, want, __LINE__)

static void test_dirs(void)
{
    char d[512];
    struct fj_err err = {0};

    make_dir(d, sizeof d, "empty_model");
    DIR_REFUSED(d, FJ_ERR_NOT_FOUND, "no model weights");
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no_such_model", tmp_dir);
    DIR_REFUSED(missing, FJ_ERR_NOT_FOUND, "no_such_model");

    make_dir(d, sizeof d, "single");
    const char *one[] = {"w", "v"};
    put_shard(d, "model.safetensors", one, 2);
    put_text(d, "model.safetensors.index.json", "not even JSON"); /* ignored */
    struct model_st *st = model_st_open_dir(d, &err);
    CHECK(st != NULL && model_st_count(st) == 2 && model_st_n_files(st) == 1);
    model_st_close(st);

    make_dir(d, sizeof d, "sharded");
    const char *s1[] = {"model.embed", "model.layers.0.w"};
    const char *s2[] = {"model.layers.1.w", "lm_head.weight", "extra.unlisted"};
    put_shard(d, "model-00001-of-00002.safetensors", s1, 2);
    put_shard(d, "model-00002-of-00002.safetensors", s2, 3);
    const char *index = "{\"metadata\":{\"total_size\":40},\"weight_map\":{"
                        "\"lm_head.weight\":\"model-00002-of-00002.safetensors\","
                        "\"model.embed\":\"model-00001-of-00002.safetensors\","
                        "\"model.layers.0.w\":\"model-00001-of-00002.safetensors\","
                        "\"model.layers.1.w\":\"model-00002-of-00002.safetensors\"}}";
    put_text(d, "model.safetensors.index.json", index);
    st = model_st_open_dir(d, &err);
    CHECK(st != NULL);
    if (st != NULL) {
        CHECK_EQ_U(model_st_count(st), 5);
        CHECK_EQ_U(model_st_n_files(st), 2);
        CHECK(strstr(model_st_file_path(st, 1), "00002-of") != NULL);
        CHECK(model_st_find(st, "model.embed")->file == 0);
        CHECK(model_st_find(st, "lm_head.weight")->file == 1);
        CHECK(model_st_find(st, "extra.unlisted") != NULL);
        CHECK_STR(model_st_at(st, 0)->name, "model.embed");
        CHECK_STR(model_st_at(st, 2)->name, "model.layers.1.w");
        float out[2];
        CHECK(model_st_to_f32(model_st_find(st, "lm_head.weight"), out, &err) == 0 && out[1] == 2);
    } else {
        fprintf(stderr, "%s\n", err.msg);
    }
    model_st_close(st);

    /* The index names a shard that is not there. */
    make_dir(d, sizeof d, "missing_shard");
    put_shard(d, "model-00001-of-00002.safetensors", s1, 2);
    put_text(d, "model.safetensors.index.json", index);
    DIR_REFUSED(d, FJ_ERR_FORMAT, "shard \"model-00002-of-00002.safetensors\", which is missing");

    /* A listed tensor is in the other shard, or in none. */
    make_dir(d, sizeof d, "wrong_shard");
    put_shard(d, "a.safetensors", s1, 2);
    put_shard(d, "b.safetensors", s2, 3);
    put_text(d, "model.safetensors.index.json",
             "{\"weight_map\":{\"model.embed\":\"b.safetensors\","
             "\"model.layers.0.w\":\"a.safetensors\",\"lm_head.weight\":\"b.safetensors\"}}");
    DIR_REFUSED(d, FJ_ERR_FORMAT,
                "lists tensor \"model.embed\" in shard \"b.safetensors\", but "
                "it is in");
    put_text(
        d, "model.safetensors.index.json",
        "{\"weight_map\":{\"model.gone\":\"b.safetensors\",\"model.embed\":\"a.safetensors\"}}");
    DIR_REFUSED(d, FJ_ERR_FORMAT, "\"model.gone\" in shard \"b.safetensors\", but no shard");

    /* The same tensor in two shards. */
    make_dir(d, sizeof d, "twice");
    put_shard(d, "a.safetensors", s1, 2);
    const char *dup[] = {"model.layers.0.w"};
    put_shard(d, "b.safetensors", dup, 1);
    put_text(d, "model.safetensors.index.json",
             "{\"weight_map\":{\"model.embed\":\"a.safetensors\","
             "\"model.layers.0.w\":\"b.safetensors\"}}");
    DIR_REFUSED(d, FJ_ERR_FORMAT, "\"model.layers.0.w\" is in two files");

    /* Broken index files. */
    make_dir(d, sizeof d, "bad_index");
    put_shard(d, "a.safetensors", s1, 2);
    put_text(d, "model.safetensors.index.json", "{\"weight_map\": ");
    DIR_REFUSED(d, FJ_ERR_FORMAT, "not valid JSON");
    put_text(d, "model.safetensors.index.json", "{\"metadata\":{}}");
    DIR_REFUSED(d, FJ_ERR_FORMAT, "\"weight_map\" is missing");
    put_text(d, "model.safetensors.index.json", "{\"weight_map\":[]}");
    DIR_REFUSED(d, FJ_ERR_FORMAT, "\"weight_map\" is not an object");
    put_text(d, "model.safetensors.index.json", "{\"weight_map\":{}}");
    DIR_REFUSED(d, FJ_ERR_FORMAT, "lists no tensors");
    put_text(d, "model.safetensors.index.json", "{\"weight_map\":{\"model.embed\":1}}");
    DIR_REFUSED(d, FJ_ERR_FORMAT, "weight_map[\"model.embed\"]");
    put_text(d, "model.safetensors.index.json",
             "{\"weight_map\":{\"model.embed\":\"../single/model.safetensors\"}}");
    DIR_REFUSED(d, FJ_ERR_FORMAT, "not a file name inside the folder");
    put_text(d, "model.safetensors.index.json", "{\"weight_map\":{\"model.embed\":\"..\"}}");
    DIR_REFUSED(d, FJ_ERR_FORMAT, "not a file name inside the folder");
    /* A hostile shard is reported with its own path. */
    put_text(d, "model.safetensors.index.json", "{\"weight_map\":{\"model.embed\":\"c.bin\"}}");
    put_text(d, "c.bin", "");
    DIR_REFUSED(d, FJ_ERR_FORMAT, "c.bin: empty file");

    /* A file, not a folder. */
    char f[600];
    snprintf(f, sizeof f, "%s/single/model.safetensors", tmp_dir);
    DIR_REFUSED(f, FJ_ERR_INVALID, "not a directory");
}

static void remove_tree(const char *path)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", path);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/forja-st-XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(tmp_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_f16_exhaustive);
    RUN(test_bf16);
    RUN(test_roundtrip);
    RUN(test_many_tensors);
    RUN(test_write_refusals);
    RUN(test_atomic_write);
    RUN(test_hostile);
    RUN(test_fuzz);
    RUN(test_dirs);
    remove_tree(tmp_dir);
    return TEST_DONE();
}
