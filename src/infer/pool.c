/* pool.c - which models are in memory: loading base models and adapters on first use,
 * sharing a base among its adapters, accounting memory and unloading idle models (least
 * recently used first) when a new one needs the room.
 */
#include <stdlib.h>
#include <string.h>

#include "infer/infer_internal.h"

struct infer_config infer_config_default(void)
{
    return (struct infer_config){
        .memory_bytes = (uint64_t)4 << 30, .threads = 0, .max_seqs = 64, .max_rows = 256};
}

struct infer *infer_new(const struct infer_config *cfg, struct fj_err *err)
{
    struct infer *inf = calloc(1, sizeof *inf);
    if (!inf) {
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        return NULL;
    }
    inf->cfg = *cfg;
    if (inf->cfg.max_seqs < 1)
        inf->cfg.max_seqs = 64;
    if (inf->cfg.max_rows < inf->cfg.max_seqs)
        inf->cfg.max_rows = inf->cfg.max_seqs > 256 ? inf->cfg.max_seqs : 256;
    pthread_mutex_init(&inf->lock, NULL);
    pthread_mutex_init(&inf->load_lock, NULL);
    return inf;
}

/* The bytes a base's weights and its engine's logits rows take. */
static uint64_t base_bytes(const struct model_config *c, const struct infer_config *cfg)
{
    return model_weight_bytes(c) + (uint64_t)cfg->max_seqs * (uint64_t)c->vocab_size * 4;
}

static void base_free(struct infer_base *b)
{
    if (!b)
        return;
    infer_engine_stop(b);
    for (struct infer_model *h = b->models, *next; h; h = next) {
        next = h->next;
        model_adapter_free(h->adapter);
        free(h);
    }
    model_free(b->m);
    model_info_close(&b->info);
    pthread_mutex_destroy(&b->lock);
    pthread_mutex_destroy(&b->run_lock);
    pthread_cond_destroy(&b->wake);
    free(b);
}

void infer_free(struct infer *inf)
{
    if (!inf)
        return;
    for (struct infer_base *b = inf->bases, *next; b; b = next) {
        next = b->next;
        base_free(b);
    }
    pthread_mutex_destroy(&inf->lock);
    pthread_mutex_destroy(&inf->load_lock);
    free(inf);
}

static int base_holds(const struct infer_base *b)
{
    int n = 0;
    for (const struct infer_model *h = b->models; h; h = h->next)
        n += h->holds;
    return n;
}

/* Unloads the least recently used model nobody holds (an adapter, or a base with none of
 * its models held). Under load_lock. Returns false if there is none. */
static bool evict_one(struct infer *inf, const struct infer_base *keep)
{
    pthread_mutex_lock(&inf->lock);
    struct infer_model *victim = NULL;
    struct infer_base *vbase = NULL;
    uint64_t oldest = UINT64_MAX;
    for (struct infer_base *b = inf->bases; b; b = b->next)
        for (struct infer_model *h = b->models; h; h = h->next) {
            bool idle = h->adapter ? h->holds == 0 : base_holds(b) == 0 && b != keep;
            if (idle && h->last_used < oldest) {
                oldest = h->last_used;
                victim = h;
                vbase = b;
            }
        }
    if (!victim) {
        pthread_mutex_unlock(&inf->lock);
        return false;
    }
    if (victim->adapter) {
        struct infer_model **pp = &vbase->models;
        while (*pp != victim)
            pp = &(*pp)->next;
        *pp = victim->next;
        inf->used -= victim->bytes;
        pthread_mutex_unlock(&inf->lock);
        model_adapter_free(victim->adapter);
        free(victim);
        return true;
    }
    struct infer_base **pp = &inf->bases;
    while (*pp != vbase)
        pp = &(*pp)->next;
    *pp = vbase->next;
    for (struct infer_model *h = vbase->models; h; h = h->next)
        inf->used -= h->bytes;
    pthread_mutex_unlock(&inf->lock);
    base_free(vbase);
    return true;
}

/* Makes room for bytes more, unloading idle models; reserves them. */
static int make_room(struct infer *inf, uint64_t bytes, const struct infer_base *keep,
                     const char *what, struct fj_err *err)
{
    for (;;) {
        pthread_mutex_lock(&inf->lock);
        bool fits = inf->used + bytes <= inf->cfg.memory_bytes;
        uint64_t used = inf->used;
        if (fits)
            inf->used += bytes;
        pthread_mutex_unlock(&inf->lock);
        if (fits)
            return 0;
        if (!evict_one(inf, keep))
            return fj_err_set(err, FJ_ERR_NOMEM,
                              "%s needs %.1f MB but only %.1f MB of the %.1f MB inference "
                              "memory budget are free (--infer-memory-mb); delete a deployment "
                              "or raise the budget",
                              what, (double)bytes / 1e6,
                              (double)(inf->cfg.memory_bytes - used) / 1e6,
                              (double)inf->cfg.memory_bytes / 1e6);
    }
}

static struct infer_model *handle_new(struct infer_base *b, uint64_t bytes)
{
    struct infer_model *h = calloc(1, sizeof *h);
    if (h) {
        h->base = b;
        h->bytes = bytes;
    }
    return h;
}

