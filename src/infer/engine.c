/* engine.c - one base model's thread: continuous batching.
 *
 * Each step the engine admits queued requests into free slots (one sequence per choice,
 * each with a KV cache sized for its prompt plus max_tokens, counted against the memory
 * budget), then runs one batched forward: a token for every sequence that is decoding and
 * prompt chunks for those still reading their prompt, as many rows as max_rows allows,
 * decoding first so that a long prompt does not stall the others. Rows are grouped by
 * adapter so that each adapter's LoRA products run once per step. Then it samples every
 * sequence that produced logits, hands out text and notifies the requests that changed.
 * Finished and cancelled sequences leave at once, freeing their caches.
 */
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "infer/infer_internal.h"
#include "nn/nn.h"

/* One sequence's part of a step. */
struct step_row {
    struct infer_seq *sq;
    struct model_seq ms;
    bool prefill;
};

/* What the engine thread owns. */
struct engine {
    struct infer_base *base;
    int max_seqs, max_rows, max_seg, V;
    struct model_batch *batch;
    float *logits; /* (max_seqs, V) */
    struct infer_sampler sampler;
    struct step_row *rows;
    struct model_seq *ms;
    struct infer_request **gone; /* (max_seqs) scratch of sweep */
};

/* ---- the request's output ---------------------------------------------------------------- */

static void push_delta(struct infer_request *rq, int choice, char *text, size_t len,
                       json_t *logprobs, const char *finish)
{
    pthread_mutex_lock(&rq->lock);
    if (rq->n_deltas == rq->cap_deltas) {
        size_t cap = rq->cap_deltas ? 2 * rq->cap_deltas : 8;
        struct infer_delta *d = realloc(rq->deltas, cap * sizeof *d);
        if (!d) {
            pthread_mutex_unlock(&rq->lock);
            free(text);
            json_decref(logprobs);
            return;
        }
        rq->deltas = d;
        rq->cap_deltas = cap;
    }
    rq->deltas[rq->n_deltas++] = (struct infer_delta){
        .choice = choice, .text = text, .len = len, .logprobs = logprobs, .finish = finish};
    rq->dirty = true;
    pthread_mutex_unlock(&rq->lock);
}

static void notify_if_dirty(struct infer_request *rq)
{
    pthread_mutex_lock(&rq->lock);
    if (rq->dirty && rq->notify)
        rq->notify(rq->ctx);
    rq->dirty = false;
    pthread_mutex_unlock(&rq->lock);
}

static void fail_request(struct infer_request *rq, const char *msg)
{
    pthread_mutex_lock(&rq->lock);
    if (!rq->error[0])
        snprintf(rq->error, sizeof rq->error, "%s", msg);
    rq->done = true;
    rq->dirty = true;
    pthread_mutex_unlock(&rq->lock);
}

static bool is_cancelled(struct infer_request *rq)
{
    pthread_mutex_lock(&rq->lock);
    bool c = rq->cancelled || rq->done;
    pthread_mutex_unlock(&rq->lock);
    return c;
}

/* The engine's part of a request ends: its hold on the model and its reference. */
static void drop_request(struct infer_request *rq)
{
    notify_if_dirty(rq);
    infer_close(rq->mdl);
    infer_request_unref(rq);
}

/* ---- slots ----------------------------------------------------------------------------- */

/* Moves memory in use and the running and queued counts, under the registry's lock (where
 * /metrics reads them without taking any engine's). More memory is taken only if it fits
 * the budget: false, and nothing changed, if not. */
static bool account(struct infer *inf, int64_t bytes, int running, int queued)
{
    pthread_mutex_lock(&inf->lock);
    bool ok = bytes <= 0 || inf->used + (uint64_t)bytes <= inf->cfg.memory_bytes;
    if (ok) {
        inf->used = (uint64_t)((int64_t)inf->used + bytes);
        inf->stats.running += running;
        inf->stats.queued += queued;
    }
    pthread_mutex_unlock(&inf->lock);
    return ok;
}

static void seq_free(struct infer_base *base, struct infer_seq *sq)
{
    account(base->inf, -(int64_t)sq->cache_bytes, -1, 0);
    model_cache_free(sq->cache);
    infer_text_free(&sq->text);
    free(sq->gen);
    free(sq);
}

/* Takes rq off the head of the queue. */
static void dequeue(struct infer_base *base, struct infer_request *rq)
{
    base->queue = rq->next;
    account(base->inf, 0, 0, -1);
}

