/* tok_dump.c - encodes a file unit by unit and writes the ids, for tests/tok/parity.js to
 * compare with npm tiktoken.
 *
 *   tok_dump ENCODING MODE SPECIAL IN OUT
 *
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

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: tok_dump ENCODING lines|chunks|units reject|allow|text IN OUT\n");
        return 2;
    }
    struct fj_err err = {0};
    struct tok_encoding *enc = tok_encoding_new(argv[1], &err);
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
