/* lora.c - LoRA adapters with PEFT's conventions: sites, initialisation, PEFT files.
 *
 * PEFT (peft/tuners/lora/layer.py) adds to a target linear y = W x + b the branch
 *   scaling * lora_B(lora_A(dropout(x))),  scaling = lora_alpha / r (alpha / sqrt(r) with
 * use_rslora), lora_A (r, in) initialised kaiming_uniform_(a = sqrt(5)) - uniform in
 * +-1/sqrt(in) - and lora_B (out, r) zero, so a new adapter starts as the identity. GPT-2's
 * Conv1D targets (fan_in_fan_out) keep the same A/B shapes. In forja each target is a "site"
 * covering a column range of one of a layer's fused linears (block.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/file.h"
#include "core/rng.h"
#include "model/model_internal.h"

struct target_name {
    const char *name;
    unsigned bit;
    bool gpt2;
};

static const struct target_name target_names[] = {
    {"q_proj", MODEL_LORA_Q, false},       {"k_proj", MODEL_LORA_K, false},
    {"v_proj", MODEL_LORA_V, false},       {"o_proj", MODEL_LORA_O, false},
    {"gate_proj", MODEL_LORA_GATE, false}, {"up_proj", MODEL_LORA_UP, false},
    {"down_proj", MODEL_LORA_DOWN, false}, {"c_attn", MODEL_LORA_C_ATTN, true},
    {"c_proj", MODEL_LORA_C_PROJ, true},   {"c_fc", MODEL_LORA_C_FC, true},
};
#define N_TARGET_NAMES (sizeof target_names / sizeof target_names[0])

static unsigned all_targets(const struct model_config *cfg)
{
    unsigned bits = 0;
    for (size_t i = 0; i < N_TARGET_NAMES; i++)
        if (target_names[i].gpt2 == (cfg->arch == MODEL_ARCH_GPT2))
            bits |= target_names[i].bit;
    return bits;
}

static int add_target(const struct model_config *cfg, const char *name, size_t len,
                      unsigned *targets, struct fj_err *err)
{
    if (len == 10 && strncmp(name, "all-linear", 10) == 0) {
        *targets |= all_targets(cfg);
        return 0;
    }
    for (size_t i = 0; i < N_TARGET_NAMES; i++)
        if (strlen(target_names[i].name) == len && strncmp(target_names[i].name, name, len) == 0) {
            if (target_names[i].gpt2 != (cfg->arch == MODEL_ARCH_GPT2))
                break;
            *targets |= target_names[i].bit;
            return 0;
        }
    return fj_err_set(err, FJ_ERR_INVALID,
                      "LoRA target \"%.*s\" is not a linear layer of %s "
                      "(use %s or all-linear)",
                      (int)len, name, cfg->architecture,
                      cfg->arch == MODEL_ARCH_GPT2 ? "c_attn, c_proj, c_fc"
                                                   : "q_proj, k_proj, v_proj, o_proj, gate_proj, "
                                                     "up_proj, down_proj");
}

int model_lora_parse_targets(const struct model_config *cfg, const char *list, unsigned *targets,
                             struct fj_err *err)
{
    *targets = 0;
    const char *s = list;
    while (*s) {
        while (*s == ',' || *s == ' ')
            s++;
        size_t len = strcspn(s, ", ");
        if (len && add_target(cfg, s, len, targets, err) != 0)
            return FJ_ERR_INVALID;
        s += len;
    }
    if (!*targets)
        return fj_err_set(err, FJ_ERR_INVALID, "no LoRA target modules given");
    return 0;
}

void model_lora_format_targets(unsigned targets, char *out, size_t cap)
{
    size_t used = 0;
    if (cap)
        out[0] = '\0';
    for (size_t i = 0; i < N_TARGET_NAMES; i++)
        if (targets & target_names[i].bit)
            used += (size_t)snprintf(out + (used < cap ? used : cap), used < cap ? cap - used : 0,
                                     "%s%s", used ? "," : "", target_names[i].name);
}

/* The PEFT module path of a site, e.g. "base_model.model.model.layers.3.self_attn.q_proj". */
static void site_module(const struct model *m, const struct model_lora_site *s, unsigned bit,
                        char *out, size_t cap)
{
    const char *mod = "?";
    if (m->cfg.arch == MODEL_ARCH_GPT2) {
        mod = s->linear == MODEL_LINEAR_QKV  ? "attn.c_attn"
              : s->linear == MODEL_LINEAR_O  ? "attn.c_proj"
              : s->linear == MODEL_LINEAR_UP ? "mlp.c_fc"
                                             : "mlp.c_proj";
        snprintf(out, cap, "base_model.model.transformer.h.%d.%s", s->layer, mod);
        return;
    }
    for (size_t i = 0; i < N_TARGET_NAMES; i++)
        if (target_names[i].bit == bit)
            mod = target_names[i].name;
    const char *group =
        bit & (MODEL_LORA_GATE | MODEL_LORA_UP | MODEL_LORA_DOWN) ? "mlp" : "self_attn";
    snprintf(out, cap, "base_model.model.model.layers.%d.%s.%s", s->layer, group, mod);
}

