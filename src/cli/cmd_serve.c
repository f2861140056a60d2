/* cmd_serve.c - `forja serve`: the fine-tuning service (src/api over src/svc over src/store)
 * on one data directory, configured by options or FORJA_* variables, until SIGTERM or
 * Ctrl-C. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "cli/cli.h"
#include "model/folder.h"
#include "store/store.h"
#include "svc/svc.h"

struct serve_opts {
    const char *host;
    int port, threads, max_jobs, train_threads, keep, timeout, nice;
    int infer_threads, max_batch;
    long long max_upload_mb, infer_memory_mb;
    const char *org;
    bool quiet;
};

static void log_line(void *ctx, const char *line)
{
    const bool *quiet = ctx;
    if (quiet && *quiet)
        return;
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    fprintf(stderr, "%s %s\n", ts, line);
}

static void log_always(void *ctx, const char *line)
{
    (void)ctx;
    log_line(NULL, line);
}

/* An option, else its FORJA_* variable, else the default; -1 after printing an error. */
static long long number(const struct cli_cmd *cmd, const struct cli_args *a, const char *name,
                        const char *env, long long def, long long min, long long max)
{
    const char *v = cli_get(cmd, a, name);
    if (!v)
        v = getenv(env);
    if (!v || !*v)
        return def;
    long long x = cli_parse_count(name, v, max);
    if (x < 0)
        return -1;
    if (x < min) {
        fprintf(stderr, "forja serve: --%s must be at least %lld\n", name, min);
        return -1;
    }
    return x;
}

static const char *text(const struct cli_cmd *cmd, const struct cli_args *a, const char *name,
                        const char *env, const char *def)
{
    const char *v = cli_get(cmd, a, name);
    if (!v)
        v = getenv(env);
    return v && *v ? v : def;
}

static int parse_opts(const struct cli_cmd *cmd, const struct cli_args *a, struct serve_opts *o)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    long long v;
    o->host = text(cmd, a, "host", "FORJA_HOST", "127.0.0.1");
    o->org = text(cmd, a, "org", "FORJA_ORG", "forja");
    o->quiet = cli_has(cmd, a, "quiet");
#define NUM(field, name, env, def, min, max)                                                       \
    if ((v = number(cmd, a, name, env, def, min, max)) < 0)                                        \
        return CLI_USAGE;                                                                          \
    o->field = (int)v;
    NUM(port, "port", "FORJA_PORT", 8080, 0, 65535)
    NUM(threads, "http-threads", "FORJA_HTTP_THREADS", 4, 1, 256)
    NUM(max_jobs, "max-jobs", "FORJA_MAX_JOBS", ncpu > 2 ? ncpu / 2 : 1, 1, 256)
    NUM(train_threads, "train-threads", "FORJA_TRAIN_THREADS", 0, 0, 1024)
    NUM(keep, "keep-checkpoints", "FORJA_KEEP_CHECKPOINTS", 3, 1, 1000)
    NUM(timeout, "timeout", "FORJA_TIMEOUT", 60, 1, 86400)
    NUM(nice, "worker-nice", "FORJA_WORKER_NICE", 10, 0, 19)
    NUM(infer_threads, "infer-threads", "FORJA_INFER_THREADS", 0, 0, 1024)
    NUM(max_batch, "max-batch", "FORJA_MAX_BATCH", 64, 1, 1024)
#undef NUM
    long long phys_mb = (long long)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE) >> 20;
    if ((o->infer_memory_mb = number(cmd, a, "infer-memory-mb", "FORJA_INFER_MEMORY_MB",
                                     phys_mb > 2 ? phys_mb / 2 : 1024, 16, 1LL << 30)) < 0)
        return CLI_USAGE;
    if ((o->max_upload_mb =
             number(cmd, a, "max-upload-mb", "FORJA_MAX_UPLOAD_MB", 1024, 1, 1 << 24)) < 0)
        return CLI_USAGE;
    if (!store_name_valid(o->org, 1, 64)) {
        fprintf(stderr, "forja serve: --org is 1 to 64 letters, digits, - and _\n");
        return CLI_USAGE;
    }
    return CLI_OK;
}

/* Aliases: the defaults (every OpenAI name -> the built-in model) unless --no-default-aliases,
 * then FORJA_ALIASES ("a=b,c=d") and each --alias NAME=MODEL. */
static json_t *aliases(const struct cli_cmd *cmd, const struct cli_args *a)
{
    json_t *o = cli_has(cmd, a, "no-default-aliases") ? json_object()
                                                      : api_default_aliases(MODEL_BUILTIN_NAME);
    int alias_opt = cli_opt_index(cmd, "alias");
    const char *env = getenv("FORJA_ALIASES");
    char *copy = env ? strdup(env) : NULL;
    char *save = NULL;
    for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (eq && eq != tok && eq[1]) {
            *eq = '\0';
            json_object_set_new(o, tok, json_string(eq + 1));
        }
    }
    free(copy);
    for (size_t i = 0; i < a->n; i++) {
        if (a->items[i].opt != alias_opt)
            continue;
        const char *v = a->items[i].value;
        const char *eq = strchr(v, '=');
        if (!eq || eq == v || !eq[1]) {
            fprintf(stderr, "forja serve: --alias is NAME=MODEL, not '%s'\n", v);
            json_decref(o);
            return NULL;
        }
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(eq - v), v);
        json_object_set_new(o, name, json_string(eq + 1));
    }
    return o;
}

