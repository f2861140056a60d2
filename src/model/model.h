/* model.h - a transformer in memory: weights, LoRA adapters, training forward/backward and
 * KV-cache inference, for the architectures of config.h.
 *
 *     struct model *m = model_load("models/SmolLM2-135M", &err);
 *     struct model_run *run = model_run_new(m, B, T, &err);     // activations for (B, T)
 *     model_zero_grad(m);
 *     model_forward(run, tokens, targets, mask, NULL, true, seed, &loss, &err);
 *     model_backward(run, 0);                                   // grads of trainable params
 *     ... optimizer reads model_param_at(m, i)->data / ->grad ...
 *     model_run_free(run); model_free(m);
 *
 * Weights are fp32 in one block, laid out from a size table; the parameter table names each
 * tensor as Hugging Face does and points into that block. Internally q/k/v are one fused
 * projection and gate/up another (one GEMM each); the HF tensors are contiguous row ranges
 * of them, so no copy is needed to read or write them. GPT-2's Conv1D weights, stored
 * (in, out) by HF, are held transposed like every other linear weight (out, in).
 *
 * Gradients are allocated only for trainable tensors: every tensor for full fine-tuning,
 * only the LoRA A/B matrices once a LoRA adapter is attached.
 *
 * Not thread-safe: one model_run (or model_kv) per thread, and no two runs of the same model
 * computing gradients at once. Kernels themselves use all threads (nn_set_threads).
 */
#ifndef FJ_MODEL_MODEL_H
#define FJ_MODEL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "model/config.h"
#include "model/safetensors.h"

struct model;

/* One tensor of the model, as Hugging Face (or PEFT, for LoRA) names and shapes it. */
struct model_param {
    char name[128];   /* e.g. "model.layers.3.mlp.up_proj.weight" */
    int ndim;         /* 1 or 2 */
    int64_t shape[2]; /* HF shape */
    size_t numel;
    bool transposed; /* held as the transpose of the HF shape (GPT-2 Conv1D weights) */
    bool lora;       /* a LoRA A or B matrix */
    float *data;     /* borrowed; lives as long as the model */
    float *grad;     /* same layout as data; NULL when the tensor is not trainable */
};

/* ---- building, loading, saving -------------------------------------------------------- */

/* A model of cfg's shape with all weights zero (the caller fills them). NULL + err on a
 * config too large to allocate (FJ_ERR_NOMEM, FJ_ERR_RANGE). Owned by the caller. */
struct model *model_new(const struct model_config *cfg, struct fj_err *err);

/* Loads a Hugging Face model folder: config.json (+ generation_config.json) and its
 * safetensors weights, converted to fp32. Every tensor the architecture needs must be
 * present with the shape the config implies (errors name the tensor); extra tensors
 * (attention-mask buffers, rotary caches) are ignored. */
struct model *model_load(const char *dir, struct fj_err *err);

/* The bytes the weights of a model of cfg's shape take (what model_new allocates for
 * them), without allocating them: to plan memory before loading. */
size_t model_weight_bytes(const struct model_config *cfg);

/* Frees the model and its adapter. NULL is allowed. */
void model_free(struct model *m);

/* Writes config.json and model.safetensors (in dtype F32 or BF16) into dir (created if
 * missing), with HF's names and layouts; tensors tied to others are not written. Files are
 * replaced atomically. Tokenizer files are the caller's to copy. */
int model_save(const struct model *m, const char *dir, enum model_dtype dtype, struct fj_err *err);

/* The model's config. Borrowed. */
const struct model_config *model_get_config(const struct model *m);

/* The parameter table: base tensors first (in HF's order), then LoRA tensors. */
size_t model_n_params(const struct model *m);
struct model_param *model_param_at(struct model *m, size_t i);
struct model_param *model_param_find(struct model *m, const char *name);

/* Total number of elements of the base model (tied tensors once) / of the trainable ones. */
int64_t model_count_params(const struct model *m);
int64_t model_count_trainable(const struct model *m);

/* Makes every base tensor trainable (full fine-tuning): allocates their gradients. Fails
 * when a LoRA adapter is attached. */
int model_train_full(struct model *m, struct fj_err *err);

