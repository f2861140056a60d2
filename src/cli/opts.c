/* opts.c - option parsing and generated help for the commands (see cli.h). */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/file.h"
#include "model/folder.h"

static int find_opt(const struct cli_cmd *cmd, const char *name, size_t len)
{
    for (int i = 0; cmd->opts[i].name; i++)
        if (strlen(cmd->opts[i].name) == len && strncmp(cmd->opts[i].name, name, len) == 0)
            return i;
    return -1;
}

int cli_opt_index(const struct cli_cmd *cmd, const char *name)
{
    int i = find_opt(cmd, name, strlen(name));
    assert(i >= 0 && "option not in the command's table");
    return i;
}

void cli_args_free(struct cli_args *a)
{
    free(a->items);
    a->items = NULL;
    a->n = 0;
}

int cli_parse(const struct cli_cmd *cmd, int argc, char **argv, struct cli_args *out)
{
    out->items = calloc((size_t)argc + 1, sizeof *out->items);
    out->n = 0;
    if (out->items == NULL) {
        fprintf(stderr, "forja: out of memory\n");
        return CLI_USAGE;
    }
    bool only_positional = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (only_positional || a[0] != '-' || strcmp(a, "-") == 0) {
            out->items[out->n++] = (struct cli_item){-1, a};
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_positional = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli_print_help(cmd);
            cli_args_free(out);
            return -1;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "forja %s: unknown option '%s' (see 'forja %s --help')\n", cmd->name, a,
                    cmd->name);
            cli_args_free(out);
            return CLI_USAGE;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        int k = find_opt(cmd, name, eq ? (size_t)(eq - name) : strlen(name));
        if (k < 0) {
            fprintf(stderr, "forja %s: unknown option '%s' (see 'forja %s --help')\n", cmd->name, a,
                    cmd->name);
            cli_args_free(out);
            return CLI_USAGE;
        }
        const char *value = NULL;
        if (cmd->opts[k].arg != NULL) {
            if (eq != NULL)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else {
                fprintf(stderr, "forja %s: option '--%s' needs a value (%s)\n", cmd->name,
                        cmd->opts[k].name, cmd->opts[k].arg);
                cli_args_free(out);
                return CLI_USAGE;
            }
        } else if (eq != NULL) {
            fprintf(stderr, "forja %s: option '--%s' takes no value\n", cmd->name,
                    cmd->opts[k].name);
            cli_args_free(out);
            return CLI_USAGE;
        }
        out->items[out->n++] = (struct cli_item){k, value};
    }
    return 0;
}

const char *cli_get(const struct cli_cmd *cmd, const struct cli_args *a, const char *name)
{
    int k = cli_opt_index(cmd, name);
    const char *v = NULL;
    for (size_t i = 0; i < a->n; i++)
        if (a->items[i].opt == k)
            v = a->items[i].value;
    return v;
}

bool cli_has(const struct cli_cmd *cmd, const struct cli_args *a, const char *name)
{
    int k = cli_opt_index(cmd, name);
    for (size_t i = 0; i < a->n; i++)
        if (a->items[i].opt == k)
            return true;
    return false;
}

long long cli_parse_count(const char *opt, const char *value, long long max)
{
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || v < 0 || v > max) {
        fprintf(stderr, "forja: --%s expects a whole number from 0 to %lld, not '%s'\n", opt, max,
                value);
        return -1;
    }
    return v;
}

void cli_print_help(const struct cli_cmd *cmd)
{
    printf("usage: forja %s [options]%s%s\n\n%s\n", cmd->name, cmd->args[0] ? " " : "", cmd->args,
           cmd->description);
    printf("\noptions:\n");
    for (int i = 0; cmd->opts[i].name; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", cmd->opts[i].name, cmd->opts[i].arg ? " " : "",
                 cmd->opts[i].arg ? cmd->opts[i].arg : "");
        printf("  %-24s %s\n", left, cmd->opts[i].help);
    }
    printf("  %-24s %s\n", "--help", "Show this help.");
}

struct tok_encoding *cli_open_encoding(const struct cli_cmd *cmd, const struct cli_args *a)
{
    const char *name = cli_get(cmd, a, "encoding");
    struct fj_err err = {0};
    struct tok_encoding *enc = tok_encoding_new(name ? name : "cl100k_base", &err);
    if (enc == NULL)
        fprintf(stderr, "forja %s: %s\n", cmd->name, err.msg);
    return enc;
}

int cli_special_mode(const struct cli_cmd *cmd, const struct cli_args *a, enum tok_special *mode)
{
    bool allow = cli_has(cmd, a, "allow-special"), ordinary = cli_has(cmd, a, "ordinary");
    if (allow && ordinary) {
        fprintf(stderr, "forja %s: --allow-special and --ordinary exclude each other\n", cmd->name);
        return CLI_USAGE;
    }
    *mode = allow ? TOK_SPECIAL_ALLOW : ordinary ? TOK_SPECIAL_AS_TEXT : TOK_SPECIAL_REJECT;
    return 0;
}

int cli_read_all(FILE *f, struct fj_buf *b)
{
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (fj_buf_append(b, chunk, n) != 0)
            return -1;
    if (fj_buf_reserve(b, 0) != 0) /* data is non-NULL even for empty input */
        return -1;
    return ferror(f) ? -1 : 0;
}

const char *cli_data_dir(const struct cli_cmd *cmd, const struct cli_args *a)
{
    const char *dir = cli_get(cmd, a, "data-dir");
    if (!dir || !*dir)
        dir = getenv("FORJA_HOME");
    if (!dir || !*dir)
        dir = getenv("FORJA_DATA_DIR");
    return dir && *dir ? dir : "forja-data";
}

int cli_models_dir(const struct cli_cmd *cmd, const struct cli_args *a, char *out, size_t cap)
{
    if (snprintf(out, cap, "%s/models", cli_data_dir(cmd, a)) >= (int)cap) {
        fprintf(stderr, "forja %s: data directory path too long\n", cmd->name);
        return CLI_USAGE;
    }
    struct fj_err err = {0};
    if (fj_mkdirs(out, &err) != 0) {
        fprintf(stderr, "forja %s: %s\n", cmd->name, err.msg);
        return CLI_FAILURE;
    }
    return CLI_OK;
}

int cli_model_path(const struct cli_cmd *cmd, const struct cli_args *a, const char *name, char *out,
                   size_t cap)
{
    char models[4096];
    int rc = cli_models_dir(cmd, a, models, sizeof models);
    if (rc != CLI_OK)
        return rc;
    if (!name)
        name = MODEL_BUILTIN_NAME;
    struct fj_err err = {0};
    if (model_resolve(models, name, out, cap, &err) != 0) {
        fprintf(stderr, "forja %s: %s\n", cmd->name, err.msg);
        return err.code == FJ_ERR_NOT_FOUND || err.code == FJ_ERR_INVALID ? CLI_USAGE : CLI_FAILURE;
    }
    return CLI_OK;
}
