/* test_tok.c - unit tests of the tokenizers: published token ids, properties that must hold
 * for any input (round trip, count == length, both merge strategies agree), special-token
 * modes, errors, hostile rank files and concurrent use. Id-for-id parity with tiktoken on a
 * large corpus is tests/tok/parity.js. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "tok/tok.h"
#include "tok/tok_internal.h"

static struct tok_encoding *encs[4];
static const char *const enc_names[4] = {"cl100k_base", "o200k_base", "p50k_base", "r50k_base"};

static const char *const samples[] = {
    "",
    "a",
    "hello world",
    "tiktoken is great!",
    "  leading and trailing  ",
    "line\r\nbreaks\n\n\n",
    "don't I'LL we'Re 'ſ",
    "numbers 1234567 ١٢٣ Ⅻ",
    "日本語と中文",
    "👨‍👩‍👧‍👦 👍🏽 🇪🇸",
    "e\u0301\u0301 x",
    "مرحبا 123",
    "camelCaseXMLHttpRequest",
    "\t\t\ttabs",
    "<|endoftext|> as text",
    "\xF0\x9F\x98\x80\xE2\x80\x8D",
    "a\x00b",
    "                                                   end",
};

static void test_published_ids(void)
{
    /* OpenAI's cookbook ("How to count tokens with tiktoken"): cl100k_base encodes
     * "tiktoken is great!" as [83, 1609, 5963, 374, 2294, 0]. */
    const uint32_t want[] = {83, 1609, 5963, 374, 2294, 0};
    struct tok_ids ids = {0};
    struct fj_err err = {0};
    CHECK(tok_encode(encs[0], "tiktoken is great!", 18, TOK_SPECIAL_REJECT, &ids, &err) == 0);
    CHECK_EQ_U(ids.len, 6);
    for (size_t i = 0; i < 6 && i < ids.len; i++)
        CHECK_EQ_U(ids.data[i], want[i]);
    tok_ids_free(&ids);
    /* tiktoken_ext/openai_public.py: the special tokens' ids and the vocabulary sizes. */
    CHECK_EQ_U(tok_encoding_n_vocab(encs[0]), 100277);
    CHECK_EQ_U(tok_encoding_n_vocab(encs[1]), 200019);
    CHECK_EQ_U(tok_encoding_n_vocab(encs[2]), 50281);
    CHECK_EQ_U(tok_encoding_n_vocab(encs[3]), 50257);
}

static void test_round_trip_and_count(void)
{
    for (int e = 0; e < 4; e++) {
        for (size_t s = 0; s < sizeof samples / sizeof samples[0]; s++) {
            const char *text = samples[s];
            size_t len = s == 16 ? 3 : strlen(text);
            struct tok_ids ids = {0};
            struct fj_buf out = {0};
            struct fj_err err = {0};
            size_t count = 0;
            CHECK(tok_encode(encs[e], text, len, TOK_SPECIAL_AS_TEXT, &ids, &err) == 0);
            CHECK(tok_count(encs[e], text, len, TOK_SPECIAL_AS_TEXT, &count, &err) == 0);
            CHECK_EQ_U(count, ids.len);
            CHECK(tok_decode(encs[e], ids.data, ids.len, &out, &err) == 0);
            CHECK_EQ_U(out.len, len);
            CHECK(len == 0 || memcmp(out.data, text, len) == 0);
            tok_ids_free(&ids);
            fj_buf_free(&out);
        }
    }
}