/* Every trainable value as one flat block, and its gradients as another of the same layout
 * (full fine-tuning: all base weights; LoRA: all A and B matrices), for optimizers. Returns
 * the number of floats (0 when nothing is trainable: *data and *grad are then NULL). The
 * parameter table's data/grad pointers of trainable tensors point inside these blocks.
 * Borrowed; valid until model_free. */
size_t model_trainable_block(struct model *m, float **data, float **grad);

/* ---- LoRA ------------------------------------------------------------------------------ */

/* Which linear projections carry LoRA (PEFT's target_modules). */
enum model_lora_target {
    MODEL_LORA_Q = 1 << 0,    /* q_proj */
    MODEL_LORA_K = 1 << 1,    /* k_proj */
    MODEL_LORA_V = 1 << 2,    /* v_proj */
    MODEL_LORA_O = 1 << 3,    /* o_proj */
    MODEL_LORA_GATE = 1 << 4, /* gate_proj */
    MODEL_LORA_UP = 1 << 5,   /* up_proj */
    MODEL_LORA_DOWN = 1 << 6, /* down_proj */
    /* GPT-2 */
    MODEL_LORA_C_ATTN = 1 << 7, /* attn.c_attn (fused q, k, v) */
    MODEL_LORA_C_PROJ = 1 << 8, /* attn.c_proj and mlp.c_proj (PEFT matches both) */
    MODEL_LORA_C_FC = 1 << 9,   /* mlp.c_fc */
};

struct model_lora_config {
    int r;            /* rank */
    float alpha;      /* lora_alpha; the update is scaled by alpha / r */
    float dropout;    /* lora_dropout, applied to the LoRA branch's input while training */
    unsigned targets; /* enum model_lora_target bits */
};

/* Parses PEFT-style target module names ("q_proj", "c_attn", ...) separated by commas or
 * given as "all-linear"; a name the architecture does not have is FJ_ERR_INVALID. */
int model_lora_parse_targets(const struct model_config *cfg, const char *list, unsigned *targets,
                             struct fj_err *err);

/* Writes the PEFT names of the target bits, comma separated in PEFT's module order
 * ("q_proj,v_proj"), into out (truncated to cap). */
void model_lora_format_targets(unsigned targets, char *out, size_t cap);

/* Attaches a new adapter initialised as PEFT does: A Kaiming-uniform (a = sqrt(5)), B zero,
 * drawn from seed. The base becomes frozen; A and B are trainable. */
int model_lora_attach(struct model *m, const struct model_lora_config *lc, uint64_t seed,
                      struct fj_err *err);

/* Attaches the PEFT adapter in dir (adapter_config.json + adapter_model.safetensors). */
int model_lora_load(struct model *m, const char *dir, struct fj_err *err);

/* Writes the attached adapter as PEFT saves it; base_model names the base in its config. */
int model_lora_save(const struct model *m, const char *dir, const char *base_model,
                    struct fj_err *err);

/* The attached adapter's settings, or NULL. Borrowed. */
const struct model_lora_config *model_lora_get(const struct model *m);

/* ---- training forward and backward ---------------------------------------------------- */

struct model_run;

/* Activations and scratch for batches of B rows of T tokens. Owned by the caller. */
struct model_run *model_run_new(struct model *m, int B, int T, struct fj_err *err);

/* The bytes model_run_new(m, B, T) allocates (to size micro-batches to a memory budget). */
size_t model_run_bytes(const struct model *m, int B, int T);
void model_run_free(struct model_run *r);

struct model_loss {
    double loss;       /* mean cross-entropy over the counted tokens (0 when there are none) */
    int64_t n_tokens;  /* tokens with mask 1 */
    int64_t n_correct; /* of those, how many have argmax(logits) == target */
};

/* Uses only the first B rows (1 <= B <= the B the run was made for) from now on: a last,
 * smaller micro-batch runs without padding rows. FJ_ERR_RANGE otherwise. */
int model_run_set_batch(struct model_run *r, int B, struct fj_err *err);

/* Forward over tokens (B, T) predicting targets (B, T), counting positions where mask
 * (B, T) is 1 (mask may be NULL: all count). pos (B, T) may be NULL (each row is one
 * sequence at positions 0 .. T-1) or give packed rows: several sequences one after another,
 * each with positions 0, 1, 2, ... and attention confined to itself, so each gets the
 * logits it would get alone. train enables LoRA dropout, drawn from dropout_seed. Ids
 * outside the vocabulary, or positions that do not count up from 0, fail with FJ_ERR_RANGE. */
