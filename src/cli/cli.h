/* cli.h - the forja command-line tool: commands, their options and help from one table.
 *
 * The tool is the only part of forja that prints. Each command is a struct cli_cmd with its
 * option table; `forja CMD --help`, `forja help` and docs/cli.md are all generated from these
 * tables, so options, help and documentation cannot drift apart.
 */
#ifndef FJ_CLI_CLI_H
#define FJ_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/buf.h"

#include "tok/tok.h"

/* Exit codes. */
enum { CLI_OK = 0, CLI_DATA_ERROR = 1, CLI_USAGE = 2, CLI_FAILURE = 3, CLI_STOPPED = 4 };

struct cli_opt {
    const char *name; /* long name, without "--" */
    const char *arg;  /* metavariable for an option that takes a value; NULL for a flag */
    const char *help; /* one sentence */
};

/* One command-line element, in command-line order: a positional argument (opt == -1) or an
 * option (index into the command's option table) with its value (NULL for a flag). */
struct cli_item {
    int opt;
    const char *value;
};

struct cli_args {
    struct cli_item *items; /* owned */
    size_t n;
};

struct cli_cmd {
    const char *name;
    const char *args;           /* positional part of the synopsis, e.g. "FILE..." */
    const char *summary;        /* one line for `forja help` */
    const char *description;    /* paragraphs for --help and docs/cli.md */
    const struct cli_opt *opts; /* terminated by an entry with name NULL */
    int (*run)(const struct cli_cmd *cmd, const struct cli_args *args);
};

/* Parses argv (after the command name). Prints a message and returns CLI_USAGE on bad usage;
 * returns -1 if --help was given (help already printed); else 0. */
int cli_parse(const struct cli_cmd *cmd, int argc, char **argv, struct cli_args *out);
void cli_args_free(struct cli_args *a);

/* The last value of option `name`, or NULL if it was not given. */
const char *cli_get(const struct cli_cmd *cmd, const struct cli_args *a, const char *name);
/* Whether flag or option `name` was given. */
bool cli_has(const struct cli_cmd *cmd, const struct cli_args *a, const char *name);
/* Index of option `name` in cmd's table (asserts that it exists). */
int cli_opt_index(const struct cli_cmd *cmd, const char *name);
/* Parses a non-negative integer option value; prints an error and returns -1 if invalid. */
long long cli_parse_count(const char *opt, const char *value, long long max);

void cli_print_help(const struct cli_cmd *cmd);

/* The encoding named by the command's --encoding option (default cl100k_base); prints an
 * error and returns NULL for an unknown name. The caller frees it. */
struct tok_encoding *cli_open_encoding(const struct cli_cmd *cmd, const struct cli_args *a);

/* The special-token mode from --allow-special / --ordinary (default: reject). Prints an
 * error and returns CLI_USAGE if both are given; else 0. */
int cli_special_mode(const struct cli_cmd *cmd, const struct cli_args *a, enum tok_special *mode);

/* Appends all of f to b (b->data is non-NULL afterwards, even when f is empty). -1 on a
 * read error or out of memory. */
int cli_read_all(FILE *f, struct fj_buf *b);

/* forja's data directory: --data-dir, else $FORJA_HOME, else $FORJA_DATA_DIR (its older
 * name), else ./forja-data. */
const char *cli_data_dir(const struct cli_cmd *cmd, const struct cli_args *a);
/* DATA/models, created if missing. Prints an error and returns a CLI_* code on failure. */
int cli_models_dir(const struct cli_cmd *cmd, const struct cli_args *a, char *out, size_t cap);
/* The folder of model `name` (NULL: the built-in model, created on first use); prints an
 * error and returns a CLI_* code on failure. */
int cli_model_path(const struct cli_cmd *cmd, const struct cli_args *a, const char *name, char *out,
                   size_t cap);

/* The option table entry every command that touches models has. */
#define CLI_OPT_DATA_DIR                                                                           \
    {                                                                                              \
        "data-dir", "DIR",                                                                         \
            "forja's data directory (default: $FORJA_HOME, else ./forja-data); models live in "    \
            "DIR/models."                                                                          \
    }

extern const struct cli_cmd cli_cmd_tokens;
extern const struct cli_cmd cli_cmd_tokenize;
extern const struct cli_cmd cli_cmd_detokenize;
extern const struct cli_cmd cli_cmd_models;
extern const struct cli_cmd cli_cmd_render;
extern const struct cli_cmd cli_cmd_generate;
extern const struct cli_cmd cli_cmd_chat;
extern const struct cli_cmd cli_cmd_train;
extern const struct cli_cmd cli_cmd_serve;
extern const struct cli_cmd cli_cmd_keys;
extern const struct cli_cmd cli_cmd_token;

#endif
