/* test_config.c - config.json parsing, defaults, refusals, writing and parameter counts.
 *
 * The published configs in configs/ are the files Hugging Face hosts for those models; the
 * parameter counts they must give are the models' published sizes (GPT-2 124M's
 * 124,439,808, SmolLM2-135M's 134,515,008, ...), not numbers computed by this code.
 * config_cross.py counts the parameters of PyTorch modules built from the same configs.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../test.h"
#include "model/config.h"

#ifndef FORJA_MODEL_CONFIGS
#error "FORJA_MODEL_CONFIGS must name tests/model/configs"
#endif

static char tmp_dir[256];

static bool load(struct model_config *cfg, const char *name)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", FORJA_MODEL_CONFIGS, name);
    struct fj_err err = {0};
    int rc = model_config_load(cfg, dir, &err);
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", name, err.msg);
    return rc == 0;
}

static int parse(struct model_config *cfg, const char *json, struct fj_err *err)
{
    fj_err_clear(err);
    return model_config_parse(cfg, json, strlen(json), err);
}

/* parse(to_json(cfg)) must give cfg back, byte for byte. */
static void check_roundtrip(const struct model_config *cfg)
{
    struct fj_buf b = {0};
    struct fj_err err = {0};
    CHECK(model_config_to_json(cfg, &b, &err) == 0);
    struct model_config back;
    CHECK(b.data != NULL && model_config_parse(&back, b.data, b.len, &err) == 0);
    struct model_config want = *cfg;
    if (want.torch_dtype[0] == '\0')
        snprintf(want.torch_dtype, sizeof want.torch_dtype, "float32");
    bool same = memcmp(&want, &back, sizeof want) == 0;
    CHECK(same);
    if (!same)
        fprintf(stderr, "%s\n%s\n", err.msg, b.data ? b.data : "(nothing written)");
    fj_buf_free(&b);
}

static void test_gpt2(void)
{
    struct model_config c;
    CHECK(load(&c, "gpt2"));
    CHECK(c.arch == MODEL_ARCH_GPT2);
    CHECK_STR(c.architecture, "GPT2LMHeadModel");
    CHECK(c.n_layer == 12 && c.n_embd == 768 && c.n_head == 12 && c.n_kv_head == 12);
    CHECK(c.head_dim == 64 && c.n_ff == 3072 && c.vocab_size == 50257 && c.n_ctx == 1024);
    CHECK(c.norm_eps == 1e-5f && c.act == MODEL_ACT_GELU_TANH && c.tie_embeddings);
    CHECK(c.qkv_bias && c.o_bias && c.mlp_bias && c.rope_scaling == MODEL_ROPE_NONE);
    CHECK(c.bos_id == 50256 && c.n_eos == 1 && c.eos_ids[0] == 50256);
    CHECK_STR(c.torch_dtype, "");
    CHECK_EQ_U(model_config_n_params(&c), 124439808);
    check_roundtrip(&c);
}

static void test_smollm2(void)
{
    struct model_config c;
    CHECK(load(&c, "smollm2-135m"));
    CHECK(c.arch == MODEL_ARCH_LLAMA);
    CHECK_STR(c.architecture, "LlamaForCausalLM");
    CHECK(c.n_layer == 30 && c.n_embd == 576 && c.n_head == 9 && c.n_kv_head == 3);
    CHECK(c.head_dim == 64 && c.n_ff == 1536 && c.vocab_size == 49152 && c.n_ctx == 8192);
    CHECK(c.norm_eps == 1e-5f && c.act == MODEL_ACT_SILU && c.tie_embeddings);
    CHECK(!c.qkv_bias && !c.o_bias && !c.mlp_bias);
    CHECK(c.rope_theta == 100000.0f && c.rope_scaling == MODEL_ROPE_NONE);
    CHECK(c.bos_id == 0 && c.n_eos == 1 && c.eos_ids[0] == 0);
    CHECK_STR(c.torch_dtype, "bfloat16");
    CHECK_EQ_U(model_config_n_params(&c), 134515008);
    check_roundtrip(&c);
}