/* Moves queued requests into slots while slots and memory allow. Under base->lock. */
static void admit(struct engine *e)
{
    struct infer_base *base = e->base;
    while (base->queue) {
        struct infer_request *rq = base->queue;
        int n = rq->params.n;
        if (is_cancelled(rq)) {
            dequeue(base, rq);
            drop_request(rq);
            continue;
        }
        if (base->n_seqs + n > e->max_seqs)
            return;
        uint64_t each = model_cache_bytes(base->m, rq->max_T);
        if (!account(base->inf, (int64_t)(each * (uint64_t)n), n, 0)) {
            if (base->n_seqs > 0)
                return; /* waits for running sequences to free their caches */
            dequeue(base, rq);
            fail_request(rq, "the request's KV cache does not fit this server's inference "
                             "memory budget (--infer-memory-mb); retry later or ask for fewer "
                             "tokens");
            drop_request(rq);
            continue;
        }
        dequeue(base, rq);
        for (int c = 0; c < n; c++) {
            struct infer_seq *sq = calloc(1, sizeof *sq);
            struct fj_err err = {0};
            if (sq && (sq->cache = model_cache_new(base->m, rq->max_T, &err)) &&
                (sq->gen = malloc((size_t)rq->params.max_tokens * sizeof *sq->gen))) {
                sq->rq = rq;
                sq->choice = c;
                sq->cache_bytes = each;
                sq->rng = fj_splitmix64(rq->rng_seed ^ fj_splitmix64((uint64_t)c));
                base->seqs[base->n_seqs++] = sq;
                continue;
            }
            if (sq)
                model_cache_free(sq->cache);
            free(sq);
            /* the choices not made give back what was taken for them */
            account(base->inf, -(int64_t)(each * (uint64_t)(n - c)), -(n - c), 0);
            fail_request(rq, "out of memory for the request's KV cache");
            if (c == 0) /* no sequence of it to be swept */
                drop_request(rq);
            break;
        }
    }
}

/* Drops the sequences of finished or cancelled requests, and the requests none of whose
 * sequences are left. Under base->lock. */
static void sweep(struct engine *e)
{
    struct infer_base *base = e->base;
    struct infer_request **gone = e->gone;
    int kept = 0, n_gone = 0;
    for (int i = 0; i < base->n_seqs; i++) {
        struct infer_seq *sq = base->seqs[i];
        if (!sq->finished && !is_cancelled(sq->rq)) {
            base->seqs[kept++] = sq;
            continue;
        }
        bool seen = false;
        for (int j = 0; j < n_gone; j++)
            seen = seen || gone[j] == sq->rq;
        if (!seen)
            gone[n_gone++] = sq->rq;
        seq_free(base, sq);
    }
    base->n_seqs = kept;
    for (int j = 0; j < n_gone; j++) {
        bool left = false;
        for (int i = 0; i < kept && !left; i++)
            left = base->seqs[i]->rq == gone[j];
        if (!left)
            drop_request(gone[j]);
    }
}

/* ---- one token ------------------------------------------------------------------------- */

static bool is_stop_token(const struct model_info *info, int32_t tok)
{
    for (int i = 0; i < info->n_stop; i++)
        if ((int32_t)info->stop_ids[i] == tok)
            return true;
    return false;
}

static void finish_choice(struct infer_seq *sq)
{
    struct infer_request *rq = sq->rq;
    sq->finished = true;
    pthread_mutex_lock(&rq->lock);
    if (--rq->choices_left <= 0)
        rq->done = true;
    rq->dirty = true;
    pthread_mutex_unlock(&rq->lock);
}

static void on_logits(struct engine *e, struct infer_seq *sq, const float *logits)
{
    struct infer_base *base = e->base;
    struct infer_request *rq = sq->rq;
    const struct infer_params *p = &rq->params;
    json_t *entry = NULL;
    int32_t tok =
        infer_sample(&e->sampler, logits, p, sq->gen, sq->n_gen, &sq->rng, base->info.enc, &entry);
    sq->gen[sq->n_gen++] = tok;
    pthread_mutex_lock(&rq->lock);
    rq->completion_tokens++;
    pthread_mutex_unlock(&rq->lock);

    bool eos = is_stop_token(&base->info, tok);
    bool length = !eos && (sq->n_gen >= p->max_tokens ||
                           model_cache_len(sq->cache) >= model_cache_capacity(sq->cache));
    const uint8_t *bytes = NULL;
    size_t len = 0;
    if (!eos) {
        tok_token_bytes(base->info.enc, (uint32_t)tok, &bytes, &len);
        if (entry) {
            if (!sq->text.logprobs)
                sq->text.logprobs = json_array();
            json_array_append(sq->text.logprobs, entry);
        }
    }
    json_decref(entry);
    char *out = NULL;
    size_t out_len = 0;
    bool stopped = false;
    if (infer_text_push(&sq->text, bytes, len, rq->stop, p->n_stop, eos || length, &out, &out_len,
                        &stopped) != 0)
        fail_request(rq, "out of memory");
    const char *finish = eos || stopped ? "stop" : length ? "length" : NULL;
    if (out || finish) {
        json_t *lp = NULL;
        if (p->logprobs) {
            lp = sq->text.logprobs ? sq->text.logprobs : json_array();
            sq->text.logprobs = NULL;
        }
        push_delta(rq, sq->choice, out, out_len, lp, finish);
    }
    if (finish)
        finish_choice(sq);
    sq->next_tok = tok;
}

