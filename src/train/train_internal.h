/* train_internal.h - what loop.c and checkpoint.c share. Not part of the API. */
#ifndef FJ_TRAIN_INTERNAL_H
#define FJ_TRAIN_INTERNAL_H

#include <jansson.h>

#include "core/buf.h"
#include "train/train.h"

#define TRAIN_CKPT_FORMAT  "forja-train-checkpoint"
#define TRAIN_CKPT_VERSION 1

/* Where a run stands after a step: what a checkpoint records to resume from. */
struct train_position {
    int64_t step;   /* optimizer steps done */
    int epoch;      /* 0-based epoch the next step belongs to */
    int64_t cursor; /* steps of that epoch already done */
};

/* Writes the trained model (full: a model folder; LoRA: a PEFT adapter folder) into dir,
 * with the base model's tokenizer and chat-template files, so it loads on its own (an
 * adapter names base_name as its base). */
int train_save_model(struct model *m, bool lora, const char *base_dir, const char *base_name,
                     const char *dir, struct fj_err *err);

/* Writes root/ckpt-step-N (N = pos->step) whole or not at all: the model or adapter folder
 * (model/ or adapter/), optimizer.safetensors, results.csv and state.json (plan, position,
 * fingerprints, metrics), built in a temporary folder, fsynced, then renamed into place.
 * Then removes all but the newest `keep` checkpoints. The path goes to out. */
int train_checkpoint_write(const char *root, struct model *m, bool lora, const char *base_dir,
                           const char *base_name, struct train_adamw *opt,
                           const struct train_position *pos, json_t *state,
                           const struct fj_buf *results, int keep, char *out, size_t cap,
                           struct fj_err *err);

/* The checkpoint to resume from: path itself when it holds a state.json, else the newest
 * path/checkpoints/ckpt-step-N. */
int train_checkpoint_find(const char *path, char *out, size_t cap, struct fj_err *err);

/* Reads a checkpoint's state.json (checked: format and version) and results.csv. The caller
 * owns *state. */
int train_checkpoint_read(const char *ckpt, json_t **state, struct fj_buf *results,
                          struct fj_err *err);

/* Restores the optimizer's moments and step count from ckpt/optimizer.safetensors. */
int train_checkpoint_load_optim(const char *ckpt, struct train_adamw *opt, struct fj_err *err);


#endif
