/* train.h - fine-tuning: conversations in, a fine-tuned model out (docs/training.md).
 *
 *     struct train_config cfg = train_config_default();
 *     cfg.model_path = "forja-data/models/forja-base";
 *     cfg.train_path = "train.jsonl";
 *     cfg.out_dir = "run1";
 *     cfg.on_event = print_progress;              // the library never prints
 *     struct train_result res;
 *     train_run(&cfg, &res, &err);                // run1/model, run1/results.csv, ...
 *
 * The pieces, one file each:
 *   dataset.c     a JSONL file -> token ids and loss masks (the shared validator of
 *                 data/, the model's chat template and tokenizer), truncation
 *   pack.c        a step's examples -> rows of T positions, packed or one per row
 *   hparams.c     "auto" values and forja's defaults -> a resolved plan
 *   optim.c       gradient norm and clipping, the micro-batch gradient sum, AdamW, the
 *                 learning-rate schedule
 *   checkpoint.c  checkpoint folders: written whole or not at all, read back to resume
 *   loop.c        the run: epochs, steps, metrics, evaluation, checkpoints, resume
 *
 * Determinism: every random choice (shuffle, LoRA init, dropout) is a hash of the seed and
 * a counter, and every reduction has a fixed order, so the same inputs, seed and thread
 * count give bitwise the same weights and metrics, and a resumed run the same as an
 * uninterrupted one.
 */
#ifndef FJ_TRAIN_TRAIN_H
#define FJ_TRAIN_TRAIN_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/err.h"
#include "data/data.h"
#include "model/folder.h"
#include "model/model.h"

/* ---- data ------------------------------------------------------------------------------- */

/* One example: n token ids and their loss masks at ids + off, mask + off. */
struct train_example {
    uint64_t line;   /* 1-based line of the file */
    int32_t n;       /* tokens (after truncation) */
    int32_t counted; /* of tokens 1 .. n-1 (the predicted ones), how many count in the loss */
    size_t off;
};

struct train_dataset {
    struct train_example *ex; /* owned */
    size_t n, cap;
    int32_t *ids; /* owned: all examples' ids, one after another */
    uint8_t *mask;
    size_t n_ids, cap_ids;
    uint64_t n_tokens;    /* sum of n: the tokens billed per epoch */
    uint64_t n_truncated; /* examples cut to the context */
    int32_t longest;      /* largest n */
    uint64_t fingerprint; /* a hash of the file's bytes: resume refuses another file */
};

/* Reads a fine-tuning file (chat or prompt/completion) into ds (zeroed by the caller):
 * every line checked by data_check_line, the valid ones rendered with the model's chat
 * template and tokenized by its tokenizer, with mask 1 on the tokens of the assistant turns
 * that count (model_info_render_training). Examples longer than max_len + 1 tokens are cut
 * to that (each a warning). Problems, with line numbers, go to probs; a file with fewer
 * than min_examples valid examples gets an error there. Returns 0 when the file could be
 * read (look at probs->errors), or a negative code (unreadable file, out of memory). */
int train_dataset_load(struct train_dataset *ds, const char *path, const struct model_info *info,
                       int max_len, size_t min_examples, struct data_problems *probs,
                       struct fj_err *err);
void train_dataset_free(struct train_dataset *ds);

/* Rows for a forward pass: each example of n tokens takes n - 1 positions (tokens ids[0..n-1)
 * predicting ids[1..n)). Padding has mask 0. */
struct train_batch {
    int rows, T, cap_rows;
    int32_t *tokens, *targets, *pos; /* (rows, T) */
    float *mask;                     /* (rows, T) */
    int64_t counted;                 /* positions with mask 1 */
    int64_t tokens_in;               /* sum of the examples' n */
};

/* Lays out examples idx[0..n) of ds in rows of T positions: packed (each example into the
 * first row with room, in order, positions restarting at 0, attention confined to itself)
 * or one example per row. Every example must fit (n - 1 <= T). */
int train_batch_fill(struct train_batch *b, const struct train_dataset *ds, const size_t *idx,
                     size_t n, int T, bool pack, struct fj_err *err);
void train_batch_free(struct train_batch *b);

/* ---- hyperparameters -------------------------------------------------------------------- */

