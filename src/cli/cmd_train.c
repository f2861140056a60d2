/* cmd_train.c - `forja train`: fine-tune a model on a JSONL file of conversations. The
 * training itself is src/train (train_run); this file turns options into a train_config and
 * the run's events into a progress bar (on a terminal) or one line per step. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "train/train.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

struct progress {
    bool tty, json, quiet;
    bool bar_shown;
};

static void fmt_duration(double s, char *out, size_t cap)
{
    long t = isfinite(s) && s > 0 ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(out, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(out, cap, "%ld:%02ld", t / 60, t % 60);
}

static void clear_bar(struct progress *p)
{
    if (p->bar_shown)
        fprintf(stderr, "\r\033[K");
    p->bar_shown = false;
}

static void print_json_line(json_t *o);

static void print_json_event(const struct train_event *ev)
{
    static const char *const kinds[] = {"message", "plan", "step", "checkpoint", "done"};
    static const char *const levels[] = {"info", "warn", "error"};
    json_t *o =
        json_pack("{s:s, s:I, s:I, s:i}", "type", kinds[ev->kind], "step", (json_int_t)ev->step,
                  "total_steps", (json_int_t)ev->total_steps, "epoch", ev->epoch);
    if (ev->message)
        json_object_update_new(
            o, json_pack("{s:s, s:s}", "level", levels[ev->level], "message", ev->message));
    if (ev->path)
        json_object_set_new(o, "path", json_string(ev->path));
    if (ev->kind == TRAIN_EVENT_PLAN)
        json_object_set_new(o, "plan", train_plan_json(ev->plan));
    const struct train_metrics *mt = ev->metrics;
    if (mt) {
        json_t *d =
            json_pack("{s:I, s:f, s:f}", "step", (json_int_t)mt->step, "train_loss", mt->train_loss,
                      "train_mean_token_accuracy", mt->train_mean_token_accuracy);
        if (mt->has_valid)
            json_object_update_new(d, json_pack("{s:f, s:f}", "valid_loss", mt->valid_loss,
                                                "valid_mean_token_accuracy",
                                                mt->valid_mean_token_accuracy));
        if (mt->has_full_valid)
            json_object_update_new(
                d, json_pack("{s:f, s:f}", "full_valid_loss", mt->full_valid_loss,
                             "full_valid_mean_token_accuracy", mt->full_valid_mean_token_accuracy));
        json_object_set_new(o, "metrics", d);
        json_object_set_new(o, "tokens_per_s", json_real(ev->tokens_per_s));
    }
    print_json_line(o);
}

/* One JSON object on one line of stdout (the --json protocol a `forja serve` worker reads);
 * takes o. */
static void print_json_line(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    if (s)
        puts(s);
    fflush(stdout);
    free(s);
    json_decref(o);
}

/* --json's last line: how the run ended, for a program that reads the events. */
static void print_json_end(int trc, const struct fj_err *err, const struct train_result *res)
{
    if (trc == 0) {
        print_json_line(json_pack(
            "{s:s, s:I, s:I, s:I, s:I, s:o}", "type", "end", "steps", (json_int_t)res->steps_done,
            "trained_tokens", (json_int_t)res->trained_tokens, "train_examples",
            (json_int_t)res->train_examples, "valid_examples", (json_int_t)res->valid_examples,
            "plan", train_plan_json(&res->plan)));
        return;
    }
    print_json_line(json_pack("{s:s, s:s, s:s}", "type",
                              trc == FJ_ERR_CANCELLED ? "stopped" : "error", "code",
                              fj_code_name(trc), "message", err->msg));
}

static void print_plan(const struct train_plan *p)
{
    printf("plan: %s fine-tuning, %d epoch(s) x %lld step(s) = %lld steps, batch %d "
           "(micro-batches of %d row(s) of %d tokens%s), learning rate %g (%g x %g), seed %llu\n",
           train_method_name(p->method), p->n_epochs, (long long)p->steps_per_epoch,
           (long long)p->total_steps, p->batch_size, p->micro_batch_rows, p->seq_len,
           p->packing ? ", packed" : "", p->learning_rate, p->base_learning_rate, p->lr_multiplier,
           (unsigned long long)p->seed);
    if (p->method == TRAIN_METHOD_LORA)
        printf("      LoRA rank %d, alpha %g, dropout %g on %s\n", p->lora_rank, p->lora_alpha,
               p->lora_dropout, p->lora_target_names);
    fflush(stdout);
}