static void test_special_modes(void)
{
    const char *text = "a<|endoftext|>b";
    struct tok_ids ids = {0};
    struct fj_err err = {0};
    CHECK(tok_encode(encs[0], text, strlen(text), TOK_SPECIAL_REJECT, &ids, &err) ==
          FJ_ERR_SPECIAL);
    CHECK(strstr(err.msg, "<|endoftext|>") != NULL && strstr(err.msg, "byte 1") != NULL);
    CHECK_EQ_U(ids.len, 0);
    fj_err_clear(&err);
    CHECK(tok_encode(encs[0], text, strlen(text), TOK_SPECIAL_ALLOW, &ids, &err) == 0);
    CHECK_EQ_U(ids.len, 3);
    CHECK(ids.len == 3 && ids.data[1] == 100257);
    ids.len = 0;
    CHECK(tok_encode(encs[0], text, strlen(text), TOK_SPECIAL_AS_TEXT, &ids, &err) == 0);
    CHECK(ids.len > 3);
    for (size_t i = 0; i < ids.len; i++)
        CHECK(ids.data[i] < 100256);
    tok_ids_free(&ids);
    /* o200k's <|endoftext|> is 199999; decoding a special id gives its text. */
    const uint8_t *b;
    size_t n;
    CHECK(tok_token_bytes(encs[1], 199999, &b, &n) == 0 && n == 13 &&
          memcmp(b, "<|endoftext|>", 13) == 0);
}

static void test_errors(void)
{
    struct fj_err err = {0};
    struct tok_ids ids = {0};
    CHECK(tok_encoding_new("cl200k_base", &err) == NULL && err.code == FJ_ERR_NOT_FOUND);
    fj_err_clear(&err);
    struct tok_encoding *g = tok_encoding_new("gpt2", &err);
    CHECK(g != NULL && strcmp(tok_encoding_name(g), "r50k_base") == 0);
    tok_encoding_free(g);
    tok_encoding_free(NULL);
    /* Invalid UTF-8: the offset of the first bad byte; ids untouched. */
    const char bad[] = "ok \xC3\x28 no";
    CHECK(tok_encode(encs[0], "x", 1, TOK_SPECIAL_REJECT, &ids, &err) == 0);
    CHECK(tok_encode(encs[0], bad, sizeof bad - 1, TOK_SPECIAL_REJECT, &ids, &err) == FJ_ERR_UTF8);
    CHECK(strstr(err.msg, "byte 3") != NULL);
    CHECK_EQ_U(ids.len, 1);
    fj_err_clear(&err);
    const char *surrogate = "\xED\xA0\x80", *overlong = "\xC0\xAF", *big = "\xF4\x90\x80\x80";
    CHECK(tok_encode(encs[0], surrogate, 3, TOK_SPECIAL_REJECT, &ids, &err) == FJ_ERR_UTF8);
    CHECK(tok_encode(encs[0], overlong, 2, TOK_SPECIAL_REJECT, &ids, &err) == FJ_ERR_UTF8);
    CHECK(tok_encode(encs[0], big, 4, TOK_SPECIAL_REJECT, &ids, &err) == FJ_ERR_UTF8);
    CHECK(tok_encode(encs[0], "\xE2\x82", 2, TOK_SPECIAL_REJECT, &ids, &err) == FJ_ERR_UTF8);
    tok_ids_free(&ids);
    /* Ids that are no token: cl100k has a hole at 100256, and nothing past 100276. */
    struct fj_buf out = {0};
    uint32_t holes[] = {100256, 100277, 4000000000u};
    for (int i = 0; i < 3; i++) {
        fj_err_clear(&err);
        CHECK(tok_decode(encs[0], &holes[i], 1, &out, &err) == FJ_ERR_NOT_FOUND);
    }
    fj_buf_free(&out);
}

/* The heap merge must make the same choices as tiktoken's quadratic scan. */
static void test_merge_strategies_agree(void)
{
    const struct tok_vocab *v = &encs[0]->vocab;
    uint32_t x = 12345;
    const char alphabet[] = "aaaabbcdeeeinorst  \n\t'.,01é中😀";
    for (int round = 0; round < 3000; round++) {
        uint8_t piece[TOK_BPE_SMALL];
        x = x * 1103515245u + 12345u;
        size_t n = 2 + (x >> 8) % (TOK_BPE_SMALL - 1);
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            piece[i] = (uint8_t)alphabet[(x >> 16) % (sizeof alphabet - 1)];
        }
        struct tok_ids a = {0}, b = {0};
        struct tok_sink sa = {&a, 0}, sb = {&b, 0};
        CHECK(tok_bpe_merge_small(v, NULL, piece, n, &sa) == 0);
        CHECK(tok_bpe_merge_large(v, NULL, piece, n, &sb) == 0);
        CHECK(a.len == b.len && memcmp(a.data, b.data, a.len * sizeof *a.data) == 0);
        tok_ids_free(&a);
        tok_ids_free(&b);
    }
}