/* ---- one step -------------------------------------------------------------------------- */

static int by_adapter(const void *a, const void *b)
{
    const struct step_row *x = a, *y = b;
    uintptr_t p = (uintptr_t)x->ms.adapter, q = (uintptr_t)y->ms.adapter;
    return p < q ? -1 : p > q;
}

/* Builds the step's rows from the running sequences (base->lock not needed: only the
 * engine thread changes the slots). Returns how many. */
static int plan_step(struct engine *e, int *n_prompt_rows)
{
    struct infer_base *base = e->base;
    int n = 0, rows = 0;
    *n_prompt_rows = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < base->n_seqs; i++) {
            struct infer_seq *sq = base->seqs[i];
            struct infer_request *rq = sq->rq;
            bool decoding = sq->prefilled == rq->n_prompt;
            if (sq->finished || decoding != (pass == 0) || rows >= e->max_rows)
                continue;
            int k = 1;
            const int32_t *toks = &sq->next_tok;
            if (!decoding) {
                k = rq->n_prompt - sq->prefilled;
                k = k < e->max_seg ? k : e->max_seg;
                k = k < e->max_rows - rows ? k : e->max_rows - rows;
                toks = rq->prompt + sq->prefilled;
                *n_prompt_rows += k;
            }
            bool last = decoding || sq->prefilled + k == rq->n_prompt;
            e->rows[n++] =
                (struct step_row){.sq = sq,
                                  .prefill = !decoding,
                                  .ms = {.cache = sq->cache,
                                         .adapter = rq->mdl->adapter,
                                         .tokens = toks,
                                         .n = k,
                                         .logits = last ? MODEL_LOGITS_LAST : MODEL_LOGITS_NONE}};
            rows += k;
        }
    qsort(e->rows, (size_t)n, sizeof *e->rows, by_adapter);
    return n;
}

static void run_step(struct engine *e)
{
    struct infer_base *base = e->base;
    int n_prompt_rows;
    int n = plan_step(e, &n_prompt_rows);
    if (n == 0)
        return;
    for (int i = 0; i < n; i++)
        e->ms[i] = e->rows[i].ms;
    struct fj_err err = {0};
    pthread_mutex_lock(&base->run_lock);
    int rc = model_batch_forward(e->batch, e->ms, n, e->logits, &err);
    pthread_mutex_unlock(&base->run_lock);
    int out = 0, generated = 0;
    for (int i = 0; i < n; i++) {
        struct step_row *r = &e->rows[i];
        if (rc != 0) {
            fail_request(r->sq->rq, err.msg);
            r->sq->finished = true;
            continue;
        }
        if (r->prefill)
            r->sq->prefilled += r->ms.n;
        if (r->ms.logits == MODEL_LOGITS_LAST) {
            on_logits(e, r->sq, e->logits + (size_t)out++ * e->V);
            generated++;
        }
    }
    for (int i = 0; i < n; i++)
        notify_if_dirty(e->rows[i].sq->rq);
    struct infer *inf = base->inf;
    pthread_mutex_lock(&inf->lock);
    inf->stats.prompt_tokens += (uint64_t)n_prompt_rows;
    inf->stats.generated_tokens += (uint64_t)generated;
    inf->stats.steps++;
    pthread_mutex_unlock(&inf->lock);
}

/* ---- the thread ------------------------------------------------------------------------ */

static void engine_free(struct engine *e)
{
    model_batch_free(e->batch);
    free(e->logits);
    free(e->rows);
    free(e->ms);
    free(e->gone);
    infer_sampler_free(&e->sampler);
}

