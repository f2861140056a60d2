/* test_infer.c - the inference engine against the model's plain full forward.
 *
 * The oracle for batching is the unbatched, uncached forward pass (model_forward over the
 * whole sequence so far, argmax of the last position), which shares no code with the KV
 * cache, the batch scheduler or the per-row adapters. Several requests of different prompt
 * lengths and three different weights (the base and two random LoRA adapters) run at once
 * through one engine; each must produce exactly the oracle's greedy continuation. Text
 * assembly (stop strings across token boundaries, UTF-8 held back) is checked on its own.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/file.h"
#include "core/rng.h"
#include "infer/infer.h"
#include "infer/infer_internal.h"
#include "model/folder.h"
#include "model/model.h"
#include "test.h"

static char tmp_dir[] = "/tmp/forja-test-infer-XXXXXX";
static char base_dir[256], adapter_dir[2][256];

/* A random LoRA adapter on every linear (B not zero, so it changes the output). */
static int make_adapter(const char *dir, uint64_t seed)
{
    struct fj_err err = {0};
    struct model *m = model_load(base_dir, &err);
    struct model_lora_config lc = {.r = 4, .alpha = 8, .dropout = 0};
    if (!m || model_lora_parse_targets(model_get_config(m), "all-linear", &lc.targets, &err) ||
        model_lora_attach(m, &lc, seed, &err)) {
        fprintf(stderr, "adapter: %s\n", err.msg);
        model_free(m);
        return -1;
    }
    uint64_t s = seed;
    for (size_t i = 0; i < model_n_params(m); i++) {
        struct model_param *p = model_param_at(m, i);
        if (p->lora && strstr(p->name, "lora_B"))
            for (size_t k = 0; k < p->numel; k++)
                p->data[k] = (float)(fj_rng_uniform(&s) - 0.5) * 0.5f;
    }
    int rc = model_lora_save(m, dir, base_dir, &err);
    model_free(m);
    return rc;
}

/* The oracle: greedy decoding by full forwards, stopping at the model's stop tokens. */
static void oracle(const struct model_info *info, const char *adapter, const uint32_t *prompt,
                   int n, int max_tokens, struct fj_buf *text)
{
    struct fj_err err = {0};
    struct model *m = model_load(base_dir, &err);
    if (adapter)
        model_lora_load(m, adapter, &err);
    int V = model_get_config(m)->vocab_size;
    int32_t seq[256];
    for (int i = 0; i < n; i++)
        seq[i] = (int32_t)prompt[i];
    struct fj_buf bytes = {0};
    for (int t = 0; t < max_tokens; t++) {
        int T = n + t;
        struct model_run *r = model_run_new(m, 1, T, &err);
        int32_t targets[256] = {0};
        model_forward(r, seq, targets, NULL, NULL, false, 0, NULL, &err);
        const float *last = model_run_logits(r) + (size_t)(T - 1) * V;
        int32_t best = 0;
        for (int v = 1; v < V; v++)
            if (last[v] > last[best])
                best = v;
        model_run_free(r);
        bool stop = false;
        for (int i = 0; i < info->n_stop; i++)
            stop = stop || (int32_t)info->stop_ids[i] == best;
        if (stop)
            break;
        const uint8_t *b;
        size_t len;
        tok_token_bytes(info->enc, (uint32_t)best, &b, &len);
        fj_buf_append(&bytes, b, len);
        seq[T] = best;
    }
    infer_utf8_clean((const uint8_t *)bytes.data, bytes.len, text);
    fj_buf_free(&bytes);
    model_free(m);
}

/* Waiting for requests: notify signals a condition variable. */
static pthread_mutex_t wait_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wait_cond = PTHREAD_COND_INITIALIZER;
static int notified;

static void on_notify(void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&wait_lock);
    notified++;
    pthread_cond_broadcast(&wait_cond);
    pthread_mutex_unlock(&wait_lock);
}

struct collected {
    struct fj_buf text[INFER_MAX_CHOICES];
    const char *finish[INFER_MAX_CHOICES];
    int completion_tokens;
    bool done;
    char error[512];
};

static void collect(struct infer_request *rq, struct collected *c)
{
    struct infer_output out;
    infer_take(rq, &out);
    for (size_t i = 0; i < out.n_deltas; i++) {
        struct infer_delta *d = &out.deltas[i];
        fj_buf_append(&c->text[d->choice], d->text ? d->text : "", d->len);
        if (d->finish)
            c->finish[d->choice] = d->finish;
    }
    c->done = out.done;
    c->completion_tokens = out.completion_tokens;
    snprintf(c->error, sizeof c->error, "%s", out.error);
    infer_output_free(&out);
}

static void wait_all(struct infer_request **rqs, struct collected *cs, int n)
{
    for (;;) {
        bool all = true;
        for (int i = 0; i < n; i++) {
            if (!cs[i].done)
                collect(rqs[i], &cs[i]);
            all = all && cs[i].done;
        }
        if (all)
            return;
        pthread_mutex_lock(&wait_lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&wait_cond, &wait_lock, &ts);
        pthread_mutex_unlock(&wait_lock);
    }
}