static void test_qwen25(void)
{
    struct model_config c;
    CHECK(load(&c, "qwen2.5-0.5b"));
    CHECK(c.arch == MODEL_ARCH_QWEN2);
    CHECK(c.n_layer == 24 && c.n_embd == 896 && c.n_head == 14 && c.n_kv_head == 2);
    CHECK(c.head_dim == 64 && c.n_ff == 4864 && c.vocab_size == 151936 && c.n_ctx == 32768);
    CHECK(c.norm_eps == 1e-6f && c.rope_theta == 1e6f && c.tie_embeddings);
    CHECK(c.qkv_bias && !c.o_bias && !c.mlp_bias);
    CHECK(c.bos_id == 151643 && c.n_eos == 1 && c.eos_ids[0] == 151643);
    CHECK_EQ_U(model_config_n_params(&c), 494032768);
    check_roundtrip(&c);
}

static void test_llama32(void)
{
    struct model_config c;
    CHECK(load(&c, "llama-3.2-1b"));
    CHECK(c.arch == MODEL_ARCH_LLAMA);
    CHECK(c.n_layer == 16 && c.n_embd == 2048 && c.n_head == 32 && c.n_kv_head == 8);
    CHECK(c.head_dim == 64 && c.n_ff == 8192 && c.vocab_size == 128256 && c.n_ctx == 131072);
    CHECK(c.norm_eps == 1e-5f && c.rope_theta == 500000.0f && c.tie_embeddings);
    CHECK(c.rope_scaling == MODEL_ROPE_LLAMA3 && c.rope_factor == 32.0f);
    CHECK(c.rope_low_freq_factor == 1.0f && c.rope_high_freq_factor == 4.0f);
    CHECK(c.rope_original_n_ctx == 8192);
    CHECK(c.bos_id == 128000 && c.n_eos == 1 && c.eos_ids[0] == 128001);
    CHECK_EQ_U(model_config_n_params(&c), 1235814400);
    check_roundtrip(&c);

    CHECK(load(&c, "llama-3.2-1b-instruct"));
    CHECK(c.n_eos == 3 && c.eos_ids[0] == 128001 && c.eos_ids[1] == 128008 &&
          c.eos_ids[2] == 128009);
    CHECK_EQ_U(model_config_n_params(&c), 1235814400);
    check_roundtrip(&c);
}

static void test_mistral(void)
{
    struct model_config c;
    CHECK(load(&c, "mistral-7b-v0.1"));
    CHECK(c.arch == MODEL_ARCH_LLAMA);
    CHECK_STR(c.architecture, "MistralForCausalLM");
    CHECK(c.n_layer == 32 && c.n_embd == 4096 && c.n_head == 32 && c.n_kv_head == 8);
    CHECK(c.n_ff == 14336 && c.vocab_size == 32000 && !c.tie_embeddings);
    CHECK(c.n_ctx == 4096); /* max_position_embeddings 32768, clipped to sliding_window */
    CHECK(c.bos_id == 1 && c.eos_ids[0] == 2);
    CHECK_EQ_U(model_config_n_params(&c), 7241732096);
    check_roundtrip(&c);
}

#define LLAMA_MIN                                                                                  \
    "\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":1000,\"hidden_size\":64,"             \
    "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"                 \
    "\"max_position_embeddings\":256"

#define GPT2_MIN                                                                                   \
    "\"architectures\":[\"GPT2LMHeadModel\"],\"vocab_size\":50257,\"n_embd\":64,\"n_layer\":2,"    \
    "\"n_head\":4,\"n_positions\":128"

