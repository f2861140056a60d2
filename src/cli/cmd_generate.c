/* cmd_generate.c - `forja generate`: greedy continuation with the KV cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "model/folder.h"
#include "model/model.h"
#include "nn/nn.h"

static uint32_t argmax(const float *logits, int V)
{
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best])
            best = v;
    return (uint32_t)best;
}

static bool is_stop(const struct model_info *info, uint32_t id)
{
    for (int i = 0; i < info->n_stop; i++)
        if (info->stop_ids[i] == id)
            return true;
    return false;
}

/* The prompt's ids: raw text (special-token text recognised unless no_special), or with
 * chat, one user message (after a system message when system is not NULL) rendered with
 * the template's generation prompt. */
static int prompt_ids(const struct model_info *info, const char *prompt, const char *system,
                      bool chat, bool no_special, struct chat_tokens *out, struct fj_err *err)
{
    if (chat) {
        json_t *messages = json_pack("[{s:s, s:s}]", "role", "user", "content", prompt);
        if (messages && system)
            json_array_insert_new(messages, 0,
                                  json_pack("{s:s, s:s}", "role", "system", "content", system));
        int rc = messages ? model_info_render_prompt(info, messages, NULL, out, err)
                          : fj_err_set(err, FJ_ERR_INVALID, "the prompt is not valid UTF-8");
        json_decref(messages);
        return rc;
    }
    return tok_encode(info->enc, prompt, strlen(prompt),
                      no_special ? TOK_SPECIAL_AS_TEXT : TOK_SPECIAL_ALLOW, &out->ids, err);
}

static int generate(const struct cli_cmd *cmd, const struct cli_args *a,
                    const struct model_info *info, struct model *m, const struct tok_ids *prompt,
                    long long max_tokens)
{
    const struct model_config *c = model_get_config(m);
    struct fj_err err = {0};
    long long want = (long long)prompt->len + max_tokens;
    int cache = want < c->n_ctx ? (int)want : c->n_ctx;
    if (prompt->len == 0) {
        fprintf(stderr, "forja generate: the prompt has no tokens; there is nothing to continue\n");
        return CLI_DATA_ERROR;
    }
    if ((long long)prompt->len >= c->n_ctx) {
        fprintf(stderr, "forja generate: the prompt has %zu tokens; the model's context is %d\n",
                prompt->len, c->n_ctx);
        return CLI_DATA_ERROR;
    }
    struct model_kv *kv = model_kv_new(m, cache, &err);
    float *logits = malloc((size_t)c->vocab_size * sizeof *logits);
    int32_t *ids = malloc(prompt->len * sizeof *ids + 1);
    if (!kv || !logits || !ids) {
        fprintf(stderr, "forja generate: %s\n", kv ? "out of memory" : err.msg);
        model_kv_free(kv), free(logits), free(ids);
        return CLI_FAILURE;
    }
    for (size_t i = 0; i < prompt->len; i++)
        ids[i] = (int32_t)prompt->data[i];
    bool print_ids = cli_has(cmd, a, "ids");
    int rc = model_kv_forward(kv, ids, (int)prompt->len, false, logits, &err);
    long long n = 0;
    while (rc == 0 && n < max_tokens && model_kv_len(kv) < cache) {
        uint32_t next = argmax(logits, c->vocab_size);
        if (is_stop(info, next))
            break;
        if (print_ids) {
            printf(n ? " %u" : "%u", next);
        } else {
            const uint8_t *p;
            size_t len;
            if (tok_token_bytes(info->enc, next, &p, &len) == 0)
                fwrite(p, 1, len, stdout);
        }
        fflush(stdout);
        n++;
        int32_t tok = (int32_t)next;
        if (n < max_tokens && model_kv_len(kv) < cache)
            rc = model_kv_forward(kv, &tok, 1, false, logits, &err);
    }
    putchar('\n');
    if (rc != 0)
        fprintf(stderr, "forja generate: %s\n", err.msg);
    model_kv_free(kv);
    free(logits);
    free(ids);
    return rc == 0 ? CLI_OK : CLI_FAILURE;
}