static void collected_free(struct collected *c)
{
    for (int i = 0; i < INFER_MAX_CHOICES; i++)
        fj_buf_free(&c->text[i]);
}

static void test_text(void)
{
    struct infer_text t = {0};
    char *stops[] = {"lo Wo", "\n\n"};
    char *out;
    size_t len;
    bool stopped;
    infer_text_push(&t, (const uint8_t *)"Hel", 3, stops, 2, false, &out, &len, &stopped);
    CHECK(out && strcmp(out, "He") == 0 && !stopped); /* "l" may start "lo Wo" */
    free(out);
    infer_text_push(&t, (const uint8_t *)"lo W", 4, stops, 2, false, &out, &len, &stopped);
    CHECK(out && strcmp(out, "l") == 0 && !stopped); /* "lo W" may become "lo Wo" */
    free(out);
    infer_text_push(&t, (const uint8_t *)"orld", 4, stops, 2, false, &out, &len, &stopped);
    CHECK(out == NULL && stopped); /* found across three tokens, and left out */
    infer_text_free(&t);

    /* an unfinished character waits for its last byte; invalid bytes become U+FFFD */
    infer_text_push(&t, (const uint8_t *)"a\xC3", 2, NULL, 0, false, &out, &len, &stopped);
    CHECK(out && strcmp(out, "a") == 0);
    free(out);
    infer_text_push(&t, (const uint8_t *)"\xB1\xFF", 2, NULL, 0, true, &out, &len, &stopped);
    CHECK(out && strcmp(out, "\xC3\xB1\xEF\xBF\xBD") == 0);
    free(out);
    infer_text_free(&t);
}

static void test_batching(struct infer *inf)
{
    struct fj_err err = {0};
    struct model_info info;
    CHECK(model_info_open(&info, base_dir, &err) == 0);
    const char *adapters[3] = {NULL, adapter_dir[0], adapter_dir[1]};
    struct infer_model *mdl[3];
    for (int a = 0; a < 3; a++) {
        mdl[a] = infer_open(inf, base_dir, adapters[a], &err);
        CHECK(mdl[a] != NULL);
        if (!mdl[a]) {
            fprintf(stderr, "open: %s\n", err.msg);
            return;
        }
    }
    enum { N_REQ = 6, MAX_NEW = 10 };
    static const char *prompts[N_REQ] = {"Hello",
                                         "The quick brown fox jumps over the lazy dog, and then",
                                         "Does Azure OpenAI support customer managed keys?",
                                         "1 2 3 4 5 6 7 8 9 10 11 12",
                                         "x",
                                         "Clippy is an assistant who"};
    struct infer_request *rqs[N_REQ];
    struct collected cs[N_REQ];
    memset(cs, 0, sizeof cs);
    struct tok_ids ids[N_REQ];
    struct infer_params p = infer_params_default();
    p.temperature = 0;
    p.max_tokens = MAX_NEW;
    for (int i = 0; i < N_REQ; i++) {
        memset(&ids[i], 0, sizeof ids[i]);
        tok_encode(info.enc, prompts[i], strlen(prompts[i]), TOK_SPECIAL_ALLOW, &ids[i], &err);
        rqs[i] = infer_submit(mdl[i % 3], ids[i].data, ids[i].len, &p, on_notify, NULL, &err);
        CHECK(rqs[i] != NULL);
    }
    wait_all(rqs, cs, N_REQ);
    struct infer_stats st;
    infer_stats(inf, &st);
    CHECK(st.steps < (uint64_t)N_REQ * MAX_NEW / 2); /* the requests were decoded together */
    struct fj_buf plain = {0}, tuned = {0};
    oracle(&info, NULL, ids[0].data, (int)ids[0].len, MAX_NEW, &plain);
    oracle(&info, adapters[1], ids[0].data, (int)ids[0].len, MAX_NEW, &tuned);
    CHECK(plain.len != tuned.len || memcmp(plain.data, tuned.data, plain.len) != 0);
    fj_buf_free(&plain);
    fj_buf_free(&tuned);
    for (int i = 0; i < N_REQ; i++) {
        struct fj_buf want = {0};
        oracle(&info, adapters[i % 3], ids[i].data, (int)ids[i].len, MAX_NEW, &want);
        fj_buf_append(&want, "", 1);
        fj_buf_append(&cs[i].text[0], "", 1);
        CHECK_STR(cs[i].text[0].data, want.data);
        CHECK(cs[i].finish[0] != NULL);
        CHECK(cs[i].error[0] == '\0');
        fj_buf_free(&want);
        infer_request_release(rqs[i]);
        collected_free(&cs[i]);
    }

    /* the same seed gives the same samples; n choices differ from one another */
    p.temperature = 1.0;
    p.has_seed = true;
    p.seed = 105;
    p.n = 3;
    struct infer_request *pair[2];
    struct collected two[2];
    memset(two, 0, sizeof two);
    for (int i = 0; i < 2; i++)
        pair[i] = infer_submit(mdl[1], ids[2].data, ids[2].len, &p, on_notify, NULL, &err);
    wait_all(pair, two, 2);
    for (int c = 0; c < 3; c++) {
        fj_buf_append(&two[0].text[c], "", 1);
        fj_buf_append(&two[1].text[c], "", 1);
        CHECK_STR(two[0].text[c].data, two[1].text[c].data);
        CHECK_STR(two[0].finish[c], "length");
    }
    CHECK(strcmp(two[0].text[0].data, two[0].text[1].data) != 0);
    CHECK_EQ_U(two[0].completion_tokens, 3 * MAX_NEW);
    for (int i = 0; i < 2; i++) {
        infer_request_release(pair[i]);
        collected_free(&two[i]);
    }

    /* a cancelled request frees its slots; the engine goes on with the others */
    p.n = 1;
    p.max_tokens = 200;
    struct infer_request *gone =
        infer_submit(mdl[0], ids[1].data, ids[1].len, &p, NULL, NULL, &err);
    infer_request_release(gone);
    for (int tries = 0; tries < 200; tries++) {
        infer_stats(inf, &st);
        if (st.running == 0 && st.queued == 0)
            break;
        usleep(10000);
    }
    CHECK(st.running == 0 && st.queued == 0);

    /* a prompt that does not fit the context */
    uint32_t *longp = calloc(4096, sizeof *longp);
    CHECK(infer_submit(mdl[0], longp, 4096, &p, NULL, NULL, &err) == NULL &&
          err.code == FJ_ERR_RANGE);
    free(longp);
    for (int i = 0; i < N_REQ; i++)
        free(ids[i].data);
    for (int a = 0; a < 3; a++)
        infer_close(mdl[a]);
    model_info_close(&info);
}

