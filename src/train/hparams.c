/* hparams.c - from what the user asked ("auto" or numbers) to the numbers a run uses.
 *
 * The rules (docs/training.md, "Hyperparameters"):
 *   n_epochs auto      OpenAI's: 3; with n examples, if 3n < 100 then min(25, 100 / n),
 *                      if 3n > 25000 then max(1, 25000 / n) (integer division)
 *   batch_size auto    OpenAI's documented rule: about 0.2% of the examples, 1 .. 256
 *   method auto        full fine-tuning under TRAIN_FULL_MAX_PARAMS parameters, else LoRA
 *   learning rate      base rate x learning_rate_multiplier (auto 1): LoRA 2e-4; full
 *                      fine-tuning 2e-5 - except models under TRAIN_FULL_MAX_PARAMS, 2e-3:
 *                      such small models are the built-in one (random weights), which only
 *                      learns its data at a from-scratch rate
 *   weight decay       0.01 full, 0 LoRA;  warm-up 5% of the steps (at least 1)
 *   validation batch   every max(1, total_steps / 20) steps
 *   micro-batch        as many rows as batch_size examples need, while the run's activations
 *                      fit the memory budget
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train/train.h"

const char *train_method_name(enum train_method m)
{
    return m == TRAIN_METHOD_FULL ? "full" : m == TRAIN_METHOD_LORA ? "lora" : "auto";
}

static int auto_epochs(size_t n)
{
    if (n == 0)
        return 1;
    if (3 * n < 100)
        return (int)(100 / n < 25 ? 100 / n : 25);
    if (3 * n > 25000)
        return (int)(25000 / n > 1 ? 25000 / n : 1);
    return 3;
}

static int auto_batch(size_t n)
{
    long b = lround((double)n * 0.002);
    return (int)(b < 1 ? 1 : b > 256 ? 256 : b);
}

static int resolve_lora(const struct train_hparams *hp, const struct model_config *cfg,
                        struct train_plan *p, struct fj_err *err)
{
    p->lora_rank = hp->lora_rank > 0 ? hp->lora_rank : 8;
    p->lora_alpha = hp->lora_alpha > 0 ? hp->lora_alpha : 2.0 * p->lora_rank;
    p->lora_dropout = hp->lora_dropout >= 0 ? hp->lora_dropout : 0.0;
    if (p->lora_rank > 4096 || !(p->lora_dropout < 1))
        return fj_err_set(err, FJ_ERR_RANGE, "lora_rank must be 1 to 4096, lora_dropout below 1");
    int rc = model_lora_parse_targets(cfg, hp->lora_targets[0] ? hp->lora_targets : "all-linear",
                                      &p->lora_targets, err);
    if (rc == 0)
        model_lora_format_targets(p->lora_targets, p->lora_target_names,
                                  sizeof p->lora_target_names);
    return rc;
}

int train_plan_resolve(const struct train_hparams *hp, const struct model *m, size_t n_examples,
                       int longest, size_t memory_budget, struct train_plan *p, struct fj_err *err)
{
    const struct model_config *cfg = model_get_config(m);
    int64_t n_params = model_count_params(m);
    memset(p, 0, sizeof *p);
    if (hp->n_epochs < 0 || hp->n_epochs > 50)
        return fj_err_set(err, FJ_ERR_RANGE, "n_epochs must be 1 to 50 (or auto), not %d",
                          hp->n_epochs);
    if (hp->batch_size < 0 || hp->batch_size > 1 << 20)
        return fj_err_set(err, FJ_ERR_RANGE, "batch_size %d is out of range", hp->batch_size);
    if (!(hp->lr_multiplier >= 0) || hp->lr_multiplier > 1000)
        return fj_err_set(err, FJ_ERR_RANGE, "learning_rate_multiplier must be positive");
    p->n_epochs = hp->n_epochs ? hp->n_epochs : auto_epochs(n_examples);
    p->batch_size = hp->batch_size ? hp->batch_size : auto_batch(n_examples);
    if (n_examples > 0 && (size_t)p->batch_size > n_examples)
        p->batch_size = (int)n_examples;
    p->method = hp->method != TRAIN_METHOD_AUTO    ? hp->method
                : n_params < TRAIN_FULL_MAX_PARAMS ? TRAIN_METHOD_FULL
                                                   : TRAIN_METHOD_LORA;
    p->lr_multiplier = hp->lr_multiplier > 0 ? hp->lr_multiplier : 1.0;
    if (p->method == TRAIN_METHOD_LORA) {
        p->base_learning_rate = 2e-4;
        int rc = resolve_lora(hp, cfg, p, err);
        if (rc != 0)
            return rc;
    } else {
        p->base_learning_rate = n_params < TRAIN_FULL_MAX_PARAMS ? 2e-3 : 2e-5;
    }
    p->learning_rate = p->base_learning_rate * p->lr_multiplier;
    p->weight_decay = hp->weight_decay >= 0            ? hp->weight_decay
                      : p->method == TRAIN_METHOD_FULL ? 0.01
                                                       : 0.0;
    p->max_grad_norm = 1.0;
    p->beta1 = 0.9;
    p->beta2 = 0.999;
    p->eps = 1e-8;
    p->steps_per_epoch =
        n_examples ? (int64_t)((n_examples + p->batch_size - 1) / p->batch_size) : 0;
    p->total_steps = p->steps_per_epoch * p->n_epochs;
    p->warmup_steps =
        hp->warmup_steps >= 0 ? hp->warmup_steps : (int)ceil(0.05 * (double)p->total_steps);
    if (p->warmup_steps < 1)
        p->warmup_steps = 1;
    p->eval_interval = hp->eval_interval > 0
                           ? hp->eval_interval
                           : (int)(p->total_steps / 20 > 1 ? p->total_steps / 20 : 1);
    p->packing = !hp->no_packing;
    p->seed = hp->seed;

    int max_len =
        hp->max_seq_len > 0 && hp->max_seq_len < cfg->n_ctx ? hp->max_seq_len : cfg->n_ctx;
    p->seq_len = longest > 0 && longest < max_len ? longest : max_len;
    if (p->seq_len < 1)
        p->seq_len = 1;
    int rows = hp->micro_batch_rows > 0 ? hp->micro_batch_rows : p->batch_size;
    while (hp->micro_batch_rows <= 0 && rows > 1 &&
           model_run_bytes(m, rows, p->seq_len) > memory_budget)
        rows = (rows + 1) / 2;
    if (model_run_bytes(m, rows, p->seq_len) > memory_budget && hp->micro_batch_rows <= 0)
        return fj_err_set(err, FJ_ERR_RANGE,
                          "one row of %d tokens needs %zu MiB of activations, more than the "
                          "budget of %zu MiB",
                          p->seq_len, model_run_bytes(m, 1, p->seq_len) >> 20, memory_budget >> 20);
    p->micro_batch_rows = rows;
    return 0;
}
