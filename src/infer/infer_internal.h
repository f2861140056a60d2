/* infer_internal.h - what the files of infer/ share: the engine of one base model, held
 * models, requests and their sequences, sampling and text assembly. Not part of the API. */
#ifndef FJ_INFER_INTERNAL_H
#define FJ_INFER_INTERNAL_H

#include <pthread.h>

#include "core/buf.h"
#include "infer/infer.h"
#include "model/model.h"

struct infer_base;

struct infer {
    struct infer_config cfg;
    pthread_mutex_t lock;      /* the registry, memory accounting and statistics */
    pthread_mutex_t load_lock; /* one load at a time (loads are slow; lookups are not) */
    struct infer_base *bases;
    uint64_t used, tick;
    struct infer_stats stats;
};

/* A held model: a base's weights, or an adapter on them. */
struct infer_model {
    struct infer_base *base;
    struct infer_model *next;      /* the base's handles */
    struct model_adapter *adapter; /* NULL: the base itself */
    char adapter_dir[4096];
    int holds; /* callers' holds plus one per unfinished request */
    uint64_t bytes, last_used;
};

/* One base model in memory and the thread that runs its batches. */
struct infer_base {
    struct infer *inf;
    struct infer_base *next;
    char dir[4096];
    struct model_info info;
    struct model *m;
    uint64_t bytes; /* weights plus the engine's scratch */
    struct infer_model *models;
    pthread_t thread;
    bool started;
    pthread_mutex_t run_lock; /* held for each forward: adapter loads wait for it */
    /* under lock: */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
    struct infer_request *queue, *queue_tail; /* waiting to start */
    struct infer_seq **seqs;                  /* running: max_seqs slots */
    int n_seqs;
};

/* A sequence's text not yet handed out: bytes that may still turn into a stop string or
 * complete a UTF-8 character. */
struct infer_text {
    struct fj_buf pending;
    json_t *logprobs; /* entries of the tokens whose text is pending */
};

struct infer_request {
    pthread_mutex_t lock;
    int refs;
    struct infer_model *mdl; /* held while the request runs */
    struct infer_request *next;
    struct infer_params params;
    char *stop[INFER_MAX_STOP]; /* owned copies */
    int32_t *prompt;
    int n_prompt, max_T;
    uint64_t rng_seed;
    /* under lock: */
    infer_notify notify;
    void *ctx;
    bool cancelled, done, dirty;
    struct infer_delta *deltas;
    size_t n_deltas, cap_deltas;
    int completion_tokens, choices_left;
    char error[512];
};

struct infer_seq {
    struct infer_request *rq;
    int choice;
    struct model_cache *cache;
    uint64_t cache_bytes;
    int prefilled;
    int32_t next_tok;
    int32_t *gen; /* generated tokens (max_tokens) */
    int n_gen;
    uint64_t rng;
    struct infer_text text;
    bool finished;
};

/* ---- sample.c ---- */

/* Scratch for sampling over a vocabulary of V. */
struct infer_sampler {
    int V;
    float *work, *probs;
    int32_t *idx;
    uint8_t *seen;
};
int infer_sampler_init(struct infer_sampler *s, int V, struct fj_err *err);
void infer_sampler_free(struct infer_sampler *s);

/* Picks the next token from logits (V) after the penalties over the generated tokens gen.
 * With params->logprobs, *entry is set to the token's OpenAI logprob object (token text
 * from enc), with top_logprobs alternatives. */
int32_t infer_sample(struct infer_sampler *s, const float *logits, const struct infer_params *p,
                     const int32_t *gen, int n_gen, uint64_t *rng, const struct tok_encoding *enc,
                     json_t **entry);

/* ---- text.c ---- */

/* Appends a token's bytes to the pending text and hands out what can be: the text before
 * a stop string (then *stopped), or all but what may still become one or is an unfinished
 * character. final hands out everything that is pending. The handed-out text is valid
 * UTF-8 (invalid bytes become U+FFFD); *out is malloc'ed (NULL when there is none). */
int infer_text_push(struct infer_text *t, const uint8_t *bytes, size_t len, char *const *stop,
                    int n_stop, bool final, char **out, size_t *out_len, bool *stopped);
void infer_text_free(struct infer_text *t);
/* Valid UTF-8 for any bytes: invalid sequences become U+FFFD. Appended to out. */
int infer_utf8_clean(const uint8_t *s, size_t n, struct fj_buf *out);

/* ---- request.c / engine.c ---- */
void infer_request_unref(struct infer_request *rq);
/* Queues rq on base's engine (starting its thread if needed). */
int infer_engine_enqueue(struct infer_base *base, struct infer_request *rq, struct fj_err *err);
/* Wakes the engine (a request was cancelled). */
void infer_engine_poke(struct infer_base *base);
/* Starts / stops (ending every request) the engine's thread. */
int infer_engine_start(struct infer_base *base, struct fj_err *err);
void infer_engine_stop(struct infer_base *base);

#endif
