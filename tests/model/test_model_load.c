/* test_model_load.c - model_load and model_lora_load refuse folders whose weights do not
 * fit their config, with an error naming the tensor, and never crash (run under ASan in
 * CI): a tensor of the wrong shape, a missing tensor, an integer dtype, a config with
 * absurd sizes; an adapter whose matrices have the wrong rank, a target the architecture
 * lacks, an unsupported PEFT feature. A good folder loads, and save/load round-trips. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../test.h"
#include "core/file.h"
#include "model/model.h"

static char dir[256];

static struct model_config small_llama(void)
{
    struct model_config c = {.arch = MODEL_ARCH_LLAMA,
                             .n_layer = 1,
                             .n_embd = 8,
                             .n_head = 2,
                             .n_kv_head = 1,
                             .head_dim = 4,
                             .n_ff = 12,
                             .vocab_size = 16,
                             .n_ctx = 32,
                             .norm_eps = 1e-5f,
                             .act = MODEL_ACT_SILU,
                             .rope_theta = 10000.0f,
                             .bos_id = -1,
                             .n_eos = 1,
                             .eos_ids = {2}};
    snprintf(c.architecture, sizeof c.architecture, "LlamaForCausalLM");
    return c;
}

/* Writes a good folder with model_save, then lets `mutate` rewrite the weights file from
 * the model's own parameter table. */
static void write_folder(const char *name, void (*mutate)(struct model *m, const char *path))
{
    struct fj_err err = {0};
    struct model_config c = small_llama();
    struct model *m = model_new(&c, &err);
    for (size_t i = 0; i < model_n_params(m); i++) {
        struct model_param *p = model_param_at(m, i);
        for (size_t k = 0; k < p->numel; k++)
            p->data[k] = (float)(k % 7) * 0.1f;
    }
    snprintf(dir, sizeof dir, "/tmp/forja-model-load-%d/%s", (int)getpid(), name);
    CHECK(model_save(m, dir, MODEL_DTYPE_F32, &err) == 0);
    if (mutate) {
        char path[300];
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        mutate(m, path);
    }
    model_free(m);
}

/* Rewrites the weights with entry `skip` dropped, or given a different shape / dtype. */
static int mode;
enum { DROP, RESHAPE, INTEGER };
static const char *victim = "model.layers.0.self_attn.k_proj.weight";

static void rewrite(struct model *m, const char *path)
{
    size_t n = model_n_params(m), k = 0;
    struct model_st_entry *e = calloc(n, sizeof *e);
    float *big = calloc(4096, sizeof *big);
    for (size_t i = 0; i < n; i++) {
        struct model_param *p = model_param_at(m, i);
        bool is_victim = strcmp(p->name, victim) == 0;
        if (is_victim && mode == DROP)
            continue;
        e[k] = (struct model_st_entry){.name = p->name,
                                       .dtype = MODEL_DTYPE_F32,
                                       .ndim = p->ndim,
                                       .shape = {p->shape[0], p->shape[1]},
                                       .data = p->data};
        if (is_victim && mode == RESHAPE) {
            e[k].shape[0] = p->shape[1]; /* transposed: (C, KVW) instead of (KVW, C) */
            e[k].shape[1] = p->shape[0];
        }
        k++;
    }
    struct fj_err err = {0};
    CHECK(model_st_write(path, e, k, NULL, &err) == 0);
    free(e);
    free(big);
}

static void expect_refused(const char *what, const char *needle)
{
    struct fj_err err = {0};
    struct model *m = model_load(dir, &err);
    CHECK(m == NULL);
    if (m || !strstr(err.msg, needle))
        fprintf(stderr, "%s: got \"%s\", wanted a message with \"%s\"\n", what, err.msg, needle);
    CHECK(strstr(err.msg, needle) != NULL);
    model_free(m);
}

static void test_good_folder(void)
{
    write_folder("good", NULL);
    struct fj_err err = {0};
    struct model *m = model_load(dir, &err);
    CHECK(m != NULL);
    if (!m)
        return;
    struct model_param *p = model_param_find(m, victim);
    CHECK(p && p->data[3] == 3 * 0.1f);
    CHECK(model_count_params(m) == model_config_n_params(model_get_config(m)));
    model_free(m);
}

static void test_bad_weights(void)
{
    mode = DROP;
    write_folder("missing", rewrite);
    expect_refused("missing tensor", "k_proj.weight is missing");
    mode = RESHAPE;
    write_folder("reshaped", rewrite);
    expect_refused("wrong shape", "k_proj.weight has shape [8, 4], the config implies [4, 8]");
}

static void test_absurd_config(void)
{
    write_folder("absurd", NULL);
    char path[300];
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *cfg = "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
                      "\"hidden_size\": 8, \"intermediate_size\": 12, \"num_hidden_layers\": "
                      "1000000000, \"num_attention_heads\": 2, \"vocab_size\": 16}";
    struct fj_err err = {0};
    CHECK(fj_file_write_atomic(path, cfg, strlen(cfg), &err) == 0);
    expect_refused("absurd config", "num_hidden_layers");
}