static int first_key(struct store *st)
{
    int n = 0;
    struct fj_err err = {0};
    if (store_key_count(st, &n, &err) != 0) {
        fprintf(stderr, "forja serve: %s\n", err.msg);
        return CLI_FAILURE;
    }
    if (n > 0)
        return CLI_OK;
    char *key = NULL;
    if (store_key_create(st, "first", &key, NULL, &err) != 0) {
        fprintf(stderr, "forja serve: %s\n", err.msg);
        return CLI_FAILURE;
    }
    printf("API key: %s\n(created because the data directory had none; it is shown only now: "
           "`forja keys create` makes more, `forja keys revoke` removes one)\n",
           key);
    free(key);
    return CLI_OK;
}

static void print_config(const struct serve_opts *o, const char *dir, const json_t *al,
                         const char *exe)
{
    printf("forja serve\n");
    printf("  data directory   %s\n", dir);
    printf("  listen           %s:%d\n", o->host, o->port);
    printf("  request threads  %d\n", o->threads);
    printf("  jobs at once     %d (training threads per job: %s)\n", o->max_jobs,
           o->train_threads ? "as set" : "all cores");
    printf("  worker niceness  %d\n", o->nice);
    printf("  upload limit     %lld MiB\n", o->max_upload_mb);
    printf("  idle timeout     %d s\n", o->timeout);
    printf("  checkpoints kept %d per job\n", o->keep);
    printf("  inference        %lld MiB for models and caches, %d sequences per batch, "
           "threads: %s\n",
           o->infer_memory_mb, o->max_batch, o->infer_threads ? "as set" : "all cores");
    printf("  organization     %s\n", o->org);
    printf("  aliases          %zu (", json_object_size(al));
    const char *k;
    json_t *v;
    int shown = 0;
    json_object_foreach((json_t *)al, k, v)
    {
        if (shown++ < 3)
            printf("%s%s -> %s", shown > 1 ? ", " : "", k, json_string_value(v));
    }
    printf("%s)\n", shown > 3 ? ", ..." : "");
    printf("  worker           %s train\n", exe);
}

