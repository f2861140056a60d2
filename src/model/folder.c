/* folder.c - reading a model folder's tokenizer, chat template and stop tokens, and
 * resolving model names to folders (see folder.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "core/file.h"
#include "model/folder.h"

/* tokenizer_config.json can be large (Qwen's lists every added token) but not huge. */
#define MODEL_TOKENIZER_CONFIG_MAX (64u << 20)

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A token named in tokenizer_config.json: a string, or {"content": "..."} (AddedToken). */
static char *token_text(const json_t *v)
{
    if (json_is_object(v))
        v = json_object_get(v, "content");
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

/* chat_template: a string, or a list of {"name", "template"} of which "default" is used. */
static const char *template_text(const json_t *v)
{
    if (json_is_string(v))
        return json_string_value(v);
    size_t i;
    json_t *e;
    if (json_is_array(v))
        json_array_foreach(v, i, e)
        {
            const char *name = json_string_value(json_object_get(e, "name"));
            if (name && strcmp(name, "default") == 0)
                return json_string_value(json_object_get(e, "template"));
        }
    return NULL;
}

static void add_stop(struct model_info *info, int64_t id)
{
    if (id < 0 || info->n_stop >= MODEL_MAX_STOP)
        return;
    for (int i = 0; i < info->n_stop; i++)
        if (info->stop_ids[i] == (uint32_t)id)
            return;
    info->stop_ids[info->n_stop++] = (uint32_t)id;
}

static int read_tokenizer_config(struct model_info *info, struct fj_err *err)
{
    char path[4200];
    struct fj_buf text = {0};
    /* newer transformers keep the template in chat_template.jinja */
    snprintf(path, sizeof path, "%s/chat_template.jinja", info->path);
    if (fj_file_exists(path)) {
        if (fj_file_read(path, MODEL_TOKENIZER_CONFIG_MAX, &text, err) != 0)
            return FJ_ERR_IO;
        info->template_src = text.data ? text.data : strdup("");
        text = (struct fj_buf){0};
    }
    snprintf(path, sizeof path, "%s/tokenizer_config.json", info->path);
    if (!fj_file_exists(path))
        return 0;
    int rc = fj_file_read(path, MODEL_TOKENIZER_CONFIG_MAX, &text, err);
    if (rc != 0)
        return rc;
    json_error_t jerr;
    json_t *root = json_loadb(text.data, text.len, 0, &jerr);
    fj_buf_free(&text);
    if (!json_is_object(root)) {
        json_decref(root);
        return fj_err_set(err, FJ_ERR_FORMAT, "%s: line %d: %s", path, jerr.line, jerr.text);
    }
    info->bos_token = token_text(json_object_get(root, "bos_token"));
    info->eos_token = token_text(json_object_get(root, "eos_token"));
    const char *tmpl = template_text(json_object_get(root, "chat_template"));
    if (tmpl && !info->template_src)
        info->template_src = strdup(tmpl);
    json_decref(root);
    return 0;
}

int model_info_open(struct model_info *info, const char *path, struct fj_err *err)
{
    memset(info, 0, sizeof *info);
    if (snprintf(info->path, sizeof info->path, "%s", path) >= (int)sizeof info->path)
        return fj_err_set(err, FJ_ERR_RANGE, "model path too long");
    if (!is_dir(path))
        return fj_err_set(err, FJ_ERR_NOT_FOUND, "%s: no such model folder", path);
    int rc = model_config_load(&info->cfg, path, err);
    char file[4200];
    snprintf(file, sizeof file, "%s/tokenizer.json", path);
    if (rc == 0 && !fj_file_exists(file)) {
        snprintf(file, sizeof file, "%s/tokenizer.model", path);
        rc = fj_file_exists(file)
                 ? fj_err_set(err, FJ_ERR_INVALID,
                              "%s: SentencePiece tokenizers (tokenizer.model) "
                              "are not supported yet; forja reads byte-level BPE tokenizer.json",
                              path)
                 : fj_err_set(err, FJ_ERR_NOT_FOUND, "%s: no tokenizer.json", path);
    }
    if (rc == 0 && !(info->enc = tok_encoding_open_hf(file, err)))
        rc = err ? err->code : FJ_ERR_FORMAT;
    if (rc == 0)
        rc = read_tokenizer_config(info, err);
    if (rc == 0 && !info->template_src) {
        info->template_is_default = true;
        info->template_src = strdup(chat_chatml_template());
    }
    if (rc == 0 && !info->template_src)
        rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    if (rc == 0 &&
        !(info->tmpl = chat_template_new(info->template_src, strlen(info->template_src), err)))
        rc = err ? err->code : FJ_ERR_FORMAT;
    if (rc == 0 && tok_encoding_n_vocab(info->enc) > (uint32_t)info->cfg.vocab_size)
        rc = fj_err_set(err, FJ_ERR_FORMAT,
                        "%s: the tokenizer has %u tokens, more than the "
                        "model's vocab_size %d",
                        path, tok_encoding_n_vocab(info->enc), info->cfg.vocab_size);
    if (rc != 0) {
        model_info_close(info);
        return rc;
    }
    for (int i = 0; i < info->cfg.n_eos; i++)
        add_stop(info, info->cfg.eos_ids[i]);
    if (info->eos_token)
        add_stop(info, tok_token_id(info->enc, info->eos_token, strlen(info->eos_token)));
    /* with the ChatML fallback, a turn ends at <|im_end|> if the tokenizer has it */
    if (info->template_is_default)
        add_stop(info, tok_token_id(info->enc, "<|im_end|>", 10));
    return 0;
}

void model_info_close(struct model_info *info)
{
    if (!info)
        return;
    tok_encoding_free(info->enc);
    chat_template_free(info->tmpl);
    free(info->template_src);
    free(info->bos_token);
    free(info->eos_token);
    memset(info, 0, sizeof *info);
}

int model_resolve(const char *models_dir, const char *name, char *out, size_t cap,
                  struct fj_err *err)
{
    if (!name || !*name)
        return fj_err_set(err, FJ_ERR_INVALID, "no model named");
    if (strchr(name, '/') || is_dir(name)) {
        if (snprintf(out, cap, "%s", name) >= (int)cap)
            return fj_err_set(err, FJ_ERR_RANGE, "model path too long");
        return 0;
    }
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return fj_err_set(err, FJ_ERR_INVALID, "\"%s\" is not a model name", name);
    if (snprintf(out, cap, "%s/%s", models_dir, name) >= (int)cap)
        return fj_err_set(err, FJ_ERR_RANGE, "model path too long");
    if (strcmp(name, MODEL_BUILTIN_NAME) == 0)
        return model_builtin_create(out, err);
    if (!is_dir(out))
        return fj_err_set(err, FJ_ERR_NOT_FOUND,
                          "no model \"%s\" in %s (forja models list "
                          "shows the installed ones)",
                          name, models_dir);
    return 0;
}

static int keep_text(struct chat_rendered *r, struct fj_buf *text)
{
    if (text) {
        fj_buf_free(text);
        *text = r->text;
        r->text = (struct fj_buf){0};
    }
    chat_rendered_free(r);
    return 0;
}

int model_info_render_training(const struct model_info *info, const json_t *messages,
                               struct fj_buf *text, struct chat_tokens *tokens, struct fj_err *err)
{
    struct chat_rendered r = {0};
    int rc =
        chat_render_conversation(info->tmpl, messages, info->bos_token, info->eos_token, &r, err);
    if (rc == 0)
        rc = chat_tokenize(&r, info->enc, tokens, err);
    if (rc != 0) {
        chat_rendered_free(&r);
        return rc;
    }
    return keep_text(&r, text);
}

int model_info_render_prompt(const struct model_info *info, const json_t *messages,
                             struct fj_buf *text, struct chat_tokens *tokens, struct fj_err *err)
{
    if (!json_is_array(messages))
        return fj_err_set(err, FJ_ERR_INVALID, "messages must be an array");
    json_t *ctx = json_pack("{s:O, s:b, s:s?, s:s?}", "messages", messages, "add_generation_prompt",
                            1, "bos_token", info->bos_token, "eos_token", info->eos_token);
    if (!ctx)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    struct chat_rendered r = {0};
    struct chat_span whole = {0};
    int rc = chat_template_render(info->tmpl, ctx, &r.text, err);
    json_decref(ctx);
    if (rc == 0 && r.text.len > 0) {
        whole.end = r.text.len;
        r.spans = &whole;
        r.n_spans = 1;
        rc = chat_tokenize(&r, info->enc, tokens, err);
        r.spans = NULL;
        r.n_spans = 0;
    }
    if (rc != 0) {
        chat_rendered_free(&r);
        return rc;
    }
    return keep_text(&r, text);
}
