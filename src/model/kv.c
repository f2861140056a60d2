/* kv.c - one sequence with a KV cache: a model_cache and a one-sequence model_batch.
 *
 * Prompts run in chunks of MODEL_KV_CHUNK tokens (bounding the scratch memory); the logits
 * equal the full forward's (tests/model checks it for every architecture).
 */
#include <stdlib.h>

#include "model/model_internal.h"

#define MODEL_KV_CHUNK 64

struct model_kv {
    struct model_cache *cache;
    struct model_batch *batch;
    int V;
};

struct model_kv *model_kv_new(const struct model *m, int max_T, struct fj_err *err)
{
    struct model_kv *kv = calloc(1, sizeof *kv);
    if (!kv) {
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        return NULL;
    }
    kv->V = m->cfg.vocab_size;
    int chunk = max_T < MODEL_KV_CHUNK ? max_T : MODEL_KV_CHUNK;
    if (!(kv->cache = model_cache_new(m, max_T, err)) ||
        !(kv->batch = model_batch_new(m, chunk, chunk, err))) {
        model_kv_free(kv);
        return NULL;
    }
    return kv;
}

void model_kv_free(struct model_kv *kv)
{
    if (!kv)
        return;
    model_cache_free(kv->cache);
    model_batch_free(kv->batch);
    free(kv);
}

void model_kv_reset(struct model_kv *kv)
{
    model_cache_reset(kv->cache);
}

int model_kv_len(const struct model_kv *kv)
{
    return model_cache_len(kv->cache);
}

int model_kv_forward(struct model_kv *kv, const int32_t *tokens, int n, bool all_logits,
                     float *logits, struct fj_err *err)
{
    int len = model_cache_len(kv->cache), cap = model_cache_capacity(kv->cache);
    if (n < 1 || n > cap - len)
        return fj_err_set(err, FJ_ERR_RANGE, "%d more tokens do not fit the cache (%d of %d used)",
                          n, len, cap);
    for (int done = 0; done < n;) {
        int k = n - done < MODEL_KV_CHUNK ? n - done : MODEL_KV_CHUNK;
        struct model_seq s = {.cache = kv->cache, .tokens = tokens + done, .n = k};
        s.logits = all_logits      ? MODEL_LOGITS_ALL
                   : done + k == n ? MODEL_LOGITS_LAST
                                   : MODEL_LOGITS_NONE;
        float *out = all_logits ? logits + (size_t)done * kv->V : logits;
        int rc = model_batch_forward(kv->batch, &s, 1, out, err);
        if (rc != 0)
            return rc;
        done += k;
    }
    return 0;
}