static void test_budget(void)
{
    struct fj_err err = {0};
    struct infer_config cfg = infer_config_default();
    cfg.memory_bytes = 1 << 20; /* far less than the model */
    struct infer *inf = infer_new(&cfg, &err);
    CHECK(infer_open(inf, base_dir, NULL, &err) == NULL && err.code == FJ_ERR_NOMEM);
    CHECK(strstr(err.msg, "budget") != NULL);
    uint64_t used, budget;
    infer_memory(inf, &used, &budget);
    CHECK_EQ_U(used, 0);
    infer_free(inf);

    /* room for the base and one adapter: a second adapter unloads the idle first one (least
     * recently used), but never one that is held */
    cfg = infer_config_default();
    cfg.memory_bytes = UINT64_MAX;
    inf = infer_new(&cfg, &err);
    struct infer_model *b = infer_open(inf, base_dir, NULL, &err);
    struct infer_model *a0 = infer_open(inf, base_dir, adapter_dir[0], &err);
    CHECK(b && a0);
    if (!b || !a0)
        return;
    uint64_t adapter = infer_model_bytes(a0), need = infer_model_bytes(b) + adapter;
    infer_close(a0);
    infer_close(b);
    infer_free(inf);
    cfg.memory_bytes = need + adapter / 2;
    inf = infer_new(&cfg, &err);
    a0 = infer_open(inf, base_dir, adapter_dir[0], &err);
    CHECK(a0 != NULL);
    infer_close(a0);
    struct infer_model *a1 = infer_open(inf, base_dir, adapter_dir[1], &err);
    CHECK(a1 != NULL); /* adapter 0 was idle: unloaded to make room */
    infer_memory(inf, &used, &budget);
    CHECK(used <= budget && used == need);
    CHECK(infer_open(inf, base_dir, adapter_dir[0], &err) == NULL && err.code == FJ_ERR_NOMEM);
    infer_close(a1);
    CHECK((a0 = infer_open(inf, base_dir, adapter_dir[0], &err)) != NULL); /* now it can */
    infer_close(a0);
    infer_free(inf);
}

int main(void)
{
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(base_dir, sizeof base_dir, "%s/base", tmp_dir);
    struct fj_err err = {0};
    if (model_builtin_create(base_dir, &err) != 0) {
        fprintf(stderr, "builtin: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < 2; i++) {
        snprintf(adapter_dir[i], sizeof adapter_dir[i], "%s/adapter%d", tmp_dir, i);
        if (make_adapter(adapter_dir[i], 7 + (uint64_t)i) != 0)
            return 1;
    }
    test_text();
    struct infer_config cfg = infer_config_default();
    cfg.threads = 2;
    struct infer *inf = infer_new(&cfg, &err);
    test_batching(inf);
    infer_free(inf);
    test_budget();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp_dir);
    printf("%d checks, %d failures\n", test_checks, test_failures);
    return test_failures != 0;
}