static void test_defaults(void)
{
    struct model_config c;
    struct fj_err err = {0};
    CHECK(parse(&c, "{" LLAMA_MIN "}", &err) == 0);
    CHECK(c.n_kv_head == 4 && c.head_dim == 16 && c.norm_eps == 1e-6f);
    CHECK(c.rope_theta == 10000.0f && !c.tie_embeddings && !c.qkv_bias && !c.mlp_bias);
    CHECK(c.act == MODEL_ACT_SILU && c.bos_id == 1 && c.n_eos == 1 && c.eos_ids[0] == 2);
    CHECK_STR(c.torch_dtype, "");
    check_roundtrip(&c);
    /* null: computed values; ids: none. */
    CHECK(parse(&c,
                "{" LLAMA_MIN ",\"num_key_value_heads\":null,\"head_dim\":null,"
                "\"bos_token_id\":null,\"eos_token_id\":null,\"rope_scaling\":null}",
                &err) == 0);
    CHECK(c.n_kv_head == 4 && c.head_dim == 16 && c.bos_id == -1 && c.n_eos == 0);
    check_roundtrip(&c);
    /* head_dim given: need not divide the width. */
    CHECK(parse(&c,
                "{" LLAMA_MIN ",\"head_dim\":32,\"attention_bias\":true,\"mlp_bias\":true,"
                "\"tie_word_embeddings\":true,\"hidden_act\":\"swish\","
                "\"rope_scaling\":{\"type\":\"default\"},\"dtype\":\"float16\"}",
                &err) == 0);
    CHECK(c.head_dim == 32 && c.qkv_bias && c.o_bias && c.mlp_bias && c.tie_embeddings);
    CHECK(c.rope_scaling == MODEL_ROPE_NONE);
    CHECK_STR(c.torch_dtype, "float16");
    check_roundtrip(&c);
    /* A tiny vocabulary: the default ids 1 and 2 do not fit, so there are none. */
    CHECK(parse(&c,
                "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":2,"
                "\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
                "\"num_attention_heads\":2,\"max_position_embeddings\":8}",
                &err) == 0);
    CHECK(c.bos_id == 1 && c.n_eos == 0);
    /* transformers 5's rope_parameters. */
    CHECK(parse(&c,
                "{" LLAMA_MIN ",\"rope_parameters\":{\"rope_type\":\"llama3\","
                "\"rope_theta\":500000.0,\"factor\":8.0,\"low_freq_factor\":1.0,"
                "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}}",
                &err) == 0);
    CHECK(c.rope_theta == 500000.0f && c.rope_scaling == MODEL_ROPE_LLAMA3 && c.rope_factor == 8);
    check_roundtrip(&c);
    /* No architectures: model_type decides. */
    CHECK(parse(&c,
                "{\"model_type\":\"qwen2\",\"vocab_size\":1000,\"hidden_size\":128,"
                "\"intermediate_size\":128,\"num_hidden_layers\":2,"
                "\"num_attention_heads\":64,\"max_position_embeddings\":256}",
                &err) == 0);
    CHECK(c.arch == MODEL_ARCH_QWEN2 && c.n_kv_head == 32 && c.qkv_bias && c.bos_id == -1);
    CHECK_STR(c.architecture, "Qwen2ForCausalLM");
    check_roundtrip(&c);

    /* Mistral: num_key_value_heads 8 and sliding_window 4096 when absent. */
    const char *m = "{\"architectures\":[\"MistralForCausalLM\"],\"vocab_size\":1000,"
                    "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                    "\"num_attention_heads\":16,\"max_position_embeddings\":32768%s}";
    char text[1024];
    snprintf(text, sizeof text, m, "");
    CHECK(parse(&c, text, &err) == 0);
    CHECK(c.n_kv_head == 8 && c.n_ctx == 4096 && !c.qkv_bias && c.bos_id == 1);
    check_roundtrip(&c);
    snprintf(text, sizeof text, m, ",\"sliding_window\":null,\"attention_bias\":true");
    CHECK(parse(&c, text, &err) == 0);
    CHECK(c.n_ctx == 32768 && !c.qkv_bias && !c.o_bias); /* Mistral has no biases */
    snprintf(text, sizeof text, m, ",\"sliding_window\":100000");
    CHECK(parse(&c, text, &err) == 0 && c.n_ctx == 32768);
    snprintf(text, sizeof text, m, ",\"sliding_window\":0");
    CHECK(parse(&c, text, &err) == FJ_ERR_RANGE && strstr(err.msg, "sliding_window"));

    /* GPT-2. */
    CHECK(parse(&c, "{" GPT2_MIN "}", &err) == 0);
    CHECK(c.n_ff == 256 && c.head_dim == 16 && c.n_kv_head == 4 && c.norm_eps == 1e-5f);
    CHECK(c.tie_embeddings && c.act == MODEL_ACT_GELU_TANH && c.bos_id == 50256);
    check_roundtrip(&c);
    CHECK(parse(&c,
                "{" GPT2_MIN ",\"n_inner\":100,\"activation_function\":\"gelu\","
                "\"tie_word_embeddings\":false,\"eos_token_id\":[1,2],\"bos_token_id\":3}",
                &err) == 0);
    CHECK(c.n_ff == 100 && c.act == MODEL_ACT_GELU && !c.tie_embeddings);
    CHECK(c.n_eos == 2 && c.eos_ids[1] == 2 && c.bos_id == 3);
    check_roundtrip(&c);
    CHECK(parse(&c,
                "{\"architectures\":[\"GPT2LMHeadModel\"],\"vocab_size\":100,\"n_embd\":64,"
                "\"n_layer\":2,\"n_head\":4,\"n_positions\":128}",
                &err) == 0);
    CHECK(c.bos_id == -1 && c.n_eos == 0);
    check_roundtrip(&c);
}

