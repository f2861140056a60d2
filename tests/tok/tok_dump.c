/* tok_dump.c - encodes a file unit by unit and writes the ids, for tests/tok/parity.js to
 * compare with npm tiktoken (and tests/tok/hf_parity.js with npm @huggingface/transformers).
 *
 *   tok_dump ENCODING MODE SPECIAL IN OUT
 *   tok_dump --write-hf ENCODING OUT.json    writes ENCODING as a tokenizer.json
 *   tok_dump --info ENCODING                 prints name, n_vocab and the load time
 *   tok_dump --bench ENCODING FILE           encodes FILE per line and per 1 MiB chunk and
 *                                            prints MB/s (a quick check; bench/ has the real one)
 *
 * ENCODING: a built-in name (cl100k_base, ...) or hf:PATH (a tokenizer.json), optionally
 * followed by ",+TEXT=ID" for each special token to add (tok_encoding_add_special).
 * MODE: lines  - each line with its "\n"
 *       chunks - pieces of at most 1 MiB, cut at a character boundary
 *       units  - IN is a sequence of (uint32 little-endian length, bytes)
 * SPECIAL: reject | allow | text
 * OUT records, per unit: uint64 offset, uint64 length (into IN's text), int32 status
 * (0 or the FJ_ERR_* code), uint32 count, then count uint32 ids (all little-endian).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tok/tok.h"

#define CHUNK (1u << 20)

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)n + 1);
    if (p == NULL || fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void emit(FILE *out, const struct tok_encoding *enc, enum tok_special special,
                 const unsigned char *text, uint64_t off, uint64_t len, struct tok_ids *ids)
{
    struct fj_err err = {0};
    ids->len = 0;
    int32_t status = tok_encode(enc, (const char *)text + off, len, special, ids, &err);
    uint32_t count = status == 0 ? (uint32_t)ids->len : 0;
    fwrite(&off, 8, 1, out);
    fwrite(&len, 8, 1, out);
    fwrite(&status, 4, 1, out);
    fwrite(&count, 4, 1, out);
    if (count)
        fwrite(ids->data, 4, count, out);
}

/* Opens "NAME" or "hf:PATH", then adds each ",+TEXT=ID". */
static struct tok_encoding *open_encoding(const char *spec, struct fj_err *err)
{
    char *copy = strdup(spec);
    if (copy == NULL)
        return NULL;
    char *extra = strstr(copy, ",+");
    if (extra != NULL)
        *extra = '\0';
    struct tok_encoding *enc = strncmp(copy, "hf:", 3) == 0 ? tok_encoding_open_hf(copy + 3, err)
                                                            : tok_encoding_new(copy, err);
    while (enc != NULL && extra != NULL) {
        char *text = extra + 2, *next = strstr(text, ",+");
        if (next != NULL)
            *next = '\0';
        char *eq = strrchr(text, '=');
        if (eq == NULL) {
            fj_err_set(err, FJ_ERR_INVALID, "expected ,+TEXT=ID in %s", spec);
            tok_encoding_free(enc);
            enc = NULL;
            break;
        }
        *eq = '\0';
        if (tok_encoding_add_special(enc, text, (uint32_t)strtoul(eq + 1, NULL, 10), err) != 0) {
            tok_encoding_free(enc);
            enc = NULL;
        }
        extra = next;
    }
    free(copy);
    return enc;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int write_hf(const char *spec, const char *path)
{
    struct fj_err err = {0};
    struct tok_encoding *enc = open_encoding(spec, &err);
    struct fj_buf json = {0};
    if (enc == NULL || tok_encoding_to_hf_json(enc, &json, &err) != 0) {
        fprintf(stderr, "tok_dump: %s\n", err.msg);
        tok_encoding_free(enc);
        return 2;
    }
    FILE *f = fopen(path, "wb");
    int ok = f != NULL && fwrite(json.data, 1, json.len, f) == json.len;
    if (f != NULL && fclose(f) != 0)
        ok = 0;
    if (!ok)
        fprintf(stderr, "tok_dump: cannot write %s\n", path);
    fj_buf_free(&json);
    tok_encoding_free(enc);
    return ok ? 0 : 2;
}

static int bench(const char *spec, const char *path)
{
    struct fj_err err = {0};
    struct tok_encoding *enc = open_encoding(spec, &err);
    size_t n;
    unsigned char *text = read_file(path, &n);
    if (enc == NULL || text == NULL) {
        fprintf(stderr, "tok_dump: %s\n", enc == NULL ? err.msg : "cannot read the file");
        tok_encoding_free(enc);
        free(text);
        return 2;
    }
    struct tok_ids ids = {0};
    for (int lines = 0; lines <= 1; lines++) {
        double best = 1e30;
        size_t total = 0;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now();
            total = 0;
            for (size_t i = 0; i < n;) {
                size_t end;
                if (lines) {
                    unsigned char *nl = memchr(text + i, '\n', n - i);
                    end = nl ? (size_t)(nl - text) + 1 : n;
                } else {
                    end = i + CHUNK < n ? i + CHUNK : n;
                    while (end < n && (text[end] & 0xC0) == 0x80)
                        end--;
                }
                ids.len = 0;
                if (tok_encode(enc, (const char *)text + i, end - i, TOK_SPECIAL_AS_TEXT, &ids,
                               &err) != 0) {
                    fprintf(stderr, "tok_dump: %s\n", err.msg);
                    return 2;
                }
                total += ids.len;
                i = end;
            }
            double t = now() - t0;
            best = t < best ? t : best;
        }
        printf("{\"encoding\": \"%s\", \"mode\": \"%s\", \"tokens\": %zu, \"mb_per_s\": %.2f}\n",
               spec, lines ? "lines" : "chunks", total, (double)n / best / 1e6);
    }
    tok_ids_free(&ids);
    free(text);
    tok_encoding_free(enc);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--write-hf") == 0)
        return write_hf(argv[2], argv[3]);
    struct fj_err err = {0};
    if (argc == 3 && strcmp(argv[1], "--info") == 0) {
        double t0 = now();
        struct tok_encoding *enc = open_encoding(argv[2], &err);
        if (enc == NULL) {
            fprintf(stderr, "tok_dump: %s\n", err.msg);
            return 2;
        }
        printf("{\"name\": \"%s\", \"n_vocab\": %u, \"load_ms\": %.1f}\n", tok_encoding_name(enc),
               tok_encoding_n_vocab(enc), (now() - t0) * 1e3);
        tok_encoding_free(enc);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "--bench") == 0)
        return bench(argv[2], argv[3]);
    if (argc != 6) {
        fprintf(stderr, "usage: tok_dump ENCODING lines|chunks|units reject|allow|text IN OUT\n"
                        "       tok_dump --write-hf ENCODING OUT.json\n"
                        "       tok_dump --info ENCODING\n"
                        "       tok_dump --bench ENCODING FILE\n");
        return 2;
    }
    struct tok_encoding *enc = open_encoding(argv[1], &err);
    if (enc == NULL) {
        fprintf(stderr, "tok_dump: %s\n", err.msg);
        return 2;
    }
    enum tok_special special = strcmp(argv[3], "allow") == 0  ? TOK_SPECIAL_ALLOW
                               : strcmp(argv[3], "text") == 0 ? TOK_SPECIAL_AS_TEXT
                                                              : TOK_SPECIAL_REJECT;
    size_t n;
    unsigned char *in = read_file(argv[4], &n);
    FILE *out = fopen(argv[5], "wb");
    if (in == NULL || out == NULL) {
        fprintf(stderr, "tok_dump: cannot read %s or write %s\n", argv[4], argv[5]);
        return 2;
    }
    struct tok_ids ids = {0};
    if (strcmp(argv[2], "lines") == 0) {
        for (size_t i = 0; i < n;) {
            unsigned char *nl = memchr(in + i, '\n', n - i);
            size_t end = nl ? (size_t)(nl - in) + 1 : n;
            emit(out, enc, special, in, i, end - i, &ids);
            i = end;
        }
    } else if (strcmp(argv[2], "chunks") == 0) {
        for (size_t i = 0; i < n;) {
            size_t end = i + CHUNK < n ? i + CHUNK : n;
            while (end < n && (in[end] & 0xC0) == 0x80)
                end--;
            emit(out, enc, special, in, i, end - i, &ids);
            i = end;
        }
    } else {
        for (size_t i = 0; i + 4 <= n;) {
            uint32_t len;
            memcpy(&len, in + i, 4);
            emit(out, enc, special, in, i + 4, len, &ids);
            i += 4 + (size_t)len;
        }
    }
    tok_ids_free(&ids);
    free(in);
    tok_encoding_free(enc);
    return fclose(out) == 0 ? 0 : 2;
}
