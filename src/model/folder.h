/* folder.h - a model folder's parts other than the weights, and where models live.
 *
 * A model folder is what Hugging Face publishes: config.json (+ generation_config.json),
 * safetensors weights, tokenizer.json and tokenizer_config.json (chat template, bos/eos
 * tokens). forja keeps installed models in its data directory's models/ folder, one folder
 * per model, and creates the built-in base model (MODEL_BUILTIN_NAME) there on first use.
 */
#ifndef FJ_MODEL_FOLDER_H
#define FJ_MODEL_FOLDER_H

#include <stdbool.h>
#include <stdint.h>

#include "chat/chat.h"
#include "core/err.h"
#include "model/config.h"
#include "tok/tok.h"

/* The built-in base model's name (a folder under the models directory). */
#define MODEL_BUILTIN_NAME "forja-base"

#define MODEL_MAX_STOP 16

/* Everything but the weights: read by model_info_open, released by model_info_close. */
struct model_info {
    char path[4096];
    struct model_config cfg;
    struct tok_encoding *enc;    /* owned: the model's tokenizer */
    struct chat_template *tmpl;  /* owned: the chat template (ChatML when the model has none) */
    char *template_src;          /* owned: its text */
    bool template_is_default;    /* true when the folder had no template (ChatML is used) */
    char *bos_token, *eos_token; /* owned, NULL when the tokenizer config names none */
    uint32_t stop_ids[MODEL_MAX_STOP]; /* end-of-turn / eos ids generation stops at */
    int n_stop;
};

/* Reads path's config, tokenizer and chat template. Errors name the file; a folder with
 * only a SentencePiece tokenizer.model is refused as not supported yet. */
int model_info_open(struct model_info *info, const char *path, struct fj_err *err);
void model_info_close(struct model_info *info);

/* A conversation as the trainer sees it: messages (a JSON array of {"role", "content",
 * "weight"?}) rendered by the model's chat template, tokenized span by span, with mask 1 on
 * the tokens of assistant turns that count in the loss (chat.h states the rule). text and
 * tokens must be zeroed or freed; text may be NULL. */
int model_info_render_training(const struct model_info *info, const json_t *messages,
                               struct fj_buf *text, struct chat_tokens *tokens, struct fj_err *err);

/* A prompt for generation: messages rendered with add_generation_prompt, tokenized the same
 * way (mask all 0). */
int model_info_render_prompt(const struct model_info *info, const json_t *messages,
                             struct fj_buf *text, struct chat_tokens *tokens, struct fj_err *err);

/* Where NAME|PATH points: a value holding '/' or naming an existing folder is a path;
 * otherwise models_dir/NAME. The built-in name is created there when missing. */
int model_resolve(const char *models_dir, const char *name_or_path, char *out, size_t cap,
                  struct fj_err *err);

/* Creates the built-in base model in dir (if dir has no config.json yet): a small Llama-
 * architecture model over cl100k_base plus the ChatML tokens, initialised from a fixed
 * seed, written as a normal model folder. The folder appears complete or not at all. */
int model_builtin_create(const char *dir, struct fj_err *err);

/* The built-in model's config (what model_builtin_create writes). */
void model_builtin_config(struct model_config *cfg);

#endif