static void test_refusals(void)
{
    static const struct {
        const char *json;
        int code;
        const char *want;
    } cases[] = {
        {"{\"architectures\":[\"T5ForConditionalGeneration\"]}", FJ_ERR_INVALID,
         "unsupported architecture \"T5ForConditionalGeneration\" (forja runs LlamaForCausalLM, "
         "MistralForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel)"},
        {"{\"architectures\":[\"LlamaForSequenceClassification\"]}", FJ_ERR_INVALID,
         "LlamaForSequenceClassification"},
        {"{\"model_type\":\"t5\"}", FJ_ERR_INVALID, "unsupported model_type \"t5\""},
        {"{\"vocab_size\":3}", FJ_ERR_FORMAT, "neither \"architectures\" nor \"model_type\""},
        {"{\"architectures\":[]}", FJ_ERR_FORMAT, "\"architectures\""},
        {"{\"architectures\":\"LlamaForCausalLM\"}", FJ_ERR_FORMAT, "\"architectures\""},
        {"{\"architectures\":[\"LlamaForCausalLM\"]}", FJ_ERR_FORMAT, "\"vocab_size\" is missing"},
        {"not json", FJ_ERR_FORMAT, "not valid JSON"},
        {"[1]", FJ_ERR_FORMAT, "not a JSON object"},
        {"{\"a\":1,\"a\":2}", FJ_ERR_FORMAT, "duplicate"},
        {"{" LLAMA_MIN ",\"hidden_size\":64}", FJ_ERR_FORMAT, "duplicate"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":1000,\"hidden_size\":64,"
         "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"max_position_embeddings\":256}",
         FJ_ERR_FORMAT, "\"intermediate_size\" is missing"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":1000,\"hidden_size\":-64,"
         "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"max_position_embeddings\":256}",
         FJ_ERR_RANGE, "\"hidden_size\" is -64"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":1000,\"hidden_size\":0,"
         "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"max_position_embeddings\":256}",
         FJ_ERR_RANGE, "\"hidden_size\" is 0"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":1000,\"hidden_size\":64.0,"
         "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"max_position_embeddings\":256}",
         FJ_ERR_FORMAT, "\"hidden_size\" must be an integer, not a non-integer number"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":\"1000\",\"hidden_size\":64,"
         "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"max_position_embeddings\":256}",
         FJ_ERR_FORMAT, "\"vocab_size\" must be an integer, not a string"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":99999999,\"hidden_size\":64,"
         "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"max_position_embeddings\":256}",
         FJ_ERR_RANGE, "\"vocab_size\" is 99999999"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":1000,\"hidden_size\":64,"
         "\"intermediate_size\":128,\"num_hidden_layers\":5000,\"num_attention_heads\":4,"
         "\"max_position_embeddings\":256}",
         FJ_ERR_RANGE, "\"num_hidden_layers\" is 5000"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":1000,\"hidden_size\":64,"
         "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"max_position_embeddings\":99999999999}",
         FJ_ERR_RANGE, "\"max_position_embeddings\""},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":1000,\"hidden_size\":64,"
         "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":5,"
         "\"max_position_embeddings\":256}",
         FJ_ERR_RANGE, "\"num_attention_heads\" (5) does not divide \"hidden_size\" (64)"},
        {"{" LLAMA_MIN ",\"num_key_value_heads\":3}", FJ_ERR_RANGE,
         "\"num_attention_heads\" (4) is not a multiple of \"num_key_value_heads\" (3)"},
        {"{" LLAMA_MIN ",\"num_key_value_heads\":8}", FJ_ERR_RANGE, "\"num_key_value_heads\""},
        {"{" LLAMA_MIN ",\"num_key_value_heads\":0}", FJ_ERR_RANGE, "\"num_key_value_heads\""},
        {"{" LLAMA_MIN ",\"head_dim\":15}", FJ_ERR_RANGE, "\"head_dim\" (15) must be even"},
        {"{" LLAMA_MIN ",\"head_dim\":65536}", FJ_ERR_RANGE,
         "\"num_attention_heads\" * \"head_dim\""},
        {"{" LLAMA_MIN ",\"hidden_act\":\"gelu\"}", FJ_ERR_FORMAT, "\"hidden_act\" \"gelu\""},
        {"{" LLAMA_MIN ",\"hidden_act\":7}", FJ_ERR_FORMAT, "\"hidden_act\" must be a string"},
        {"{" LLAMA_MIN ",\"rms_norm_eps\":-1e-6}", FJ_ERR_RANGE, "\"rms_norm_eps\""},
        {"{" LLAMA_MIN ",\"rms_norm_eps\":0}", FJ_ERR_RANGE, "\"rms_norm_eps\""},
        {"{" LLAMA_MIN ",\"rms_norm_eps\":\"1e-6\"}", FJ_ERR_FORMAT, "\"rms_norm_eps\""},
        {"{" LLAMA_MIN ",\"rope_theta\":0}", FJ_ERR_RANGE, "\"rope_theta\""},
        {"{" LLAMA_MIN ",\"rope_theta\":1e300}", FJ_ERR_RANGE, "\"rope_theta\""},
        {"{" LLAMA_MIN ",\"tie_word_embeddings\":1}", FJ_ERR_FORMAT,
         "\"tie_word_embeddings\" must be true or false"},
        {"{" LLAMA_MIN ",\"attention_bias\":\"no\"}", FJ_ERR_FORMAT, "\"attention_bias\""},
        {"{" LLAMA_MIN ",\"rope_scaling\":\"llama3\"}", FJ_ERR_FORMAT, "\"rope_scaling\""},
        {"{" LLAMA_MIN ",\"rope_scaling\":{\"factor\":2}}", FJ_ERR_FORMAT,
         "\"rope_scaling.rope_type\""},
        {"{" LLAMA_MIN ",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":2}}", FJ_ERR_FORMAT,
         "\"rope_scaling.rope_type\" \"yarn\" is not supported"},
        {"{" LLAMA_MIN ",\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":2}}", FJ_ERR_FORMAT,
         "\"linear\""},
        {"{" LLAMA_MIN ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"low_freq_factor\":1,"
         "\"high_freq_factor\":4,\"original_max_position_embeddings\":8192}}",
         FJ_ERR_FORMAT, "\"rope_scaling.factor\" is missing"},
        {"{" LLAMA_MIN ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,"
         "\"low_freq_factor\":4,\"high_freq_factor\":4,\"original_max_position_embeddings\":8192}}",
         FJ_ERR_RANGE, "\"rope_scaling.high_freq_factor\""},
        {"{" LLAMA_MIN ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":0.5,"
         "\"low_freq_factor\":1,\"high_freq_factor\":4,\"original_max_position_embeddings\":8192}}",
         FJ_ERR_RANGE, "\"rope_scaling.factor\""},
        {"{" LLAMA_MIN ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,"
         "\"low_freq_factor\":1,\"high_freq_factor\":4,\"original_max_position_embeddings\":0}}",
         FJ_ERR_RANGE, "\"rope_scaling.original_max_position_embeddings\""},
        {"{" LLAMA_MIN ",\"eos_token_id\":1000}", FJ_ERR_RANGE,
         "\"eos_token_id\" is 1000; it must be a token id below vocab_size 1000"},
        {"{" LLAMA_MIN ",\"eos_token_id\":\"2\"}", FJ_ERR_FORMAT, "\"eos_token_id\" must be"},
        {"{" LLAMA_MIN ",\"eos_token_id\":[1,2,3,4,5,6,7,8,9]}", FJ_ERR_RANGE, "at most 8"},
        {"{" LLAMA_MIN ",\"eos_token_id\":[1,-2]}", FJ_ERR_RANGE, "\"eos_token_id\"[1]"},
        {"{" LLAMA_MIN ",\"eos_token_id\":[1,null]}", FJ_ERR_FORMAT, "\"eos_token_id\"[1]"},
        {"{" LLAMA_MIN ",\"bos_token_id\":-5}", FJ_ERR_RANGE, "\"bos_token_id\" is -5"},
        {"{" LLAMA_MIN ",\"torch_dtype\":\"../../x\"}", FJ_ERR_FORMAT, "\"torch_dtype\""},
        {"{" LLAMA_MIN ",\"torch_dtype\":\"float32float32float32\"}", FJ_ERR_FORMAT,
         "\"torch_dtype\""},
        {"{\"architectures\":[\"Qwen2ForCausalLM\"],\"vocab_size\":1000,\"hidden_size\":64,"
         "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"num_key_value_heads\":4,\"max_position_embeddings\":256,\"use_sliding_window\":true}",
         FJ_ERR_FORMAT, "\"use_sliding_window\" is true"},
        {"{\"architectures\":[\"Qwen2ForCausalLM\"],\"vocab_size\":1000,\"hidden_size\":64,"
         "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"max_position_embeddings\":256}",
         FJ_ERR_RANGE, "\"num_key_value_heads\" (32)"}, /* Qwen2's default of 32 > 4 heads */
        {"{" GPT2_MIN ",\"activation_function\":\"relu\"}", FJ_ERR_FORMAT,
         "\"activation_function\" \"relu\""},
        {"{" GPT2_MIN ",\"activation_function\":\"silu\"}", FJ_ERR_FORMAT,
         "\"activation_function\" \"silu\""},
        {"{" GPT2_MIN ",\"scale_attn_by_inverse_layer_idx\":true}", FJ_ERR_FORMAT,
         "\"scale_attn_by_inverse_layer_idx\" is true"},
        {"{" GPT2_MIN ",\"scale_attn_weights\":false}", FJ_ERR_FORMAT,
         "\"scale_attn_weights\" is false"},
        {"{" GPT2_MIN ",\"add_cross_attention\":true}", FJ_ERR_FORMAT, "\"add_cross_attention\""},
        {"{" GPT2_MIN ",\"n_inner\":0}", FJ_ERR_RANGE, "\"n_inner\" is 0"},
        {"{" GPT2_MIN ",\"layer_norm_epsilon\":2}", FJ_ERR_RANGE, "\"layer_norm_epsilon\""},
        {"{\"architectures\":[\"GPT2LMHeadModel\"],\"vocab_size\":50257,\"n_embd\":770,"
         "\"n_layer\":2,\"n_head\":12,\"n_positions\":128}",
         FJ_ERR_RANGE, "\"n_head\" (12) does not divide \"n_embd\" (770)"},
        {"{\"architectures\":[\"GPT2LMHeadModel\"],\"vocab_size\":50257,\"n_embd\":64,"
         "\"n_layer\":2,\"n_head\":4}",
         FJ_ERR_FORMAT, "\"n_positions\" is missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct model_config c;
        struct fj_err err = {0};
        int rc = parse(&c, cases[i].json, &err);
        bool ok = rc == cases[i].code && err.code == rc && strstr(err.msg, cases[i].want);
        CHECK(ok);
        if (!ok)
            fprintf(stderr, "case %zu: %s \"%s\"; expected %s with \"%s\"\n", i, fj_code_name(rc),
                    err.msg, fj_code_name(cases[i].code), cases[i].want);
    }
}