enum train_method { TRAIN_METHOD_AUTO, TRAIN_METHOD_FULL, TRAIN_METHOD_LORA };

/* Below this many parameters full fine-tuning is the default, above it LoRA. */
#define TRAIN_FULL_MAX_PARAMS 50000000

/* What the user asked for; 0 (or a negative number where 0 is meaningful) means "auto". */
struct train_hparams {
    int n_epochs;         /* 1 .. 50; 0 auto */
    int batch_size;       /* examples per optimizer step; 0 auto */
    double lr_multiplier; /* scales the method's base rate; 0 auto */
    enum train_method method;
    int lora_rank;          /* 0 auto (8) */
    double lora_alpha;      /* 0 auto (2 x rank) */
    double lora_dropout;    /* < 0 auto (0) */
    char lora_targets[256]; /* PEFT names, comma separated; "" auto (all linear) */
    double weight_decay;    /* < 0 auto (0.01 full, 0 LoRA) */
    int warmup_steps;       /* < 0 auto */
    int eval_interval;      /* steps between validation batches; 0 auto */
    int max_seq_len;        /* longest example in tokens; 0: the model's context */
    int micro_batch_rows;   /* rows per forward; 0: as many as the memory budget allows */
    bool no_packing;        /* one example per row instead of packing */
    uint64_t seed;
};

/* Everything resolved: the numbers a run uses and reports. */
struct train_plan {
    int n_epochs, batch_size;
    double lr_multiplier, base_learning_rate, learning_rate;
    enum train_method method;
    int lora_rank;
    double lora_alpha, lora_dropout;
    unsigned lora_targets; /* enum model_lora_target bits */
    char lora_target_names[256];
    double weight_decay, max_grad_norm, beta1, beta2, eps;
    int64_t steps_per_epoch, total_steps;
    int warmup_steps, eval_interval;
    int seq_len;          /* T: positions per row */
    int micro_batch_rows; /* rows per forward */
    bool packing;
    uint64_t seed;
};

/* Resolves hp for a model of n_params parameters (cfg) and n_examples training examples
 * whose longest takes `longest` positions. The rules are in docs/training.md. Run memory
 * for micro-batches is kept under memory_budget bytes. FJ_ERR_INVALID / FJ_ERR_RANGE name
 * the bad value. */
int train_plan_resolve(const struct train_hparams *hp, const struct model *m, size_t n_examples,
                       int longest, size_t memory_budget, struct train_plan *plan,
                       struct fj_err *err);

const char *train_method_name(enum train_method m);

/* The step of the newest checkpoint in out_dir/checkpoints (a run's --out), 0 if none. */
long long train_checkpoint_newest(const char *out_dir);
/* Removes out_dir's checkpoints of steps after `step`: a resumed run then starts no later
 * than step (the service uses it so that every step's metrics are recorded once). */
int train_checkpoint_drop_after(const char *out_dir, long long step, struct fj_err *err);

/* The resolved plan as a JSON object (train.json's "hyperparameters"). Owned by the caller. */
json_t *train_plan_json(const struct train_plan *p);

/* ---- optimizer ------------------------------------------------------------------------------ */

/* The L2 norm of g[0..n), summed in double over fixed chunks in a fixed order: the same
 * bits for any thread count. */
double train_grad_norm(const float *g, size_t n);

/* Scales g so that its norm is at most max_norm, as torch.nn.utils.clip_grad_norm_ does
 * (coefficient max_norm / (norm + 1e-6) when below 1). Returns the norm before clipping. */
double train_clip_grads(float *g, size_t n, double max_norm);

/* The one way micro-batch gradients are combined: acc += g elementwise, called once per
 * micro-batch in micro-batch order (first: acc = g), so that any split of a step's
 * micro-batches over processes can reproduce the single-process sum exactly. */
void train_grads_sum(float *acc, const float *g, size_t n, bool first);

/* The learning-rate factor of optimizer step s (0-based) of total, after warmup steps of
 * linear warm-up: (s + 1) / warmup, then a linear decay (total - s) / (total - warmup). */
double train_lr_factor(int64_t s, int64_t total, int64_t warmup);

/* AdamW as torch.optim.AdamW: decoupled weight decay p *= 1 - lr wd, then the Adam update
 * with bias correction. Weight decay applies to matrices (2-D tensors) only. */
