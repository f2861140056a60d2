/* sample.c - choosing the next token: OpenAI's presence and frequency penalties, then
 * greedy decoding (temperature 0) or sampling with temperature and nucleus (top_p), and the
 * logprobs the API reports.
 *
 * Penalties follow OpenAI's definition: logit[t] -= frequency_penalty * count[t] +
 * presence_penalty * (count[t] > 0), counting the tokens generated so far. Log-probabilities
 * are those of the penalised distribution at temperature 1. The nucleus is found without
 * sorting the vocabulary: probabilities are bucketed by binary exponent, whole buckets are
 * taken from the top while their mass stays under top_p, and only the bucket that crosses it
 * is sorted.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "infer/infer_internal.h"
#include "nn/vec.h"

#define N_BUCKETS 64

int infer_sampler_init(struct infer_sampler *s, int V, struct fj_err *err)
{
    s->V = V;
    s->work = malloc((size_t)V * sizeof *s->work);
    s->idx = malloc((size_t)V * sizeof *s->idx);
    s->probs = malloc((size_t)V * sizeof *s->probs);
    s->seen = calloc((size_t)V, 1);
    if (!s->work || !s->idx || !s->probs || !s->seen) {
        infer_sampler_free(s);
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    }
    return 0;
}

void infer_sampler_free(struct infer_sampler *s)
{
    free(s->work);
    free(s->idx);
    free(s->probs);
    free(s->seen);
    memset(s, 0, sizeof *s);
}

static void apply_penalties(struct infer_sampler *s, const struct infer_params *p,
                            const int32_t *gen, int n_gen)
{
    if (p->presence_penalty == 0 && p->frequency_penalty == 0)
        return;
    for (int i = 0; i < n_gen; i++) {
        int32_t t = gen[i];
        s->work[t] -= (float)p->frequency_penalty;
        if (!s->seen[t]) {
            s->seen[t] = 1;
            s->work[t] -= (float)p->presence_penalty;
        }
    }
    for (int i = 0; i < n_gen; i++)
        s->seen[gen[i]] = 0;
}

/* The first index of the largest value: a vectorised max, then a search for it. */
static int32_t argmax(const float *x, int V)
{
    float m = nn_vec_max(x, (size_t)V);
    for (int v = 0; v < V; v++)
        if (x[v] == m)
            return v;
    return 0; /* NaN logits */
}

static int by_prob_desc(const void *a, const void *b, void *ctx)
{
    const float *p = ctx;
    float x = p[*(const int32_t *)a], y = p[*(const int32_t *)b];
    if (x != y)
        return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

/* Bucket 0 holds probabilities in [1/2, 1], bucket b those in [2^-(b+1), 2^-b); zero and
 * the tiniest go to the last. */
static int bucket_of(float p)
{
    if (!(p > 0))
        return N_BUCKETS - 1;
    int e;
    frexpf(p, &e); /* p = f 2^e, f in [1/2, 1): p in [1/2, 1) gives e = 0, p = 1 gives 1 */
    int b = -e;
    return b < 0 ? 0 : b >= N_BUCKETS ? N_BUCKETS - 1 : b;
}

/* Samples from probs (V, unnormalised, max 1, summing to total) restricted to the nucleus. */
static int32_t sample_nucleus(struct infer_sampler *s, float *probs, double total, double top_p,
                              uint64_t *rng)
{
    int V = s->V;
    int n = 0;
    if (top_p >= 1.0) {
        double u = fj_rng_uniform(rng) * total, acc = 0;
        for (int v = 0; v < V; v++)
            if ((acc += probs[v]) > u)
                return v;
        return argmax(probs, V);
    }
    double mass[N_BUCKETS] = {0};
    for (int v = 0; v < V; v++)
        mass[bucket_of(probs[v])] += probs[v];
    double want = top_p * total, acc = 0;
    int cut = 0;
    while (cut < N_BUCKETS - 1 && acc + mass[cut] < want)
        acc += mass[cut++];
    /* every bucket above `cut` is in; the cut bucket is sorted and taken until want */
    int first_cut = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int v = 0; v < V; v++) {
            int b = bucket_of(probs[v]);
            if ((pass == 0 && b < cut) || (pass == 1 && b == cut))
                s->idx[n++] = v;
        }
        if (pass == 0)
            first_cut = n;
    }
    int n_cut = n;
    qsort_r(s->idx + first_cut, (size_t)(n_cut - first_cut), sizeof *s->idx, by_prob_desc, probs);
    double nucleus = acc;
    for (n = first_cut; n < n_cut && (n == 0 || nucleus < want); n++)
        nucleus += probs[s->idx[n]];
    double u = fj_rng_uniform(rng) * nucleus, run = 0;
    for (int i = 0; i < n; i++)
        if ((run += probs[s->idx[i]]) > u)
            return s->idx[i];
    return s->idx[n - 1];
}

