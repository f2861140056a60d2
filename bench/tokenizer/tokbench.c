/* tokbench.c - forja's side of bench/tokenizer: encodes a corpus held in memory on one
 * thread, in ~1 MiB chunks and one line at a time, and prints a JSON line per mode with
 * the token total and MB/s (1 MB = 10^6 bytes). bench/tokenizer/run compares it with npm
 * tiktoken and gpt-tokenizer on the same corpus.
 *
 *   tokbench CORPUS [ENCODING] [REPEAT]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tok/tok.h"

#define CHUNK (1u << 20)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Encodes every unit; returns the token total, or -1 on an error. */
static long long run(const struct tok_encoding *enc, const char *text, size_t n, int lines,
                     struct tok_ids *ids)
{
    long long total = 0;
    for (size_t i = 0; i < n;) {
        size_t end;
        if (lines) {
            const char *nl = memchr(text + i, '\n', n - i);
            end = nl ? (size_t)(nl - text) + 1 : n;
        } else {
            end = i + CHUNK < n ? i + CHUNK : n;
            while (end < n && ((unsigned char)text[end] & 0xC0) == 0x80)
                end--;
        }
        ids->len = 0;
        struct fj_err err = {0};
        if (tok_encode(enc, text + i, end - i, TOK_SPECIAL_REJECT, ids, &err) != 0) {
            fprintf(stderr, "tokbench: %s\n", err.msg);
            return -1;
        }
        total += (long long)ids->len;
        i = end;
    }
    return total;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: tokbench CORPUS [ENCODING] [REPEAT]\n");
        return 2;
    }
    const char *name = argc > 2 ? argv[2] : "cl100k_base";
    int repeat = argc > 3 ? atoi(argv[3]) : 3;
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL) {
        perror(argv[1]);
        return 2;
    }
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc(n);
    if (text == NULL || fread(text, 1, n, f) != n)
        return 2;
    fclose(f);
    struct fj_err err = {0};
    double t0 = now();
    struct tok_encoding *enc = tok_encoding_new(name, &err);
    if (enc == NULL) {
        fprintf(stderr, "tokbench: %s\n", err.msg);
        return 2;
    }
    double load = now() - t0;
    struct tok_ids ids = {0};
    for (int lines = 0; lines <= 1; lines++) {
        double best = 1e30;
        long long total = 0;
        for (int r = 0; r < repeat; r++) {
            double t = now();
            total = run(enc, text, n, lines, &ids);
            if (total < 0)
                return 1;
            t = now() - t;
            if (t < best)
                best = t;
        }
        printf(
            "{\"impl\":\"forja\",\"encoding\":\"%s\",\"mode\":\"%s\",\"bytes\":%zu,\"tokens\":%lld,"
            "\"seconds\":%.4f,\"mb_per_s\":%.2f,\"load_seconds\":%.4f}\n",
            name, lines ? "lines" : "chunks", n, total, best, (double)n / best / 1e6, load);
        fflush(stdout);
    }
    tok_ids_free(&ids);
    tok_encoding_free(enc);
    free(text);
    return 0;
}
