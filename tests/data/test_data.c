/* test_data.c - unit tests of data/: the line reader's edge cases (CRLF, byte order mark,
 * missing last newline, overlong lines, tiny blocks), the distribution statistics against a
 * brute-force computation over the sorted values, the format rules line by line, and that
 * a scan gives identical reports on 1 and 2 threads, the prompt/completion and preference
 * formats and the one-format-per-file rule. The lab's numbers themselves are
 * checked end to end against its expected output and numpy (tests/cli/). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../test.h"
#include "data/data.h"

static char tmpdir[] = "/tmp/forja-test-data-XXXXXX";

static const char *write_tmp(const char *name, const void *bytes, size_t n)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    fwrite(bytes, 1, n, f);
    fclose(f);
    return path;
}

/* Reads every line of a file with the given block target and max line; returns the count. */
static size_t read_lines(const char *path, size_t target, size_t max_line, struct data_line *out,
                         char texts[][64], size_t cap)
{
    struct fj_err err = {0};
    struct data_reader *r = data_reader_open(path, max_line, &err);
    CHECK(r != NULL);
    if (r == NULL)
        return 0;
    struct data_block b = {0};
    size_t n = 0;
    while (data_reader_next(r, &b, target, &err) == 1) {
        for (size_t i = 0; i < b.n_lines && n < cap; i++, n++) {
            out[n] = b.lines[i];
            size_t len = b.lines[i].flags ? 0 : b.lines[i].len;
            snprintf(texts[n], 64, "%.*s", (int)(len < 63 ? len : 63), b.buf + b.lines[i].off);
        }
    }
    CHECK(err.code == 0);
    data_block_free(&b);
    data_reader_close(r);
    return n;
}

static void test_reader(void)
{
    struct data_line l[16];
    char t[16][64];
    const char crlf[] = "\xEF\xBB\xBF{\"a\":1}\r\n\r\nsecond\nlast-no-newline";
    const char *p = write_tmp("crlf.jsonl", crlf, sizeof crlf - 1);
    for (size_t target = 1; target <= 4096; target *= 64) {
        size_t n = read_lines(p, target, 1 << 20, l, t, 16);
        CHECK_EQ_U(n, 4);
        CHECK_STR(t[0], "{\"a\":1}"); /* BOM skipped, CR dropped */
        CHECK_STR(t[1], "");
        CHECK_STR(t[2], "second");
        CHECK_STR(t[3], "last-no-newline");
        CHECK_EQ_U(l[3].number, 4);
    }
    /* A line over the limit is reported with its length, never stored; numbering goes on. */
    char big[5000];
    memset(big, 'x', sizeof big);
    big[2000] = '\n';
    big[sizeof big - 1] = '\n';
    p = write_tmp("long.jsonl", big, sizeof big);
    size_t n = read_lines(p, 1, 1000, l, t, 16);
    CHECK_EQ_U(n, 2);
    CHECK(l[0].flags == DATA_LINE_TOO_LONG && l[0].len == 2000);
    CHECK(l[1].flags == DATA_LINE_TOO_LONG && l[1].len == 2998 && l[1].number == 2);
    /* An empty file has no lines; a directory or a missing file cannot be opened. */
    p = write_tmp("empty.jsonl", "", 0);
    CHECK_EQ_U(read_lines(p, 1024, 1024, l, t, 16), 0);
    struct fj_err err = {0};
    CHECK(data_reader_open(tmpdir, 1024, &err) == NULL && strstr(err.msg, "directory"));
    fj_err_clear(&err);
    CHECK(data_reader_open("/nonexistent/x.jsonl", 1024, &err) == NULL && err.code == FJ_ERR_IO);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void test_distribution(void)
{
    uint32_t x = 7;
    for (int round = 0; round < 200; round++) {
        size_t n = 1 + (size_t)round * 7 % 500;
        uint64_t *v = malloc(n * sizeof *v);
        struct data_hist h = {0};
        uint64_t sum = 0;
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            v[i] = (x >> 16) % (round % 3 == 0 ? 5 : 100000);
            sum += v[i];
            CHECK(data_hist_add(&h, v[i], 1) == 0);
        }
        qsort(v, n, sizeof *v, cmp_u64);
        struct data_dist d;
        CHECK(data_hist_dist(&h, &d) == 0);
        CHECK_EQ_U(d.n, n);
        CHECK_EQ_U(d.min, v[0]);
        CHECK_EQ_U(d.max, v[n - 1]);
        CHECK(d.mean == (double)sum / (double)n);
        double median = n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2;
        CHECK(d.median == median);
        data_hist_free(&h);
        free(v);
    }
    struct data_hist empty = {0};
    struct data_dist d;
    CHECK(data_hist_dist(&empty, &d) == 0 && d.n == 0);
}