static void print_step(struct progress *pr, const struct train_event *ev)
{
    const struct train_metrics *mt = ev->metrics;
    double eta =
        ev->step > 0 ? ev->elapsed_s / (double)ev->step * (double)(ev->total_steps - ev->step) : 0;
    char eta_s[32];
    fmt_duration(eta, eta_s, sizeof eta_s);
    if (pr->tty) {
        int width = 24, done = ev->total_steps ? (int)(width * ev->step / ev->total_steps) : 0;
        char bar[32];
        for (int i = 0; i < width; i++)
            bar[i] = i < done ? '#' : '-';
        bar[width] = '\0';
        fprintf(stderr,
                "\r\033[Kepoch %d/%d [%s] step %lld/%lld  loss %.4f  acc %.3f  %.0f tok/s  "
                "ETA %s",
                ev->epoch, ev->plan->n_epochs, bar, (long long)ev->step, (long long)ev->total_steps,
                mt->train_loss, mt->train_mean_token_accuracy, ev->tokens_per_s, eta_s);
        pr->bar_shown = true;
        if (mt->has_full_valid) {
            clear_bar(pr);
            fprintf(stderr,
                    "epoch %d: train loss %.4f, full validation loss %.4f (token accuracy "
                    "%.3f)\n",
                    ev->epoch, mt->train_loss, mt->full_valid_loss,
                    mt->full_valid_mean_token_accuracy);
        }
        return;
    }
    printf("step %lld/%lld epoch %d train_loss %.5f train_mean_token_accuracy %.5f",
           (long long)ev->step, (long long)ev->total_steps, ev->epoch, mt->train_loss,
           mt->train_mean_token_accuracy);
    if (mt->has_valid)
        printf(" valid_loss %.5f valid_mean_token_accuracy %.5f", mt->valid_loss,
               mt->valid_mean_token_accuracy);
    if (mt->has_full_valid)
        printf(" full_valid_loss %.5f full_valid_mean_token_accuracy %.5f", mt->full_valid_loss,
               mt->full_valid_mean_token_accuracy);
    printf(" tokens/s %.0f eta %s\n", ev->tokens_per_s, eta_s);
    fflush(stdout);
}

static void on_event(void *ctx, const struct train_event *ev)
{
    struct progress *pr = ctx;
    if (pr->json) {
        print_json_event(ev);
        return;
    }
    switch (ev->kind) {
    case TRAIN_EVENT_MESSAGE:
        if (pr->quiet && ev->level == TRAIN_INFO)
            return;
        clear_bar(pr);
        fprintf(stderr, "%s%s\n",
                ev->level == TRAIN_ERROR  ? "error: "
                : ev->level == TRAIN_WARN ? "warning: "
                                          : "",
                ev->message);
        return;
    case TRAIN_EVENT_PLAN:
        if (!pr->quiet)
            print_plan(ev->plan);
        return;
    case TRAIN_EVENT_STEP:
        if (!pr->quiet)
            print_step(pr, ev);
        return;
    case TRAIN_EVENT_CHECKPOINT:
        if (!pr->tty && !pr->quiet)
            printf("checkpoint %s\n", ev->path);
        return;
    case TRAIN_EVENT_DONE: clear_bar(pr); return;
    }
}

/* --- options ---------------------------------------------------------------------------------- */

/* "auto" (-> 0) or a whole number in [lo, hi]; -1 after printing an error. */
static long long auto_count(const struct cli_cmd *cmd, const struct cli_args *a, const char *name,
                            long long lo, long long hi)
{
    const char *v = cli_get(cmd, a, name);
    if (!v || strcmp(v, "auto") == 0)
        return 0;
    long long n = cli_parse_count(name, v, hi);
    if (n >= 0 && n < lo) {
        fprintf(stderr, "forja train: --%s must be at least %lld (or auto)\n", name, lo);
        return -1;
    }
    return n;
}

