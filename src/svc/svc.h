/* svc.h - the fine-tuning service behind the API: a scheduler thread that takes jobs from
 * the store in order and runs each in a worker process (`forja train --json`), turning the
 * worker's events into the job's status, events, checkpoints, models and result file
 * (docs/service.md).
 *
 *     validating_files -> queued -> running -> succeeded | failed | cancelled
 *                                      ^ |
 *                              resume  | v pause
 *                                    paused
 *
 * A worker is a separate process, so a training run that crashes or is killed ends its job
 * (failed) and nothing else. Jobs that were running when the server stopped continue from
 * their newest checkpoint when it starts again; the trainer's resume is bitwise, so the
 * result is the uninterrupted run's.
 */
#ifndef FJ_SVC_SVC_H
#define FJ_SVC_SVC_H

#include <stdbool.h>

#include <jansson.h>

#include "core/err.h"
#include "store/store.h"

struct svc_config {
    const char *worker_exe; /* the forja binary that workers run (`forja train`) */
    int max_jobs;           /* training jobs at once (>= 1) */
    int threads;            /* compute threads per worker (0: all cores) */
    int keep_checkpoints;   /* checkpoints kept per job (>= 1) */
    int worker_nice;        /* workers' niceness: training yields the CPU to requests */
    void (*log)(void *ctx, const char *line); /* the service's own messages (may be NULL) */
    void *log_ctx;
};

struct svc;

/* Recovers jobs left running by an earlier server (they become queued, to resume) and
 * starts the scheduler. */
int svc_start(struct svc **out, struct store *st, const struct svc_config *cfg, struct fj_err *err);
/* Stops the scheduler and the workers; jobs still running resume at the next start. */
void svc_stop(struct svc *s);

/* Tells the scheduler that there is new work (a job was created). */
void svc_wake(struct svc *s);

/* Job controls. Each returns the job's object after the change in *doc (owned by the
 * caller); FJ_ERR_NOT_FOUND for an unknown id, FJ_ERR_STATE when the job's status does not
 * allow it (the message says why). */
int svc_cancel(struct svc *s, const char *id, json_t **doc, struct fj_err *err);
int svc_pause(struct svc *s, const char *id, json_t **doc, struct fj_err *err);
int svc_resume(struct svc *s, const char *id, json_t **doc, struct fj_err *err);
/* Deletes a job that has ended (cancelled, failed or succeeded), with its events. */
int svc_delete(struct svc *s, const char *id, struct fj_err *err);

/* Training tokens per second of the running workers together. */
double svc_tokens_per_s(struct svc *s);

/* The folder a job's worker writes to: store_dir/jobs/ID. */
int svc_job_dir(const struct store *st, const char *id, char *out, size_t cap);

#endif
