/* test_data.c - unit tests of data/: the line reader's edge cases (CRLF, byte order mark,
 * missing last newline, overlong lines, tiny blocks), the distribution statistics against a
 * brute-force computation over the sorted values, the format rules line by line, and that
 * a scan gives identical reports on 1 and 2 threads. The lab's numbers themselves are
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
        {"{\"prompt\":\"a\",\"completion\":\"b\"}", "E:no \"messages\" list"},
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
    test_scan_threads(enc);
    printf("%s test_scan_threads\n", test_failures ? "FAIL" : "ok  ");
    tok_encoding_free(enc);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        return 1;
    return TEST_DONE();
}