static int engine_init(struct engine *e, struct infer_base *base, struct fj_err *err)
{
    const struct infer_config *cfg = &base->inf->cfg;
    memset(e, 0, sizeof *e);
    e->base = base;
    e->max_seqs = cfg->max_seqs;
    e->max_rows = cfg->max_rows;
    e->max_seg = cfg->max_rows < 256 ? cfg->max_rows : 256;
    e->V = base->info.cfg.vocab_size;
    if (!(e->batch = model_batch_new(base->m, e->max_rows, e->max_seg, err)))
        return FJ_ERR_NOMEM;
    e->logits = malloc((size_t)e->max_seqs * (size_t)e->V * sizeof *e->logits);
    e->rows = malloc((size_t)e->max_seqs * sizeof *e->rows);
    e->ms = malloc((size_t)e->max_seqs * sizeof *e->ms);
    e->gone = malloc((size_t)e->max_seqs * sizeof *e->gone);
    if (!e->logits || !e->rows || !e->ms || !e->gone)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    return infer_sampler_init(&e->sampler, e->V, err);
}

struct engine_start {
    struct infer_base *base;
    struct fj_err err;
    int rc;
    bool ready;
    pthread_mutex_t lock;
    pthread_cond_t cond;
};

static void *engine_main(void *arg)
{
    struct engine_start *st = arg;
    struct infer_base *base = st->base;
    struct engine e;
    nn_set_threads(base->inf->cfg.threads); /* OpenMP's thread count is per host thread */
    int rc = engine_init(&e, base, &st->err);
    pthread_mutex_lock(&st->lock);
    st->rc = rc;
    st->ready = true;
    pthread_cond_signal(&st->cond);
    pthread_mutex_unlock(&st->lock);
    if (rc != 0) {
        engine_free(&e);
        return NULL;
    }
    pthread_mutex_lock(&base->lock);
    for (;;) {
        sweep(&e);
        admit(&e);
        if (base->stop)
            break;
        if (base->n_seqs == 0) {
            pthread_cond_wait(&base->wake, &base->lock);
            continue;
        }
        pthread_mutex_unlock(&base->lock);
        run_step(&e);
        pthread_mutex_lock(&base->lock);
    }
    /* stopping: whatever is left ends now */
    for (int i = 0; i < base->n_seqs; i++)
        fail_request(base->seqs[i]->rq, "the model was unloaded");
    while (base->queue) {
        struct infer_request *rq = base->queue;
        dequeue(base, rq);
        fail_request(rq, "the model was unloaded");
        drop_request(rq);
    }
    sweep(&e);
    pthread_mutex_unlock(&base->lock);
    engine_free(&e);
    return NULL;
}

int infer_engine_start(struct infer_base *base, struct fj_err *err)
{
    struct engine_start st = {.base = base};
    pthread_mutex_init(&st.lock, NULL);
    pthread_cond_init(&st.cond, NULL);
    base->seqs = calloc((size_t)base->inf->cfg.max_seqs, sizeof *base->seqs);
    if (!base->seqs)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    if (pthread_create(&base->thread, NULL, engine_main, &st) != 0)
        return fj_err_set(err, FJ_ERR_NOMEM, "cannot start the inference thread");
    pthread_mutex_lock(&st.lock);
    while (!st.ready)
        pthread_cond_wait(&st.cond, &st.lock);
    pthread_mutex_unlock(&st.lock);
    pthread_mutex_destroy(&st.lock);
    pthread_cond_destroy(&st.cond);
    if (st.rc != 0) {
        pthread_join(base->thread, NULL);
        if (err)
            *err = st.err;
        return st.rc;
    }
    base->started = true;
    return 0;
}

void infer_engine_stop(struct infer_base *base)
{
    if (!base->started)
        return;
    pthread_mutex_lock(&base->lock);
    base->stop = true;
    pthread_cond_signal(&base->wake);
    pthread_mutex_unlock(&base->lock);
    pthread_join(base->thread, NULL);
    base->started = false;
    free(base->seqs);
    base->seqs = NULL;
}

int infer_engine_enqueue(struct infer_base *base, struct infer_request *rq, struct fj_err *err)
{
    pthread_mutex_lock(&base->lock);
    if (base->stop || !base->started) {
        pthread_mutex_unlock(&base->lock);
        return fj_err_set(err, FJ_ERR_STATE, "the model is being unloaded");
    }
    rq->next = NULL;
    if (base->queue)
        base->queue_tail->next = rq;
    else
        base->queue = rq;
    base->queue_tail = rq;
    struct infer *inf = base->inf;
    pthread_mutex_lock(&inf->lock); /* counted while it is in the queue, before admit sees it */
    inf->stats.requests++;
    inf->stats.queued++;
    pthread_mutex_unlock(&inf->lock);
    pthread_cond_signal(&base->wake);
    pthread_mutex_unlock(&base->lock);
    return 0;
}

void infer_engine_poke(struct infer_base *base)
{
    pthread_mutex_lock(&base->lock);
    pthread_cond_signal(&base->wake);
    pthread_mutex_unlock(&base->lock);
}
