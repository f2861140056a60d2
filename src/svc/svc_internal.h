/* svc_internal.h - what the scheduler (sched.c) and the worker handling (worker.c) share. */
#ifndef FJ_SVC_INTERNAL_H
#define FJ_SVC_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "svc/svc.h"

enum worker_kind { WORKER_VALIDATE, WORKER_TRAIN };

struct worker {
    enum worker_kind kind;
    char job_id[STORE_ID_MAX];
    pid_t pid;
    int fd;             /* the worker's stdout, non-blocking; -1 once closed */
    struct fj_buf line; /* bytes of a line not yet complete */
    json_t *end;        /* the worker's last line ("end", "error" or "stopped"), owned */
    json_t *spec;       /* the job's spec, owned */
    int64_t total_steps, first_step, steps_seen;
    double started, tokens_per_s;
    bool kill_sent;
    struct worker *next;
};

struct svc {
    struct store *st;
    struct svc_config cfg;
    pthread_t thread;
    pthread_mutex_t lock; /* held while a job's object is read, changed and written back */
    int wake[2];          /* a byte written here wakes the scheduler */
    volatile int stopping;
    struct worker *workers;
    double tokens_per_s;
};

void svc_log(struct svc *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double svc_clock(void);

/* worker.c */
int worker_spawn(struct svc *s, enum worker_kind kind, const struct store_job_row *row,
                 struct worker **out, struct fj_err *err);
/* Reads what the worker wrote and acts on each complete line (under s->lock). Returns
 * false once the worker's stdout is closed. */
bool worker_read(struct svc *s, struct worker *w);
/* After the worker's stdout closed: waits for it and settles the job. Frees w. */
void worker_finish(struct svc *s, struct worker *w);

/* An event for a job; message is printf-like. */
void svc_event(struct svc *s, const char *job_id, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Ends the job `failed` with error {code, message, param} and the events saying so. */
void svc_fail(struct svc *s, const char *id, json_t *doc, const char *code, const char *message,
              const char *param);
/* Sets doc's status (and finished_at for an end) and writes it back. */
int svc_put_status(struct svc *s, const char *id, json_t *doc, const char *status);

#endif
