/* request.c - a request's life on the caller's side: submitting it to its model's engine,
 * taking the output the engine has produced, cancelling and releasing it.
 *
 * The request is shared by the caller and the engine (a reference each); its lock guards
 * the output queue and the notify callback, so that once infer_cancel returns the engine
 * can no longer call back into a caller that is going away.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "infer/infer_internal.h"

struct infer_params infer_params_default(void)
{
    return (struct infer_params){.max_tokens = 16, .n = 1, .temperature = 1.0, .top_p = 1.0};
}

static void request_free(struct infer_request *rq)
{
    for (int i = 0; i < INFER_MAX_STOP; i++)
        free(rq->stop[i]);
    for (size_t i = 0; i < rq->n_deltas; i++) {
        free(rq->deltas[i].text);
        json_decref(rq->deltas[i].logprobs);
    }
    free(rq->deltas);
    free(rq->prompt);
    pthread_mutex_destroy(&rq->lock);
    free(rq);
}

void infer_request_unref(struct infer_request *rq)
{
    pthread_mutex_lock(&rq->lock);
    bool last = --rq->refs == 0;
    pthread_mutex_unlock(&rq->lock);
    if (last)
        request_free(rq);
}

static int check_params(const struct infer_params *p, struct fj_err *err)
{
    if (p->n < 1 || p->n > INFER_MAX_CHOICES)
        return fj_err_set(err, FJ_ERR_RANGE, "n must be between 1 and %d", INFER_MAX_CHOICES);
    if (p->max_tokens < 1)
        return fj_err_set(err, FJ_ERR_RANGE, "max_tokens must be at least 1");
    if (p->n_stop < 0 || p->n_stop > INFER_MAX_STOP)
        return fj_err_set(err, FJ_ERR_RANGE, "at most %d stop sequences", INFER_MAX_STOP);
    if (p->top_logprobs < 0 || p->top_logprobs > INFER_MAX_TOP)
        return fj_err_set(err, FJ_ERR_RANGE, "top_logprobs must be between 0 and %d",
                          INFER_MAX_TOP);
    if (!(p->temperature >= 0 && p->temperature <= 2) || !(p->top_p > 0 && p->top_p <= 1))
        return fj_err_set(err, FJ_ERR_RANGE, "temperature or top_p out of range");
    return 0;
}

struct infer_request *infer_submit(struct infer_model *mdl, const uint32_t *prompt, size_t n,
                                   const struct infer_params *params, infer_notify notify,
                                   void *ctx, struct fj_err *err)
{
    struct infer_base *base = mdl->base;
    int n_ctx = base->info.cfg.n_ctx;
    if (check_params(params, err) != 0)
        return NULL;
    if (n < 1 || n + 1 > (size_t)n_ctx) {
        fj_err_set(err, FJ_ERR_RANGE,
                   "the prompt has %zu tokens; this model's context is %d tokens, and at least "
                   "one more must fit",
                   n, n_ctx);
        return NULL;
    }
    struct infer_request *rq = calloc(1, sizeof *rq);
    if (!rq || !(rq->prompt = malloc(n * sizeof *rq->prompt))) {
        free(rq);
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&rq->lock, NULL);
    rq->refs = 2; /* the caller's and the engine's */
    rq->params = *params;
    for (int i = 0; i < params->n_stop; i++) {
        rq->stop[i] = strdup(params->stop[i]);
        rq->params.stop[i] = rq->stop[i];
        if (!rq->stop[i]) {
            request_free(rq);
            fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
            return NULL;
        }
    }
    for (size_t i = 0; i < n; i++)
        rq->prompt[i] = (int32_t)prompt[i];
    rq->n_prompt = (int)n;
    long long want = (long long)n + params->max_tokens;
    rq->max_T = want < n_ctx ? (int)want : n_ctx;
    if (params->has_seed)
        rq->rng_seed = (uint64_t)params->seed;
    else if (getrandom(&rq->rng_seed, sizeof rq->rng_seed, 0) != (ssize_t)sizeof rq->rng_seed)
        rq->rng_seed = (uint64_t)(uintptr_t)rq;
    rq->notify = notify;
    rq->ctx = ctx;
    rq->choices_left = params->n;
    rq->mdl = infer_hold(mdl);
    if (infer_engine_enqueue(base, rq, err) != 0) {
        infer_close(rq->mdl);
        request_free(rq);
        return NULL;
    }
    return rq;
}

void infer_take(struct infer_request *rq, struct infer_output *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&rq->lock);
    out->deltas = rq->deltas;
    out->n_deltas = rq->n_deltas;
    rq->deltas = NULL;
    rq->n_deltas = rq->cap_deltas = 0;
    out->done = rq->done;
    out->prompt_tokens = rq->n_prompt;
    out->completion_tokens = rq->completion_tokens;
    snprintf(out->error, sizeof out->error, "%s", rq->error);
    pthread_mutex_unlock(&rq->lock);
}

void infer_output_free(struct infer_output *out)
{
    for (size_t i = 0; i < out->n_deltas; i++) {
        free(out->deltas[i].text);
        json_decref(out->deltas[i].logprobs);
    }
    free(out->deltas);
    memset(out, 0, sizeof *out);
}

void infer_cancel(struct infer_request *rq)
{
    pthread_mutex_lock(&rq->lock);
    rq->cancelled = true;
    rq->notify = NULL;
    pthread_mutex_unlock(&rq->lock);
    infer_engine_poke(rq->mdl->base);
}

void infer_request_release(struct infer_request *rq)
{
    if (!rq)
        return;
    infer_cancel(rq);
    infer_request_unref(rq);
}
