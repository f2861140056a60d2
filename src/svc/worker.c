/* worker.c - one job's worker process: `forja train --json` (with --validate-only while the
 * job is validating_files), its stdout read line by line, each event turned into what the
 * API shows (status, events, metrics, checkpoints, the fine-tuned model, results.csv). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/file.h"
#include "svc/svc_internal.h"
#include "train/train.h"

#define MAX_ARGS 64

static const char *spec_str(const json_t *spec, const char *key)
{
    return json_string_value(json_object_get(spec, key));
}

/* The folder holding the weights of a run or checkpoint folder: adapter/ for LoRA, else
 * model/. */
static void model_folder(const char *dir, char *out, size_t cap)
{
    snprintf(out, cap, "%s/adapter", dir);
    if (!fj_file_exists(out))
        snprintf(out, cap, "%s/model", dir);
}

struct argv_buf {
    char *v[MAX_ARGS + 1];
    int n;
};

static void push(struct argv_buf *a, const char *s)
{
    if (a->n < MAX_ARGS)
        a->v[a->n++] = strdup(s);
    a->v[a->n] = NULL;
}

static void argv_free(struct argv_buf *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
}

static int build_argv(struct svc *s, enum worker_kind kind, const struct store_job_row *row,
                      const char *dir, struct argv_buf *a, struct fj_err *err)
{
    const json_t *spec = row->spec;
    char path[4400], num[32];
    push(a, s->cfg.worker_exe);
    push(a, "train");
    push(a, "--json");
    push(a, "--data-dir");
    push(a, store_dir(s->st));
    push(a, "--model");
    push(a, spec_str(spec, "model"));
    if (store_file_path(s->st, spec_str(spec, "training_file"), path, sizeof path) != 0)
        return fj_err_set(err, FJ_ERR_INVALID, "bad training file id");
    push(a, "--train");
    push(a, path);
    if (spec_str(spec, "validation_file")) {
        if (store_file_path(s->st, spec_str(spec, "validation_file"), path, sizeof path) != 0)
            return fj_err_set(err, FJ_ERR_INVALID, "bad validation file id");
        push(a, "--valid");
        push(a, path);
    }
    /* Validation writes nothing worth keeping; it gets a folder of its own. */
    char out[4400];
    snprintf(out, sizeof out, "%s%s", dir, kind == WORKER_VALIDATE ? "/validation" : "");
    push(a, "--out");
    push(a, out);
    push(a, "--seed");
    snprintf(num, sizeof num, "%lld", (long long)json_integer_value(json_object_get(spec, "seed")));
    push(a, num);
    push(a, "--keep-checkpoints");
    snprintf(num, sizeof num, "%d", s->cfg.keep_checkpoints);
    push(a, num);
    if (s->cfg.threads > 0) {
        push(a, "--threads");
        snprintf(num, sizeof num, "%d", s->cfg.threads);
        push(a, num);
    }
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(spec, "args"), i, v) push(a, json_string_value(v));
    if (kind == WORKER_VALIDATE)
        push(a, "--validate-only");
    else if (row->resume && train_checkpoint_newest(dir) > 0) {
        push(a, "--resume");
        push(a, dir);
    }
    for (int k = 0; k < a->n; k++)
        if (!a->v[k])
            return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    return 0;
}

/* Before a worker starts: a fresh start must not find an earlier attempt's checkpoints (the
 * trainer refuses a folder that holds some), and a resumed one must not start beyond the
 * steps whose metrics are recorded (a checkpoint written after a pause, or just before the
 * server was killed, with its step's events unread): the steps after last_step are trained
 * again, bitwise the same, and each gets its metrics event once. */
static int prepare_dir(const char *dir, bool resume, int64_t last_step, struct fj_err *err)
{
    char sub[4400];
    snprintf(sub, sizeof sub, "%s/checkpoints", dir);
    int rc = resume ? train_checkpoint_drop_after(dir, last_step, err) : fj_remove_tree(sub, err);
    return rc == 0 ? fj_mkdirs(dir, err) : rc;
}