static int serve(const struct serve_opts *o, const char *dir, json_t *al)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        fprintf(stderr, "forja serve: cannot find its own executable\n");
        return CLI_FAILURE;
    }
    exe[n] = '\0';
    struct fj_err err = {0};
    struct store *st = NULL;
    if (store_open(&st, dir, &err) != 0) {
        fprintf(stderr, "forja serve: %s\n", err.msg);
        return CLI_FAILURE;
    }
    /* The built-in model exists before the first job needs it. */
    char models[4096], path[4400];
    snprintf(models, sizeof models, "%s/models", dir);
    if (model_resolve(models, MODEL_BUILTIN_NAME, path, sizeof path, &err) != 0) {
        fprintf(stderr, "forja serve: %s\n", err.msg);
        store_close(st);
        return CLI_FAILURE;
    }
    int rc = first_key(st);
    if (rc != CLI_OK) {
        store_close(st);
        return rc;
    }
    print_config(o, dir, al, exe);

    /* Signals go to this thread only (sigwait below), not to the server's threads. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    bool quiet = o->quiet;
    struct svc_config sc = {.worker_exe = exe,
                            .max_jobs = o->max_jobs,
                            .threads = o->train_threads,
                            .keep_checkpoints = o->keep,
                            .worker_nice = o->nice,
                            .log = log_always};
    struct svc *svc = NULL;
    if (svc_start(&svc, st, &sc, &err) != 0) {
        fprintf(stderr, "forja serve: %s\n", err.msg);
        store_close(st);
        return CLI_FAILURE;
    }
    struct infer_config ic = infer_config_default();
    ic.memory_bytes = (uint64_t)o->infer_memory_mb << 20;
    ic.threads = o->infer_threads;
    ic.max_seqs = o->max_batch;
    struct infer *inf = infer_new(&ic, &err);
    if (!inf) {
        fprintf(stderr, "forja serve: %s\n", err.msg);
        svc_stop(svc);
        store_close(st);
        return CLI_FAILURE;
    }
    struct api_config ac = api_config_default();
    ac.inf = inf;
    ac.host = o->host;
    ac.port = o->port;
    ac.threads = o->threads;
    ac.max_upload_bytes = (uint64_t)o->max_upload_mb << 20;
    ac.timeout_s = o->timeout;
    ac.org = o->org;
    ac.aliases = al;
    ac.log = log_line;
    ac.log_ctx = &quiet;
    struct api_server *srv = NULL;
    if (api_start(&srv, st, svc, &ac, &err) != 0) {
        fprintf(stderr, "forja serve: %s\n", err.msg);
        infer_free(inf);
        svc_stop(svc);
        store_close(st);
        return CLI_FAILURE;
    }
    printf("forja serve: listening on http://%s:%d (OpenAI: /v1, Azure OpenAI: /openai)\n", o->host,
           api_port(srv));
    fflush(stdout);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr,
            "forja serve: %s received, stopping (running jobs continue at the next "
            "start)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    api_stop(srv);
    infer_free(inf);
    svc_stop(svc);
    store_close(st);
    return CLI_OK;
}

static int run_serve(const struct cli_cmd *cmd, const struct cli_args *a)
{
    struct serve_opts o = {0};
    int rc = parse_opts(cmd, a, &o);
    if (rc != CLI_OK)
        return rc;
    json_t *al = aliases(cmd, a);
    if (!al)
        return CLI_USAGE;
    rc = serve(&o, cli_data_dir(cmd, a), al);
    json_decref(al);
    return rc;
}

static const struct cli_opt serve_opts[] = {
    {"host", "ADDR", "IPv4 address to listen on (default 127.0.0.1; $FORJA_HOST)."},
    {"port", "N", "Port to listen on; 0 picks a free one (default 8080; $FORJA_PORT)."},
    {"max-jobs", "N",
     "Training jobs run at once; more wait in the queue (default: half the cores, at least 1; "
     "$FORJA_MAX_JOBS)."},
    {"train-threads", "N",
     "Compute threads of each training job (default: all cores; $FORJA_TRAIN_THREADS)."},
    {"worker-nice", "N",
     "Niceness of the training workers, 0 to 19: training yields the cores to requests "
     "(default 10; $FORJA_WORKER_NICE)."},
    {"http-threads", "N", "Threads answering requests (default 4; $FORJA_HTTP_THREADS)."},
    {"max-upload-mb", "N",
     "Largest upload in MiB; a larger one is refused with 413 (default 1024; "
     "$FORJA_MAX_UPLOAD_MB)."},
    {"timeout", "S", "Idle connections are closed after S seconds (default 60; $FORJA_TIMEOUT)."},
    {"keep-checkpoints", "N",
     "Checkpoints kept per job, the newest (default 3; $FORJA_KEEP_CHECKPOINTS)."},
    {"org", "NAME",
     "The organization in fine-tuned model names ft:BASE:ORG:SUFFIX:ID (default forja; "
     "$FORJA_ORG)."},
    {"alias", "NAME=MODEL",
     "Make NAME mean MODEL in jobs (repeatable; also $FORJA_ALIASES=\"a=b,c=d\"). By default "
     "gpt-4o, gpt-4o-mini, gpt-35-turbo, gpt-4.1-mini and the other OpenAI names mean the "
     "built-in model."},
    {"no-default-aliases", NULL, "Start without the default aliases."},
    {"infer-memory-mb", "N",
     "Memory for inference in MiB: loaded models, adapters and every running request's KV "
     "cache. Idle models are unloaded (least recently used first) to make room; a deployment "
     "that cannot fit fails with a clear error (default: half the machine's memory; "
     "$FORJA_INFER_MEMORY_MB)."},
    {"infer-threads", "N",
     "Compute threads of each loaded model (default: all cores; "
     "$FORJA_INFER_THREADS)."},
    {"max-batch", "N",
     "Sequences a model decodes together in one step; more requests wait their turn "
     "(default 64; $FORJA_MAX_BATCH)."},
    {"quiet", NULL, "Do not log each request."},
    CLI_OPT_DATA_DIR,
    {NULL, NULL, NULL},
};

const struct cli_cmd cli_cmd_serve = {
    "serve",
    "",
    "Run the fine-tuning service (OpenAI and Azure OpenAI APIs)",
    "Serves the OpenAI fine-tuning API under /v1 (key in `Authorization: Bearer`) and the "
    "Azure OpenAI one under /openai (key in `api-key`, `api-version` required): files, "
    "fine-tuning jobs with their events, checkpoints and results.csv, and models "
    "(docs/service.md). Everything is kept in the data directory: an SQLite database and the "
    "files' contents. Each job trains in a worker process (`forja train`); jobs run in the "
    "order they were created, --max-jobs at a time, and a job that was running when the "
    "server stopped continues from its newest checkpoint at the next start. If the data "
    "directory has no API key yet, one is made and printed. GET /healthz needs no key; GET "
    "/metrics is in Prometheus' format. Chat completions (/v1/chat/completions, "
    "/openai/deployments/NAME/chat/completions) run on the inference engine: models load on "
    "first use, and deployments are managed in Azure Resource Manager's shape "
    "(/subscriptions/.../deployments/NAME, with a token from `forja token`). One log line per "
    "request goes to standard error. "
    "SIGTERM or Ctrl-C stops the server.",
    serve_opts,
    run_serve,
};
