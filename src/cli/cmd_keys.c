/* cmd_keys.c - `forja keys`: create, list and revoke the API keys of a data directory. A
 * key is printed once, when it is created; the store keeps only its hash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "store/store.h"

static int open_store(const struct cli_cmd *cmd, const struct cli_args *a, struct store **st)
{
    struct fj_err err = {0};
    if (store_open(st, cli_data_dir(cmd, a), &err) != 0) {
        fprintf(stderr, "forja keys: %s\n", err.msg);
        return CLI_FAILURE;
    }
    return CLI_OK;
}

static int keys_create(struct store *st, const char *name)
{
    char *key = NULL;
    json_t *info = NULL;
    struct fj_err err = {0};
    if (store_key_create(st, name, &key, &info, &err) != 0) {
        fprintf(stderr, "forja keys: %s\n", err.msg);
        return CLI_FAILURE;
    }
    printf("%s\n", key);
    fprintf(stderr, "key %s%s%s created; it is shown only this once\n",
            json_string_value(json_object_get(info, "id")), name ? " named " : "",
            name ? name : "");
    free(key);
    json_decref(info);
    return CLI_OK;
}

static int keys_list(struct store *st)
{
    json_t *list = NULL;
    struct fj_err err = {0};
    if (store_key_list(st, &list, &err) != 0) {
        fprintf(stderr, "forja keys: %s\n", err.msg);
        return CLI_FAILURE;
    }
    printf("%-32s %-12s %-20s %-20s %s\n", "ID", "KEY", "CREATED", "REVOKED", "NAME");
    size_t i;
    json_t *k;
    json_array_foreach(list, i, k)
    {
        char created[32] = "-", revoked[32] = "-";
        struct tm tm;
        time_t t = (time_t)json_integer_value(json_object_get(k, "created_at"));
        strftime(created, sizeof created, "%Y-%m-%d %H:%M:%S", gmtime_r(&t, &tm));
        if (json_is_integer(json_object_get(k, "revoked_at"))) {
            t = (time_t)json_integer_value(json_object_get(k, "revoked_at"));
            strftime(revoked, sizeof revoked, "%Y-%m-%d %H:%M:%S", gmtime_r(&t, &tm));
        }
        const char *name = json_string_value(json_object_get(k, "name"));
        printf("%-32s %-12s %-20s %-20s %s\n", json_string_value(json_object_get(k, "id")),
               json_string_value(json_object_get(k, "prefix")), created, revoked, name ? name : "");
    }
    json_decref(list);
    return CLI_OK;
}

static int run_keys(const struct cli_cmd *cmd, const struct cli_args *a)
{
    const char *pos[2] = {NULL, NULL};
    size_t n = 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->items[i].opt == -1 && n < 2)
            pos[n++] = a->items[i].value;
    const char *action = pos[0] ? pos[0] : "";
    bool create = strcmp(action, "create") == 0, list = strcmp(action, "list") == 0,
         revoke = strcmp(action, "revoke") == 0;
    if (!create && !list && !revoke) {
        fprintf(stderr, "forja keys: say create, list or revoke ID\n");
        return CLI_USAGE;
    }
    if (revoke && !pos[1]) {
        fprintf(stderr, "forja keys revoke: which key? (its ID, from `forja keys list`)\n");
        return CLI_USAGE;
    }
    struct store *st = NULL;
    int rc = open_store(cmd, a, &st);
    if (rc != CLI_OK)
        return rc;
    if (create)
        rc = keys_create(st, cli_get(cmd, a, "name"));
    else if (list)
        rc = keys_list(st);
    else {
        struct fj_err err = {0};
        if (store_key_revoke(st, pos[1], &err) != 0) {
            fprintf(stderr, "forja keys revoke: %s\n", err.msg);
            rc = err.code == FJ_ERR_NOT_FOUND ? CLI_USAGE : CLI_FAILURE;
        } else {
            fprintf(stderr, "key %s revoked\n", pos[1]);
        }
    }
    store_close(st);
    return rc;
}

static const struct cli_opt keys_opts[] = {
    {"name", "NAME", "A name to remember the new key by (create)."},
    CLI_OPT_DATA_DIR,
    {NULL, NULL, NULL},
};

const struct cli_cmd cli_cmd_keys = {
    "keys",
    "create|list|revoke [ID]",
    "Create, list and revoke the service's API keys",
    "`forja keys create [--name NAME]` prints a new key for `forja serve` (alone on standard "
    "output: the only time it is shown; the data directory keeps only its SHA-256). `forja "
    "keys list` shows each key's id, first characters, dates and name; `forja keys revoke ID` "
    "stops a key from working at once, even on a running server.",
    keys_opts,
    run_keys,
};

/* ---- forja token ----------------------------------------------------------------------- */

/* "90", "90s", "30m", "1h", "2d" -> seconds; -1 if malformed. */
static long long parse_ttl(const char *s)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    long long unit = !*end               ? 1
                     : !strcmp(end, "s") ? 1
                     : !strcmp(end, "m") ? 60
                     : !strcmp(end, "h") ? 3600
                     : !strcmp(end, "d") ? 86400
                                         : -1;
    if (end == s || v < 1 || unit < 0 || v > 366LL * 86400 / unit)
        return -1;
    return v * unit;
}

static int run_token(const struct cli_cmd *cmd, const struct cli_args *a)
{
    const char *ttl_s = cli_get(cmd, a, "ttl");
    long long ttl = parse_ttl(ttl_s ? ttl_s : "1h");
    if (ttl < 0) {
        fprintf(stderr, "forja token: --ttl takes a duration such as 90s, 30m, 1h or 7d (at "
                        "most a year)\n");
        return CLI_USAGE;
    }
    struct store *st;
    int rc = open_store(cmd, a, &st);
    if (rc != CLI_OK)
        return rc;
    char *token = NULL;
    int64_t expires = 0;
    struct fj_err err = {0};
    if (store_token_create(st, ttl, &token, &expires, &err) != 0) {
        fprintf(stderr, "forja token: %s\n", err.msg);
        rc = CLI_FAILURE;
    } else {
        char when[32];
        time_t t = (time_t)expires;
        struct tm tm;
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
        printf("%s\n", token);
        fprintf(stderr, "management token valid until %s\n", when);
        free(token);
    }
    store_close(st);
    return rc;
}

static const struct cli_opt token_opts[] = {
    {"ttl", "DURATION", "How long the token works: 90s, 30m, 1h (default), 7d."},
    CLI_OPT_DATA_DIR,
    {NULL, NULL, NULL},
};

const struct cli_cmd cli_cmd_token = {
    "token",
    "",
    "Print a management token for the deployment routes",
    "Prints a signed token, alone on standard output, that the deployment routes "
    "(PUT/GET/DELETE /subscriptions/.../providers/Microsoft.CognitiveServices/accounts/.../"
    "deployments/NAME, Azure Resource Manager's shape) accept in `Authorization: Bearer` until "
    "it expires: forja's `az account get-access-token`. API keys do not work there, and "
    "management tokens do not work on the other routes. Tokens are signed with a secret kept "
    "in the data directory, so they work only with its server.",
    token_opts,
    run_token,
};
