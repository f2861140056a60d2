/* sched.c - the scheduler thread and the job controls. One thread owns every worker: it
 * starts validations and training runs in the order jobs were created, waits on the
 * workers' output with poll(), and hands each line to worker.c. API threads change a job
 * (cancel, pause, resume) under the same lock and wake the thread, which then stops the
 * job's worker. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/file.h"
#include "svc/svc_internal.h"

double svc_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void svc_log(struct svc *s, const char *fmt, ...)
{
    if (!s->cfg.log)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->cfg.log(s->cfg.log_ctx, line);
}

void svc_event(struct svc *s, const char *job_id, const char *level, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct fj_err err = {0};
    if (store_event_add(s->st, job_id, level, "message", msg, NULL, &err) != 0)
        svc_log(s, "job %s: event not recorded: %s", job_id, err.msg);
}

static bool is_terminal(const char *status)
{
    return strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0 ||
           strcmp(status, "cancelled") == 0;
}

int svc_put_status(struct svc *s, const char *id, json_t *doc, const char *status)
{
    json_object_set_new(doc, "status", json_string(status));
    if (is_terminal(status)) {
        json_object_set_new(doc, "finished_at", json_integer(store_now()));
        json_object_set_new(doc, "estimated_finish", json_null());
    }
    struct fj_err err = {0};
    int rc = store_job_put(s->st, id, doc, &err);
    if (rc != 0)
        svc_log(s, "job %s: status %s not recorded: %s", id, status, err.msg);
    return rc;
}

void svc_fail(struct svc *s, const char *id, json_t *doc, const char *code, const char *message,
              const char *param)
{
    json_object_set_new(
        doc, "error",
        json_pack("{s:s, s:s, s:s?}", "code", code, "message", message, "param", param));
    svc_event(s, id, "error", "%s", message);
    svc_event(s, id, "error", "Job failed");
    svc_put_status(s, id, doc, "failed");
}

int svc_job_dir(const struct store *st, const char *id, char *out, size_t cap)
{
    if (!store_id_valid(id, "ftjob-"))
        return FJ_ERR_INVALID;
    int n = snprintf(out, cap, "%s/jobs/%s", store_dir(st), id);
    return n < 0 || (size_t)n >= cap ? FJ_ERR_RANGE : 0;
}

void svc_wake(struct svc *s)
{
    char b = 1;
    ssize_t w = write(s->wake[1], &b, 1);
    (void)w; /* a full pipe already means "wake up" */
}

static struct worker *find_worker(struct svc *s, const char *id)
{
    for (struct worker *w = s->workers; w; w = w->next)
        if (strcmp(w->job_id, id) == 0)
            return w;
    return NULL;
}

static json_t *worker_ids(struct svc *s)
{
    json_t *ids = json_array();
    for (struct worker *w = s->workers; w; w = w->next)
        json_array_append_new(ids, json_string(w->job_id));
    return ids;
}

/* Starts the oldest job of `status` that has no worker yet, if any. */
static bool start_next(struct svc *s, const char *status, enum worker_kind kind)
{
    json_t *ids = worker_ids(s);
    char *skip = json_dumps(ids, JSON_COMPACT);
    json_decref(ids);
    struct store_job_row row;
    bool found = false;
    struct fj_err err = {0};
    int rc = store_job_next(s->st, status, skip, &found, &row, &err);
    free(skip);
    if (rc != 0 || !found) {
        if (rc != 0)
            svc_log(s, "scheduler: %s", err.msg);
        return false;
    }
    struct worker *w = NULL;
    rc = worker_spawn(s, kind, &row, &w, &err);
    if (rc == 0) {
        w->next = s->workers;
        s->workers = w;
    } else {
        /* The worker could not even start: the job cannot run. */
        svc_fail(s, row.id, row.doc, "server_error", err.msg, NULL);
    }
    store_job_row_free(&row);
    return rc == 0;
}

static void schedule(struct svc *s)
{
    int validating = 0, training = 0;
    for (struct worker *w = s->workers; w; w = w->next)
        *(w->kind == WORKER_VALIDATE ? &validating : &training) += 1;
    if (validating == 0)
        start_next(s, "validating_files", WORKER_VALIDATE);
    while (training < s->cfg.max_jobs && start_next(s, "queued", WORKER_TRAIN))
        training++;
}