int worker_spawn(struct svc *s, enum worker_kind kind, const struct store_job_row *row,
                 struct worker **out, struct fj_err *err)
{
    char dir[4200], log[4400];
    int rc = svc_job_dir(s->st, row->id, dir, sizeof dir);
    if (rc != 0)
        return fj_err_set(err, rc, "bad job id");
    if (kind == WORKER_TRAIN && (rc = prepare_dir(dir, row->resume, row->last_step, err)) != 0)
        return rc;
    if (kind == WORKER_VALIDATE && (rc = fj_mkdirs(dir, err)) != 0)
        return rc;
    struct argv_buf a = {0};
    if ((rc = build_argv(s, kind, row, dir, &a, err)) != 0) {
        argv_free(&a);
        return rc;
    }
    snprintf(log, sizeof log, "%s/worker.log", dir);
    int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int p[2];
    if (logfd < 0 || devnull < 0 || pipe2(p, O_CLOEXEC) != 0) {
        rc = fj_err_set(err, FJ_ERR_IO, "cannot start a worker: %s", strerror(errno));
        if (logfd >= 0)
            close(logfd);
        if (devnull >= 0)
            close(devnull);
        argv_free(&a);
        return rc;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* The child: only async-signal-safe calls until exec. It dies with the server (a
         * restarted server resumes the job) and has a process group of its own (a Ctrl-C
         * meant for the server reaches it only through the server). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        setpgid(0, 0);
        /* Training yields to the API: requests stay fast while a job uses every core. */
        if (s->cfg.worker_nice > 0) {
            /* SCHED_BATCH: a CPU-bound task that never preempts a waking request thread. */
            struct sched_param none_param = {0};
            sched_setscheduler(0, SCHED_BATCH, &none_param);
            setpriority(PRIO_PROCESS, 0, s->cfg.worker_nice);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL); /* the server blocks SIGTERM in its threads */
        signal(SIGPIPE, SIG_DFL);
        dup2(devnull, 0);
        dup2(p[1], 1);
        dup2(logfd, 2);
        execv(a.v[0], a.v);
        _exit(127);
    }
    close(p[1]);
    close(logfd);
    close(devnull);
    argv_free(&a);
    if (pid < 0) {
        close(p[0]);
        return fj_err_set(err, FJ_ERR_IO, "fork: %s", strerror(errno));
    }
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    struct worker *w = calloc(1, sizeof *w);
    if (!w) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(p[0]);
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    }
    w->kind = kind;
    snprintf(w->job_id, sizeof w->job_id, "%s", row->id);
    w->pid = pid;
    w->fd = p[0];
    w->spec = json_incref(row->spec);
    w->started = svc_clock();
    w->first_step = row->last_step;
    if (kind == WORKER_TRAIN) {
        json_t *doc = json_deep_copy(row->doc);
        svc_put_status(s, row->id, doc, "running");
        long long from = row->resume ? train_checkpoint_newest(dir) : 0;
        if (from > 0)
            svc_event(s, row->id, "info", "Job continues from its checkpoint at step %lld", from);
        else if (row->resume)
            svc_event(s, row->id, "info",
                      "Job starts again from the beginning (no checkpoint had been written)");
        else
            svc_event(s, row->id, "info", "Job started");
        json_decref(doc);
    }
    svc_log(s, "job %s: %s worker %d started", row->id,
            kind == WORKER_TRAIN ? "training" : "validation", (int)pid);
    *out = w;
    return 0;
}

/* ---- events from the worker ------------------------------------------------------------- */

/* The worker names files by their path in the store; users know them by id and name. */
static char *user_text(struct svc *s, const json_t *spec, const char *msg)
{
    struct fj_buf b = {0};
    const char *keys[2][2] = {{"training_file", "training_filename"},
                              {"validation_file", "validation_filename"}};
    const char *p = msg;
    while (*p) {
        bool replaced = false;
        for (int k = 0; k < 2 && !replaced; k++) {
            const char *id = spec_str(spec, keys[k][0]);
            char path[4400];
            if (!id || store_file_path(s->st, id, path, sizeof path) != 0)
                continue;
            size_t n = strlen(path);
            if (strncmp(p, path, n) != 0)
                continue;
            const char *name = spec_str(spec, keys[k][1]);
            fj_buf_printf(&b, "%s %s (%s)", k == 0 ? "training file" : "validation file", id,
                          name ? name : "");
            p += n;
            char *end;
            long line = p[0] == ':' ? strtol(p + 1, &end, 10) : 0;
            if (line > 0 && *end == ':') {
                fj_buf_printf(&b, ", line %ld:", line);
                p = end + 1;
            }
            replaced = true;
        }
        if (!replaced)
            fj_buf_append(&b, p++, 1);
    }
    fj_buf_append(&b, "", 1);
    return (char *)b.data;
}

