/* test_hf.c - unit tests of tokenizer.json support (src/tok/hf.c): malformed and unsupported
 * files are refused with a message naming the problem (and, under ASan, without a leak);
 * hand-computed merges on tiny tokenizers; added tokens; NFC against the examples of
 * UAX #15; tok_encoding_add_special; the merge loops on pair ranks. Id-for-id parity with
 * npm @huggingface/transformers on real files is tests/tok/hf_parity.js.
 *
 * The tiny tokenizers are written here as JSON: the 256 byte tokens (id = byte value, in the
 * byte-level alphabet of GPT-2's bytes_to_unicode, re-derived below from its definition),
 * plus what each test adds.
 */
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "core/buf.h"
#include "tok/nfc.h"
#include "tok/tok.h"
#include "tok/tok_internal.h"

/* The character GPT-2's byte-level alphabet uses for byte b, as UTF-8 into out (JSON-escaped
 * for '"' and '\\'). Printable Latin-1 stands for itself; the other 68 bytes are U+0100.. in
 * byte order. */
static void byte_char(int b, char out[4])
{
    int cp = b, n = 0;
    bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    if (!printable) {
        cp = 256;
        for (int k = 0; k < b; k++)
            cp += !((k >= 0x21 && k <= 0x7E) || (k >= 0xA1 && k <= 0xAC) || k >= 0xAE);
    }
    if (cp == '"' || cp == '\\') {
        out[n++] = '\\';
        out[n++] = (char)cp;
    } else if (cp < 0x80) {
        out[n++] = (char)cp;
    } else {
        out[n++] = (char)(0xC0 | (cp >> 6));
        out[n++] = (char)(0x80 | (cp & 0x3F));
    }
    out[n] = '\0';
}

/* The parts of a tiny tokenizer.json; NULL takes the default, OMIT leaves the key out. */
#define OMIT "\x01"
struct spec {
    const char *type;          /* model type: "\"BPE\"" */
    const char *model_extra;   /* more model fields, each followed by a comma */
    const char *vocab_extra;   /* more vocab entries, each preceded by a comma */
    const char *merges;        /* the merges list's contents */
    const char *added;         /* added_tokens' contents (OMIT "value": the whole value) */
    const char *normalizer;    /* "null" */
    const char *pre_tokenizer; /* GPT-2's ByteLevel */
    const char *decoder;       /* ByteLevel */
    int skip_byte;             /* a byte (not 0) whose token is left out, or 0 */
    const char *vocab;         /* the whole vocab value instead of the generated one */
};

static char *tiny_json(struct spec s)
{
    struct fj_buf b = {0};
    if (s.added != NULL && s.added[0] == OMIT[0]) /* OMIT followed by the whole value */
        fj_buf_printf(&b, "{\"version\": \"1.0\", \"added_tokens\": %s, ", s.added + 1);
    else
        fj_buf_printf(&b, "{\"version\": \"1.0\", \"added_tokens\": [%s], ",
                      s.added ? s.added : "");
    fj_buf_printf(&b, "\"normalizer\": %s, ", s.normalizer ? s.normalizer : "null");
    if (!(s.pre_tokenizer && strcmp(s.pre_tokenizer, OMIT) == 0))
        fj_buf_printf(&b, "\"pre_tokenizer\": %s, ",
                      s.pre_tokenizer ? s.pre_tokenizer
                                      : "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                                        "\"trim_offsets\": true, \"use_regex\": true}");
    fj_buf_printf(&b, "\"post_processor\": null, \"decoder\": %s, ",
                  s.decoder ? s.decoder : "{\"type\": \"ByteLevel\"}");
    fj_buf_printf(&b, "\"model\": {\"type\": %s, %s\"vocab\": ", s.type ? s.type : "\"BPE\"",
                  s.model_extra ? s.model_extra : "");
    if (s.vocab != NULL) {
        fj_buf_printf(&b, "%s", s.vocab);
    } else {
        fj_buf_printf(&b, "{");
        bool first = true;
        for (int byte = 0; byte < 256; byte++) {
            if (s.skip_byte != 0 && byte == s.skip_byte)
                continue;
            char ch[4];
            byte_char(byte, ch);
            fj_buf_printf(&b, "%s\"%s\": %d", first ? "" : ", ", ch, byte);
            first = false;
        }
        fj_buf_printf(&b, "%s}", s.vocab_extra ? s.vocab_extra : "");
    }
    if (!(s.merges && strcmp(s.merges, OMIT) == 0))
        fj_buf_printf(&b, ", \"merges\": [%s]", s.merges ? s.merges : "");
    fj_buf_printf(&b, "}}");
    return b.data;
}

static struct tok_encoding *tiny(struct spec s, struct fj_err *err)
{
    char *json = tiny_json(s);
    struct tok_encoding *enc = tok_encoding_from_hf_json(json, strlen(json), err);
    free(json);
    return enc;
}

#define SPEC(...) ((struct spec){__VA_ARGS__})