int model_forward(struct model_run *r, const int32_t *tokens, const int32_t *targets,
                  const float *mask, const int32_t *pos, bool train, uint64_t dropout_seed,
                  struct model_loss *loss, struct fj_err *err);

/* The logits (B, T, V) of the last forward; borrowed, overwritten by model_backward. */
const float *model_run_logits(const struct model_run *r);

/* Sets every trainable tensor's gradient to zero. */
void model_zero_grad(struct model *m);

/* Adds to every trainable tensor's grad the gradient of the last forward's summed masked
 * loss divided by n_tokens: the counted tokens of the whole optimizer step when it is split
 * into micro-batches, so that their gradients add up to the step's mean loss; n_tokens <= 0
 * means the forward's own count (its mean loss). */
void model_backward(struct model_run *r, double n_tokens);

/* ---- inference with a KV cache ---------------------------------------------------------- */

/* The keys and values of one sequence, up to max_T tokens (<= the config's context). */
struct model_cache;
struct model_cache *model_cache_new(const struct model *m, int max_T, struct fj_err *err);
void model_cache_free(struct model_cache *c);
/* The bytes model_cache_new(m, max_T) allocates (for memory accounting). */
size_t model_cache_bytes(const struct model *m, int max_T);
int model_cache_len(const struct model_cache *c);
int model_cache_capacity(const struct model_cache *c);
void model_cache_reset(struct model_cache *c);

/* A LoRA adapter held apart from the model, so that one base in memory serves many
 * adapters: each sequence of a batch names its own. Loading briefly attaches the adapter
 * to m (PEFT files, as model_lora_load), so no other thread may run m meanwhile. m must
 * have no adapter attached. */
struct model_adapter;
struct model_adapter *model_adapter_load(struct model *m, const char *dir, struct fj_err *err);
void model_adapter_free(struct model_adapter *a);
size_t model_adapter_bytes(const struct model_adapter *a);

/* Which logits a sequence of a batch wants. */
enum model_logits { MODEL_LOGITS_NONE, MODEL_LOGITS_LAST, MODEL_LOGITS_ALL };

/* One sequence's part of a batch: n new tokens after those in its cache. */
struct model_seq {
    struct model_cache *cache;
    const struct model_adapter *adapter; /* NULL: the base (or the model's attached adapter) */
    const int32_t *tokens;
    int n;
    enum model_logits logits;
};

/* Scratch for batches of up to max_rows tokens in all, at most max_seg of them from one
 * sequence, with the thread count in force (nn_threads) at creation. Owned by the caller;
 * one batch per thread. */
struct model_batch;
struct model_batch *model_batch_new(const struct model *m, int max_rows, int max_seg,
                                    struct fj_err *err);
void model_batch_free(struct model_batch *b);
size_t model_batch_bytes(const struct model *m, int max_rows, int max_seg);

/* Runs every sequence's new tokens, appending them to its cache, and writes the wanted
 * logits to logits (rows, V): for each sequence in order its last token's row (LAST) or
 * all n rows (ALL). Each sequence gets the logits it would get alone. FJ_ERR_RANGE when a
 * cache would overflow, an id is out of the vocabulary or the batch is too big. */
int model_batch_forward(struct model_batch *b, struct model_seq *seqs, int n_seqs, float *logits,
                        struct fj_err *err);

/* One sequence on its own (forja generate, tests): a cache and a batch of one. */
struct model_kv;

/* A cache for one sequence of up to max_T tokens (<= the config's context). */
struct model_kv *model_kv_new(const struct model *m, int max_T, struct fj_err *err);
void model_kv_free(struct model_kv *kv);
/* Forgets the cached tokens. */
void model_kv_reset(struct model_kv *kv);
/* Tokens cached so far. */
int model_kv_len(const struct model_kv *kv);

/* Runs n new tokens after the cached ones (a prompt chunk, or one generated token) and
 * writes the logits (V) of the last one to logits, or of all n to logits (n, V) when
 * all_logits. FJ_ERR_RANGE when the cache would overflow or an id is out of range. */
int model_kv_forward(struct model_kv *kv, const int32_t *tokens, int n, bool all_logits,
                     float *logits, struct fj_err *err);

#endif