static struct infer_base *base_load(struct infer *inf, const char *dir, struct fj_err *err)
{
    struct infer_base *b = calloc(1, sizeof *b);
    if (!b) {
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        return NULL;
    }
    b->inf = inf;
    snprintf(b->dir, sizeof b->dir, "%s", dir);
    pthread_mutex_init(&b->lock, NULL);
    pthread_mutex_init(&b->run_lock, NULL);
    pthread_cond_init(&b->wake, NULL);
    if (model_info_open(&b->info, dir, err) != 0) {
        b->info.enc = NULL;
        free(b);
        return NULL;
    }
    b->bytes = base_bytes(&b->info.cfg, &inf->cfg);
    if (make_room(inf, b->bytes, NULL, "the model", err) != 0) {
        model_info_close(&b->info);
        free(b);
        return NULL;
    }
    if (!(b->m = model_load(dir, err)) || !(b->models = handle_new(b, b->bytes)) ||
        infer_engine_start(b, err) != 0) {
        if (b->m && !b->models)
            fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        pthread_mutex_lock(&inf->lock);
        inf->used -= b->bytes;
        pthread_mutex_unlock(&inf->lock);
        base_free(b);
        return NULL;
    }
    return b;
}

static struct infer_model *adapter_load(struct infer_base *b, const char *dir, struct fj_err *err)
{
    struct infer *inf = b->inf;
    pthread_mutex_lock(&b->run_lock); /* the adapter is read through the base model */
    struct model_adapter *a = model_adapter_load(b->m, dir, err);
    pthread_mutex_unlock(&b->run_lock);
    if (!a)
        return NULL;
    uint64_t bytes = model_adapter_bytes(a);
    struct infer_model *h = NULL;
    if (make_room(inf, bytes, b, "the adapter", err) != 0 || !(h = handle_new(b, bytes))) {
        if (h == NULL && err && !err->code)
            fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        model_adapter_free(a);
        return NULL;
    }
    h->adapter = a;
    snprintf(h->adapter_dir, sizeof h->adapter_dir, "%s", dir);
    pthread_mutex_lock(&inf->lock);
    h->next = b->models->next; /* after the base's own handle, which stays first */
    b->models->next = h;
    pthread_mutex_unlock(&inf->lock);
    return h;
}

/* The loaded handle for (dir, adapter_dir), or NULL. Under inf->lock. */
static struct infer_model *find(struct infer *inf, const char *dir, const char *adapter_dir,
                                struct infer_base **base)
{
    *base = NULL;
    for (struct infer_base *b = inf->bases; b; b = b->next) {
        if (strcmp(b->dir, dir) != 0)
            continue;
        *base = b;
        for (struct infer_model *h = b->models; h; h = h->next)
            if (adapter_dir ? h->adapter && strcmp(h->adapter_dir, adapter_dir) == 0 : !h->adapter)
                return h;
    }
    return NULL;
}

struct infer_model *infer_open(struct infer *inf, const char *model_dir, const char *adapter_dir,
                               struct fj_err *err)
{
    pthread_mutex_lock(&inf->load_lock);
    pthread_mutex_lock(&inf->lock);
    struct infer_base *b;
    struct infer_model *h = find(inf, model_dir, adapter_dir, &b);
    if (h)
        h->holds++;
    pthread_mutex_unlock(&inf->lock);
    if (!h && !b && (b = base_load(inf, model_dir, err))) {
        pthread_mutex_lock(&inf->lock);
        b->next = inf->bases;
        inf->bases = b;
        pthread_mutex_unlock(&inf->lock);
    }
    if (!h && b) {
        b->models->holds++; /* keeps the base while its adapter loads */
        h = adapter_dir ? adapter_load(b, adapter_dir, err) : b->models;
        pthread_mutex_lock(&inf->lock);
        if (adapter_dir)
            b->models->holds--;
        if (h && adapter_dir)
            h->holds++;
        pthread_mutex_unlock(&inf->lock);
    }
    if (h) {
        pthread_mutex_lock(&inf->lock);
        h->last_used = b->models->last_used = ++inf->tick;
        pthread_mutex_unlock(&inf->lock);
    }
    pthread_mutex_unlock(&inf->load_lock);
    return h;
}

struct infer_model *infer_hold(struct infer_model *mdl)
{
    struct infer *inf = mdl->base->inf;
    pthread_mutex_lock(&inf->lock);
    mdl->holds++;
    mdl->last_used = ++inf->tick;
    pthread_mutex_unlock(&inf->lock);
    return mdl;
}

void infer_close(struct infer_model *mdl)
{
    if (!mdl)
        return;
    struct infer *inf = mdl->base->inf;
    pthread_mutex_lock(&inf->lock);
    mdl->holds--;
    mdl->last_used = ++inf->tick;
    pthread_mutex_unlock(&inf->lock);
}

const struct model_info *infer_model_info(const struct infer_model *mdl)
{
    return &mdl->base->info;
}

uint64_t infer_model_bytes(const struct infer_model *mdl)
{
    return mdl->bytes;
}

void infer_memory(struct infer *inf, uint64_t *used, uint64_t *budget)
{
    pthread_mutex_lock(&inf->lock);
    *used = inf->used;
    *budget = inf->cfg.memory_bytes;
    pthread_mutex_unlock(&inf->lock);
}

void infer_stats(struct infer *inf, struct infer_stats *out)
{
    pthread_mutex_lock(&inf->lock);
    *out = inf->stats;
    pthread_mutex_unlock(&inf->lock);
}