static json_t *metrics_data(const json_t *m, int64_t total_steps)
{
    static const char *const keys[] = {"train_loss",      "train_mean_token_accuracy",
                                       "valid_loss",      "valid_mean_token_accuracy",
                                       "full_valid_loss", "full_valid_mean_token_accuracy"};
    json_t *d = json_pack("{s:O}", "step", json_object_get(m, "step"));
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *v = json_object_get(m, keys[i]);
        json_object_set_new(d, keys[i], v ? json_incref(v) : json_null());
    }
    if (total_steps >= 0)
        json_object_set_new(d, "total_steps", json_integer(total_steps));
    return d;
}

static void on_message(struct svc *s, struct worker *w, const json_t *ev)
{
    const char *level = json_string_value(json_object_get(ev, "level"));
    const char *msg = json_string_value(json_object_get(ev, "message"));
    if (!msg || !level)
        return;
    /* Errors come back whole in the final "error" line; the rest are the job's events. */
    if (strcmp(level, "error") == 0)
        return;
    /* A resumed run repeats its first messages; one copy is enough. */
    if (w->kind == WORKER_TRAIN && w->first_step > 0)
        return;
    char *text = user_text(s, w->spec, msg);
    svc_event(s, w->job_id, level, "%s", text ? text : msg);
    free(text);
}

static void on_plan(struct svc *s, struct worker *w, const json_t *ev)
{
    const json_t *plan = json_object_get(ev, "plan");
    w->total_steps = json_integer_value(json_object_get(plan, "total_steps"));
    if (w->kind != WORKER_VALIDATE)
        return;
    json_t *doc;
    if (store_job_get(s->st, w->job_id, &doc, NULL) != 0)
        return;
    /* The resolved numbers replace "auto"; forja's own settings are echoed beside them. */
    const char *method = json_string_value(json_object_get(plan, "method"));
    json_t *hp =
        json_pack("{s:O, s:O, s:O, s:s?, s:O}", "n_epochs", json_object_get(plan, "n_epochs"),
                  "batch_size", json_object_get(plan, "batch_size"), "learning_rate_multiplier",
                  json_object_get(plan, "learning_rate_multiplier"), "training_type", method,
                  "learning_rate", json_object_get(plan, "learning_rate"));
    if (method && strcmp(method, "lora") == 0) {
        static const char *const lora[] = {"lora_rank", "lora_alpha", "lora_dropout",
                                           "lora_targets"};
        for (size_t i = 0; i < 4; i++) {
            json_t *v = json_object_get(plan, lora[i]);
            if (v)
                json_object_set(hp, lora[i], v);
        }
    }
    json_object_set(doc, "hyperparameters", hp);
    json_t *m = json_object_get(doc, "method");
    if (json_is_object(m))
        json_object_set_new(json_object_get(m, "supervised"), "hyperparameters", hp);
    else
        json_decref(hp);
    store_job_put(s->st, w->job_id, doc, NULL);
    json_decref(doc);
}

static void on_step(struct svc *s, struct worker *w, const json_t *ev)
{
    const json_t *m = json_object_get(ev, "metrics");
    int64_t step = json_integer_value(json_object_get(ev, "step"));
    w->total_steps = json_integer_value(json_object_get(ev, "total_steps"));
    w->tokens_per_s = json_real_value(json_object_get(ev, "tokens_per_s"));
    w->steps_seen++;
    /* The finish estimate: this worker's time per step for the steps still to go. */
    double per_step = (svc_clock() - w->started) / (double)w->steps_seen;
    int64_t finish = store_now() + (int64_t)(per_step * (double)(w->total_steps - step));
    char msg[160];
    snprintf(msg, sizeof msg, "Step %lld/%lld: training loss=%.4f", (long long)step,
             (long long)w->total_steps, json_real_value(json_object_get(m, "train_loss")));
    /* Recorded only while the job runs (after a pause or cancel it shows no more progress;
     * the step is trained again on resume) and once per step (a resumed run repeats the
     * steps after its checkpoint). */
    bool recorded;
    struct fj_err err = {0};
    if (store_job_step(s->st, w->job_id, step, finish, msg, metrics_data(m, w->total_steps),
                       &recorded, &err) != 0)
        svc_log(s, "job %s: step %lld not recorded: %s", w->job_id, (long long)step, err.msg);
}

