/* infer.h - the inference engine: models loaded once, many requests decoded together.
 *
 *     struct infer *inf = infer_new(&cfg, &err);
 *     struct infer_model *mdl = infer_open(inf, "/data/models/forja-base", adapter_dir, &err);
 *     struct infer_request *rq = infer_submit(mdl, prompt_ids, n, &params, notify, ctx, &err);
 *     ... notify(ctx) fires on the engine's thread whenever output is ready ...
 *     infer_take(rq, &out);   // the deltas so far, and whether it is done
 *     infer_request_release(rq);
 *     infer_close(mdl);
 *     infer_free(inf);
 *
 * A base model (a model folder) is loaded once and runs on its own thread: the engine.
 * The engine keeps the requests that are running in slots and advances all of them by one
 * batched forward per step (continuous batching): prompts in chunks, then one token per
 * sequence; new requests join between steps, finished and cancelled ones leave at once.
 * LoRA fine-tunes are adapters on their base's engine (the same weights in memory), each
 * row of a batch with its own adapter; full fine-tunes are model folders of their own.
 *
 * Memory is accounted: weights, adapters and every running sequence's KV cache count
 * against the configured budget. Opening a model that does not fit first unloads models
 * nobody holds (least recently used first), then fails with FJ_ERR_NOMEM; a request waits
 * in the queue until its caches fit.
 *
 * The engine never prints. Thread-safe: every function may be called from any thread.
 */
#ifndef FJ_INFER_INFER_H
#define FJ_INFER_INFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/err.h"
#include "model/folder.h"

struct infer_config {
    uint64_t memory_bytes; /* weights + adapters + KV caches, all models together */
    int threads;           /* compute threads of each engine (<= 0: all cores) */
    int max_seqs;          /* sequences decoded together per engine (default 64) */
    int max_rows;          /* tokens per forward (prompt chunks + decodes; default 256) */
};

struct infer_config infer_config_default(void);

struct infer;
struct infer *infer_new(const struct infer_config *cfg, struct fj_err *err);
/* Stops every engine: running requests end (finish "cancelled"), then everything is freed.
 * Every handle must have been closed and every request released. */
void infer_free(struct infer *inf);

/* ---- models ----------------------------------------------------------------------------- */

/* A held model: a model folder, optionally with a LoRA adapter folder (PEFT files) on it.
 * Loads what is not loaded yet (the base weights, the adapter), which can take a while.
 * FJ_ERR_NOMEM when it does not fit the memory budget even after unloading idle models;
 * FJ_ERR_FORMAT and friends for a bad folder. Release with infer_close. */
struct infer_model;
struct infer_model *infer_open(struct infer *inf, const char *model_dir, const char *adapter_dir,
                               struct fj_err *err);
/* Another hold on the same model. */
struct infer_model *infer_hold(struct infer_model *mdl);
/* Drops a hold; the model stays loaded (for reuse) until memory is needed. */
void infer_close(struct infer_model *mdl);

/* The folder's config, tokenizer, chat template and stop tokens. Borrowed. */
const struct model_info *infer_model_info(const struct infer_model *mdl);
/* Bytes this model holds: its weights (a base's) or its adapter's, without caches. */
uint64_t infer_model_bytes(const struct infer_model *mdl);

/* Memory in use and the budget. */
void infer_memory(struct infer *inf, uint64_t *used, uint64_t *budget);

/* ---- requests --------------------------------------------------------------------------- */

#define INFER_MAX_STOP    4
#define INFER_MAX_CHOICES 16
#define INFER_MAX_TOP     20

struct infer_params {
    int max_tokens; /* new tokens per choice, >= 1 (the context bounds it too) */
    int n;          /* choices, 1 .. INFER_MAX_CHOICES */
    double temperature;
    double top_p;
    double presence_penalty, frequency_penalty;
    bool has_seed;
    int64_t seed;
    const char *stop[INFER_MAX_STOP]; /* copied at submit */
    int n_stop;
    bool logprobs;
    int top_logprobs; /* 0 .. INFER_MAX_TOP, with logprobs */
};

struct infer_params infer_params_default(void);

/* What a request has produced since the last take. */
struct infer_delta {
    int choice;
    char *text; /* owned: new text (valid UTF-8), may be empty */
    size_t len;
    json_t *logprobs;   /* owned: array of OpenAI token logprob objects for this text, or NULL */
    const char *finish; /* "stop" or "length" when the choice ended with this delta, else NULL */
};

struct infer_output {
    struct infer_delta *deltas; /* owned, n_deltas of them */
    size_t n_deltas;
    bool done;             /* every choice has finished (or the request failed) */
    int prompt_tokens;     /* counted once for all choices */
    int completion_tokens; /* all choices together, so far */
    char error[512];       /* non-empty if the request failed */
};

typedef void (*infer_notify)(void *ctx);

/* Queues a request: prompt (n tokens) continued params->n times. notify(ctx) is called on
 * the engine's thread (briefly; it must not call back into the request) each time new
 * output can be taken and when it is done. FJ_ERR_RANGE when the prompt plus one token
 * does not fit the context. The caller holds a reference (infer_request_release). */
struct infer_request;
struct infer_request *infer_submit(struct infer_model *mdl, const uint32_t *prompt, size_t n,
                                   const struct infer_params *params, infer_notify notify,
                                   void *ctx, struct fj_err *err);
/* Moves the output produced so far into out (free it with infer_output_free). */
void infer_take(struct infer_request *rq, struct infer_output *out);
void infer_output_free(struct infer_output *out);
/* Stops the request (a client went away): its slots are freed at the next step and notify
 * is never called again once this returns. */
void infer_cancel(struct infer_request *rq);
/* Cancels if still running and drops the caller's reference. */
void infer_request_release(struct infer_request *rq);

/* Counters for /metrics. */
struct infer_stats {
    uint64_t prompt_tokens, generated_tokens, requests, steps;
    int running, queued; /* sequences decoding, requests waiting (all models) */
};
void infer_stats(struct infer *inf, struct infer_stats *out);

#endif
