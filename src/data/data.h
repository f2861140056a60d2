/* data.h - fine-tuning data: JSONL files read in bounded memory, each line checked against
 * the fine-tuning rules of its format (chat, prompt/completion or preference;
 * docs/data-format.md), and the token statistics of the lab's "validate token counts" step.
 *
 * The same checks serve `forja tokens` and, later, the trainer's file validation: one
 * implementation of the rules. Problems are data (struct data_problem), never printed here.
 */
#ifndef FJ_DATA_DATA_H
#define FJ_DATA_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "tok/tok.h"

/* ---- problems ---------------------------------------------------------------------- */

enum data_severity { DATA_ERROR, DATA_WARNING };

#define DATA_PROBLEM_MSG_MAX 320

struct data_problem {
    uint64_t line;   /* 1-based line number; 0 for the file as a whole */
    uint32_t column; /* 1-based character column where JSON parsing failed, else 0 */
    enum data_severity severity;
    char message[DATA_PROBLEM_MSG_MAX];
};

/* A list that counts every problem but keeps only the first `limit` (bounded memory on a
 * file where every line is bad). */
struct data_problems {
    struct data_problem *items; /* owned */
    size_t len, cap, limit;
    uint64_t errors, warnings; /* all problems, kept or not */
};

/* Counts the problem and keeps it if there is room. Returns 0 or FJ_ERR_NOMEM. */
int data_problems_add(struct data_problems *p, uint64_t line, uint32_t column,
                      enum data_severity severity, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Appends all of src's problems (kept and counted) to dst. */
int data_problems_merge(struct data_problems *dst, const struct data_problems *src);
void data_problems_free(struct data_problems *p);

/* ---- one line ----------------------------------------------------------------------- */

struct data_check_opts {
    const struct tok_encoding *enc; /* counts tokens with this encoding */
    enum tok_special special;       /* how special-token text in content is treated */
    uint64_t context;               /* more total tokens than this is a warning; 0: no check */
};

/* The fine-tuning formats of OpenAI (docs/data-format.md), told apart by their keys. */
enum data_format {
    DATA_FORMAT_CHAT,       /* {"messages": [...]} */
    DATA_FORMAT_COMPLETION, /* {"prompt": "...", "completion": "..."} */
    DATA_FORMAT_PREFERENCE, /* {"input": {"messages": [...]}, "preferred_output": [...], ...} */
};

/* "chat", "prompt/completion" or "preference" (static). */
const char *data_format_name(enum data_format format);

struct data_line_result {
    enum data_format format; /* the line's format when recognised, else DATA_FORMAT_CHAT */
    bool recognised;         /* a JSON object with a format's keys (see data_check_line) */
    bool counted;            /* the line's tokens could be counted (see below) */
    uint64_t total;          /* tokens of the example (see below) */
    uint64_t assistant;      /* tokens of what the example teaches (see below) */
};

/* Checks one line (without its newline) of a fine-tuning file. The format is told by the
 * keys, first match wins: "messages" is chat; "prompt" or "completion" prompt/completion;
 * "input", "preferred_output" or "non_preferred_output" preference. Each line must be valid
 * UTF-8 and a JSON object; then
 *   chat: a non-empty messages list of objects with known roles and string content, at
 *     least one assistant message, weight only on assistant messages and only 0 or 1;
 *     "tools" a list of objects, "parallel_tool_calls" a boolean. counted when messages is
 *     a list; total is the lab's count (3 per message + each string value + 1 per name + 3),
 *     assistant the tokens of the assistant messages' content.
 *   prompt/completion: both strings, the completion not empty. counted when both are
 *     strings; total = tokens(prompt) + tokens(completion), assistant = tokens(completion).
 *   preference: input.messages a non-empty list of valid messages (chat's rules, no
 *     assistant needed); preferred_output and non_preferred_output each a list of exactly one
 *     assistant message with string content. counted when input.messages and
 *     preferred_output are lists; total is the lab's count over input.messages and
 *     preferred_output, assistant the tokens of preferred_output's content.
 * Unknown keys are warnings; so is a counted example with more tokens than opts->context.
 * Each problem goes to probs under line number `line`. Returns 0, or a negative FJ_ERR_* for
 * a failure that is not the data's fault (out of memory). */
int data_check_line(const char *text, size_t len, uint64_t line, const struct data_check_opts *opts,
                    struct data_line_result *res, struct data_problems *probs, struct fj_err *err);

/* The file-level rule: all examples of a file have the format of its first recognised line.
 * Start from {0} and feed it the recognised lines in file order. */
struct data_format_rule {
    bool known;              /* a recognised line was seen */
    enum data_format format; /* the first recognised line's format */
    uint64_t first_line;     /* and its number */
    bool reported;           /* the first line of another format was reported */
};

/* Feeds rule one recognised line. Returns 1 when this is the file's first line whose format
 * differs from the first recognised line's (an error for it goes to probs), 0 for any other
 * line, FJ_ERR_NOMEM. */
int data_format_rule_check(struct data_format_rule *rule, uint64_t line, enum data_format format,
                           struct data_problems *probs);

/* ---- statistics --------------------------------------------------------------------- */

/* min / max / mean / median of a multiset of counts, as numpy computes them. */
struct data_dist {
    uint64_t n, min, max;
    double mean, median;
};

/* A histogram value -> count: memory grows with the number of distinct values, not with the
 * number of examples. */
struct data_hist {
    uint64_t *keys, *counts; /* open addressing; counts[i] == 0 marks an empty slot */
    size_t cap, len;
};

int data_hist_add(struct data_hist *h, uint64_t value, uint64_t count);
int data_hist_merge(struct data_hist *dst, const struct data_hist *src);
/* Fills d from h (n == 0 when h is empty). Returns 0 or FJ_ERR_NOMEM. */
int data_hist_dist(const struct data_hist *h, struct data_dist *d);
void data_hist_free(struct data_hist *h);

/* ---- reading -------------------------------------------------------------------------- */

struct data_reader;

enum { DATA_LINE_TOO_LONG = 1u };

struct data_line {
    size_t off;      /* offset of the line in the block's buf */
    size_t len;      /* bytes, without "\n" or "\r\n"; for a too-long line, its full length */
    uint64_t number; /* 1-based */
    unsigned flags;  /* DATA_LINE_TOO_LONG: the text was dropped, not stored */
};

/* A run of whole lines, owned by whoever holds it. */
struct data_block {
    char *buf;
    size_t len, cap;
    struct data_line *lines;
    size_t n_lines, cap_lines;
};

void data_block_free(struct data_block *b);

/* Opens a JSONL file ("-" is standard input). Lines longer than max_line bytes are reported
 * as DATA_LINE_TOO_LONG and never held in memory. A UTF-8 byte order mark at the start of the
 * file is skipped. Returns NULL and fills err if the file cannot be opened or is a directory. */
struct data_reader *data_reader_open(const char *path, size_t max_line, struct fj_err *err);

/* Fills blk with the next whole lines, about `target` bytes of them. Returns 1 if it read
 * lines, 0 at the end of the file, or a negative FJ_ERR_* (read error, out of memory). */
int data_reader_next(struct data_reader *r, struct data_block *blk, size_t target,
                     struct fj_err *err);

/* Bytes read from the file so far (the byte order mark included). */
uint64_t data_reader_bytes(const struct data_reader *r);

void data_reader_close(struct data_reader *r);

/* ---- whole files ------------------------------------------------------------------------ */

struct data_scan_opts {
    struct data_check_opts check;
    size_t min_examples; /* a training file with fewer valid examples is an error */
    int threads;         /* worker threads (>= 1) */
    size_t max_problems; /* problems kept per file (all are counted) */
    size_t max_line;     /* longest line accepted, in bytes */
};

struct data_file_report {
    const char *path; /* borrowed from the caller's paths */
    bool training;    /* min_examples applies */
    bool opened;      /* false if the file could not be opened (see problems) */
    uint64_t bytes, lines;
    uint64_t examples;       /* lines whose tokens were counted */
    uint64_t valid;          /* lines without errors */
    enum data_format format; /* the first recognised line's (DATA_FORMAT_CHAT if none) */
    struct data_dist total, assistant;
    struct data_problems problems;
};

/* Checks and counts every file, using opts->threads workers (lines of one file are spread
 * over all of them). reports[i] describes paths[i]; a file that cannot be read gets a
 * problem on line 0, not a failure. A line whose format differs from the file's first
 * recognised line's is an error (data_format_rule_check: the first such line only). Returns
 * 0, or a negative FJ_ERR_* (out of memory, no threads) with err filled. The caller frees the
 * reports with data_file_report_free. */
int data_scan_files(const char *const *paths, const bool *training, size_t n,
                    const struct data_scan_opts *opts, struct data_file_report *reports,
                    struct fj_err *err);

void data_file_report_free(struct data_file_report *r);

#endif