/* Stops workers whose job no longer wants them (cancelled, paused, deleted). */
static void enforce(struct svc *s)
{
    for (struct worker *w = s->workers; w; w = w->next) {
        if (w->kill_sent)
            continue;
        json_t *doc = NULL;
        const char *status = "deleted";
        if (store_job_get(s->st, w->job_id, &doc, NULL) == 0)
            status = json_string_value(json_object_get(doc, "status"));
        bool wanted =
            status &&
            (strcmp(status, w->kind == WORKER_VALIDATE ? "validating_files" : "running") == 0 ||
             (w->kind == WORKER_TRAIN && strcmp(status, "queued") == 0));
        if (!wanted) {
            /* Pausing lets the trainer finish its step; anything else ends it now. */
            kill(w->pid, status && strcmp(status, "paused") == 0 ? SIGTERM : SIGKILL);
            w->kill_sent = true;
        }
        json_decref(doc);
    }
}

static void drain_wake(struct svc *s)
{
    char buf[64];
    while (read(s->wake[0], buf, sizeof buf) > 0)
        ;
}

static void *sched_main(void *arg)
{
    struct svc *s = arg;
    /* Jobs are looked at when something may have changed (a wake-up, a worker's end) and
     * once a second, not on every line a worker writes. */
    bool due = true;
    while (!s->stopping) {
        pthread_mutex_lock(&s->lock);
        if (due) {
            enforce(s);
            schedule(s);
        }
        double tps = 0;
        for (struct worker *w = s->workers; w; w = w->next)
            tps += w->kind == WORKER_TRAIN ? w->tokens_per_s : 0;
        s->tokens_per_s = tps;
        pthread_mutex_unlock(&s->lock);

        struct pollfd fds[64];
        struct worker *ws[64];
        int n = 0;
        fds[n++] = (struct pollfd){.fd = s->wake[0], .events = POLLIN};
        for (struct worker *w = s->workers; w && n < 64; w = w->next) {
            ws[n] = w;
            fds[n++] = (struct pollfd){.fd = w->fd, .events = POLLIN};
        }
        int ready = poll(fds, (nfds_t)n, 1000);
        if (ready < 0 && errno != EINTR)
            break;
        due = ready == 0;
        if (fds[0].revents) {
            drain_wake(s);
            due = true;
        }
        for (int i = 1; i < n; i++) {
            if (!fds[i].revents)
                continue;
            struct worker *w = ws[i];
            pthread_mutex_lock(&s->lock);
            if (!worker_read(s, w)) {
                struct worker **pp = &s->workers;
                while (*pp != w)
                    pp = &(*pp)->next;
                *pp = w->next;
                worker_finish(s, w);
                due = true;
            }
            pthread_mutex_unlock(&s->lock);
        }
    }
    return NULL;
}

/* Jobs an earlier server left running continue from their newest checkpoint. */
static int recover(struct svc *s, struct fj_err *err)
{
    json_t *ids;
    int rc = store_job_ids(s->st, "running", &ids, err);
    if (rc != 0)
        return rc;
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        const char *id = json_string_value(v);
        json_t *doc;
        if (store_job_get(s->st, id, &doc, NULL) != 0)
            continue;
        store_job_set_resume(s->st, id, true, NULL);
        svc_put_status(s, id, doc, "queued");
        svc_event(s, id, "info",
                  "The server restarted while the job was running; the job is queued to "
                  "continue");
        json_decref(doc);
    }
    json_decref(ids);
    return 0;
}