static int run_generate(const struct cli_cmd *cmd, const struct cli_args *a)
{
    const char *prompt = cli_get(cmd, a, "prompt");
    if (!prompt) {
        fprintf(stderr, "forja generate: --prompt TEXT is required\n");
        return CLI_USAGE;
    }
    long long max_tokens = 64;
    if (cli_get(cmd, a, "max-tokens") &&
        (max_tokens = cli_parse_count("max-tokens", cli_get(cmd, a, "max-tokens"), 1 << 22)) < 0)
        return CLI_USAGE;
    const char *threads = cli_get(cmd, a, "threads");
    long long n_threads = threads ? cli_parse_count("threads", threads, 1024) : 0;
    if (n_threads < 0)
        return CLI_USAGE;
    nn_set_threads((int)n_threads);
    char path[4400];
    int rc = cli_model_path(cmd, a, cli_get(cmd, a, "model"), path, sizeof path);
    if (rc != CLI_OK)
        return rc;
    struct fj_err err = {0};
    struct model_info info;
    if (model_info_open(&info, path, &err) != 0) {
        fprintf(stderr, "forja generate: %s\n", err.msg);
        return CLI_DATA_ERROR;
    }
    struct chat_tokens ptoks = {0};
    struct model *m = NULL;
    if (cli_get(cmd, a, "system") && !cli_has(cmd, a, "chat")) {
        fprintf(stderr, "forja generate: --system goes with --chat\n");
        model_info_close(&info);
        return CLI_USAGE;
    }
    if (prompt_ids(&info, prompt, cli_get(cmd, a, "system"), cli_has(cmd, a, "chat"),
                   cli_has(cmd, a, "no-special"), &ptoks, &err) != 0) {
        fprintf(stderr, "forja generate: %s\n", err.msg);
        rc = CLI_DATA_ERROR;
    } else if (!(m = model_load(path, &err))) {
        fprintf(stderr, "forja generate: %s\n", err.msg);
        rc = CLI_DATA_ERROR;
    } else if (cli_get(cmd, a, "adapter") &&
               model_lora_load(m, cli_get(cmd, a, "adapter"), &err) != 0) {
        fprintf(stderr, "forja generate: %s\n", err.msg);
        rc = CLI_DATA_ERROR;
    } else {
        rc = generate(cmd, a, &info, m, &ptoks.ids, max_tokens);
    }
    model_free(m);
    chat_tokens_free(&ptoks);
    model_info_close(&info);
    return rc;
}

static const struct cli_opt generate_opts[] = {
    {"model", "NAME|PATH", "The model (default: the built-in model)."},
    {"prompt", "TEXT", "The text to continue (required)."},
    {"max-tokens", "N", "Stop after N new tokens (default 64)."},
    {"chat", NULL,
     "Treat --prompt as one user message: render it with the chat template "
     "and its generation prompt."},
    {"system", "TEXT", "With --chat: a system message before the prompt."},
    {"no-special", NULL,
     "Treat special-token text in the prompt (<|im_start|>, ...) as "
     "ordinary text."},
    {"ids", NULL, "Print the generated token ids instead of the text."},
    {"adapter", "DIR", "Apply the LoRA adapter in DIR (PEFT format)."},
    {"threads", "N", "Threads to compute with (default: all cores)."},
    CLI_OPT_DATA_DIR,
    {NULL, NULL, NULL},
};

const struct cli_cmd cli_cmd_generate = {
    "generate",
    "",
    "Continue a prompt greedily",
    "Loads the model and continues --prompt with the most likely token at each step (greedy "
    "decoding, with a KV cache), printing the new text as it comes. Special tokens written in "
    "the prompt are recognised as those tokens, as Hugging Face tokenizers do by default; no "
    "beginning-of-sequence token is added (write it in the prompt if the model wants one, or "
    "use --chat). Generation stops at the model's end-of-turn or end-of-sequence tokens "
    "(generation_config.json, tokenizer_config.json's eos_token), at --max-tokens, or at the "
    "context length.",
    generate_opts,
    run_generate,
};