static void on_checkpoint(struct svc *s, struct worker *w, const json_t *ev)
{
    int64_t step = json_integer_value(json_object_get(ev, "step"));
    const char *path = json_string_value(json_object_get(ev, "path"));
    const char *ft = spec_str(w->spec, "fine_tuned_model");
    struct store_job_row row;
    if (!path || !ft || store_job_row_get(s->st, w->job_id, &row, NULL) != 0)
        return;
    /* Only checkpoints of recorded steps (see prepare_dir). */
    int64_t last_step = row.last_step;
    store_job_row_free(&row);
    if (step > last_step)
        return;
    char id[STORE_ID_MAX], name[1200], model_dir[4400];
    store_new_id("ftckpt-", id);
    snprintf(name, sizeof name, "%s:ckpt-step-%lld", ft, (long long)step);
    json_t *metrics = metrics_data(json_object_get(ev, "metrics"), -1);
    json_t *doc = json_pack("{s:s, s:s, s:I, s:s, s:s, s:I, s:o}", "id", id, "object",
                            "fine_tuning.job.checkpoint", "created_at", (json_int_t)store_now(),
                            "fine_tuned_model_checkpoint", name, "fine_tuning_job_id", w->job_id,
                            "step_number", (json_int_t)step, "metrics", metrics);
    model_folder(path, model_dir, sizeof model_dir);
    struct fj_err err = {0};
    if (doc && store_checkpoint_add(s->st, w->job_id, step, doc, model_dir,
                                    spec_str(w->spec, "base"), s->cfg.keep_checkpoints, &err) == 0)
        svc_event(s, w->job_id, "info", "Checkpoint created at step %lld", (long long)step);
    else
        svc_log(s, "job %s: checkpoint %lld not recorded: %s", w->job_id, (long long)step, err.msg);
    json_decref(doc);
}

static void handle_line(struct svc *s, struct worker *w, const char *line)
{
    json_t *ev = json_loads(line, 0, NULL);
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (!type) {
        json_decref(ev);
        return;
    }
    if (strcmp(type, "message") == 0)
        on_message(s, w, ev);
    else if (strcmp(type, "plan") == 0)
        on_plan(s, w, ev);
    else if (strcmp(type, "step") == 0)
        on_step(s, w, ev);
    else if (strcmp(type, "checkpoint") == 0)
        on_checkpoint(s, w, ev);
    if (strcmp(type, "end") == 0 || strcmp(type, "error") == 0 || strcmp(type, "stopped") == 0) {
        json_decref(w->end);
        w->end = ev;
        return;
    }
    json_decref(ev);
}