/* The sites of one layer for the targets, in PEFT's module order. Returns how many. */
static size_t layer_sites(const struct model *m, int l, unsigned targets,
                          struct model_lora_site *out, unsigned *bits)
{
    const struct model_config *c = &m->cfg;
    int C = c->n_embd, FF = c->n_ff, AH = m->AH, KVW = c->n_kv_head * c->head_dim;
    struct spec {
        unsigned bit;
        enum model_linear lin;
        int col, width, in;
    } specs[] = {
        {MODEL_LORA_Q, MODEL_LINEAR_QKV, 0, AH, C},
        {MODEL_LORA_K, MODEL_LINEAR_QKV, AH, KVW, C},
        {MODEL_LORA_V, MODEL_LINEAR_QKV, AH + KVW, KVW, C},
        {MODEL_LORA_O, MODEL_LINEAR_O, 0, C, AH},
        {MODEL_LORA_GATE, MODEL_LINEAR_UP, 0, FF, C},
        {MODEL_LORA_UP, MODEL_LINEAR_UP, FF, FF, C},
        {MODEL_LORA_DOWN, MODEL_LINEAR_DOWN, 0, C, FF},
        {MODEL_LORA_C_ATTN, MODEL_LINEAR_QKV, 0, 3 * C, C},
        {MODEL_LORA_C_PROJ, MODEL_LINEAR_O, 0, C, C},
        {MODEL_LORA_C_FC, MODEL_LINEAR_UP, 0, FF, C},
        {MODEL_LORA_C_PROJ, MODEL_LINEAR_DOWN, 0, C, FF},
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        if (targets & specs[i].bit) {
            if (out) {
                out[n] = (struct model_lora_site){.layer = l,
                                                  .linear = specs[i].lin,
                                                  .col = specs[i].col,
                                                  .width = specs[i].width,
                                                  .in = specs[i].in};
                bits[n] = specs[i].bit;
            }
            n++;
        }
    return n;
}

static int lora_build(struct model *m, const struct model_lora_config *lc, struct fj_err *err)
{
    const struct model_config *c = &m->cfg;
    if (m->has_lora)
        return fj_err_set(err, FJ_ERR_INVALID, "a LoRA adapter is already attached");
    if (m->g)
        return fj_err_set(err, FJ_ERR_INVALID, "the model is set up for full fine-tuning");
    if (lc->r < 1 || lc->r > 4096 || !(lc->alpha > 0) || !(lc->dropout >= 0) ||
        !(lc->dropout < 1) || !lc->targets || (lc->targets & ~all_targets(c)))
        return fj_err_set(err, FJ_ERR_INVALID,
                          "LoRA settings out of range (r %d, alpha %g, "
                          "dropout %g)",
                          lc->r, lc->alpha, lc->dropout);
    size_t per_layer = layer_sites(m, 0, lc->targets, NULL, NULL);
    size_t n_sites = per_layer * (size_t)c->n_layer;
    m->sites = calloc(n_sites, sizeof *m->sites);
    unsigned *bits = calloc(n_sites, sizeof *bits);
    struct model_param *params =
        realloc(m->params, (m->n_base_params + 2 * n_sites) * sizeof *params);
    if (params)
        m->params = params;
    if (!m->sites || !bits || !params) {
        free(bits);
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    }
    size_t total = 0;
    for (int l = 0; l < c->n_layer; l++)
        layer_sites(m, l, lc->targets, m->sites + (size_t)l * per_layer,
                    bits + (size_t)l * per_layer);
    for (size_t s = 0; s < n_sites; s++)
        total += (size_t)lc->r * ((size_t)m->sites[s].in + (size_t)m->sites[s].width);
    m->lora_w = model_alloc_floats(total, err);
    m->lora_g = m->lora_w ? model_alloc_floats(total, err) : NULL;
    if (!m->lora_g) {
        free(bits);
        return FJ_ERR_NOMEM;
    }
    float *w = m->lora_w, *g = m->lora_g;
    for (size_t s = 0; s < n_sites; s++) {
        struct model_lora_site *site = &m->sites[s];
        char module[112];
        site_module(m, site, bits[s], module, sizeof module);
        site->A = w;
        site->dA = g;
        w += (size_t)lc->r * site->in;
        g += (size_t)lc->r * site->in;
        site->B = w;
        site->dB = g;
        w += (size_t)lc->r * site->width;
        g += (size_t)lc->r * site->width;
        struct model_param *pa = &m->params[m->n_base_params + 2 * s], *pb = pa + 1;
        *pa = (struct model_param){.ndim = 2,
                                   .shape = {lc->r, site->in},
                                   .numel = (size_t)lc->r * site->in,
                                   .lora = true,
                                   .data = site->A,
                                   .grad = site->dA};
        *pb = (struct model_param){.ndim = 2,
                                   .shape = {site->width, lc->r},
                                   .numel = (size_t)lc->r * site->width,
                                   .lora = true,
                                   .data = site->B,
                                   .grad = site->dB};
        snprintf(pa->name, sizeof pa->name, "%s.lora_A.weight", module);
        snprintf(pb->name, sizeof pb->name, "%s.lora_B.weight", module);
    }
    free(bits);
    m->n_sites = n_sites;
    m->n_params = m->n_base_params + 2 * n_sites;
    m->has_lora = true;
    m->lora = *lc;
    m->lora_scale = lc->alpha / (float)lc->r;
    return 0;
}

int model_lora_attach(struct model *m, const struct model_lora_config *lc, uint64_t seed,
                      struct fj_err *err)
{
    int rc = lora_build(m, lc, err);
    if (rc != 0)
        return rc;
    uint64_t state = seed;
    for (size_t s = 0; s < m->n_sites; s++) {
        struct model_lora_site *site = &m->sites[s];
        float bound = 1.0f / sqrtf((float)site->in);
        for (size_t i = 0; i < (size_t)lc->r * site->in; i++) {
            double u = fj_rng_uniform(&state);
            site->A[i] = (float)((2 * u - 1) * bound);
        }
    }
    return 0;
}

const struct model_lora_config *model_lora_get(const struct model *m)
{
    return m->has_lora ? &m->lora : NULL;
}

/* ---- PEFT files ------------------------------------------------------------------------ */

static int config_error(struct fj_err *err, const char *path, const char *what)
{
    return fj_err_set(err, FJ_ERR_FORMAT, "%s: %s", path, what);
}

static int read_adapter_config(const struct model *m, const char *path,
                               struct model_lora_config *lc, bool *rslora, struct fj_err *err)
{
    struct fj_buf text = {0};
    int rc = fj_file_read(path, 1 << 20, &text, err);
    if (rc != 0)
        return rc;
    json_error_t jerr;
    json_t *root = json_loadb(text.data, text.len, JSON_REJECT_DUPLICATES, &jerr);
    fj_buf_free(&text);
    if (!json_is_object(root)) {
        json_decref(root);
        return fj_err_set(err, FJ_ERR_FORMAT, "%s: not a JSON object (%s)", path, jerr.text);
    }
    memset(lc, 0, sizeof *lc);
    const char *ptype = json_string_value(json_object_get(root, "peft_type"));
    json_t *r = json_object_get(root, "r"), *alpha = json_object_get(root, "lora_alpha");
    json_t *drop = json_object_get(root, "lora_dropout");
    json_t *targets = json_object_get(root, "target_modules");
    const char *bias = json_string_value(json_object_get(root, "bias"));
    json_t *dora = json_object_get(root, "use_dora"), *rs = json_object_get(root, "use_rslora");
    json_t *layers = json_object_get(root, "layers_to_transform");
    json_t *save = json_object_get(root, "modules_to_save");
    json_t *ranks = json_object_get(root, "rank_pattern"),
           *alphas = json_object_get(root, "alpha_pattern");
    if (!ptype || strcmp(ptype, "LORA") != 0)
        rc = config_error(err, path, "peft_type is not \"LORA\"");
    else if (!json_is_integer(r) || !json_is_number(alpha))
        rc = config_error(err, path, "r and lora_alpha must be numbers");
    else if (bias && strcmp(bias, "none") != 0)
        rc = config_error(err, path, "only bias \"none\" adapters are supported");
    else if (json_is_true(dora))
        rc = config_error(err, path, "DoRA adapters are not supported");
    else if ((layers && !json_is_null(layers)) || (save && !json_is_null(save)) ||
             (json_is_object(ranks) && json_object_size(ranks)) ||
             (json_is_object(alphas) && json_object_size(alphas)))
        rc = config_error(err, path,
                          "layers_to_transform, modules_to_save, rank_pattern and "
                          "alpha_pattern are not supported");
    if (rc == 0) {
        lc->r = (int)json_integer_value(r);
        lc->alpha = (float)json_number_value(alpha);
        lc->dropout = json_is_number(drop) ? (float)json_number_value(drop) : 0.0f;
        *rslora = json_is_true(rs);
        lc->targets = 0;
        if (json_is_array(targets)) {
            size_t i;
            json_t *t;
            json_array_foreach(targets, i, t)
            {
                const char *name = json_string_value(t);
                if (!name) {
                    rc = config_error(err, path, "target_modules holds a non-string");
                    break;
                }
                /* PEFT matches module-name suffixes: "self_attn.q_proj" names q_proj too */
                const char *dot = strrchr(name, '.');
                const char *leaf = dot ? dot + 1 : name;
                if ((rc = add_target(&m->cfg, leaf, strlen(leaf), &lc->targets, err)) != 0)
                    break;
            }
        } else if (json_is_string(targets) &&
                   strcmp(json_string_value(targets), "all-linear") == 0) {
            lc->targets = all_targets(&m->cfg);
        } else {
            rc = config_error(err, path,
                              "target_modules must be a list of module names or "
                              "\"all-linear\" (regular expressions are not supported)");
        }
    }
    json_decref(root);
    return rc;
}

int model_lora_load(struct model *m, const char *dir, struct fj_err *err)
{
    char path[4096];
    struct model_lora_config lc;
    bool rslora = false;
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    int rc = read_adapter_config(m, path, &lc, &rslora, err);
    if (rc == 0)
        rc = lora_build(m, &lc, err);
    if (rc != 0)
        return rc;
    if (rslora)
        m->lora_scale = lc.alpha / sqrtf((float)lc.r);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    struct model_st *st = model_st_open_file(path, err);
    if (!st)
        rc = err ? err->code : FJ_ERR_IO;
    for (size_t i = m->n_base_params; rc == 0 && i < m->n_params; i++) {
        struct model_param *p = &m->params[i];
        const struct model_st_tensor *t = model_st_find(st, p->name);
        rc = t ? model_param_read(p, t, path, err)
               : fj_err_set(err, FJ_ERR_FORMAT, "%s: tensor %s is missing", path, p->name);
    }
    model_st_close(st);
    return rc;
}

int model_lora_save(const struct model *m, const char *dir, const char *base_model,
                    struct fj_err *err)
{
    if (!m->has_lora)
        return fj_err_set(err, FJ_ERR_INVALID, "the model has no LoRA adapter");
    if (fj_mkdirs(dir, err) != 0)
        return err ? err->code : FJ_ERR_IO;
    json_t *targets = json_array();
    for (size_t i = 0; i < N_TARGET_NAMES; i++)
        if (m->lora.targets & target_names[i].bit)
            json_array_append_new(targets, json_string(target_names[i].name));
    json_t *cfg = json_pack(
        "{s:s, s:s, s:s?, s:i, s:f, s:f, s:o, s:b, s:s, s:b, s:b, s:b, s:n, s:n, s:b, s:s?}",
        "peft_type", "LORA", "task_type", "CAUSAL_LM", "base_model_name_or_path", base_model, "r",
        m->lora.r, "lora_alpha", (double)m->lora.alpha, "lora_dropout", (double)m->lora.dropout,
        "target_modules", targets, "fan_in_fan_out", m->cfg.arch == MODEL_ARCH_GPT2, "bias", "none",
        "use_rslora", 0, "use_dora", 0, "inference_mode", 1, "modules_to_save",
        "layers_to_transform", "init_lora_weights", 1, "revision", NULL);
    char path[4096];
    int rc = model_write_json(dir, "adapter_config.json", cfg, err);
    size_t n = m->n_params - m->n_base_params;
    struct model_st_entry *entries = calloc(n, sizeof *entries);
    float **owned = calloc(n, sizeof *owned);
    if (rc == 0 && (!entries || !owned))
        rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    if (rc == 0)
        rc = model_params_entries(m->params + m->n_base_params, n, MODEL_DTYPE_F32, entries, owned,
                                  err);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (rc == 0)
        rc = model_st_write(path, entries, n, NULL, err);
    free(owned);
    free(entries);
    return rc;
}

/* ---- adapters held apart from the model ----------------------------------------------- */

/* Takes the attached adapter off m (its gradients are dropped): m is the base again. */
static struct model_adapter *adapter_detach(struct model *m, bool keep, struct fj_err *err)
{
    struct model_adapter *a = keep ? calloc(1, sizeof *a) : NULL;
    if (keep && !a)
        fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    if (a) {
        *a = (struct model_adapter){.base = m,
                                    .lora = m->lora,
                                    .scale = m->lora_scale,
                                    .sites = m->sites,
                                    .n_sites = m->n_sites,
                                    .w = m->lora_w};
        for (size_t i = m->n_base_params; i < m->n_params; i++)
            a->n_floats += m->params[i].numel;
        for (size_t s = 0; s < a->n_sites; s++)
            a->sites[s].dA = a->sites[s].dB = NULL;
    } else {
        free(m->sites);
        free(m->lora_w);
    }
    free(m->lora_g);
    m->sites = NULL;
    m->lora_w = m->lora_g = NULL;
    m->n_sites = 0;
    m->n_params = m->n_base_params;
    m->has_lora = false;
    return a;
}

struct model_adapter *model_adapter_load(struct model *m, const char *dir, struct fj_err *err)
{
    if (m->has_lora) {
        fj_err_set(err, FJ_ERR_INVALID, "the model already has an adapter attached");
        return NULL;
    }
    int rc = model_lora_load(m, dir, err);
    if (!m->has_lora)
        return NULL;
    return adapter_detach(m, rc == 0, err);
}

void model_adapter_free(struct model_adapter *a)
{
    if (!a)
        return;
    free(a->sites);
    free(a->w);
    free(a);
}

size_t model_adapter_bytes(const struct model_adapter *a)
{
    return a->n_floats * sizeof(float) + a->n_sites * sizeof *a->sites;
}