/* Checks one line and returns the problems' text, joined by " | ". */
static const char *problems_of(const struct tok_encoding *enc, const char *line,
                               struct data_line_result *res)
{
    static char out[2048];
    struct data_problems p = {.limit = 50};
    struct data_check_opts opts = {enc, TOK_SPECIAL_REJECT, 60};
    struct fj_err err = {0};
    CHECK(data_check_line(line, strlen(line), 7, &opts, res, &p, &err) == 0);
    out[0] = '\0';
    for (size_t i = 0; i < p.len; i++) {
        CHECK_EQ_U(p.items[i].line, 7);
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s%s", i ? " | " : "",
                 p.items[i].severity == DATA_ERROR ? "E:" : "W:", p.items[i].message);
    }
    data_problems_free(&p);
    return out;
}

static void test_rules(const struct tok_encoding *enc)
{
    struct data_line_result r;
    const char *ok =
        "{\"messages\":[{\"role\":\"system\",\"content\":\"hi\"},{\"role\":\"user\","
        "\"content\":\"q\",\"name\":\"bob\"},{\"role\":\"assistant\",\"content\":\"a\","
        "\"weight\":1}]}";
    CHECK_STR(problems_of(enc, ok, &r), "");
    CHECK(r.counted);
    /* 3 messages x 3 + "system" "hi" "user" "q" "bob" "assistant" "a" (1 token each) + 1 for
     * the name + 3 = 20; the assistant's content is 1 token. */
    CHECK_EQ_U(r.total, 20);
    CHECK_EQ_U(r.assistant, 1);

    struct {
        const char *line, *want;
    } cases[] = {
        {"[1,2]", "E:expected a JSON object, found an array"},
        {"{\"messages\": 5}", "E:\"messages\" is an integer, not a list"},
        {"{\"text\":\"a\",\"label\":\"b\"}", "E:no \"messages\" list"},
        {"{\"messages\":[]}", "E:\"messages\" is empty"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}", "E:no assistant message"},
        {"{\"messages\":[{\"role\":\"robot\",\"content\":\"q\"},{\"role\":\"assistant\","
         "\"content\":\"a\"}]}",
         "E:messages[0].role \"robot\" is not one of"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":3},{\"role\":\"assistant\",\"content\":"
         "\"a\"}]}",
         "E:messages[0].content is an integer, not a string"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\",\"weight\":1},{\"role\":"
         "\"assistant\",\"content\":\"a\"}]}",
         "E:messages[0] has a \"weight\"; only assistant messages may"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":"
         "\"a\",\"weight\":2}]}",
         "E:messages[1].weight must be 0 or 1"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":"
         "\"a\",\"weight\":0}]}",
         "W:every assistant message has weight 0"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\",\"mood\":\"x\"},{\"role\":"
         "\"assistant\",\"content\":\"a\"}]}",
         "W:messages[0] has an unknown key \"mood\""},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"<|endoftext|>\"},{\"role\":\"assistant\","
         "\"content\":\"a\"}]}",
         "E:messages[0].content: text contains the special token <|endoftext|> at byte 0"},
        {"{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[]}]}", ""},
        {"{\"messages\":[{\"role\":\"assistant\"}]}", "E:messages[0] has no \"content\""},
        {"   ", "W:blank line (skipped)"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":"
         "\""
         "a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a "
         "a a a a a a\"}]}",
         /* 2 x 3 + "user" "q" "assistant" (1 each) + 50 tokens ("a" then 49 " a") + 3 */
         "W:62 tokens, more than the context of 60"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = problems_of(enc, cases[i].line, &r);
        if (cases[i].want[0] == '\0')
            CHECK_STR(got, "");
        else if (strstr(got, cases[i].want) != got) {
            fprintf(stderr, "  case %zu: got \"%s\"\n", i, got);
            CHECK(!"problem text");
        }
    }
    /* JSON errors carry the character column; invalid UTF-8 its own. */
    struct data_problems p = {.limit = 5};
    struct data_check_opts opts = {enc, TOK_SPECIAL_REJECT, 0};
    struct fj_err err = {0};
    const char *trunc = "{\"messages\": [{\"role\": \"us";
    CHECK(data_check_line(trunc, strlen(trunc), 3, &opts, &r, &p, &err) == 0);
    CHECK(p.len == 1 && p.items[0].column > 0 && strstr(p.items[0].message, "invalid JSON"));
    const char bad[] = "{\"m\xC3\xA9\": \"\xFF\"}";
    CHECK(data_check_line(bad, sizeof bad - 1, 4, &opts, &r, &p, &err) == 0);
    /* 0xFF is the 9th character: { " m é " : space " 0xFF */
    CHECK(p.len == 2 && p.items[1].column == 9 && strstr(p.items[1].message, "UTF-8"));
    CHECK(!r.counted);
    data_problems_free(&p);
    /* The list keeps `limit` problems but counts them all. */
    struct data_problems q = {.limit = 2};
    for (int i = 0; i < 5; i++)
        data_problems_add(&q, (uint64_t)i, 0, i % 2 ? DATA_WARNING : DATA_ERROR, "p%d", i);
    CHECK(q.len == 2 && q.errors == 3 && q.warnings == 2);
    data_problems_free(&q);
}