static void write_text(const char *name, const char *text)
{
    char path[400];
    struct fj_err err = {0};
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK(fj_file_write_atomic(path, text, strlen(text), &err) == 0);
}

static void test_adapters(void)
{
    write_folder("lora", NULL);
    struct fj_err err = {0};
    struct model *m = model_load(dir, &err);
    CHECK(m != NULL);
    if (!m)
        return;
    struct model_lora_config lc = {.r = 2, .alpha = 4, .targets = MODEL_LORA_Q | MODEL_LORA_V};
    CHECK(model_lora_attach(m, &lc, 1, &err) == 0);
    char adir[300];
    snprintf(adir, sizeof adir, "%s/adapter", dir);
    CHECK(model_lora_save(m, adir, "base", &err) == 0);
    model_free(m);
    /* reloads */
    m = model_load(dir, &err);
    CHECK(model_lora_load(m, adir, &err) == 0);
    /* q: A (2, 8) and B (8, 2); v: A (2, 8) and B (4, 2) */
    CHECK(model_count_trainable(m) == (2 * 8 + 8 * 2) + (2 * 8 + 4 * 2));
    model_free(m);
    /* a target GPT-2 has and Llama does not */
    snprintf(dir, sizeof dir, "/tmp/forja-model-load-%d/lora/adapter", (int)getpid());
    write_text("adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, "
                                      "\"target_modules\": [\"c_attn\"]}");
    snprintf(dir, sizeof dir, "/tmp/forja-model-load-%d/lora", (int)getpid());
    m = model_load(dir, &err);
    fj_err_clear(&err);
    CHECK(model_lora_load(m, adir, &err) != 0 && strstr(err.msg, "c_attn"));
    model_free(m);
    /* DoRA is not LoRA */
    snprintf(dir, sizeof dir, "/tmp/forja-model-load-%d/lora/adapter", (int)getpid());
    write_text("adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, "
                                      "\"target_modules\": [\"q_proj\"], \"use_dora\": true}");
    snprintf(dir, sizeof dir, "/tmp/forja-model-load-%d/lora", (int)getpid());
    m = model_load(dir, &err);
    fj_err_clear(&err);
    CHECK(model_lora_load(m, adir, &err) != 0 && strstr(err.msg, "DoRA"));
    model_free(m);
    /* rank 3 in the config, rank 2 in the file */
    snprintf(dir, sizeof dir, "/tmp/forja-model-load-%d/lora/adapter", (int)getpid());
    write_text("adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 3, \"lora_alpha\": 4, "
                                      "\"target_modules\": [\"q_proj\", \"v_proj\"]}");
    snprintf(dir, sizeof dir, "/tmp/forja-model-load-%d/lora", (int)getpid());
    m = model_load(dir, &err);
    fj_err_clear(&err);
    CHECK(model_lora_load(m, adir, &err) != 0 && strstr(err.msg, "lora_A.weight has shape"));
    model_free(m);
}

/* The same weights split over two shards with an index, as large models are published. */
static void test_sharded(void)
{
    write_folder("sharded", NULL);
    struct fj_err err = {0};
    struct model *m = model_load(dir, &err);
    CHECK(m != NULL);
    if (!m)
        return;
    size_t n = model_n_params(m), half = n / 2;
    struct model_st_entry *e = calloc(n, sizeof *e);
    struct fj_buf index = {0};
    fj_buf_printf(&index, "{\"metadata\": {}, \"weight_map\": {");
    for (size_t i = 0; i < n; i++) {
        struct model_param *p = model_param_at(m, i);
        e[i] = (struct model_st_entry){.name = p->name,
                                       .dtype = MODEL_DTYPE_BF16,
                                       .ndim = p->ndim,
                                       .shape = {p->shape[0], p->shape[1]},
                                       .data = p->data};
        fj_buf_printf(&index, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "",
                      p->name, i < half ? 1 : 2);
    }
    fj_buf_printf(&index, "}}");
    char path[400];
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    CHECK(model_st_write(path, e, half, NULL, &err) == 0);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    CHECK(model_st_write(path, e + half, n - half, NULL, &err) == 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(unlink(path) == 0);
    write_text("model.safetensors.index.json", index.data);
    struct model *sharded = model_load(dir, &err);
    CHECK(sharded != NULL);
    for (size_t i = 0; sharded && i < n; i++) {
        const struct model_param *a = model_param_at(m, i), *b = model_param_at(sharded, i);
        for (size_t k = 0; k < a->numel; k++) /* BF16 on disk: the value rounded to 8 bits */
            CHECK(fabsf(a->data[k] - b->data[k]) <= fabsf(a->data[k]) * (1.0f / 256));
    }
    model_free(sharded);
    model_free(m);
    fj_buf_free(&index);
    free(e);
}

int main(void)
{
    RUN(test_good_folder);
    RUN(test_bad_weights);
    RUN(test_absurd_config);
    RUN(test_adapters);
    RUN(test_sharded);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf /tmp/forja-model-load-%d", (int)getpid());
    CHECK(system(cmd) == 0);
    return TEST_DONE();
}