static void test_hostile_rank_files(void)
{
    static const char *const files[] = {
        "",                      /* empty */
        "YQ==\n",                /* no rank */
        "YQ== x\n",              /* rank not a number */
        "YQ== 0\nYQ== 1\n",      /* the same bytes twice */
        "YQ== 0\nYg== 0\n",      /* the same rank twice */
        "!!!! 0\n",              /* not base64 */
        "YQ= 0\n",               /* bad padding */
        "YQ== 99999999999999\n", /* rank too large */
        " 5\n",                  /* empty token */
        "YQ== 4000000000\n",     /* sparse: one token with a huge rank */
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        struct tok_vocab v;
        struct fj_err err = {0};
        CHECK(tok_vocab_load_tiktoken(&v, (const uint8_t *)files[i], strlen(files[i]), &err) ==
              FJ_ERR_FORMAT);
        CHECK(err.msg[0] != '\0');
    }
    struct tok_vocab v;
    struct fj_err err = {0};
    const char *ok = "YQ== 0\nYg== 1\nYWI= 2";
    CHECK(tok_vocab_load_tiktoken(&v, (const uint8_t *)ok, strlen(ok), &err) == 0);
    CHECK_EQ_U(tok_vocab_lookup(&v, (const uint8_t *)"ab", 2), 2);
    CHECK_EQ_U(tok_vocab_lookup(&v, (const uint8_t *)"ba", 2), TOK_NO_ID);
    tok_vocab_free(&v);
}

struct thread_arg {
    const char *text;
    size_t len;
    struct tok_ids ids;
};

static void *encode_thread(void *p)
{
    struct thread_arg *a = p;
    for (int r = 0; r < 20; r++) {
        a->ids.len = 0;
        tok_encode(encs[1], a->text, a->len, TOK_SPECIAL_AS_TEXT, &a->ids, NULL);
    }
    return NULL;
}

static void test_concurrent_use(void)
{
    static char text[200000];
    for (size_t i = 0; i < sizeof text - 1; i++)
        text[i] = "The quick brown fox jumps over 13 lazy dogs.\n"[i % 45];
    struct thread_arg args[4];
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        args[t] = (struct thread_arg){text, sizeof text - 1, {0}};
        pthread_create(&th[t], NULL, encode_thread, &args[t]);
    }
    for (int t = 0; t < 4; t++)
        pthread_join(th[t], NULL);
    struct tok_ids one = {0};
    CHECK(tok_encode(encs[1], text, sizeof text - 1, TOK_SPECIAL_AS_TEXT, &one, NULL) == 0);
    for (int t = 0; t < 4; t++) {
        CHECK(args[t].ids.len == one.len &&
              memcmp(args[t].ids.data, one.data, one.len * sizeof *one.data) == 0);
        tok_ids_free(&args[t].ids);
    }
    tok_ids_free(&one);
}

int main(void)
{
    for (int e = 0; e < 4; e++) {
        struct fj_err err = {0};
        encs[e] = tok_encoding_new(enc_names[e], &err);
        if (encs[e] == NULL) {
            fprintf(stderr, "%s: %s\n", enc_names[e], err.msg);
            return 1;
        }
    }
    RUN(test_published_ids);
    RUN(test_round_trip_and_count);
    RUN(test_special_modes);
    RUN(test_errors);
    RUN(test_merge_strategies_agree);
    RUN(test_hostile_rank_files);
    RUN(test_concurrent_use);
    for (int e = 0; e < 4; e++)
        tok_encoding_free(encs[e]);
    return TEST_DONE();
}