/* Encodes text and compares with want[0..n). */
static bool encodes_as(const struct tok_encoding *enc, const char *text, enum tok_special sp,
                       const uint32_t *want, size_t n)
{
    struct tok_ids ids = {0};
    struct fj_err err = {0};
    bool ok = tok_encode(enc, text, strlen(text), sp, &ids, &err) == 0 && ids.len == n &&
              (n == 0 || memcmp(ids.data, want, n * sizeof *want) == 0);
    if (!ok) {
        fprintf(stderr, "  %s: got", text);
        for (size_t i = 0; i < ids.len; i++)
            fprintf(stderr, " %u", ids.data[i]);
        fprintf(stderr, " (%s)\n", err.msg);
    }
    tok_ids_free(&ids);
    return ok;
}

#define ENCODES_AS(enc, text, sp, ...)                                                             \
    do {                                                                                           \
        const uint32_t want_[] = {__VA_ARGS__};                                                    \
        CHECK(encodes_as(enc, text, sp, want_, sizeof want_ / sizeof want_[0]));                   \
    } while (0)

/* hf-1: merges go by their order in the file, not by the ids of what they make. */
static void test_merge_order(void)
{
    struct fj_err err = {0};
    /* "ab" has the lower id, but the pair (b, c) is listed first: in "abc", b+c merges first,
     * and nothing joins a + bc. By ids (tiktoken's rule) it would be ab + c. */
    struct tok_encoding *enc =
        tiny(SPEC(.vocab_extra = ", \"ab\": 256, \"bc\": 257", .merges = "\"b c\", \"a b\""), &err);
    CHECK(enc != NULL);
    if (enc == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    ENCODES_AS(enc, "abc", TOK_SPECIAL_ALLOW, 'a', 257);
    ENCODES_AS(enc, "abab", TOK_SPECIAL_ALLOW, 256, 256);
    /* The leftmost of equal ranks: "bcbc" -> bc bc; "aab" -> a ab. */
    ENCODES_AS(enc, "bcbc", TOK_SPECIAL_ALLOW, 257, 257);
    ENCODES_AS(enc, "aab", TOK_SPECIAL_ALLOW, 'a', 256);
    ENCODES_AS(enc, "x abc", TOK_SPECIAL_ALLOW, 'x', ' ', 'a', 257);
    CHECK_EQ_U(tok_encoding_n_vocab(enc), 258);
    CHECK_STR(tok_encoding_name(enc), "tokenizer.json");
    tok_encoding_free(enc);
    /* No added tokens at all (added_tokens null): nothing is special, every mode agrees. */
    enc = tiny(SPEC(.added = OMIT "null"), &err);
    CHECK(enc != NULL);
    if (enc != NULL) {
        ENCODES_AS(enc, "<|x|>", TOK_SPECIAL_REJECT, '<', '|', 'x', '|', '>');
        ENCODES_AS(enc, "<|x|>", TOK_SPECIAL_ALLOW, '<', '|', 'x', '|', '>');
        CHECK(!tok_is_special(enc, 0) && !tok_is_special(enc, 255) &&
              tok_token_id(enc, "<", 1) == '<');
    }
    tok_encoding_free(enc);
    /* The same in the ["a", "b"] form of merges. */
    enc = tiny(SPEC(.vocab_extra = ", \"ab\": 256, \"bc\": 257",
                    .merges = "[\"b\", \"c\"], [\"a\", \"b\"]"),
               &err);
    CHECK(enc != NULL);
    if (enc != NULL)
        ENCODES_AS(enc, "abc", TOK_SPECIAL_ALLOW, 'a', 257);
    tok_encoding_free(enc);
}

/* hf-2: ignore_merges takes a piece that is a token whole; without it, a token that merging
 * cannot reach is not produced, and one that merging reaches is. */
static void test_ignore_merges(void)
{
    struct fj_err err = {0};
    const char *vocab = ", \"ab\": 256, \"abc\": 257, \"bc\": 258, \"abcd\": 259";
    /* abc is only reachable as a + bc (listed last); b c comes before a b... */
    const char *merges = "\"a b\", \"b c\", \"a bc\", \"abc d\"";
    struct tok_encoding *plain = tiny(SPEC(.vocab_extra = vocab, .merges = merges), &err);
    struct tok_encoding *ign = tiny(
        SPEC(.vocab_extra = vocab, .merges = merges, .model_extra = "\"ignore_merges\": true,"),
        &err);
    CHECK(plain != NULL && ign != NULL);
    if (plain == NULL || ign == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        tok_encoding_free(plain);
        tok_encoding_free(ign);
        return;
    }
    /* "abc": a b merges first (rank 0) -> ab c, which does not merge: [ab, c]. With
     * ignore_merges the piece is the token abc. */
    ENCODES_AS(plain, "abc", TOK_SPECIAL_ALLOW, 256, 'c');
    ENCODES_AS(ign, "abc", TOK_SPECIAL_ALLOW, 257);
    /* "abcd" is a token in both; merging it gives ab c d, so only ignore_merges takes it. */
    ENCODES_AS(plain, "abcd", TOK_SPECIAL_ALLOW, 256, 'c', 'd');
    ENCODES_AS(ign, "abcd", TOK_SPECIAL_ALLOW, 259);
    /* "bc" and "ab" are reachable: a piece spelling them is them either way. */
    ENCODES_AS(plain, "bc", TOK_SPECIAL_ALLOW, 258);
    ENCODES_AS(plain, "ab", TOK_SPECIAL_ALLOW, 256);
    tok_encoding_free(plain);
    tok_encoding_free(ign);
}

/* hf-3: added tokens, special or not, are found leftmost-longest; the three modes. */
static void test_added_tokens(void)
{
    struct fj_err err = {0};
    const char *added = "{\"id\": 300, \"content\": \"<|x|>\", \"special\": true, \"normalized\": "
                        "false}, {\"id\": 301, \"content\": \"<|x|>>\", \"special\": true}, "
                        "{\"id\": 302, \"content\": \"<y>\", \"special\": false, \"normalized\": "
                        "false}, {\"id\": 303, \"content\": \"zz\", \"special\": false}";
    struct tok_encoding *enc = tiny(SPEC(.added = added), &err);
    CHECK(enc != NULL);
    if (enc == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    ENCODES_AS(enc, "a<|x|>b<y>", TOK_SPECIAL_ALLOW, 'a', 300, 'b', 302);
    ENCODES_AS(enc, "<|x|>><|x|>", TOK_SPECIAL_ALLOW, 301, 300);
    /* "zz" has normalized true (the default of a non-special token): found in the stretches
     * between the raw tokens, after them. */
    ENCODES_AS(enc, "azzb<y>zz", TOK_SPECIAL_ALLOW, 'a', 303, 'b', 302, 303);
    ENCODES_AS(enc, "a<y", TOK_SPECIAL_ALLOW, 'a', '<', 'y');
    struct tok_ids ids = {0};
    CHECK(tok_encode(enc, "ab<y>", 5, TOK_SPECIAL_REJECT, &ids, &err) == FJ_ERR_SPECIAL);
    CHECK(strstr(err.msg, "<y>") != NULL && strstr(err.msg, "byte 2") != NULL);
    fj_err_clear(&err);
    CHECK(tok_encode(enc, "azz", 3, TOK_SPECIAL_REJECT, &ids, &err) == FJ_ERR_SPECIAL);
    fj_err_clear(&err);
    CHECK(tok_encode(enc, "plain", 5, TOK_SPECIAL_REJECT, &ids, &err) == 0 && ids.len == 5);
    tok_ids_free(&ids);
    /* As text: no added token at all (byte tokens here, as there are no merges). */
    ENCODES_AS(enc, "<y>zz", TOK_SPECIAL_AS_TEXT, '<', 'y', '>', 'z', 'z');
    /* Lookups. */
    CHECK(tok_token_id(enc, "<|x|>", 5) == 300);
    CHECK(tok_token_id(enc, "<y>", 3) == 302);
    CHECK(tok_token_id(enc, "a", 1) == 'a');
    CHECK(tok_token_id(enc, "ab", 2) == -1);
    CHECK(tok_token_id(enc, "", 0) == -1);
    CHECK(tok_is_special(enc, 300) && tok_is_special(enc, 302) && !tok_is_special(enc, 'a'));
    CHECK(!tok_is_special(enc, 299));
    const uint8_t *bytes;
    size_t len;
    CHECK(tok_token_bytes(enc, 301, &bytes, &len) == 0 && len == 6 &&
          memcmp(bytes, "<|x|>>", 6) == 0);
    CHECK(tok_token_bytes(enc, 299, &bytes, &len) == FJ_ERR_NOT_FOUND);
    CHECK_EQ_U(tok_encoding_n_vocab(enc), 304);
    tok_encoding_free(enc);
    /* An added token with the id and text of a vocab token (GPT-2's <|endoftext|>). */
    enc = tiny(SPEC(.vocab_extra = ", \"<|e|>\": 256", .added = "{\"id\": 256, \"content\": "
                                                                "\"<|e|>\", \"special\": true}"),
               &err);
    CHECK(enc != NULL);
    if (enc != NULL) {
        ENCODES_AS(enc, "a<|e|>", TOK_SPECIAL_ALLOW, 'a', 256);
        CHECK(tok_token_id(enc, "<|e|>", 5) == 256 && tok_is_special(enc, 256));
    }
    tok_encoding_free(enc);
}

/* hf-4: NFC, against the examples of UAX #15 (figures 3-6) and the Hangul algorithm. */
static void test_nfc(void)
{
    static const char *const cases[][2] = {
        {"\xE2\x84\xAB", "\xC3\x85"},                     /* U+212B ANGSTROM -> U+00C5 */
        {"\xE2\x84\xA6", "\xCE\xA9"},                     /* U+2126 OHM -> U+03A9 */
        {"A\xCC\x8A", "\xC3\x85"},                        /* A + ring above -> U+00C5 */
        {"\xE1\xB8\x8B\xCC\xA3", "\xE1\xB8\x8D\xCC\x87"}, /* U+1E0B U+0323 -> U+1E0D U+0307 */
        {"q\xCC\x87\xCC\xA3", "q\xCC\xA3\xCC\x87"},       /* q + dot above + dot below: reordered */
        {"\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", "\xEA\xB0\x81"}, /* jamo G A G -> U+AC01 */
        {"\xEA\xB0\x80\xE1\x86\xA8", "\xEA\xB0\x81"},             /* U+AC00 + jamo G -> U+AC01 */
        {"e\xCC\x81\xCC\x81", "\xC3\xA9\xCC\x81"},                /* e + acute + acute */
        {"\xEF\xAC\x80", "\xEF\xAC\x80"},             /* U+FB00 ff: compatibility only, kept */
        {"\xE0\xA5\x98", "\xE0\xA4\x95\xE0\xA4\xBC"}, /* U+0958: composition exclusion */
        {"plain ascii", "plain ascii"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fj_buf out = {0};
        const uint8_t *in = (const uint8_t *)cases[i][0];
        CHECK(tok_nfc(in, strlen(cases[i][0]), &out) == 0);
        CHECK(out.len == strlen(cases[i][1]) && memcmp(out.data, cases[i][1], out.len) == 0);
        CHECK(tok_nfc_quick(in, strlen(cases[i][0])) == (strcmp(cases[i][0], cases[i][1]) == 0));
        fj_buf_free(&out);
    }
    /* A long run of marks in reverse class order is sorted in linear time, stably. */
    size_t n = 200000;
    char *marks = malloc(3 * n + 1);
    marks[0] = 'a';
    for (size_t i = 0; i < n; i++)
        memcpy(marks + 1 + 2 * i, i % 2 ? "\xCC\xA3" : "\xCC\x81", 2); /* acute 230, dot 220 */
    struct fj_buf out = {0};
    CHECK(tok_nfc((const uint8_t *)marks, 1 + 2 * n, &out) == 0);
    /* a + dot below composes (U+1EA1); then the other dots, then the acutes. */
    CHECK(out.len == 3 + 2 * (n - 1) && memcmp(out.data, "\xE1\xBA\xA1\xCC\xA3", 5) == 0 &&
          memcmp(out.data + out.len - 2, "\xCC\x81", 2) == 0);
    free(marks);
    fj_buf_free(&out);
    /* Through an encoding with the NFC normalizer: the decomposed spelling encodes as the
     * composed one; an added token keeps a combining mark after it from joining it. */
    struct fj_err err = {0};
    struct tok_encoding *enc =
        tiny(SPEC(.normalizer = "{\"type\": \"NFC\"}",
                  .added = "{\"id\": 256, \"content\": \"<e>\", \"special\": true, "
                           "\"normalized\": false}"),
             &err);
    CHECK(enc != NULL);
    if (enc != NULL) {
        ENCODES_AS(enc, "e\xCC\x81", TOK_SPECIAL_ALLOW, 0xC3, 0xA9);
        ENCODES_AS(enc, "<e>\xCC\xB8", TOK_SPECIAL_ALLOW, 256, 0xCC, 0xB8);
        /* As text the whole is normalized: > + U+0338 is U+226F. */
        ENCODES_AS(enc, "<e>\xCC\xB8", TOK_SPECIAL_AS_TEXT, '<', 'e', 0xE2, 0x89, 0xAF);
    }
    tok_encoding_free(enc);
}

struct bad_case {
    const char *what;
    struct spec spec;
    int code;
    const char *msg; /* a substring of the message */
};

/* hf-5: each malformed or unsupported file is refused with the right code and a message
 * naming the problem. */
static void test_refused(void)
{
    const char *bl = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}";
    char split_unknown[512], split_removed[512], split_string[512];
    snprintf(split_unknown, sizeof split_unknown,
             "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
             "{\"Regex\": \"\\\\p{L}+|\\\\s+|.\"}, \"behavior\": \"Isolated\", \"invert\": false}, "
             "%s]}",
             bl);
    snprintf(split_removed, sizeof split_removed,
             "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
             "{\"Regex\": \"'s|'t|'re|'ve|'m|'ll|'d| ?\\\\p{L}+| ?\\\\p{N}+| "
             "?[^\\\\s\\\\p{L}\\\\p{N}]+|\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Removed\", "
             "\"invert\": false}, %s]}",
             bl);
    snprintf(split_string, sizeof split_string,
             "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
             "{\"String\": \" \"}, \"behavior\": \"Isolated\", \"invert\": false}, %s]}",
             bl);
    const char *llama2_normalizer =
        "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": "
        "\"\xE2\x96\x81\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, "
        "\"content\": \"\xE2\x96\x81\"}]}";
    const char *llama2_decoder =
        "{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": "
        "\"\xE2\x96\x81\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": "
        "\"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]}";
    const struct bad_case cases[] = {
        {"a vocab that is a list", SPEC(.vocab = "[\"a\", \"b\"]"), FJ_ERR_FORMAT,
         "model.vocab is of the wrong type"},
        {"a string id", SPEC(.vocab_extra = ", \"ab\": \"256\""), FJ_ERR_FORMAT,
         "not an integer id"},
        {"a negative id", SPEC(.vocab_extra = ", \"ab\": -1"), FJ_ERR_FORMAT, "ids must be in"},
        {"a huge id", SPEC(.vocab_extra = ", \"ab\": 1000000000000"), FJ_ERR_FORMAT,
         "ids must be in"},
        {"an id of 2^24 - 1", SPEC(.vocab_extra = ", \"ab\": 16777215"), FJ_ERR_FORMAT,
         "ids must be in"},
        {"sparse ids", SPEC(.vocab_extra = ", \"ab\": 100000"), FJ_ERR_FORMAT, "ids up to 100000"},
        {"a duplicate id", SPEC(.vocab_extra = ", \"ab\": 97"), FJ_ERR_FORMAT,
         "gives id 97 to two tokens"},
        {"a duplicate key", SPEC(.vocab_extra = ", \"a\": 300"), FJ_ERR_FORMAT, "duplicate"},
        {"a fractional id", SPEC(.vocab_extra = ", \"ab\": 2.5"), FJ_ERR_FORMAT,
         "not an integer id"},
        {"a token outside the alphabet", SPEC(.vocab_extra = ", \"\xE2\x82\xAC\": 256"),
         FJ_ERR_INVALID, "byte-level alphabet"},
        {"an empty token", SPEC(.vocab_extra = ", \"\": 256"), FJ_ERR_FORMAT, "is empty"},
        {"a missing byte", SPEC(.skip_byte = 'q'), FJ_ERR_FORMAT, "lacks the token of byte 0x71"},
        {"an empty vocab", SPEC(.vocab = "{}"), FJ_ERR_FORMAT, "model.vocab is empty"},
        {"no vocab", SPEC(.vocab = "null"), FJ_ERR_FORMAT, "model.vocab"},
        {"no merges", SPEC(.merges = OMIT), FJ_ERR_FORMAT, "model.merges is missing"},
        {"merges not a list", SPEC(.merges = OMIT, .model_extra = "\"merges\": {},"), FJ_ERR_FORMAT,
         "model.merges is of the wrong type"},
        {"a merge without a space", SPEC(.merges = "\"ab\""), FJ_ERR_FORMAT,
         "model.merges[0] \"ab\" is not two tokens"},
        {"a merge of three", SPEC(.merges = "\"a b c\""), FJ_ERR_FORMAT, "is not two tokens"},
        {"a merge of one", SPEC(.merges = "[\"a\"]"), FJ_ERR_FORMAT, "model.merges[0] is neither"},
        {"a merge that is a number", SPEC(.vocab_extra = ", \"ab\": 256", .merges = "\"a b\", 5"),
         FJ_ERR_FORMAT, "model.merges[1] is neither"},
        {"a merge naming an unknown token",
         SPEC(.vocab_extra = ", \"ab\": 256", .merges = "\"a b\", \"ab zz\""), FJ_ERR_FORMAT,
         "model.merges[1] names \"zz\", which is not in the vocab"},
        {"a merge making an unknown token", SPEC(.merges = "\"x y\""), FJ_ERR_FORMAT,
         "makes a token that is not in the vocab"},
        {"a merge of a token outside the alphabet", SPEC(.merges = "\"\xE2\x96\x81 a\""),
         FJ_ERR_INVALID, "byte-level alphabet"},
        {"added_tokens not a list", SPEC(.added = OMIT "{}"), FJ_ERR_FORMAT,
         "added_tokens is not a list"},
        {"an added token without content", SPEC(.added = "{\"id\": 300}"), FJ_ERR_FORMAT,
         "added_tokens[0] lacks"},
        {"an added token with a string id", SPEC(.added = "{\"id\": \"300\", \"content\": \"x\"}"),
         FJ_ERR_FORMAT, "added_tokens[0] lacks"},
        {"an added token with a huge id",
         SPEC(.added = "{\"id\": 99999999999, \"content\": \"<x>\"}"), FJ_ERR_FORMAT,
         "out of range"},
        {"an added token far past the vocab",
         SPEC(.added = "{\"id\": 5000000, \"content\": \"<x>\"}"), FJ_ERR_FORMAT,
         "ids up to 5000000"},
        {"an added token with lstrip",
         SPEC(.added = "{\"id\": 300, \"content\": \"<mask>\", \"lstrip\": true}"), FJ_ERR_INVALID,
         "added token \"<mask>\": lstrip is not supported"},
        {"an added token with rstrip",
         SPEC(.added = "{\"id\": 300, \"content\": \"<m>\", \"rstrip\": true}"), FJ_ERR_INVALID,
         "rstrip is not supported"},
        {"an added token with single_word",
         SPEC(.added = "{\"id\": 300, \"content\": \"<m>\", \"single_word\": true}"),
         FJ_ERR_INVALID, "single_word is not supported"},
        {"a special flag that is a string",
         SPEC(.added = "{\"id\": 300, \"content\": \"<m>\", \"special\": \"yes\"}"), FJ_ERR_FORMAT,
         "special is not true or false"},
        {"two added tokens with one id",
         SPEC(.added = "{\"id\": 300, \"content\": \"<m>\"}, {\"id\": 300, \"content\": \"<n>\"}"),
         FJ_ERR_FORMAT, "repeats the id"},
        {"two added tokens with one content",
         SPEC(.added = "{\"id\": 300, \"content\": \"<m>\"}, {\"id\": 301, \"content\": \"<m>\"}"),
         FJ_ERR_FORMAT, "repeats the content"},
        {"an added token on another token's id",
         SPEC(.added = "{\"id\": 97, \"content\": \"<m>\"}"), FJ_ERR_FORMAT,
         "which is another vocab token"},
        {"a Unigram model", SPEC(.type = "\"Unigram\""), FJ_ERR_INVALID,
         "Unigram: SentencePiece-style tokenizers (Llama 2, TinyLlama, Mistral v0.1) are not "
         "supported yet"},
        {"a WordPiece model", SPEC(.type = "\"WordPiece\""), FJ_ERR_INVALID,
         "model type WordPiece is not supported"},
        {"a model without a type", SPEC(.type = "null"), FJ_ERR_FORMAT, "model has no type"},
        {"BPE with byte_fallback", SPEC(.model_extra = "\"byte_fallback\": true,"), FJ_ERR_INVALID,
         "byte_fallback: SentencePiece-style"},
        {"a Metaspace pre-tokenizer",
         SPEC(.pre_tokenizer = "{\"type\": \"Metaspace\", \"replacement\": \"\xE2\x96\x81\"}"),
         FJ_ERR_INVALID, "pre_tokenizer Metaspace: SentencePiece-style"},
        {"Llama 2's normalizer and decoder",
         SPEC(.normalizer = llama2_normalizer, .pre_tokenizer = "null", .decoder = llama2_decoder),
         FJ_ERR_INVALID, "normalizer Sequence: SentencePiece-style"},
        {"an unknown split regex", SPEC(.pre_tokenizer = split_unknown), FJ_ERR_INVALID,
         "split regex \"\\p{L}+|\\s+|.\" is not one forja has a scanner for"},
        {"Split with behavior Removed", SPEC(.pre_tokenizer = split_removed), FJ_ERR_INVALID,
         "Split behavior Removed is not supported"},
        {"Split on a string", SPEC(.pre_tokenizer = split_string), FJ_ERR_INVALID,
         "Split on the string \" \" is not supported"},
        {"ByteLevel with add_prefix_space",
         SPEC(.pre_tokenizer = "{\"type\": \"ByteLevel\", \"add_prefix_space\": true}"),
         FJ_ERR_INVALID, "add_prefix_space true is not supported"},
        {"ByteLevel without use_regex", SPEC(.pre_tokenizer = bl), FJ_ERR_INVALID,
         "without use_regex"},
        {"no pre-tokenizer", SPEC(.pre_tokenizer = OMIT), FJ_ERR_INVALID, "no pre_tokenizer"},
        {"a Whitespace pre-tokenizer", SPEC(.pre_tokenizer = "{\"type\": \"Whitespace\"}"),
         FJ_ERR_INVALID, "pre_tokenizer Whitespace is not supported"},
        {"a Lowercase normalizer", SPEC(.normalizer = "{\"type\": \"Lowercase\"}"), FJ_ERR_INVALID,
         "normalizer Lowercase is not supported"},
        {"an NFKC normalizer in a Sequence",
         SPEC(.normalizer = "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFKC\"}]}"),
         FJ_ERR_INVALID, "normalizer NFKC is not supported"},
        {"a WordPiece decoder", SPEC(.decoder = "{\"type\": \"WordPiece\"}"), FJ_ERR_INVALID,
         "decoder WordPiece is not supported"},
        {"no decoder", SPEC(.decoder = "null"), FJ_ERR_INVALID, "decoder null is not supported"},
        {"dropout", SPEC(.model_extra = "\"dropout\": 0.1,"), FJ_ERR_INVALID,
         "dropout is not supported"},
        {"a continuing_subword_prefix",
         SPEC(.model_extra = "\"continuing_subword_prefix\": \"##\","), FJ_ERR_INVALID,
         "continuing_subword_prefix"},
        {"ignore_merges as a string", SPEC(.model_extra = "\"ignore_merges\": \"yes\","),
         FJ_ERR_FORMAT, "model.ignore_merges is not true or false"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fj_err err = {0};
        struct tok_encoding *enc = tiny(cases[i].spec, &err);
        bool ok = enc == NULL && err.code == cases[i].code &&
                  strstr(err.msg, cases[i].msg) != NULL &&
                  strncmp(err.msg, "tokenizer.json: ", 16) == 0;
        CHECK(ok);
        if (!ok)
            fprintf(stderr, "  %s: code %d, \"%s\"\n", cases[i].what, err.code, err.msg);
        tok_encoding_free(enc);
    }
    /* Not JSON, not an object, no model. */
    static const char *const texts[][2] = {
        {"", "invalid JSON"},
        {"[1, 2]", "not a JSON object"},
        {"{}", "no \"model\" object"},
        {"{\"model\": 5}", "no \"model\" object"},
        {"{\"model\": {\"type\": \"BPE\"", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        struct fj_err err = {0};
        CHECK(tok_encoding_from_hf_json(texts[i][0], strlen(texts[i][0]), &err) == NULL);
        CHECK(err.code == FJ_ERR_FORMAT && strstr(err.msg, texts[i][1]) != NULL);
    }
}

/* hf-6: every truncation of a valid file fails cleanly. */
static void test_truncated(void)
{
    char *json = tiny_json(
        SPEC(.vocab_extra = ", \"ab\": 256, \"bc\": 257", .merges = "\"b c\", [\"a\", \"b\"]",
             .added = "{\"id\": 300, \"content\": \"<|x|>\", \"special\": true}"));
    size_t n = strlen(json);
    struct fj_err err = {0};
    struct tok_encoding *whole = tok_encoding_from_hf_json(json, n, &err);
    CHECK(whole != NULL);
    tok_encoding_free(whole);
    for (size_t cut = 0; cut < n; cut += 3) {
        fj_err_clear(&err);
        struct tok_encoding *enc = tok_encoding_from_hf_json(json, cut, &err);
        CHECK(enc == NULL && err.code == FJ_ERR_FORMAT);
        tok_encoding_free(enc);
    }
    free(json);
}

/* hf-7: files named by path: errors name the path. */
static void test_open(void)
{
    struct fj_err err = {0};
    CHECK(tok_encoding_open_hf("/nonexistent/dir/tokenizer.json", &err) == NULL);
    CHECK(err.code == FJ_ERR_IO && strstr(err.msg, "/nonexistent/dir/tokenizer.json") != NULL);
    char path[] = "/tmp/forja-test-hf-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    FILE *f = fdopen(fd, "w");
    char *json = tiny_json(SPEC(.merges = "\"a zz\""));
    fputs(json, f);
    fclose(f);
    free(json);
    fj_err_clear(&err);
    CHECK(tok_encoding_open_hf(path, &err) == NULL);
    CHECK(err.code == FJ_ERR_FORMAT && strncmp(err.msg, path, strlen(path)) == 0 &&
          strstr(err.msg, "\"zz\"") != NULL);
    remove(path);
}

/* hf-8: tok_encoding_add_special, as the built-in model uses it. */
static void test_add_special(void)
{
    struct fj_err err = {0};
    struct tok_encoding *enc = tok_encoding_new("cl100k_base", &err);
    CHECK(enc != NULL);
    if (enc == NULL)
        return;
    CHECK(tok_encoding_add_special(enc, "<|im_start|>", 100264, &err) == 0);
    CHECK(tok_encoding_add_special(enc, "<|im_end|>", 100265, &err) == 0);
    /* npm tiktoken, get_encoding("cl100k_base", {"<|im_start|>": 100264, "<|im_end|>": 100265})
     * .encode("<|im_start|>user\nhello<|im_end|>", "all"). */
    ENCODES_AS(enc, "<|im_start|>user\nhello<|im_end|>", TOK_SPECIAL_ALLOW, 100264, 882, 198, 15339,
               100265);
    CHECK(tok_token_id(enc, "<|im_end|>", 10) == 100265 && tok_is_special(enc, 100265));
    CHECK(tok_token_id(enc, "hello", 5) == 15339 && !tok_is_special(enc, 15339));
    CHECK_EQ_U(tok_encoding_n_vocab(enc), 100277);
    struct tok_ids ids = {0};
    CHECK(tok_encode(enc, "x<|im_end|>", 11, TOK_SPECIAL_REJECT, &ids, &err) == FJ_ERR_SPECIAL);
    fj_err_clear(&err);
    CHECK(tok_encoding_add_special(enc, "<|endoftext|>", 100300, &err) == FJ_ERR_INVALID);
    fj_err_clear(&err);
    CHECK(tok_encoding_add_special(enc, "<|new|>", 100257, &err) == FJ_ERR_INVALID);
    fj_err_clear(&err);
    CHECK(tok_encoding_add_special(enc, "<|new|>", 15339, &err) == FJ_ERR_INVALID);
    CHECK(strstr(err.msg, "15339") != NULL);
    fj_err_clear(&err);
    CHECK(tok_encoding_add_special(enc, "", 100300, &err) == FJ_ERR_INVALID);
    fj_err_clear(&err);
    CHECK(tok_encoding_add_special(enc, "\xFF", 100300, &err) == FJ_ERR_INVALID);
    fj_err_clear(&err);
    CHECK(tok_encoding_add_special(enc, "<|big|>", 1u << 24, &err) == FJ_ERR_RANGE);
    fj_err_clear(&err);
    CHECK(tok_encoding_add_special(enc, "[new]", 100300, &err) == 0);
    CHECK_EQ_U(tok_encoding_n_vocab(enc), 100301);
    ENCODES_AS(enc, "a[new]", TOK_SPECIAL_ALLOW, 64, 100300);
    tok_ids_free(&ids);
    tok_encoding_free(enc);
}

/* hf-9: a written tokenizer.json loads back and tokenizes as the encoding it came from; and
 * on pair ranks both merge loops choose alike. (The independent check of written files is
 * hf_parity.js: transformers.js loading them agrees with npm tiktoken.) */
static void test_round_trip(void)
{
    struct fj_err err = {0};
    struct tok_encoding *cl = tok_encoding_new("cl100k_base", &err);
    struct fj_buf json = {0};
    CHECK(cl != NULL && tok_encoding_add_special(cl, "<|im_start|>", 100264, &err) == 0);
    CHECK(tok_encoding_to_hf_json(cl, &json, &err) == 0);
    struct tok_encoding *hf = tok_encoding_from_hf_json(json.data, json.len, &err);
    CHECK(hf != NULL);
    if (cl == NULL || hf == NULL) {
        fprintf(stderr, "  %s\n", err.msg);
        tok_encoding_free(cl);
        tok_encoding_free(hf);
        fj_buf_free(&json);
        return;
    }
    CHECK_EQ_U(tok_encoding_n_vocab(hf), tok_encoding_n_vocab(cl));
    CHECK(hf->merges != NULL && hf->whole == NULL && hf->pattern == TOK_PATTERN_CL100K);
    static const char *const pieces[] = {"a",
                                         "a",
                                         "b",
                                         "c",
                                         "e",
                                         "e",
                                         "i",
                                         "n",
                                         "o",
                                         "r",
                                         "s",
                                         "t",
                                         " ",
                                         " ",
                                         "\n",
                                         "\t",
                                         "'",
                                         ".",
                                         ",",
                                         "0",
                                         "1",
                                         "\xC3\xA9",
                                         "\xE4\xB8\xAD",
                                         "\xF0\x9F\x98\x80",
                                         "<|im_start|>",
                                         "<|endoftext|>"};
    uint32_t x = 777;
    for (int round = 0; round < 2000; round++) {
        char text[TOK_BPE_SMALL + 1];
        x = x * 1103515245u + 12345u;
        size_t want = 2 + (x >> 8) % (TOK_BPE_SMALL - 16), n = 0;
        while (n < want) {
            x = x * 1103515245u + 12345u;
            const char *p = pieces[(x >> 16) % (sizeof pieces / sizeof pieces[0])];
            memcpy(text + n, p, strlen(p));
            n += strlen(p);
        }
        text[n] = '\0';
        struct tok_ids a = {0}, b = {0}, c = {0}, d = {0};
        struct tok_sink sc = {&c, 0}, sd = {&d, 0};
        CHECK(tok_encode(cl, text, n, TOK_SPECIAL_ALLOW, &a, NULL) == 0);
        CHECK(tok_encode(hf, text, n, TOK_SPECIAL_ALLOW, &b, NULL) == 0);
        CHECK(a.len == b.len && memcmp(a.data, b.data, a.len * sizeof *a.data) == 0);
        size_t m = n < TOK_BPE_SMALL ? n : TOK_BPE_SMALL; /* the merge loops take any bytes */
        CHECK(tok_bpe_merge_small(&hf->vocab, hf->merges, (uint8_t *)text, m, &sc) == 0);
        CHECK(tok_bpe_merge_large(&hf->vocab, hf->merges, (uint8_t *)text, m, &sd) == 0);
        CHECK(c.len == d.len && memcmp(c.data, d.data, c.len * sizeof *c.data) == 0);
        tok_ids_free(&a);
        tok_ids_free(&b);
        tok_ids_free(&c);
        tok_ids_free(&d);
    }
    /* An encoding read from a tokenizer.json is written back with its own merges. */
    struct fj_buf again = {0};
    CHECK(tok_encoding_to_hf_json(hf, &again, &err) == 0);
    CHECK(again.len == json.len && memcmp(again.data, json.data, json.len) == 0);
    fj_buf_free(&again);
    fj_buf_free(&json);
    tok_encoding_free(hf);
    tok_encoding_free(cl);
    /* A tiny file without ignore_merges and with NFC keeps both through a round trip. */
    struct tok_encoding *t =
        tiny(SPEC(.vocab_extra = ", \"ab\": 256, \"bc\": 257", .merges = "\"b c\", \"a b\"",
                  .normalizer = "{\"type\": \"NFC\"}"),
             &err);
    CHECK(t != NULL && tok_encoding_to_hf_json(t, &json, &err) == 0);
    struct tok_encoding *t2 = t ? tok_encoding_from_hf_json(json.data, json.len, &err) : NULL;
    CHECK(t2 != NULL && t2->nfc && t2->whole != NULL);
    if (t2 != NULL)
        ENCODES_AS(t2, "abc", TOK_SPECIAL_ALLOW, 'a', 257);
    tok_encoding_free(t);
    tok_encoding_free(t2);
    fj_buf_free(&json);
}

int main(void)
{
    RUN(test_merge_order);
    RUN(test_ignore_merges);
    RUN(test_added_tokens);
    RUN(test_nfc);
    RUN(test_refused);
    RUN(test_truncated);
    RUN(test_open);
    RUN(test_add_special);
    RUN(test_round_trip);
    return TEST_DONE();
}