/* An example the cookbook tokenized: cl100k_base encodes "tiktoken is great!" as
 * [83, 1609, 5963, 374, 2294, 0] (tests/tok/test_tok.c), 6 tokens. */
#define GREAT   "tiktoken is great!"
#define N_GREAT 6
/* "a" then 49 " a": 50 tokens (test_rules' context case). */
#define FIFTY_A                                                                                    \
    "a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a "   \
    "a a a a a"

#define PREF_IN  "\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}"
#define PREF_OK  "\"preferred_output\":[{\"role\":\"assistant\",\"content\":\"a\"}]"
#define PREF_NOT "\"non_preferred_output\":[{\"role\":\"assistant\",\"content\":\"" GREAT "\"}]"

static void test_formats(const struct tok_encoding *enc)
{
    struct data_line_result r;
    CHECK_STR(data_format_name(DATA_FORMAT_CHAT), "chat");
    CHECK_STR(data_format_name(DATA_FORMAT_COMPLETION), "prompt/completion");
    CHECK_STR(data_format_name(DATA_FORMAT_PREFERENCE), "preference");

    /* Chat with tools: accepted, counted as before (the tools are not in the lab's count):
     * 2 x 3 + "user" "q" "assistant" "a" (1 token each) + 3 = 13. */
    const char *tools =
        "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
        "\"content\":\"a\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
        "\"parallel_tool_calls\":false}";
    CHECK_STR(problems_of(enc, tools, &r), "");
    CHECK(r.recognised && r.format == DATA_FORMAT_CHAT && r.counted);
    CHECK_EQ_U(r.total, 13);
    CHECK_EQ_U(r.assistant, 1);

    /* prompt/completion: total = tokens(prompt) + tokens(completion), assistant = the
     * completion's; "a" is one token. */
    CHECK_STR(problems_of(enc, "{\"prompt\":\"" GREAT "\",\"completion\":\"a\"}", &r), "");
    CHECK(r.recognised && r.format == DATA_FORMAT_COMPLETION && r.counted);
    CHECK_EQ_U(r.total, N_GREAT + 1);
    CHECK_EQ_U(r.assistant, 1);
    CHECK_STR(problems_of(enc, "{\"prompt\":\"\",\"completion\":\"" GREAT "\"}", &r), "");
    CHECK(r.format == DATA_FORMAT_COMPLETION && r.counted);
    CHECK_EQ_U(r.total, N_GREAT);
    CHECK_EQ_U(r.assistant, N_GREAT);

    /* preference: the lab's count over input.messages and preferred_output, not the
     * non-preferred one: (3 + "user" + "q") + (3 + "assistant" + "a") + 3 = 13, whatever
     * non_preferred_output holds; assistant is preferred_output's "a". */
    CHECK_STR(problems_of(enc, "{" PREF_IN "," PREF_OK "," PREF_NOT "}", &r), "");
    CHECK(r.recognised && r.format == DATA_FORMAT_PREFERENCE && r.counted);
    CHECK_EQ_U(r.total, 13);
    CHECK_EQ_U(r.assistant, 1);
    /* An input may hold any valid messages, assistant ones too, and tools. */
    const char *pref_long =
        "{\"input\":{\"messages\":[{\"role\":\"system\",\"content\":\"hi\"},{\"role\":\"user\","
        "\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"" GREAT "\"},{\"role\":"
        "\"user\",\"content\":\"q\"}],\"tools\":[{\"type\":\"function\"}],"
        "\"parallel_tool_calls\":true}," PREF_OK "," PREF_NOT "}";
    CHECK_STR(problems_of(enc, pref_long, &r), "");
    /* 4 x 3 + "system" "hi" "user" "q" "assistant" "user" "q" + 6 (GREAT), then 5 + 3 as above:
     * the input's assistant content is not assistant tokens. */
    CHECK_EQ_U(r.total, 12 + 7 + N_GREAT + 5 + 3);
    CHECK_EQ_U(r.assistant, 1);

    struct {
        const char *line, *want;
        int format; /* -1: not recognised */
    } cases[] = {
        /* chat's top-level keys */
        {"{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\"}],\"tools\":3}",
         "E:\"tools\" is an integer, not a list", DATA_FORMAT_CHAT},
        {"{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\"}],\"tools\":[{},\"f\"]}",
         "E:tools[1] is a string, not an object", DATA_FORMAT_CHAT},
        {"{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\"}],\"parallel_tool_calls\":"
         "\"yes\"}",
         "E:\"parallel_tool_calls\" is a string, not a boolean", DATA_FORMAT_CHAT},
        {"{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\"}],\"seed\":1}",
         "W:the example has an unknown key \"seed\" (ignored)", DATA_FORMAT_CHAT},
        {"{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\"}],\"prompt\":\"q\"}",
         "W:the example has an unknown key \"prompt\" (ignored)", DATA_FORMAT_CHAT},
        {"{\"messages\":5}", "E:\"messages\" is an integer, not a list", DATA_FORMAT_CHAT},
        /* no format's keys: the message names all three formats */
        {"{}",
         "E:no \"messages\" list (a chat example is {\"messages\": [...]}; prompt/completion "
         "{\"prompt\": ..., \"completion\": ...} and preference {\"input\": ..., "
         "\"preferred_output\": ..., \"non_preferred_output\": ...} examples are accepted",
         -1},
        {"\"prompt\"", "E:expected a JSON object, found a string", -1},
        /* prompt/completion */
        {"{\"prompt\":\"q\"}", "E:no \"completion\" (a prompt/completion example is",
         DATA_FORMAT_COMPLETION},
        {"{\"completion\":\"a\"}", "E:no \"prompt\"", DATA_FORMAT_COMPLETION},
        {"{\"prompt\":1,\"completion\":\"a\"}", "E:\"prompt\" is an integer, not a string",
         DATA_FORMAT_COMPLETION},
        {"{\"prompt\":\"q\",\"completion\":[\"a\"]}", "E:\"completion\" is an array, not a string",
         DATA_FORMAT_COMPLETION},
        {"{\"prompt\":\"q\",\"completion\":\"\"}",
         "E:\"completion\" is empty: there is nothing to learn from", DATA_FORMAT_COMPLETION},
        {"{\"prompt\":\"q\",\"completion\":\"a\",\"weight\":1}",
         "W:the example has an unknown key \"weight\" (ignored)", DATA_FORMAT_COMPLETION},
        {"{\"prompt\":\"q\",\"completion\":\"a <|endoftext|>\"}",
         "E:completion: text contains the special token <|endoftext|> at byte 2",
         DATA_FORMAT_COMPLETION},
        {"{\"prompt\":\"" FIFTY_A "\",\"completion\":\"" FIFTY_A "\"}",
         "W:100 tokens, more than the context of 60", DATA_FORMAT_COMPLETION},
        /* preference: input */
        {"{" PREF_OK "," PREF_NOT "}", "E:no \"input\" (a preference example is",
         DATA_FORMAT_PREFERENCE},
        {"{\"input\":[]," PREF_OK "," PREF_NOT "}", "E:\"input\" is an array, not an object",
         DATA_FORMAT_PREFERENCE},
        {"{\"input\":{}," PREF_OK "," PREF_NOT "}", "E:no \"input.messages\" list",
         DATA_FORMAT_PREFERENCE},
        {"{\"input\":{\"messages\":5}," PREF_OK "," PREF_NOT "}",
         "E:\"input.messages\" is an integer, not a list", DATA_FORMAT_PREFERENCE},
        {"{\"input\":{\"messages\":[]}," PREF_OK "," PREF_NOT "}", "E:\"input.messages\" is empty",
         DATA_FORMAT_PREFERENCE},
        {"{\"input\":{\"messages\":[{\"role\":\"robot\",\"content\":\"q\"}]}," PREF_OK "," PREF_NOT
         "}",
         "E:input.messages[0].role \"robot\" is not one of", DATA_FORMAT_PREFERENCE},
        {"{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":3}]}," PREF_OK "," PREF_NOT "}",
         "E:input.messages[0].content is an integer, not a string", DATA_FORMAT_PREFERENCE},
        {"{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"q\",\"weight\":1}]}," PREF_OK
         "," PREF_NOT "}",
         "E:input.messages[0] has a \"weight\"; only assistant messages may",
         DATA_FORMAT_PREFERENCE},
        {"{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"tools\":{}}," PREF_OK
         "," PREF_NOT "}",
         "E:\"input.tools\" is an object, not a list", DATA_FORMAT_PREFERENCE},
        {"{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"tools\":[1]}," PREF_OK
         "," PREF_NOT "}",
         "E:input.tools[0] is an integer, not an object", DATA_FORMAT_PREFERENCE},
        {"{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"temperature\":1}"
         "," PREF_OK "," PREF_NOT "}",
         "W:input has an unknown key \"temperature\" (ignored)", DATA_FORMAT_PREFERENCE},
        /* preference: the outputs */
        {"{" PREF_IN "," PREF_NOT "}",
         "E:no \"preferred_output\" (a list of one assistant message)", DATA_FORMAT_PREFERENCE},
        {"{" PREF_IN "," PREF_OK "}", "E:no \"non_preferred_output\"", DATA_FORMAT_PREFERENCE},
        {"{" PREF_IN ",\"preferred_output\":{\"role\":\"assistant\",\"content\":\"a\"}," PREF_NOT
         "}",
         "E:\"preferred_output\" is an object, not a list", DATA_FORMAT_PREFERENCE},
        {"{" PREF_IN ",\"preferred_output\":[]," PREF_NOT "}",
         "E:\"preferred_output\" has 0 messages; it must have exactly one, the assistant's",
         DATA_FORMAT_PREFERENCE},
        {"{" PREF_IN "," PREF_OK ",\"non_preferred_output\":[{\"role\":\"assistant\",\"content\":"
         "\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}",
         "E:\"non_preferred_output\" has 2 messages", DATA_FORMAT_PREFERENCE},
        {"{" PREF_IN ",\"preferred_output\":[{\"role\":\"user\",\"content\":\"a\"}]," PREF_NOT "}",
         "E:preferred_output[0].role must be \"assistant\"", DATA_FORMAT_PREFERENCE},
        {"{" PREF_IN ",\"preferred_output\":[\"a\"]," PREF_NOT "}",
         "E:preferred_output[0] is a string, not an object", DATA_FORMAT_PREFERENCE},
        {"{" PREF_IN ",\"preferred_output\":[{\"content\":\"a\"}]," PREF_NOT "}",
         "E:preferred_output[0] has no \"role\"", DATA_FORMAT_PREFERENCE},
        {"{" PREF_IN "," PREF_OK ",\"non_preferred_output\":[{\"role\":\"assistant\",\"content\":"
         "5}]}",
         "E:non_preferred_output[0].content is an integer, not a string", DATA_FORMAT_PREFERENCE},
        /* tool calls do not stand in for an output's content, as they do in chat */
        {"{" PREF_IN "," PREF_OK ",\"non_preferred_output\":[{\"role\":\"assistant\","
         "\"tool_calls\":[]}]}",
         "E:non_preferred_output[0] has no \"content\"", DATA_FORMAT_PREFERENCE},
        {"{" PREF_IN "," PREF_OK ",\"non_preferred_output\":[{\"role\":\"assistant\",\"content\":"
         "\"<|endoftext|>\"}]}",
         "E:non_preferred_output[0].content: text contains the special token <|endoftext|>",
         DATA_FORMAT_PREFERENCE},
        {"{" PREF_IN "," PREF_OK "," PREF_NOT ",\"metadata\":{}}",
         "W:the example has an unknown key \"metadata\" (ignored)", DATA_FORMAT_PREFERENCE},
        {"{\"non_preferred_output\":[]}", "E:no \"input\"", DATA_FORMAT_PREFERENCE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = problems_of(enc, cases[i].line, &r);
        if (strstr(got, cases[i].want) != got) {
            fprintf(stderr, "  format case %zu: got \"%s\"\n", i, got);
            CHECK(!"problem text");
        }
        if (cases[i].format < 0) {
            CHECK(!r.recognised && !r.counted);
        } else if (!r.recognised || (int)r.format != cases[i].format) {
            fprintf(stderr, "  format case %zu: format %d, recognised %d\n", i, (int)r.format,
                    (int)r.recognised);
            CHECK(!"format");
        }
    }
    /* Counted only where the count is defined. */
    problems_of(enc, "{\"prompt\":1,\"completion\":\"a\"}", &r);
    CHECK(!r.counted && r.total == 0);
    problems_of(enc, "{\"prompt\":\"q\",\"completion\":\"\"}", &r);
    CHECK(r.counted && r.assistant == 0);
    problems_of(enc, "{\"input\":{}," PREF_OK "," PREF_NOT "}", &r);
    CHECK(!r.counted && r.total == 0 && r.assistant == 0);
    problems_of(enc, "{" PREF_IN "," PREF_OK "}", &r);
    CHECK(r.counted && r.total == 13);
}