static void put_text(const char *dir, const char *name, const char *text)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_load(void)
{
    struct model_config c;
    struct fj_err err = {0};
    char d[512];
    snprintf(d, sizeof d, "%s/model", tmp_dir);
    CHECK(mkdir(d, 0755) == 0);
    CHECK(model_config_load(&c, d, &err) == FJ_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "/model/config.json: cannot open") != NULL);

    put_text(d, "config.json", "{" LLAMA_MIN ",\"eos_token_id\":2}");
    fj_err_clear(&err);
    CHECK(model_config_load(&c, d, &err) == 0 && c.n_eos == 1 && c.bos_id == 1);
    /* generation_config.json wins for the ids, and only for them. */
    put_text(d, "generation_config.json",
             "{\"bos_token_id\":null,\"eos_token_id\":[7,8],\"vocab_size\":3,\"do_sample\":true}");
    CHECK(model_config_load(&c, d, &err) == 0);
    CHECK(c.bos_id == -1 && c.n_eos == 2 && c.eos_ids[0] == 7 && c.eos_ids[1] == 8);
    CHECK(c.vocab_size == 1000);
    put_text(d, "generation_config.json", "{\"temperature\":0.6}");
    CHECK(model_config_load(&c, d, &err) == 0 && c.bos_id == 1 && c.eos_ids[0] == 2);
    put_text(d, "generation_config.json", "{\"eos_token_id\":5000}");
    CHECK(model_config_load(&c, d, &err) == FJ_ERR_RANGE);
    CHECK(strstr(err.msg, "/model/generation_config.json: \"eos_token_id\" is 5000") != NULL);
    fj_err_clear(&err);
    put_text(d, "generation_config.json", "{\"eos_token_id\":");
    CHECK(model_config_load(&c, d, &err) == FJ_ERR_FORMAT);
    CHECK(strstr(err.msg, "generation_config.json: not valid JSON") != NULL);
    fj_err_clear(&err);
    put_text(d, "generation_config.json", "{}");
    put_text(d, "config.json", "{\"architectures\":[\"T5ForConditionalGeneration\"]}");
    CHECK(model_config_load(&c, d, &err) == FJ_ERR_INVALID);
    CHECK(strstr(err.msg, "/model/config.json: unsupported architecture") != NULL);
    fj_err_clear(&err);
    char f[600];
    snprintf(f, sizeof f, "%s/config.json", d);
    CHECK(unlink(f) == 0 && mkdir(f, 0755) == 0);
    CHECK(model_config_load(&c, d, &err) == FJ_ERR_FORMAT);
    CHECK(strstr(err.msg, "not a regular file") != NULL);
}

