/* cmd_models.c - `forja models list|show|init`: the installed model folders. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "model/folder.h"
#include "model/safetensors.h"

static void format_count(char *out, size_t cap, int64_t n)
{
    if (n >= 1000000000)
        snprintf(out, cap, "%.2fB", n / 1e9);
    else if (n >= 1000000)
        snprintf(out, cap, "%.1fM", n / 1e6);
    else
        snprintf(out, cap, "%.1fK", n / 1e3);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int models_list(const struct cli_cmd *cmd, const struct cli_args *a)
{
    char dir[4096], path[4400];
    int rc = cli_model_path(cmd, a, NULL, path, sizeof path); /* creates the built-in model */
    if (rc == CLI_OK)
        rc = cli_models_dir(cmd, a, dir, sizeof dir);
    if (rc != CLI_OK)
        return rc;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "forja models: cannot read %s\n", dir);
        return CLI_FAILURE;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strstr(e->d_name, ".tmp-"))
            continue;
        snprintf(path, sizeof path, "%s/%s/config.json", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        fclose(f);
        char **grown = realloc(names, (n + 1) * sizeof *names);
        if (!grown)
            break;
        names = grown;
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, compare_names);
    bool json = cli_has(cmd, a, "json");
    if (!json)
        printf("%-28s %-20s %10s %8s  %s\n", "NAME", "ARCHITECTURE", "PARAMETERS", "CONTEXT",
               "NOTE");
    for (size_t i = 0; i < n; i++) {
        struct model_config cfg;
        struct fj_err err = {0};
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        bool ok = model_config_load(&cfg, path, &err) == 0;
        bool builtin = strcmp(names[i], MODEL_BUILTIN_NAME) == 0;
        if (json) {
            printf("{\"name\":\"%s\",\"path\":\"%s\",", names[i], path);
            if (ok)
                printf("\"architecture\":\"%s\",\"parameters\":%lld,\"context\":%d,"
                       "\"builtin\":%s}\n",
                       cfg.architecture, (long long)model_config_n_params(&cfg), cfg.n_ctx,
                       builtin ? "true" : "false");
            else
                printf("\"error\":\"unreadable config.json\"}\n");
        } else if (ok) {
            char count[32];
            format_count(count, sizeof count, model_config_n_params(&cfg));
            printf("%-28s %-20s %10s %8d  %s\n", names[i], cfg.architecture, count, cfg.n_ctx,
                   builtin ? "built-in, random weights" : "");
        } else {
            printf("%-28s %-20s %10s %8s  %s\n", names[i], "?", "?", "?", err.msg);
        }
        free(names[i]);
    }
    free(names);
    return CLI_OK;
}

static void print_token(const struct tok_encoding *enc, uint32_t id)
{
    const uint8_t *p;
    size_t len;
    if (tok_token_bytes(enc, id, &p, &len) == 0)
        printf("%.*s (%u)", (int)len, (const char *)p, id);
    else
        printf("%u", id);
}

/* Element types of the weight files, e.g. "BF16 (290 tensors)". */
static void print_dtypes(const char *path)
{
    struct fj_err err = {0};
    struct model_st *st = model_st_open_dir(path, &err);
    if (!st) {
        printf("weights:        unreadable: %s\n", err.msg);
        return;
    }
    const char *names[16];
    size_t counts[16], kinds = 0;
    for (size_t i = 0; i < model_st_count(st); i++) {
        const char *dt = model_st_at(st, i)->dtype_name;
        size_t k = 0;
        while (k < kinds && strcmp(names[k], dt) != 0)
            k++;
        if (k == kinds && kinds < 16) {
            names[kinds] = dt;
            counts[kinds++] = 0;
        }
        if (k < kinds)
            counts[k]++;
    }
    printf("weights:        %d file%s, ", model_st_n_files(st),
           model_st_n_files(st) == 1 ? "" : "s");
    for (size_t k = 0; k < kinds; k++)
        printf("%s%s (%zu tensors)", k ? ", " : "", names[k], counts[k]);
    printf("\n");
    model_st_close(st);
}