struct train_adamw;

/* State (two moments) for model m's trainable block. Owned by the caller. */
struct train_adamw *train_adamw_new(struct model *m, double beta1, double beta2, double eps,
                                    double weight_decay, struct fj_err *err);
void train_adamw_free(struct train_adamw *o);
/* One update of the trainable block with gradient g (the block's layout) at rate lr. */
void train_adamw_step(struct train_adamw *o, const float *g, double lr);
/* The moments (exp_avg, exp_avg_sq) and the step count, to save and restore. Borrowed. */
size_t train_adamw_state(struct train_adamw *o, float **exp_avg, float **exp_avg_sq, int64_t **t);

/* ---- a run -------------------------------------------------------------------------------- */

/* The metric keys OpenAI reports (API.md); has_* tell which were computed at this step. */
struct train_metrics {
    int64_t step;
    double train_loss, train_mean_token_accuracy;
    double valid_loss, valid_mean_token_accuracy;
    double full_valid_loss, full_valid_mean_token_accuracy;
    bool has_valid, has_full_valid;
};

enum train_event_kind {
    TRAIN_EVENT_MESSAGE,    /* level + message: what a job's event list shows */
    TRAIN_EVENT_PLAN,       /* plan resolved; training starts */
    TRAIN_EVENT_STEP,       /* metrics of one optimizer step */
    TRAIN_EVENT_CHECKPOINT, /* path: a checkpoint folder was written */
    TRAIN_EVENT_DONE,       /* path: the output folder; metrics: the last step's */
};

enum train_level { TRAIN_INFO, TRAIN_WARN, TRAIN_ERROR };

struct train_event {
    enum train_event_kind kind;
    enum train_level level;
    const char *message;                 /* MESSAGE */
    const struct train_plan *plan;       /* every event after PLAN */
    const struct train_metrics *metrics; /* STEP, CHECKPOINT, DONE */
    int epoch;                           /* 1-based */
    int64_t step, total_steps;
    double tokens_per_s; /* training tokens per second of step time so far */
    double elapsed_s;    /* since the run started (this process) */
    const char *path;
};

struct train_config {
    const char *model_path; /* base model folder */
    const char *model_name; /* how to name the base in saved files (default: model_path) */
    const char *train_path;
    const char *valid_path; /* may be NULL */
    const char *out_dir;    /* created; model/ or adapter/, checkpoints/, results.csv, ... */
    const char *resume;     /* a checkpoint folder, or an earlier run's out_dir; NULL: none */
    struct train_hparams hp;
    int threads;                 /* 0: all cores */
    bool checkpoints;            /* write a checkpoint at the end of each epoch */
    int checkpoint_every;        /* also every N steps (0: only at epoch ends) */
    int keep_checkpoints;        /* the newest this many are kept */
    bool validate_only;          /* read and check the files, resolve the plan, then stop */
    size_t memory_budget;        /* bytes for a micro-batch's activations */
    volatile sig_atomic_t *stop; /* when it becomes nonzero the run ends at the next step */
    void (*on_event)(void *ctx, const struct train_event *ev);
    void *ctx;
};

/* Defaults: checkpoints at every epoch end, the newest 3 kept, a 4 GiB budget, auto
 * hyperparameters, seed 0. */
struct train_config train_config_default(void);

struct train_result {
    struct train_plan plan;
    struct train_metrics last;
    int64_t steps_done;
    uint64_t trained_tokens; /* tokens of the training file x epochs (OpenAI's billing) */
    uint64_t train_examples, valid_examples;
    double initial_full_valid_loss, initial_full_valid_mean_token_accuracy; /* NAN if none */
    double tokens_per_s, train_seconds;
    char model_dir[4200]; /* out_dir/model or out_dir/adapter */
};

/* Fine-tunes cfg->model_path on cfg->train_path into cfg->out_dir (docs/training.md lays out
 * the folder). Data problems fail with FJ_ERR_INVALID and a message "FILE:LINE: ..." naming
 * the first error; every problem is also sent as a MESSAGE event. A stop request ends the
 * run at a step boundary with FJ_ERR_CANCELLED, the last checkpoint intact. */
int train_run(const struct train_config *cfg, struct train_result *res, struct fj_err *err);

#endif