/* {token, logprob, bytes} for id, with its text decoded lossily. */
static json_t *token_entry(const struct tok_encoding *enc, int32_t id, double logprob)
{
    const uint8_t *b = NULL;
    size_t len = 0;
    tok_token_bytes(enc, (uint32_t)id, &b, &len);
    struct fj_buf text = {0};
    json_t *bytes = json_array();
    for (size_t i = 0; i < len; i++)
        json_array_append_new(bytes, json_integer(b[i]));
    infer_utf8_clean(b, len, &text);
    json_t *o = json_pack("{s:s%, s:f, s:o}", "token", text.data ? text.data : "", text.len,
                          "logprob", logprob, "bytes", bytes);
    fj_buf_free(&text);
    return o;
}

static json_t *logprob_entry(struct infer_sampler *s, int32_t chosen, int k,
                             const struct tok_encoding *enc)
{
    int V = s->V;
    float max = nn_vec_max(s->work, (size_t)V);
    double lse = (double)max + log(nn_vec_sum_exp(s->work, (size_t)V, max));
    json_t *entry = token_entry(enc, chosen, (double)s->work[chosen] - lse);
    int32_t top[INFER_MAX_TOP];
    int n = 0;
    for (int v = 0; v < V && k > 0; v++) {
        if (n == k && s->work[v] <= s->work[top[n - 1]])
            continue;
        int i = n < k ? n++ : k - 1;
        while (i > 0 && s->work[top[i - 1]] < s->work[v]) {
            top[i] = top[i - 1];
            i--;
        }
        top[i] = v;
    }
    json_t *alts = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(alts, token_entry(enc, top[i], (double)s->work[top[i]] - lse));
    json_object_set_new(entry, "top_logprobs", alts);
    return entry;
}

int32_t infer_sample(struct infer_sampler *s, const float *logits, const struct infer_params *p,
                     const int32_t *gen, int n_gen, uint64_t *rng, const struct tok_encoding *enc,
                     json_t **entry)
{
    int V = s->V;
    bool penalised = (p->presence_penalty != 0 || p->frequency_penalty != 0) && n_gen > 0;
    int32_t tok;
    if (p->temperature <= 0 && !penalised && !p->logprobs) {
        if (entry)
            *entry = NULL;
        return argmax(logits, V); /* greedy: nothing to change in the logits */
    }
    memcpy(s->work, logits, (size_t)V * sizeof *s->work);
    apply_penalties(s, p, gen, n_gen);
    if (p->temperature <= 0) {
        tok = argmax(s->work, V);
    } else {
        /* probs = exp((work - max) / T), unnormalised, the largest 1 */
        float inv_t = (float)(1.0 / p->temperature);
        float max = nn_vec_max(s->work, (size_t)V);
        memcpy(s->probs, s->work, (size_t)V * sizeof *s->probs);
        nn_vec_scale(s->probs, (size_t)V, inv_t);
        double total = nn_vec_exp_sum(s->probs, s->probs, (size_t)V, max * inv_t);
        tok = sample_nucleus(s, s->probs, total, p->top_p, rng);
    }
    if (entry)
        *entry = p->logprobs ? logprob_entry(s, tok, p->top_logprobs, enc) : NULL;
    return tok;
}
