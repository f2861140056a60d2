/* scan.c - checking and counting whole files on several threads.
 *
 * The calling thread reads each file into blocks of whole lines and hands them to a pool of
 * workers; each worker checks its block's lines into a private result (histograms, problems).
 * The caller merges results strictly in reading order, so line numbers, problem order and
 * every number are the same whatever the thread count. At most MAX_INFLIGHT blocks exist at
 * once, which bounds memory whatever the file size. Files follow one another in the same
 * stream (a file's end is a marker in it), so many small files keep all workers busy too.
 * The one-format-per-file rule needs the lines in order: each block notes the first line of
 * each format it holds, and the merge feeds those to the file's data_format_rule.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

#define BLOCK_TARGET (1u << 20)
#define N_FORMATS    3 /* enum data_format's values */
_Static_assert(DATA_FORMAT_PREFERENCE + 1 == N_FORMATS, "N_FORMATS is enum data_format's size");

struct job {
    size_t file;
    bool file_end; /* a marker: everything of `file` came before it */
    bool done;
    struct data_block block;
    struct data_hist total, assistant;
    struct data_problems probs;
    uint64_t lines, examples, valid;
    uint64_t first_line[N_FORMATS]; /* per format, its first line in the block; 0: none */
    bool first_valid[N_FORMATS];    /* whether that line was valid */
    int rc;
    struct fj_err err;
    struct job *next_free;
};

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    struct job **queue; /* FIFO of jobs waiting for a worker */
    size_t qhead, qlen, qcap;
    bool stop;
    const struct data_scan_opts *opts;
};

static void job_reset(struct job *j, size_t file, size_t max_problems)
{
    j->file = file;
    j->file_end = false;
    j->done = false;
    data_hist_free(&j->total);
    data_hist_free(&j->assistant);
    data_problems_free(&j->probs);
    memset(&j->probs, 0, sizeof j->probs);
    j->probs.limit = max_problems;
    j->lines = j->examples = j->valid = 0;
    memset(j->first_line, 0, sizeof j->first_line);
    memset(j->first_valid, 0, sizeof j->first_valid);
    j->rc = 0;
    fj_err_clear(&j->err);
}

static void job_free(struct job *j)
{
    data_block_free(&j->block);
    data_hist_free(&j->total);
    data_hist_free(&j->assistant);
    data_problems_free(&j->probs);
    free(j);
}

static int check_block(struct job *j, const struct data_scan_opts *opts)
{
    for (size_t k = 0; k < j->block.n_lines; k++) {
        const struct data_line *l = &j->block.lines[k];
        uint64_t errors_before = j->probs.errors;
        j->lines++;
        if (l->flags & DATA_LINE_TOO_LONG) {
            if (data_problems_add(&j->probs, l->number, 0, DATA_ERROR,
                                  "line is %zu bytes, longer than the limit of %zu bytes", l->len,
                                  opts->max_line) != 0)
                return fj_err_set(&j->err, FJ_ERR_NOMEM, "out of memory");
            continue;
        }
        struct data_line_result res;
        int rc = data_check_line(j->block.buf + l->off, l->len, l->number, &opts->check, &res,
                                 &j->probs, &j->err);
        if (rc != 0)
            return rc;
        if (res.counted) {
            j->examples++;
            if (data_hist_add(&j->total, res.total, 1) != 0 ||
                data_hist_add(&j->assistant, res.assistant, 1) != 0)
                return fj_err_set(&j->err, FJ_ERR_NOMEM, "out of memory");
        }
        bool valid = j->probs.errors == errors_before && res.counted;
        j->valid += valid;
        if (res.recognised && j->first_line[res.format] == 0) {
            j->first_line[res.format] = l->number;
            j->first_valid[res.format] = valid;
        }
    }
    return 0;
}

