/* cmd_tokens.c - `forja tokens`: the lab's token-count report, plus the data checks.
 *
 * For chat files the report is byte for byte what the lab's notebook cell prints for the
 * same files (docs/cli.md); prompt/completion and preference files get the same layout with
 * a "Format:" line, of the counts data_check_line gives them (docs/data-format.md). The
 * problems the checks find follow it, one per line, as
 * FILE:LINE[:COLUMN]: error|warning: message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "core/fmt.h"
#include "data/data.h"
#include "tok/tok.h"

#define DEFAULT_CONTEXT       128000
#define DEFAULT_MAX_PROBLEMS  200
#define MAX_LINE_BYTES        (64u << 20)
#define MIN_TRAINING_EXAMPLES 10

static void print_distribution(const struct data_dist *d, const char *name)
{
    char mean[FJ_FMT_REPR_MAX], median[FJ_FMT_REPR_MAX];
    printf("\n##### Distribution of %s:\n", name);
    printf("min / max: %llu, %llu\n", (unsigned long long)d->min, (unsigned long long)d->max);
    printf("mean / median: %s, %s\n", fj_fmt_repr(d->mean, mean), fj_fmt_repr(d->median, median));
}

static void print_report(const struct data_file_report *r)
{
    printf("File: %s\n", r->path);
    if (r->format != DATA_FORMAT_CHAT)
        printf("Format: %s\n", data_format_name(r->format));
    if (r->examples == 0) {
        printf("\n(no examples to count)\n");
    } else {
        print_distribution(&r->total, "total tokens");
        print_distribution(&r->assistant, "assistant tokens");
    }
    printf("%s\n", "***************************************************************************");
}

static void print_problems(const struct data_file_report *r)
{
    uint64_t shown_err = 0, shown_warn = 0;
    for (size_t i = 0; i < r->problems.len; i++) {
        const struct data_problem *p = &r->problems.items[i];
        const char *sev = p->severity == DATA_ERROR ? "error" : "warning";
        *(p->severity == DATA_ERROR ? &shown_err : &shown_warn) += 1;
        if (p->line == 0)
            printf("%s: %s: %s\n", r->path, sev, p->message);
        else if (p->column > 0)
            printf("%s:%llu:%u: %s: %s\n", r->path, (unsigned long long)p->line, p->column, sev,
                   p->message);
        else
            printf("%s:%llu: %s: %s\n", r->path, (unsigned long long)p->line, sev, p->message);
    }
    uint64_t more_err = r->problems.errors - shown_err,
             more_warn = r->problems.warnings - shown_warn;
    if (more_err + more_warn > 0)
        printf("%s: note: %llu more error%s and %llu more warning%s not shown\n", r->path,
               (unsigned long long)more_err, more_err == 1 ? "" : "s",
               (unsigned long long)more_warn, more_warn == 1 ? "" : "s");
}

static json_t *dist_json(const struct data_file_report *r, const struct data_dist *d)
{
    if (r->examples == 0)
        return json_null();
    return json_pack("{s:I, s:I, s:f, s:f}", "min", (json_int_t)d->min, "max", (json_int_t)d->max,
                     "mean", d->mean, "median", d->median);
}

static int print_json(const struct data_file_report *reports, size_t n, const char *encoding,
                      unsigned long long context)
{
    json_t *files = json_array();
    uint64_t errors = 0, warnings = 0;
    for (size_t f = 0; f < n; f++) {
        const struct data_file_report *r = &reports[f];
        json_t *problems = json_array();
        for (size_t i = 0; i < r->problems.len; i++) {
            const struct data_problem *p = &r->problems.items[i];
            json_array_append_new(problems,
                                  json_pack("{s:I, s:i, s:s, s:s}", "line", (json_int_t)p->line,
                                            "column", (int)p->column, "severity",
                                            p->severity == DATA_ERROR ? "error" : "warning",
                                            "message", p->message));
        }
        errors += r->problems.errors;
        warnings += r->problems.warnings;
        json_array_append_new(
            files,
            json_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:o, s:o, s:I, s:I, s:o, s:I}", "file",
                      r->path, "format", data_format_name(r->format), "training", r->training,
                      "bytes", (json_int_t)r->bytes, "lines", (json_int_t)r->lines, "examples",
                      (json_int_t)r->examples, "valid_examples", (json_int_t)r->valid,
                      "total_tokens", dist_json(r, &r->total), "assistant_tokens",
                      dist_json(r, &r->assistant), "errors", (json_int_t)r->problems.errors,
                      "warnings", (json_int_t)r->problems.warnings, "problems", problems,
                      "problems_not_shown",
                      (json_int_t)(r->problems.errors + r->problems.warnings - r->problems.len)));
    }
    json_t *doc = json_pack("{s:s, s:I, s:o, s:I, s:I, s:b}", "encoding", encoding, "context",
                            (json_int_t)context, "files", files, "errors", (json_int_t)errors,
                            "warnings", (json_int_t)warnings, "ok", errors == 0);
    if (doc == NULL)
        return -1;
    int rc = json_dumpf(doc, stdout, JSON_INDENT(2));
    putchar('\n');
    json_decref(doc);
    return rc;
}

static int run_tokens(const struct cli_cmd *cmd, const struct cli_args *a)
{
    int k_validation = cli_opt_index(cmd, "validation");
    size_t nfiles = 0;
    for (size_t i = 0; i < a->n; i++)
        nfiles += a->items[i].opt < 0 || a->items[i].opt == k_validation;
    if (nfiles == 0) {
        fprintf(stderr, "forja tokens: no files given (usage: forja tokens FILE...)\n");
        return CLI_USAGE;
    }
    enum tok_special special;
    if (cli_special_mode(cmd, a, &special) != 0)
        return CLI_USAGE;
    long long context = DEFAULT_CONTEXT, threads = sysconf(_SC_NPROCESSORS_ONLN),
              max_problems = DEFAULT_MAX_PROBLEMS;
    const char *v;
    if ((v = cli_get(cmd, a, "context")) &&
        (context = cli_parse_count("context", v, 1LL << 40)) < 0)
        return CLI_USAGE;
    if ((v = cli_get(cmd, a, "threads")) && (threads = cli_parse_count("threads", v, 256)) < 0)
        return CLI_USAGE;
    if ((v = cli_get(cmd, a, "max-problems")) &&
        (max_problems = cli_parse_count("max-problems", v, 1000000)) < 0)
        return CLI_USAGE;
    if (threads < 1)
        threads = 1;

    struct fj_err err = {0};
    struct tok_encoding *enc = cli_open_encoding(cmd, a);
    if (enc == NULL)
        return CLI_USAGE;
    const char **paths = calloc(nfiles, sizeof *paths);
    bool *training = calloc(nfiles, sizeof *training);
    struct data_file_report *reports = calloc(nfiles, sizeof *reports);
    if (!paths || !training || !reports) {
        fprintf(stderr, "forja tokens: out of memory\n");
        free(paths);
        free(training);
        free(reports);
        tok_encoding_free(enc);
        return CLI_FAILURE;
    }
    size_t f = 0;
    for (size_t i = 0; i < a->n; i++) {
        if (a->items[i].opt < 0 || a->items[i].opt == k_validation) {
            paths[f] = a->items[i].value;
            training[f++] = a->items[i].opt < 0;
        }
    }
    struct data_scan_opts opts = {
        .check = {enc, special, (uint64_t)context},
        .min_examples = MIN_TRAINING_EXAMPLES,
        .threads = (int)threads,
        .max_problems = (size_t)max_problems,
        .max_line = MAX_LINE_BYTES,
    };
    int status = CLI_OK;
    if (data_scan_files(paths, training, nfiles, &opts, reports, &err) != 0) {
        fprintf(stderr, "forja tokens: %s\n", err.msg);
        status = CLI_FAILURE;
    } else {
        uint64_t errors = 0;
        for (f = 0; f < nfiles; f++)
            errors += reports[f].problems.errors;
        if (cli_has(cmd, a, "json")) {
            if (print_json(reports, nfiles, tok_encoding_name(enc), (unsigned long long)context) !=
                0)
                status = CLI_FAILURE;
        } else {
            for (f = 0; f < nfiles; f++)
                print_report(&reports[f]);
            for (f = 0; f < nfiles; f++)
                print_problems(&reports[f]);
        }
        if (status == CLI_OK && errors > 0)
            status = CLI_DATA_ERROR;
    }
    if (fflush(stdout) != 0)
        status = CLI_FAILURE;
    for (f = 0; f < nfiles; f++)
        data_file_report_free(&reports[f]);
    free(paths);
    free(training);
    free(reports);
    tok_encoding_free(enc);
    return status;
}

static const struct cli_opt tokens_opts[] = {
    {"encoding", "NAME",
     "Count with this tiktoken encoding: cl100k_base (default, as the lab), "
     "o200k_base, p50k_base, r50k_base or gpt2."},
    {"validation", "FILE",
     "Also report FILE, as a validation file (no minimum number of "
     "examples). May be repeated; files print in command-line order."},
    {"context", "N",
     "Warn about examples with more than N tokens (default 128000, GPT-4o's "
     "context)."},
    {"allow-special", NULL,
     "Count special-token text such as <|endoftext|> in content as one "
     "special token instead of reporting it as an error."},
    {"ordinary", NULL, "Count special-token text as ordinary text instead of reporting it."},
    {"json", NULL, "Print the report and the problems as one JSON document."},
    {"threads", "N", "Worker threads (default: the number of CPUs)."},
    {"max-problems", "N", "List at most N problems per file (default 200); all are counted."},
    {NULL, NULL, NULL},
};

const struct cli_cmd cli_cmd_tokens = {
    "tokens",
    "FILE...",
    "Count the tokens of fine-tuning files and check their format",
    "Prints, for each JSONL file of chat examples, the distribution of total and assistant "
    "tokens per example exactly as the lab's notebook does with tiktoken (cl100k_base by "
    "default): min / max and mean / median. It also checks every line against the "
    "fine-tuning rules (a JSON object with a non-empty \"messages\" list, known roles, string "
    "content, at least one assistant message, \"weight\" only on assistant messages and only "
    "0 or 1, valid UTF-8, at least 10 examples in a training file) and warns about examples "
    "longer than the context. Prompt/completion and preference (DPO) files are checked and "
    "counted too, in the same layout with a \"Format:\" line (docs/data-format.md); one file "
    "holds one format. Problems are listed after the report as "
    "FILE:LINE[:COLUMN]: error|warning: message. The exit status is 1 if there was any error; "
    "warnings do not change it. Files are read in bounded memory, on all CPUs.",
    tokens_opts,
    run_tokens,
};
