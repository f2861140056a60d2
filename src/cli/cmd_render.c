/* cmd_render.c - `forja render`: a conversation as the trainer (or the server) sees it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "model/folder.h"

static void print_json(const struct fj_buf *text, const struct chat_tokens *t, bool mask)
{
    json_t *ids = json_array(), *m = json_array();
    for (size_t i = 0; i < t->ids.len; i++) {
        json_array_append_new(ids, json_integer(t->ids.data[i]));
        json_array_append_new(m, json_integer(t->mask[i]));
    }
    json_t *o =
        json_pack("{s:s%, s:o}", "text", text->data ? text->data : "", text->len, "ids", ids);
    if (mask)
        json_object_set_new(o, "mask", m);
    else
        json_decref(m);
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    puts(s);
    free(s);
    json_decref(o);
}

static void print_human(const struct fj_buf *text, const struct chat_tokens *t, bool mask)
{
    fwrite(text->data, 1, text->len, stdout);
    if (text->len == 0 || text->data[text->len - 1] != '\n')
        putchar('\n');
    printf("--- %zu tokens\n", t->ids.len);
    for (size_t i = 0; i < t->ids.len; i++)
        printf(i + 1 < t->ids.len ? "%u " : "%u\n", t->ids.data[i]);
    if (mask) {
        size_t counted = 0;
        for (size_t i = 0; i < t->ids.len; i++)
            counted += t->mask[i];
        printf("--- mask: %zu of %zu tokens count in the loss\n", counted, t->ids.len);
        for (size_t i = 0; i < t->ids.len; i++)
            printf(i + 1 < t->ids.len ? "%u " : "%u\n", t->mask[i]);
    }
}

static int run_render(const struct cli_cmd *cmd, const struct cli_args *a)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->items[i].opt < 0) {
            fprintf(stderr, "forja render: unexpected argument '%s' (messages come from stdin)\n",
                    a->items[i].value);
            return CLI_USAGE;
        }
    char path[4400];
    int rc = cli_model_path(cmd, a, cli_get(cmd, a, "model"), path, sizeof path);
    if (rc != CLI_OK)
        return rc;
    struct fj_buf in = {0};
    if (cli_read_all(stdin, &in) != 0) {
        fprintf(stderr, "forja render: cannot read standard input\n");
        return CLI_FAILURE;
    }
    json_error_t jerr;
    json_t *root = json_loadb(in.data, in.len, 0, &jerr);
    fj_buf_free(&in);
    /* a messages array, or an object holding one (a line of a training file) */
    json_t *messages = json_is_object(root) ? json_object_get(root, "messages") : root;
    if (!json_is_array(messages)) {
        fprintf(stderr,
                "forja render: standard input must be a JSON array of messages or an "
                "object with \"messages\"%s%s\n",
                root ? "" : ": ", root ? "" : jerr.text);
        json_decref(root);
        return CLI_DATA_ERROR;
    }
    struct model_info info;
    struct fj_err err = {0};
    if (model_info_open(&info, path, &err) != 0) {
        fprintf(stderr, "forja render: %s\n", err.msg);
        json_decref(root);
        return CLI_DATA_ERROR;
    }
    struct fj_buf text = {0};
    struct chat_tokens tokens = {0};
    bool gen = cli_has(cmd, a, "generation-prompt");
    rc = gen ? model_info_render_prompt(&info, messages, &text, &tokens, &err)
             : model_info_render_training(&info, messages, &text, &tokens, &err);
    if (rc != 0) {
        fprintf(stderr, "forja render: %s\n", err.msg);
        rc = CLI_DATA_ERROR;
    } else {
        bool mask = cli_has(cmd, a, "mask");
        if (cli_has(cmd, a, "json"))
            print_json(&text, &tokens, mask);
        else
            print_human(&text, &tokens, mask);
        rc = CLI_OK;
    }
    fj_buf_free(&text);
    chat_tokens_free(&tokens);
    model_info_close(&info);
    json_decref(root);
    return rc;
}

static const struct cli_opt render_opts[] = {
    {"model", "NAME|PATH",
     "The model whose chat template and tokenizer are used (default: "
     "the built-in model)."},
    {"generation-prompt", NULL,
     "Render for generation: append the template's assistant "
     "header (add_generation_prompt), as the server does."},
    {"mask", NULL, "Also print which tokens count in the loss (1) and which do not (0)."},
    {"json", NULL, "Print one JSON object: text, ids and (with --mask) mask."},
    CLI_OPT_DATA_DIR,
    {NULL, NULL, NULL},
};

const struct cli_cmd cli_cmd_render = {
    "render",
    "",
    "Show a conversation as the model sees it",
    "Reads a JSON array of chat messages (or an object with \"messages\", like a line of a "
    "training file) from standard input, renders it with the model's chat template and "
    "prints the text and its token ids: exactly what the trainer sees. Each turn is "
    "tokenized on its own, special tokens recognised; with --mask, the tokens of assistant "
    "turns (unless \"weight\": 0) count in the loss, the rest do not (docs/chat-templates.md).",
    render_opts,
    run_render,
};