static void test_to_json(void)
{
    struct model_config c;
    struct fj_err err = {0};
    CHECK(load(&c, "llama-3.2-1b"));
    struct fj_buf b = {0};
    CHECK(model_config_to_json(&c, &b, &err) == 0);
    /* What transformers needs to pick the class and rebuild the model. */
    const char *keys[] = {"\"model_type\": \"llama\"",     "\"LlamaForCausalLM\"",
                          "\"rms_norm_eps\": 1e-5",        "\"rope_theta\": 500000.0",
                          "\"rope_type\": \"llama3\"",     "\"factor\": 32.0",
                          "\"num_key_value_heads\": 8",    "\"torch_dtype\": \"bfloat16\"",
                          "\"tie_word_embeddings\": true", "\"head_dim\": 64"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        CHECK(strstr(b.data, keys[i]) != NULL);
    fj_buf_free(&b);

    /* Configurations no config.json expresses. */
    struct model_config bad = c;
    bad.qkv_bias = true; /* Llama's attention_bias covers o_proj too */
    CHECK(model_config_to_json(&bad, &b, &err) == FJ_ERR_INVALID);
    fj_err_clear(&err);
    CHECK(load(&c, "mistral-7b-v0.1"));
    bad = c;
    bad.mlp_bias = true;
    CHECK(model_config_to_json(&bad, &b, &err) == FJ_ERR_INVALID);
    fj_err_clear(&err);
    bad = c;
    bad.arch = MODEL_ARCH_GPT2; /* "MistralForCausalLM" is not GPT-2 */
    CHECK(model_config_to_json(&bad, &b, &err) == FJ_ERR_INVALID);
    fj_err_clear(&err);
    /* No architecture string: the arch decides. */
    bad = c;
    bad.architecture[0] = '\0';
    CHECK(model_config_to_json(&bad, &b, &err) == 0);
    CHECK(strstr(b.data, "LlamaForCausalLM") != NULL);
    fj_buf_free(&b);
}

static void test_n_params(void)
{
    /* Every optional piece, counted by hand. */
    struct model_config c;
    struct fj_err err = {0};
    CHECK(parse(&c,
                "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":100,"
                "\"hidden_size\":12,\"intermediate_size\":20,\"num_hidden_layers\":3,"
                "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":6,"
                "\"max_position_embeddings\":64,\"attention_bias\":true,\"mlp_bias\":true}",
                &err) == 0);
    /* embed 1200; per layer: norms 24, q 12*24 + 24, k/v 2 * (12*12 + 12), o 24*12 + 12,
     * mlp 3*12*20 + 2*20 + 12; final norm 12; head 1200 */
    int64_t layer = 24 + 288 + 24 + 2 * (144 + 12) + 288 + 12 + 720 + 40 + 12;
    CHECK_EQ_U(model_config_n_params(&c), 1200 + 3 * layer + 12 + 1200);
    c.tie_embeddings = true;
    CHECK_EQ_U(model_config_n_params(&c), 1200 + 3 * layer + 12);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/forja-cfg-XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(tmp_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_gpt2);
    RUN(test_smollm2);
    RUN(test_qwen25);
    RUN(test_llama32);
    RUN(test_mistral);
    RUN(test_defaults);
    RUN(test_refusals);
    RUN(test_load);
    RUN(test_to_json);
    RUN(test_n_params);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp_dir);
    return TEST_DONE();
}