bool worker_read(struct svc *s, struct worker *w)
{
    char buf[65536];
    for (;;) {
        ssize_t got = read(w->fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK;
        if (got == 0)
            return false;
        size_t start = 0;
        for (size_t i = 0; i < (size_t)got; i++) {
            if (buf[i] != '\n')
                continue;
            fj_buf_append(&w->line, buf + start, i - start);
            fj_buf_append(&w->line, "", 1);
            handle_line(s, w, (const char *)w->line.data);
            w->line.len = 0;
            start = i + 1;
        }
        /* A worker line is small; one that never ends is dropped rather than grown. */
        if (w->line.len + ((size_t)got - start) < ((size_t)1 << 20))
            fj_buf_append(&w->line, buf + start, (size_t)got - start);
        else
            w->line.len = 0;
    }
}

/* ---- the end of a worker ------------------------------------------------------------------- */

static void validated(struct svc *s, struct worker *w, json_t *doc)
{
    const json_t *end = w->end;
    const char *type = end ? json_string_value(json_object_get(end, "type")) : NULL;
    if (type && strcmp(type, "end") == 0) {
        svc_event(s, w->job_id, "info",
                  "Files validated: %lld training and %lld validation "
                  "example(s)",
                  (long long)json_integer_value(json_object_get(end, "train_examples")),
                  (long long)json_integer_value(json_object_get(end, "valid_examples")));
        svc_event(s, w->job_id, "info", "Job enqueued. Waiting for jobs ahead to complete.");
        svc_put_status(s, w->job_id, doc, "queued");
        return;
    }
    const char *msg = end ? json_string_value(json_object_get(end, "message")) : NULL;
    if (!msg) {
        svc_fail(s, w->job_id, doc, "server_error", "The validation worker ended without a result",
                 NULL);
        return;
    }
    /* The trainer's message starts with the file it is about. */
    const char *param = NULL;
    const char *code = "invalid_training_file";
    if (strncmp(msg, "training_file: ", 15) == 0) {
        param = "training_file";
        msg += 15;
    } else if (strncmp(msg, "validation_file: ", 17) == 0) {
        param = "validation_file";
        code = "invalid_validation_file";
        msg += 17;
    } else {
        code = "invalid_request";
    }
    char *text = user_text(s, w->spec, msg);
    svc_fail(s, w->job_id, doc, code, text ? text : msg, param);
    free(text);
}

static void succeeded(struct svc *s, struct worker *w, json_t *doc)
{
    char dir[4200], path[4400], model_dir[4400];
    svc_job_dir(s->st, w->job_id, dir, sizeof dir);
    const char *ft = spec_str(w->spec, "fine_tuned_model");
    model_folder(dir, model_dir, sizeof model_dir);
    struct fj_err err = {0};
    if (store_model_add(s->st, ft, w->job_id, model_dir, spec_str(w->spec, "base"), false, &err) !=
        0) {
        svc_fail(s, w->job_id, doc, "server_error", err.msg, NULL);
        return;
    }
    svc_event(s, w->job_id, "info", "New fine-tuned model created: %s", ft);
    snprintf(path, sizeof path, "%s/results.csv", dir);
    json_t *file = NULL;
    if (store_file_import(s->st, path, "results.csv", "fine-tune-results", &file, &err) == 0) {
        json_object_set_new(doc, "result_files", json_pack("[O]", json_object_get(file, "id")));
        json_decref(file);
    } else {
        svc_event(s, w->job_id, "warn", "results.csv was not stored: %s", err.msg);
    }
    json_object_set_new(doc, "fine_tuned_model", json_string(ft));
    json_object_set(doc, "trained_tokens", json_object_get(w->end, "trained_tokens"));
    svc_event(s, w->job_id, "info", "Job succeeded: the fine-tuned model %s is ready", ft);
    svc_put_status(s, w->job_id, doc, "succeeded");
}

static void trained(struct svc *s, struct worker *w, json_t *doc, int wstatus)
{
    const char *status = json_string_value(json_object_get(doc, "status"));
    const char *type = w->end ? json_string_value(json_object_get(w->end, "type")) : NULL;
    if (!status || strcmp(status, "cancelled") == 0)
        return;
    if (type && strcmp(type, "end") == 0) {
        succeeded(s, w, doc);
        return;
    }
    if (strcmp(status, "paused") == 0)
        return;
    if (s->stopping) /* the server is stopping: the job resumes at the next start */
        return;
    char msg[1024];
    const char *m = w->end ? json_string_value(json_object_get(w->end, "message")) : NULL;
    if (m)
        snprintf(msg, sizeof msg, "Training failed: %s", m);
    else if (WIFSIGNALED(wstatus))
        snprintf(msg, sizeof msg,
                 "Training failed: the worker process was killed by signal %d (see worker.log "
                 "in the job's folder)",
                 WTERMSIG(wstatus));
    else
        snprintf(msg, sizeof msg, "Training failed: the worker exited with status %d",
                 WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
    svc_fail(s, w->job_id, doc, "training_failed", msg, NULL);
}

void worker_finish(struct svc *s, struct worker *w)
{
    int wstatus = 0;
    while (waitpid(w->pid, &wstatus, 0) < 0 && errno == EINTR)
        ;
    if (w->line.len > 0) { /* a last line without its newline */
        fj_buf_append(&w->line, "", 1);
        handle_line(s, w, (const char *)w->line.data);
    }
    if (w->fd >= 0)
        close(w->fd);
    char dir[4200], sub[4400];
    if (w->kind == WORKER_VALIDATE && svc_job_dir(s->st, w->job_id, dir, sizeof dir) == 0) {
        snprintf(sub, sizeof sub, "%s/validation", dir);
        fj_remove_tree(sub, NULL);
    }
    svc_log(s, "job %s: worker %d ended (%s %d)", w->job_id, (int)w->pid,
            WIFSIGNALED(wstatus) ? "signal" : "status",
            WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : WEXITSTATUS(wstatus));
    json_t *doc = NULL;
    if (store_job_get(s->st, w->job_id, &doc, NULL) == 0) {
        const char *status = json_string_value(json_object_get(doc, "status"));
        if (w->kind == WORKER_VALIDATE && status && strcmp(status, "validating_files") == 0 &&
            !(s->stopping && !w->end))
            validated(s, w, doc);
        else if (w->kind == WORKER_TRAIN)
            trained(s, w, doc, wstatus);
        json_decref(doc);
    }
    json_decref(w->end);
    json_decref(w->spec);
    fj_buf_free(&w->line);
    free(w);
}
