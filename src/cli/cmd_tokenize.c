/* cmd_tokenize.c - `forja tokenize` and `forja detokenize`: text to token ids and back. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "tok/tok.h"

#define ENCODING_HELP "Encoding: cl100k_base (default), o200k_base, p50k_base, r50k_base or gpt2."

/* Prints a token's bytes as a quoted string: printable ASCII as is, common escapes, other
 * bytes of valid UTF-8 as is, and bytes that are not (part of a character) as \xHH. */
static void print_piece(const uint8_t *p, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\r')
            fputs("\\r", stdout);
        else if (c >= 0x20 && c < 0x7f)
            putchar(c);
        else if (c >= 0xC2 && c <= 0xF4) {
            size_t len = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            bool ok = i + len <= n;
            for (size_t k = 1; ok && k < len; k++)
                ok = (p[i + k] & 0xC0) == 0x80;
            if (ok) {
                fwrite(p + i, 1, len, stdout);
                i += len - 1;
            } else
                printf("\\x%02x", c);
        } else
            printf("\\x%02x", c);
    }
    puts("\"");
}

static int run_tokenize(const struct cli_cmd *cmd, const struct cli_args *a)
{
    for (size_t i = 0; i < a->n; i++) {
        if (a->items[i].opt < 0) {
            fprintf(stderr,
                    "forja tokenize: unexpected argument '%s' (text comes from stdin or "
                    "--text)\n",
                    a->items[i].value);
            return CLI_USAGE;
        }
    }
    int modes = cli_has(cmd, a, "ids") + cli_has(cmd, a, "count") + cli_has(cmd, a, "pieces");
    if (modes > 1) {
        fprintf(stderr, "forja tokenize: choose one of --ids, --count, --pieces\n");
        return CLI_USAGE;
    }
    enum tok_special special;
    if (cli_special_mode(cmd, a, &special) != 0)
        return CLI_USAGE;
    struct tok_encoding *enc = cli_open_encoding(cmd, a);
    if (enc == NULL)
        return CLI_USAGE;
    struct fj_buf text = {0};
    const char *t = cli_get(cmd, a, "text");
    int rc = t ? fj_buf_append(&text, t, strlen(t)) : cli_read_all(stdin, &text);
    if (rc != 0) {
        fprintf(stderr, "forja tokenize: cannot read the input: %s\n", strerror(errno));
        tok_encoding_free(enc);
        fj_buf_free(&text);
        return CLI_FAILURE;
    }
    struct fj_err err = {0};
    struct tok_ids ids = {0};
    int status = CLI_OK;
    if (cli_has(cmd, a, "count")) {
        size_t count;
        if (tok_count(enc, text.data, text.len, special, &count, &err) == 0)
            printf("%zu\n", count);
    } else if (tok_encode(enc, text.data, text.len, special, &ids, &err) == 0) {
        bool pieces = cli_has(cmd, a, "pieces");
        for (size_t i = 0; i < ids.len; i++) {
            if (pieces) {
                const uint8_t *p;
                size_t n;
                tok_token_bytes(enc, ids.data[i], &p, &n);
                print_piece(p, n);
            } else
                printf(i + 1 < ids.len ? "%u " : "%u", ids.data[i]);
        }
        if (!pieces)
            putchar('\n');
    }
    if (err.code != 0) {
        fprintf(stderr, "forja tokenize: %s%s\n", err.msg,
                err.code == FJ_ERR_SPECIAL ? " (use --allow-special to encode it as a special "
                                             "token, or --ordinary to encode it as text)"
                                           : "");
        status = CLI_DATA_ERROR;
    }
    tok_ids_free(&ids);
    fj_buf_free(&text);
    tok_encoding_free(enc);
    return status;
}

/* Parses whitespace- or comma-separated ids. Returns 0, or -1 with a message printed. */
static int parse_ids(const char *s, struct tok_ids *ids)
{
    const char *p = s;
    for (;;) {
        while (*p && (isspace((unsigned char)*p) || *p == ',' || *p == '[' || *p == ']'))
            p++;
        if (*p == '\0')
            return 0;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || errno != 0 || v > UINT32_MAX || *p == '-' || *p == '+') {
            fprintf(stderr, "forja detokenize: '%.20s' is not a token id\n", p);
            return -1;
        }
        if (tok_ids_push(ids, (uint32_t)v) != 0) {
            fprintf(stderr, "forja detokenize: out of memory\n");
            return -1;
        }
        p = end;
    }
}

static int run_detokenize(const struct cli_cmd *cmd, const struct cli_args *a)
{
    struct tok_encoding *enc = cli_open_encoding(cmd, a);
    if (enc == NULL)
        return CLI_USAGE;
    struct fj_buf in = {0}, out = {0};
    struct tok_ids ids = {0};
    const char *given = cli_get(cmd, a, "ids");
    int status = CLI_OK;
    if ((given ? fj_buf_append(&in, given, strlen(given)) : cli_read_all(stdin, &in)) != 0) {
        fprintf(stderr, "forja detokenize: cannot read the input\n");
        status = CLI_FAILURE;
    } else if (parse_ids(in.data, &ids) != 0) {
        status = CLI_DATA_ERROR;
    } else {
        struct fj_err err = {0};
        if (tok_decode(enc, ids.data, ids.len, &out, &err) != 0) {
            fprintf(stderr, "forja detokenize: %s\n", err.msg);
            status = CLI_DATA_ERROR;
        } else if (out.len > 0 && fwrite(out.data, 1, out.len, stdout) != out.len) {
            status = CLI_FAILURE;
        }
    }
    tok_ids_free(&ids);
    fj_buf_free(&in);
    fj_buf_free(&out);
    tok_encoding_free(enc);
    return status;
}

static const struct cli_opt tokenize_opts[] = {
    {"encoding", "NAME", ENCODING_HELP},
    {"text", "TEXT", "Tokenize TEXT instead of standard input."},
    {"ids", NULL, "Print the token ids, separated by spaces (the default)."},
    {"count", NULL, "Print only the number of tokens."},
    {"pieces", NULL,
     "Print each token's bytes on its own line, quoted; bytes that are part of a "
     "character print as \\xHH."},
    {"allow-special", NULL,
     "Encode special-token text such as <|endoftext|> as the special "
     "token (tiktoken's allowed_special=\"all\")."},
    {"ordinary", NULL,
     "Encode special-token text as ordinary text (tiktoken's "
     "encode_ordinary)."},
    {NULL, NULL, NULL},
};

const struct cli_cmd cli_cmd_tokenize = {
    "tokenize",
    "",
    "Turn text into token ids",
    "Reads UTF-8 text from standard input (or --text) and prints its tokens, exactly as "
    "OpenAI's tiktoken encodes it. Text that spells a special token such as <|endoftext|> is "
    "an error unless --allow-special or --ordinary says how to treat it, as in tiktoken's "
    "encode(). Input that is not valid UTF-8 is an error naming the byte offset.",
    tokenize_opts,
    run_tokenize,
};

static const struct cli_opt detokenize_opts[] = {
    {"encoding", "NAME", ENCODING_HELP},
    {"ids", "IDS", "Decode these ids instead of reading them from standard input."},
    {NULL, NULL, NULL},
};

const struct cli_cmd cli_cmd_detokenize = {
    "detokenize",
    "",
    "Turn token ids back into text",
    "Reads token ids (separated by spaces, commas or newlines; brackets are ignored) from "
    "standard input or --ids and writes the bytes they stand for to standard output. An id "
    "that is not a token of the encoding is an error.",
    detokenize_opts,
    run_detokenize,
};