static void test_format_rule(void)
{
    struct data_format_rule rule = {0};
    struct data_problems p = {.limit = 5};
    CHECK(data_format_rule_check(&rule, 2, DATA_FORMAT_COMPLETION, &p) == 0);
    CHECK(data_format_rule_check(&rule, 3, DATA_FORMAT_COMPLETION, &p) == 0);
    CHECK(data_format_rule_check(&rule, 4, DATA_FORMAT_CHAT, &p) == 1);
    CHECK(data_format_rule_check(&rule, 5, DATA_FORMAT_PREFERENCE, &p) == 0); /* first only */
    CHECK(rule.known && rule.format == DATA_FORMAT_COMPLETION && rule.first_line == 2);
    CHECK(p.len == 1 && p.errors == 1 && p.items[0].line == 4);
    CHECK_STR(p.items[0].message, "a chat example, but the file's first example (line 2) is "
                                  "prompt/completion: a file holds one format");
    data_problems_free(&p);
}

static void test_scan_formats(const struct tok_encoding *enc)
{
    struct data_scan_opts opts = {{enc, TOK_SPECIAL_REJECT, 0}, 2, 1, 50, 1 << 20};
    struct fj_err err = {0};
    struct data_file_report r;

    /* A blank line and a line of no format come before the first recognised one. */
    const char mixed[] = "\n"
                         "{\"text\":\"x\"}\n"
                         "{\"prompt\":\"q\",\"completion\":\"a\"}\n"
                         "{\"prompt\":\"q\",\"completion\":\"a\",\"x\":1}\n"
                         "{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\"}]}\n"
                         "{" PREF_IN "," PREF_OK "," PREF_NOT "}\n"
                         "{\"prompt\":\"q\",\"completion\":\"a\",\"y\":1}\n";
    const char *path = write_tmp("mixed.jsonl", mixed, sizeof mixed - 1);
    const char *paths[1] = {path};
    CHECK(data_scan_files(paths, NULL, 1, &opts, &r, &err) == 0);
    CHECK(r.format == DATA_FORMAT_COMPLETION);
    CHECK_EQ_U(r.examples, 5);
    CHECK_EQ_U(r.valid, 4); /* lines 3, 4, 6, 7: line 5 breaks the rule */
    CHECK_EQ_U(r.problems.errors, 2);
    CHECK_EQ_U(r.problems.len, 5);
    const uint64_t want_lines[5] = {1, 2, 4, 5, 7};
    for (size_t i = 0; i < 5 && i < r.problems.len; i++)
        CHECK_EQ_U(r.problems.items[i].line, want_lines[i]);
    if (r.problems.len == 5)
        CHECK_STR(r.problems.items[3].message, "a chat example, but the file's first example "
                                               "(line 3) is prompt/completion: a file holds one "
                                               "format");
    data_file_report_free(&r);

    /* One format: no rule error; a preference file reports its format. */
    char pref[4096] = "";
    for (int i = 0; i < 10; i++)
        strcat(pref, "{" PREF_IN "," PREF_OK "," PREF_NOT "}\n");
    paths[0] = write_tmp("pref.jsonl", pref, strlen(pref));
    CHECK(data_scan_files(paths, NULL, 1, &opts, &r, &err) == 0);
    CHECK(r.format == DATA_FORMAT_PREFERENCE && r.problems.errors == 0 && r.valid == 10);
    CHECK(r.total.min == 13 && r.total.max == 13 && r.assistant.max == 1);
    data_file_report_free(&r);

    /* Across blocks and threads: completion lines (about 2 MiB, so several blocks), a chat
     * line deep in a later block, warnings every 1000 lines. The rule's error sits in line
     * order among them, the same on 1 and 2 threads. */
    FILE *f = fopen(write_tmp("big.jsonl", "", 0), "wb");
    for (int i = 1; i <= 40000; i++) {
        if (i == 31500)
            fprintf(f, "{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\"}]}\n");
        else
            fprintf(f, "{\"prompt\":\"question %d\",\"completion\":\"answer\"%s}\n", i,
                    i % 1000 == 0 ? ",\"x\":1" : "");
    }
    fclose(f);
    char big[256];
    snprintf(big, sizeof big, "%s/big.jsonl", tmpdir);
    paths[0] = big;
    for (int threads = 1; threads <= 2; threads++) {
        opts.threads = threads;
        CHECK(data_scan_files(paths, NULL, 1, &opts, &r, &err) == 0);
        CHECK(r.format == DATA_FORMAT_COMPLETION);
        CHECK_EQ_U(r.valid, 40000 - 1);
        CHECK_EQ_U(r.problems.errors, 1);
        CHECK_EQ_U(r.problems.warnings, 40);
        /* warnings at 1000 .. 31000 (31), then the error at 31500 */
        CHECK(r.problems.len == 41 && r.problems.items[30].line == 31000 &&
              r.problems.items[31].line == 31500 && r.problems.items[31].severity == DATA_ERROR &&
              r.problems.items[32].line == 32000);
        data_file_report_free(&r);
    }
}