/* A number > 0 (or >= 0 with zero_ok), or "auto" (-> dflt). */
static int real_opt(const struct cli_cmd *cmd, const struct cli_args *a, const char *name,
                    bool zero_ok, double dflt, double *out)
{
    const char *v = cli_get(cmd, a, name);
    *out = dflt;
    if (!v || strcmp(v, "auto") == 0)
        return 0;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < 0 || (!zero_ok && x == 0)) {
        fprintf(stderr, "forja train: --%s expects a %s number, not '%s'\n", name,
                zero_ok ? "non-negative" : "positive", v);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_hparams(const struct cli_cmd *cmd, const struct cli_args *a,
                         struct train_config *c)
{
    struct train_hparams *hp = &c->hp;
    long long v;
    if ((v = auto_count(cmd, a, "epochs", 1, 50)) < 0)
        return CLI_USAGE;
    hp->n_epochs = (int)v;
    if ((v = auto_count(cmd, a, "batch-size", 1, 1 << 20)) < 0)
        return CLI_USAGE;
    hp->batch_size = (int)v;
    if ((v = auto_count(cmd, a, "lora-rank", 1, 4096)) < 0)
        return CLI_USAGE;
    hp->lora_rank = (int)v;
    if ((v = auto_count(cmd, a, "eval-interval", 1, 1 << 30)) < 0)
        return CLI_USAGE;
    hp->eval_interval = (int)v;
    if ((v = auto_count(cmd, a, "max-seq-len", 2, 1 << 24)) < 0)
        return CLI_USAGE;
    hp->max_seq_len = (int)v;
    if ((v = auto_count(cmd, a, "micro-batch", 1, 1 << 20)) < 0)
        return CLI_USAGE;
    hp->micro_batch_rows = (int)v;
    const char *w = cli_get(cmd, a, "warmup-steps");
    if (w && strcmp(w, "auto") != 0 &&
        (hp->warmup_steps = (int)cli_parse_count("warmup-steps", w, 1 << 30)) < 0)
        return CLI_USAGE;
    if (real_opt(cmd, a, "lr-multiplier", false, 0, &hp->lr_multiplier) ||
        real_opt(cmd, a, "lora-alpha", false, 0, &hp->lora_alpha) ||
        real_opt(cmd, a, "lora-dropout", true, -1, &hp->lora_dropout) ||
        real_opt(cmd, a, "weight-decay", true, -1, &hp->weight_decay))
        return CLI_USAGE;
    const char *method = cli_get(cmd, a, "method");
    if (!method || strcmp(method, "auto") == 0)
        hp->method = TRAIN_METHOD_AUTO;
    else if (strcmp(method, "full") == 0)
        hp->method = TRAIN_METHOD_FULL;
    else if (strcmp(method, "lora") == 0)
        hp->method = TRAIN_METHOD_LORA;
    else {
        fprintf(stderr, "forja train: --method is full, lora or auto, not '%s'\n", method);
        return CLI_USAGE;
    }
    const char *targets = cli_get(cmd, a, "lora-targets");
    if (targets)
        snprintf(hp->lora_targets, sizeof hp->lora_targets, "%s", targets);
    hp->no_packing = cli_has(cmd, a, "no-packing");
    const char *seed = cli_get(cmd, a, "seed");
    long long s = seed ? cli_parse_count("seed", seed, INT64_MAX) : 0;
    if (s < 0)
        return CLI_USAGE;
    hp->seed = (uint64_t)s;
    return CLI_OK;
}

static int parse_run(const struct cli_cmd *cmd, const struct cli_args *a, struct train_config *c)
{
    long long v;
    const char *s;
    if ((s = cli_get(cmd, a, "threads")) && (v = cli_parse_count("threads", s, 1024)) < 0)
        return CLI_USAGE;
    c->threads = s ? (int)v : 0;
    if ((s = cli_get(cmd, a, "checkpoint-every")) &&
        (c->checkpoint_every = (int)cli_parse_count("checkpoint-every", s, 1 << 30)) < 0)
        return CLI_USAGE;
    if ((s = cli_get(cmd, a, "keep-checkpoints")) &&
        (c->keep_checkpoints = (int)cli_parse_count("keep-checkpoints", s, 1 << 20)) < 1) {
        if (c->keep_checkpoints == 0)
            fprintf(stderr, "forja train: --keep-checkpoints must be at least 1\n");
        return CLI_USAGE;
    }
    if ((s = cli_get(cmd, a, "memory-budget"))) {
        if ((v = cli_parse_count("memory-budget", s, 1 << 24)) < 1)
            return CLI_USAGE;
        c->memory_budget = (size_t)v << 20;
    }
    c->checkpoints = !cli_has(cmd, a, "no-checkpoints");
    c->validate_only = cli_has(cmd, a, "validate-only");
    return CLI_OK;
}

static void print_result(const struct train_result *r, const char *out, bool checkpoints)
{
    printf(
        "trained %lld steps, %llu tokens billed (%llu tokens x %d epochs), %.0f tokens/s over "
        "%.1f s\n",
        (long long)r->steps_done, (unsigned long long)r->trained_tokens,
        (unsigned long long)(r->plan.n_epochs ? r->trained_tokens / (uint64_t)r->plan.n_epochs : 0),
        r->plan.n_epochs, r->tokens_per_s, r->train_seconds);
    printf("final: train_loss %.5f train_mean_token_accuracy %.5f", r->last.train_loss,
           r->last.train_mean_token_accuracy);
    if (r->last.has_full_valid)
        printf(" full_valid_loss %.5f (before training %.5f)", r->last.full_valid_loss,
               r->initial_full_valid_loss);
    printf("\n%s:  %s\n", r->plan.method == TRAIN_METHOD_LORA ? "adapter" : "model  ",
           r->model_dir);
    if (checkpoints)
        printf("checkpoints: %s/checkpoints\n", out);
    printf("results:    %s/results.csv\nsummary:    %s/train.json\n", out, out);
}

static int run_train(const struct cli_cmd *cmd, const struct cli_args *a)
{
    struct train_config c = train_config_default();
    c.train_path = cli_get(cmd, a, "train");
    c.valid_path = cli_get(cmd, a, "valid");
    c.out_dir = cli_get(cmd, a, "out");
    c.resume = cli_get(cmd, a, "resume");
    if (!c.train_path || !c.out_dir) {
        fprintf(stderr, "forja train: --train FILE and --out DIR are required\n");
        return CLI_USAGE;
    }
    int rc = parse_hparams(cmd, a, &c);
    if (rc == CLI_OK)
        rc = parse_run(cmd, a, &c);
    char path[4400];
    if (rc == CLI_OK)
        rc = cli_model_path(cmd, a, cli_get(cmd, a, "model"), path, sizeof path);
    if (rc != CLI_OK)
        return rc;
    c.model_path = path;
    c.model_name = cli_get(cmd, a, "model") ? cli_get(cmd, a, "model") : MODEL_BUILTIN_NAME;
    struct progress pr = {.tty = isatty(STDERR_FILENO) && !cli_has(cmd, a, "json"),
                          .json = cli_has(cmd, a, "json"),
                          .quiet = cli_has(cmd, a, "quiet")};
    c.on_event = on_event;
    c.ctx = &pr;
    c.stop = &stop_requested;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct train_result res;
    struct fj_err err = {0};
    int trc = train_run(&c, &res, &err);
    clear_bar(&pr);
    if (pr.json)
        print_json_end(trc, &err, &res);
    if (trc == FJ_ERR_CANCELLED) {
        fprintf(stderr,
                "forja train: %s; the last checkpoint is in %s/checkpoints (continue with "
                "--resume %s)\n",
                err.msg, c.out_dir, c.out_dir);
        return CLI_STOPPED;
    }
    if (trc != 0) {
        fprintf(stderr, "forja train: %s\n", err.msg);
        return trc == FJ_ERR_INVALID || trc == FJ_ERR_FORMAT || trc == FJ_ERR_NOT_FOUND
                   ? CLI_DATA_ERROR
                   : CLI_FAILURE;
    }
    if (c.validate_only && !pr.json)
        printf("valid: %llu training and %llu validation example(s), %llu tokens to train on\n",
               (unsigned long long)res.train_examples, (unsigned long long)res.valid_examples,
               (unsigned long long)res.trained_tokens);
    else if (!pr.json)
        print_result(&res, c.out_dir, c.checkpoints);
    return CLI_OK;
}

static const struct cli_opt train_opts[] = {
    {"model", "NAME|PATH", "The base model (default: the built-in model)."},
    {"train", "FILE", "The training file: JSONL, chat or prompt/completion examples (required)."},
    {"valid", "FILE", "A validation file: its loss is reported but never trained on."},
    {"out", "DIR", "Where the model, checkpoints, results.csv and train.json go (required)."},
    {"resume", "DIR",
     "Continue from a checkpoint folder, or from the newest checkpoint of an earlier --out "
     "DIR; the same data and settings are required, and the result is bitwise the "
     "uninterrupted run's."},
    {"seed", "N", "Seed of the shuffle, LoRA initialisation and dropout (default 0)."},
    {"epochs", "N|auto", "Passes over the training file, 1 to 50 (auto: OpenAI's rule)."},
    {"batch-size", "N|auto", "Examples per optimizer step (auto: 0.2% of the examples, 1 to 256)."},
    {"lr-multiplier", "X|auto", "Scales the method's base learning rate (auto: 1)."},
    {"method", "full|lora|auto",
     "Full fine-tuning or LoRA (auto: full under 50M parameters, else LoRA)."},
    {"lora-rank", "R|auto", "LoRA rank (auto: 8)."},
    {"lora-alpha", "A|auto", "LoRA alpha; the update is scaled by alpha / rank (auto: 2 x rank)."},
    {"lora-dropout", "P|auto", "Dropout on the LoRA branch's input (auto: 0)."},
    {"lora-targets", "LIST",
     "Comma-separated modules that get LoRA, PEFT's names (default all-linear: every "
     "attention and MLP projection)."},
    {"weight-decay", "X|auto",
     "AdamW's decoupled weight decay on matrices (auto: 0.01 full, 0 LoRA)."},
    {"warmup-steps", "N|auto", "Steps of linear learning-rate warm-up (auto: 5% of the steps)."},
    {"eval-interval", "N|auto",
     "Steps between validation batches (auto: a twentieth of the steps)."},
    {"max-seq-len", "N",
     "Longest example in tokens; longer ones are truncated (default: the "
     "model's context)."},
    {"micro-batch", "N", "Rows per forward pass (default: what the memory budget allows)."},
    {"memory-budget", "MIB", "Memory for a micro-batch's activations (default 4096)."},
    {"no-packing", NULL,
     "Put each example in a row of its own instead of packing short ones together."},
    {"no-checkpoints", NULL, "Write no checkpoints (the final model is still written)."},
    {"checkpoint-every", "N", "Also write a checkpoint every N steps."},
    {"keep-checkpoints", "N", "Keep the newest N checkpoints (default 3)."},
    {"threads", "N", "Threads to compute with (default: all cores)."},
    {"validate-only", NULL,
     "Check the files and resolve the plan (what `forja serve` does while a job is "
     "validating_files), then stop without training."},
    {"json", NULL, "Print every event (messages, plan, steps, checkpoints) as one JSON line."},
    {"quiet", NULL, "Print only warnings, errors and the final summary."},
    CLI_OPT_DATA_DIR,
    {NULL, NULL, NULL},
};

const struct cli_cmd cli_cmd_train = {
    "train",
    "",
    "Fine-tune a model on your conversations",
    "Fine-tunes a base model on a JSONL training file (docs/training.md). Every line is "
    "checked as `forja tokens` checks it, rendered with the model's chat template and "
    "tokenized by its tokenizer; the loss counts the assistant turns (weight 1), their "
    "end-of-turn token included, so the model learns to stop. AdamW with gradient clipping at "
    "1.0, linear warm-up and decay; OpenAI's metrics each step, validation loss on a batch "
    "every --eval-interval steps and on the whole validation file at each epoch's end; a "
    "checkpoint (model or adapter, optimizer state, position) at each epoch's end. The same "
    "seed, data, settings and thread count give bitwise the same model. On a terminal a "
    "progress bar shows epoch, step, loss, accuracy, tokens/s and ETA; otherwise one line per "
    "step. SIGTERM or Ctrl-C stops at the next step (exit status 4) and --resume continues. "
    "The output folder holds model/ (full fine-tuning: a Hugging Face model folder) or "
    "adapter/ (LoRA: a PEFT adapter), checkpoints/ckpt-step-N (the newest three), "
    "results.csv and train.json.",
    train_opts,
    run_train,
};