static void *worker(void *arg)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->qlen == 0 && !p->stop)
            pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->qlen == 0 && p->stop)
            break;
        struct job *j = p->queue[p->qhead];
        p->qhead = (p->qhead + 1) % p->qcap;
        p->qlen--;
        pthread_mutex_unlock(&p->mu);
        j->rc = check_block(j, p->opts);
        pthread_mutex_lock(&p->mu);
        j->done = true;
        pthread_cond_broadcast(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

struct scan {
    struct pool pool;
    pthread_t *threads;
    int n_threads;
    struct job **inflight; /* ring in reading order */
    size_t ihead, ilen, icap;
    struct job *free_jobs;
    struct data_file_report *reports;
    struct data_hist *totals, *assistants; /* per file */
    struct data_format_rule *rules;        /* per file */
    const struct data_scan_opts *opts;
};

static struct job *job_get(struct scan *s, size_t file)
{
    struct job *j = s->free_jobs;
    if (j != NULL)
        s->free_jobs = j->next_free;
    else if ((j = calloc(1, sizeof *j)) == NULL)
        return NULL;
    job_reset(j, file, s->opts->max_problems);
    return j;
}

static void job_put(struct scan *s, struct job *j)
{
    j->next_free = s->free_jobs;
    s->free_jobs = j;
}

static int finish_file(struct scan *s, size_t f, struct fj_err *err)
{
    struct data_file_report *r = &s->reports[f];
    r->format = s->rules[f].known ? s->rules[f].format : DATA_FORMAT_CHAT;
    if (data_hist_dist(&s->totals[f], &r->total) != 0 ||
        data_hist_dist(&s->assistants[f], &r->assistant) != 0)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    int rc = 0;
    if (!r->opened)
        return 0; /* the problem list already says why */
    if (r->bytes == 0)
        rc = data_problems_add(&r->problems, 0, 0, DATA_ERROR, "file is empty");
    else if (r->lines == 0)
        rc = data_problems_add(&r->problems, 0, 0, DATA_ERROR, "file has no lines");
    else if (r->training && r->valid < s->opts->min_examples)
        rc = data_problems_add(&r->problems, 0, 0, DATA_ERROR,
                               "%llu valid example%s; a training file needs at least %zu",
                               (unsigned long long)r->valid, r->valid == 1 ? "" : "s",
                               s->opts->min_examples);
    return rc != 0 ? fj_err_set(err, FJ_ERR_NOMEM, "out of memory") : 0;
}

int data_format_rule_check(struct data_format_rule *rule, uint64_t line, enum data_format format,
                           struct data_problems *probs)
{
    if (!rule->known) {
        rule->known = true;
        rule->format = format;
        rule->first_line = line;
        return 0;
    }
    if (format == rule->format || rule->reported)
        return 0;
    rule->reported = true;
    if (data_problems_add(probs, line, 0, DATA_ERROR,
                          "a %s example, but the file's first example (line %llu) is %s: a file "
                          "holds one format",
                          data_format_name(format), (unsigned long long)rule->first_line,
                          data_format_name(rule->format)) != 0)
        return FJ_ERR_NOMEM;
    return 1;
}

/* Feeds the file's format rule the first line of each format in j, in line order. A mismatch
 * goes to *mismatch (at most one problem) and no longer counts as a valid line. */
static int apply_format_rule(struct scan *s, struct job *j, struct data_problems *mismatch)
{
    struct data_file_report *r = &s->reports[j->file];
    bool fed[N_FORMATS] = {false};
    for (;;) {
        int next = -1;
        for (int k = 0; k < N_FORMATS; k++)
            if (j->first_line[k] != 0 && !fed[k] &&
                (next < 0 || j->first_line[k] < j->first_line[next]))
                next = k;
        if (next < 0)
            return 0;
        fed[next] = true;
        int rc = data_format_rule_check(&s->rules[j->file], j->first_line[next],
                                        (enum data_format)next, mismatch);
        if (rc < 0)
            return rc;
        if (rc == 1 && j->first_valid[next])
            r->valid--;
    }
}

/* data_problems_merge, with the problems of `extra` (all on one line) placed after src's
 * problems of lines up to theirs, so the list stays in line order. */
static int merge_in_order(struct data_problems *dst, const struct data_problems *src,
                          const struct data_problems *extra)
{
    if (extra->len == 0)
        return data_problems_merge(dst, src);
    struct data_problems all = {.limit = src->len + extra->len};
    uint64_t at = extra->items[0].line;
    size_t i = 0;
    int rc = 0;
    for (; rc == 0 && i < src->len && src->items[i].line <= at; i++)
        rc = data_problems_add(&all, src->items[i].line, src->items[i].column,
                               src->items[i].severity, "%s", src->items[i].message);
    for (size_t k = 0; rc == 0 && k < extra->len; k++)
        rc = data_problems_add(&all, extra->items[k].line, extra->items[k].column,
                               extra->items[k].severity, "%s", extra->items[k].message);
    for (; rc == 0 && i < src->len; i++)
        rc = data_problems_add(&all, src->items[i].line, src->items[i].column,
                               src->items[i].severity, "%s", src->items[i].message);
    all.errors = src->errors + extra->errors;
    all.warnings = src->warnings + extra->warnings;
    if (rc == 0)
        rc = data_problems_merge(dst, &all);
    data_problems_free(&all);
    return rc;
}

/* Waits for the oldest in-flight job and folds it into its file's report. */
static int merge_oldest(struct scan *s, struct fj_err *err)
{
    struct job *j = s->inflight[s->ihead];
    pthread_mutex_lock(&s->pool.mu);
    while (!j->done)
        pthread_cond_wait(&s->pool.done_cv, &s->pool.mu);
    pthread_mutex_unlock(&s->pool.mu);
    s->ihead = (s->ihead + 1) % s->icap;
    s->ilen--;
    int rc = 0;
    if (j->file_end) {
        rc = finish_file(s, j->file, err);
    } else if (j->rc != 0) {
        rc = fj_err_set(err, j->rc, "%s", j->err.msg);
    } else {
        struct data_file_report *r = &s->reports[j->file];
        r->lines += j->lines;
        r->examples += j->examples;
        r->valid += j->valid;
        struct data_problems mismatch = {.limit = 1};
        if (apply_format_rule(s, j, &mismatch) != 0 ||
            data_hist_merge(&s->totals[j->file], &j->total) != 0 ||
            data_hist_merge(&s->assistants[j->file], &j->assistant) != 0 ||
            merge_in_order(&r->problems, &j->probs, &mismatch) != 0)
            rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        data_problems_free(&mismatch);
    }
    job_put(s, j);
    return rc;
}

/* Queues j: markers are done at once, blocks go to the workers. */
static int submit(struct scan *s, struct job *j, struct fj_err *err)
{
    while (s->ilen == s->icap) {
        int rc = merge_oldest(s, err);
        if (rc != 0) {
            job_put(s, j);
            return rc;
        }
    }
    s->inflight[(s->ihead + s->ilen) % s->icap] = j;
    s->ilen++;
    pthread_mutex_lock(&s->pool.mu);
    if (j->file_end) {
        j->done = true;
    } else {
        s->pool.queue[(s->pool.qhead + s->pool.qlen) % s->pool.qcap] = j;
        s->pool.qlen++;
        pthread_cond_signal(&s->pool.work_cv);
    }
    pthread_mutex_unlock(&s->pool.mu);
    return 0;
}

static int read_file(struct scan *s, size_t f, const char *path, struct fj_err *err)
{
    struct data_file_report *r = &s->reports[f];
    struct fj_err open_err = {0};
    struct data_reader *rd = data_reader_open(path, s->opts->max_line, &open_err);
    if (rd == NULL) {
        if (open_err.code == FJ_ERR_NOMEM)
            return fj_err_set(err, FJ_ERR_NOMEM, "%s", open_err.msg);
        if (data_problems_add(&r->problems, 0, 0, DATA_ERROR, "%s", open_err.msg) != 0)
            return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    }
    r->opened = rd != NULL;
    int rc = 0;
    while (rd != NULL) {
        struct job *j = job_get(s, f);
        if (j == NULL) {
            rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
            break;
        }
        struct fj_err read_err = {0};
        int got = data_reader_next(rd, &j->block, BLOCK_TARGET, &read_err);
        if (got <= 0) {
            job_put(s, j);
            if (got == FJ_ERR_NOMEM)
                rc = fj_err_set(err, FJ_ERR_NOMEM, "%s", read_err.msg);
            else if (got < 0 &&
                     data_problems_add(&r->problems, 0, 0, DATA_ERROR, "%s", read_err.msg) != 0)
                rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
            break;
        }
        if ((rc = submit(s, j, err)) != 0)
            break;
    }
    if (rd != NULL)
        r->bytes = data_reader_bytes(rd);
    data_reader_close(rd);
    if (rc != 0)
        return rc;
    struct job *end = job_get(s, f);
    if (end == NULL)
        return fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
    end->file_end = true;
    return submit(s, end, err);
}

static void scan_stop(struct scan *s)
{
    pthread_mutex_lock(&s->pool.mu);
    s->pool.stop = true;
    pthread_cond_broadcast(&s->pool.work_cv);
    pthread_mutex_unlock(&s->pool.mu);
    for (int t = 0; t < s->n_threads; t++)
        pthread_join(s->threads[t], NULL);
}

int data_scan_files(const char *const *paths, const bool *training, size_t n,
                    const struct data_scan_opts *opts, struct data_file_report *reports,
                    struct fj_err *err)
{
    struct scan s = {0};
    int threads = opts->threads < 1 ? 1 : opts->threads;
    s.opts = opts;
    s.reports = reports;
    s.icap = 2 * (size_t)threads + 2;
    s.inflight = calloc(s.icap, sizeof *s.inflight);
    s.pool.qcap = s.icap;
    s.pool.queue = calloc(s.icap, sizeof *s.pool.queue);
    s.pool.opts = opts;
    s.threads = calloc((size_t)threads, sizeof *s.threads);
    s.totals = calloc(n ? n : 1, sizeof *s.totals);
    s.assistants = calloc(n ? n : 1, sizeof *s.assistants);
    s.rules = calloc(n ? n : 1, sizeof *s.rules);
    int rc = 0;
    if (!s.inflight || !s.pool.queue || !s.threads || !s.totals || !s.assistants || !s.rules) {
        rc = fj_err_set(err, FJ_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t f = 0; f < n; f++) {
        memset(&reports[f], 0, sizeof reports[f]);
        reports[f].path = paths[f];
        reports[f].training = training ? training[f] : true;
        reports[f].problems.limit = opts->max_problems;
    }
    pthread_mutex_init(&s.pool.mu, NULL);
    pthread_cond_init(&s.pool.work_cv, NULL);
    pthread_cond_init(&s.pool.done_cv, NULL);
    for (; s.n_threads < threads; s.n_threads++) {
        if (pthread_create(&s.threads[s.n_threads], NULL, worker, &s.pool) != 0) {
            rc = fj_err_set(err, FJ_ERR_NOMEM, "cannot start worker threads");
            break;
        }
    }
    for (size_t f = 0; rc == 0 && f < n; f++)
        rc = read_file(&s, f, paths[f], err);
    while (rc == 0 && s.ilen > 0)
        rc = merge_oldest(&s, err);
    /* On failure, let the workers finish what they hold before the jobs are freed. */
    scan_stop(&s);
    while (s.ilen > 0) {
        job_put(&s, s.inflight[s.ihead]);
        s.ihead = (s.ihead + 1) % s.icap;
        s.ilen--;
    }
    pthread_mutex_destroy(&s.pool.mu);
    pthread_cond_destroy(&s.pool.work_cv);
    pthread_cond_destroy(&s.pool.done_cv);
out:
    while (s.free_jobs != NULL) {
        struct job *j = s.free_jobs;
        s.free_jobs = j->next_free;
        job_free(j);
    }
    for (size_t f = 0; f < n && s.totals && s.assistants; f++) {
        data_hist_free(&s.totals[f]);
        data_hist_free(&s.assistants[f]);
    }
    free(s.totals);
    free(s.assistants);
    free(s.rules);
    free(s.inflight);
    free(s.pool.queue);
    free(s.threads);
    return rc;
}

void data_file_report_free(struct data_file_report *r)
{
    if (r == NULL)
        return;
    data_problems_free(&r->problems);
}