static void test_scan_threads(const struct tok_encoding *enc)
{
    /* 30000 lines, some bad: 1 and 2 threads (and tiny blocks) must agree exactly. */
    FILE *f = fopen(write_tmp("many.jsonl", "", 0), "wb");
    for (int i = 0; i < 30000; i++) {
        if (i % 997 == 5)
            fprintf(f, "{broken\n");
        else
            fprintf(f,
                    "{\"messages\":[{\"role\":\"user\",\"content\":\"question %d %s\"},"
                    "{\"role\":\"assistant\",\"content\":\"answer %d\"}]}\n",
                    i, i % 3 ? "short" : "a much longer question with more words", i * 7);
    }
    fclose(f);
    char path[256];
    snprintf(path, sizeof path, "%s/many.jsonl", tmpdir);
    const char *paths[2] = {path, path};
    bool training[2] = {true, false};
    struct data_file_report r1[2], r2[2];
    struct data_scan_opts opts = {{enc, TOK_SPECIAL_REJECT, 0}, 10, 1, 20, 1 << 20};
    struct fj_err err = {0};
    CHECK(data_scan_files(paths, training, 2, &opts, r1, &err) == 0);
    opts.threads = 2;
    CHECK(data_scan_files(paths, training, 2, &opts, r2, &err) == 0);
    for (int k = 0; k < 2; k++) {
        CHECK_EQ_U(r1[k].lines, 30000);
        CHECK_EQ_U(r1[k].examples, 30000 - 31);
        CHECK(memcmp(&r1[k].total, &r2[k].total, sizeof r1[k].total) == 0);
        CHECK(memcmp(&r1[k].assistant, &r2[k].assistant, sizeof r1[k].assistant) == 0);
        CHECK(r1[k].problems.errors == 31 && r2[k].problems.errors == 31);
        CHECK(r1[k].problems.len == 20 && r2[k].problems.len == 20);
        for (size_t i = 0; i < r1[k].problems.len; i++)
            CHECK(r1[k].problems.items[i].line == r2[k].problems.items[i].line);
        CHECK_EQ_U(r1[k].problems.items[0].line, 6);
        data_file_report_free(&r1[k]);
        data_file_report_free(&r2[k]);
    }
}

int main(void)
{
    if (mkdtemp(tmpdir) == NULL)
        return 1;
    struct fj_err err = {0};
    struct tok_encoding *enc = tok_encoding_new("cl100k_base", &err);
    RUN(test_reader);
    RUN(test_distribution);
    test_rules(enc);
    printf("%s test_rules\n", test_failures ? "FAIL" : "ok  ");
    test_formats(enc);
    printf("%s test_formats\n", test_failures ? "FAIL" : "ok  ");
    RUN(test_format_rule);
    test_scan_formats(enc);
    printf("%s test_scan_formats\n", test_failures ? "FAIL" : "ok  ");
    test_scan_threads(enc);
    printf("%s test_scan_threads\n", test_failures ? "FAIL" : "ok  ");
    tok_encoding_free(enc);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        return 1;
    return TEST_DONE();
}