int svc_start(struct svc **out, struct store *st, const struct svc_config *cfg, struct fj_err *err)
{
    struct svc *s = calloc(1, sizeof *s);
    if (!s)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    s->st = st;
    s->cfg = *cfg;
    if (s->cfg.max_jobs < 1)
        s->cfg.max_jobs = 1;
    if (s->cfg.keep_checkpoints < 1)
        s->cfg.keep_checkpoints = 3;
    pthread_mutex_init(&s->lock, NULL);
    if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        free(s);
        return fj_err_set(err, FJ_ERR_IO, "pipe: %s", strerror(errno));
    }
    int rc = recover(s, err);
    if (rc == 0 && pthread_create(&s->thread, NULL, sched_main, s) != 0)
        rc = fj_err_set(err, FJ_ERR_IO, "cannot start the scheduler thread");
    if (rc != 0) {
        close(s->wake[0]);
        close(s->wake[1]);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void svc_stop(struct svc *s)
{
    if (!s)
        return;
    s->stopping = 1;
    svc_wake(s);
    pthread_join(s->thread, NULL);
    /* Workers stop at their next step; their jobs stay "running" and resume next time. */
    for (struct worker *w = s->workers; w; w = w->next)
        kill(w->pid, SIGTERM);
    double deadline = svc_clock() + 10;
    while (s->workers) {
        struct worker *w = s->workers;
        s->workers = w->next;
        while (worker_read(s, w) && svc_clock() < deadline)
            usleep(20000);
        kill(w->pid, SIGKILL);
        pthread_mutex_lock(&s->lock);
        worker_finish(s, w);
        pthread_mutex_unlock(&s->lock);
    }
    close(s->wake[0]);
    close(s->wake[1]);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* ---- controls ---------------------------------------------------------------------------- */

typedef int (*control_fn)(struct svc *s, const char *id, json_t *doc, const char *status,
                          const struct store_job_row *row, struct fj_err *err);

static int control(struct svc *s, const char *id, control_fn fn, json_t **out, struct fj_err *err)
{
    pthread_mutex_lock(&s->lock);
    struct store_job_row row;
    int rc = store_job_row_get(s->st, id, &row, err);
    if (rc == 0) {
        const char *status = json_string_value(json_object_get(row.doc, "status"));
        rc = fn(s, id, row.doc, status ? status : "", &row, err);
        if (rc == 0)
            *out = json_incref(row.doc);
        store_job_row_free(&row);
    }
    pthread_mutex_unlock(&s->lock);
    if (rc == 0)
        svc_wake(s);
    return rc;
}

static int do_cancel(struct svc *s, const char *id, json_t *doc, const char *status,
                     const struct store_job_row *row, struct fj_err *err)
{
    (void)row;
    if (is_terminal(status))
        return fj_err_set(err, FJ_ERR_STATE,
                          "Job %s has already ended (%s); it cannot be cancelled", id, status);
    svc_event(s, id, "info", "Job cancelled");
    return svc_put_status(s, id, doc, "cancelled") ? fj_err_set(err, FJ_ERR_IO, "store") : 0;
}

static int do_pause(struct svc *s, const char *id, json_t *doc, const char *status,
                    const struct store_job_row *row, struct fj_err *err)
{
    if (strcmp(status, "running") != 0 || row->last_step < 1)
        return fj_err_set(err, FJ_ERR_STATE,
                          "Job %s is %s; only a running job that has trained at least one step "
                          "can be paused",
                          id, status);
    svc_event(s, id, "info", "Job paused at step %lld", (long long)row->last_step);
    return svc_put_status(s, id, doc, "paused") ? fj_err_set(err, FJ_ERR_IO, "store") : 0;
}

static int do_resume(struct svc *s, const char *id, json_t *doc, const char *status,
                     const struct store_job_row *row, struct fj_err *err)
{
    (void)row;
    if (strcmp(status, "paused") != 0)
        return fj_err_set(err, FJ_ERR_STATE, "Job %s is %s; only a paused job can be resumed", id,
                          status);
    store_job_set_resume(s->st, id, true, NULL);
    svc_event(s, id, "info", "Job resumed");
    return svc_put_status(s, id, doc, "queued") ? fj_err_set(err, FJ_ERR_IO, "store") : 0;
}

int svc_cancel(struct svc *s, const char *id, json_t **doc, struct fj_err *err)
{
    return control(s, id, do_cancel, doc, err);
}

int svc_pause(struct svc *s, const char *id, json_t **doc, struct fj_err *err)
{
    return control(s, id, do_pause, doc, err);
}

int svc_resume(struct svc *s, const char *id, json_t **doc, struct fj_err *err)
{
    return control(s, id, do_resume, doc, err);
}

int svc_delete(struct svc *s, const char *id, struct fj_err *err)
{
    pthread_mutex_lock(&s->lock);
    json_t *doc = NULL;
    int rc = store_job_get(s->st, id, &doc, err);
    const char *status = rc == 0 ? json_string_value(json_object_get(doc, "status")) : NULL;
    if (rc == 0 && (!status || !is_terminal(status) || find_worker(s, id)))
        rc = fj_err_set(err, FJ_ERR_STATE,
                        "Job %s is %s; cancel it before deleting it (only ended jobs can be "
                        "deleted)",
                        id, status ? status : "busy");
    if (rc == 0)
        rc = store_job_delete(s->st, id, err);
    /* The folder goes too unless it holds the job's fine-tuned model. */
    char dir[4200];
    if (rc == 0 && json_is_null(json_object_get(doc, "fine_tuned_model")) &&
        svc_job_dir(s->st, id, dir, sizeof dir) == 0)
        fj_remove_tree(dir, NULL);
    pthread_mutex_unlock(&s->lock);
    json_decref(doc);
    return rc;
}

double svc_tokens_per_s(struct svc *s)
{
    pthread_mutex_lock(&s->lock);
    double t = s->tokens_per_s;
    pthread_mutex_unlock(&s->lock);
    return t;
}