static int models_show(const struct cli_cmd *cmd, const struct cli_args *a, const char *name)
{
    char path[4400];
    int rc = cli_model_path(cmd, a, name, path, sizeof path);
    if (rc != CLI_OK)
        return rc;
    struct model_info info;
    struct fj_err err = {0};
    if (model_info_open(&info, path, &err) != 0) {
        fprintf(stderr, "forja models: %s\n", err.msg);
        return CLI_DATA_ERROR;
    }
    const struct model_config *c = &info.cfg;
    char count[32];
    int64_t n_params = model_config_n_params(c);
    format_count(count, sizeof count, n_params);
    printf("path:           %s\n", path);
    printf("architecture:   %s\n", c->architecture);
    printf("parameters:     %lld (%s)\n", (long long)n_params, count);
    printf("shape:          %d layers, width %d, %d heads (%d key/value) of %d, MLP %d, "
           "vocabulary %d%s\n",
           c->n_layer, c->n_embd, c->n_head, c->n_kv_head, c->head_dim, c->n_ff, c->vocab_size,
           c->tie_embeddings ? ", tied embeddings" : "");
    printf("context length: %d\n", c->n_ctx);
    if (c->arch != MODEL_ARCH_GPT2)
        printf("rotary:         theta %g%s\n", c->rope_theta,
               c->rope_scaling == MODEL_ROPE_LLAMA3 ? ", llama3 scaling" : "");
    print_dtypes(path);
    uint32_t n_special = 0, n_vocab = tok_encoding_n_vocab(info.enc);
    for (uint32_t id = 0; id < n_vocab; id++)
        n_special += tok_is_special(info.enc, id);
    printf("tokenizer:      %u tokens, %u special:", n_vocab, n_special);
    uint32_t shown = 0;
    for (uint32_t id = 0; id < n_vocab && shown < 12; id++)
        if (tok_is_special(info.enc, id)) {
            printf(shown++ ? ", " : " ");
            print_token(info.enc, id);
        }
    printf("%s\n", n_special > shown ? ", ..." : "");
    printf("bos token:      %s\n", info.bos_token ? info.bos_token : "(none)");
    printf("end of turn:    ");
    for (int i = 0; i < info.n_stop; i++) {
        printf(i ? ", " : "");
        print_token(info.enc, info.stop_ids[i]);
    }
    printf("%s\n", info.n_stop ? "" : "(none)");
    printf("chat template:  %s\n\n%s\n",
           info.template_is_default ? "none in the folder; ChatML is used" : "from the folder",
           info.template_src);
    model_info_close(&info);
    return CLI_OK;
}

static int run_models(const struct cli_cmd *cmd, const struct cli_args *a)
{
    const char *pos[3] = {NULL, NULL, NULL};
    size_t n_pos = 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->items[i].opt < 0 && n_pos < 3)
            pos[n_pos++] = a->items[i].value;
    const char *sub = n_pos ? pos[0] : "list";
    if (strcmp(sub, "list") == 0 && n_pos <= 1)
        return models_list(cmd, a);
    if (strcmp(sub, "show") == 0 && n_pos == 2)
        return models_show(cmd, a, pos[1]);
    if (strcmp(sub, "init") == 0 && n_pos == 1) {
        char path[4400];
        int rc = cli_model_path(cmd, a, NULL, path, sizeof path);
        if (rc == CLI_OK)
            printf("built-in model ready: %s\n", path);
        return rc;
    }
    fprintf(stderr, "forja models: use 'forja models list', 'forja models show NAME|PATH' or "
                    "'forja models init'\n");
    return CLI_USAGE;
}

static const struct cli_opt models_opts[] = {
    CLI_OPT_DATA_DIR,
    {"json", NULL, "list: print one JSON object per model."},
    {NULL, NULL, NULL},
};

const struct cli_cmd cli_cmd_models = {
    "models",
    "list | show NAME|PATH | init",
    "List, inspect and create models",
    "`list` shows the model folders installed in the data directory's models/ folder with "
    "their architecture, parameter count and context length. `show` describes one model, "
    "installed (by name) or anywhere (by path): architecture, shape, parameters, weight "
    "dtypes, context length, tokenizer, special and end-of-turn tokens, and the chat "
    "template. `init` creates the built-in base model (" MODEL_BUILTIN_NAME "), a small "
    "randomly initialised Llama-architecture model over cl100k_base; commands that need a "
    "model create it on first use too. A Hugging Face model folder (config.json, "
    "*.safetensors, tokenizer.json, tokenizer_config.json) copied into the models folder is "
    "installed.",
    models_opts,
    run_models,
};
