/* test_store.c - the service's store (src/store): schema and reopening, uploads (limits,
 * abort, a crash's leftovers), file ids reaching paths, pagination, the metadata filter,
 * checkpoints kept, files in use, API keys. The expected values follow from the calls
 * made here (counts, order, ids handed back), not from earlier output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "store/store.h"
#include "test.h"

static char dir[256];

static struct store *open_fresh(void)
{
    struct store *s = NULL;
    struct fj_err err = {0};
    CHECK(store_open(&s, dir, &err) == 0);
    if (err.code)
        fprintf(stderr, "store_open: %s\n", err.msg);
    return s;
}

static json_t *upload(struct store *s, const char *text, const char *name)
{
    struct store_upload *up = NULL;
    json_t *file = NULL;
    struct fj_err err = {0};
    CHECK(store_upload_begin(s, 0, &up, &err) == 0);
    if (!up) {
        fprintf(stderr, "upload: %s\n", err.msg);
        return NULL;
    }
    CHECK(store_upload_write(up, text, strlen(text), NULL) == 0);
    CHECK(store_upload_commit(s, up, name, "fine-tune", NULL, &file, NULL) == 0);
    return file;
}

static void test_schema_and_reopen(void)
{
    struct store *s = open_fresh();
    CHECK(store_schema_version(s) >= 1);
    json_t *f = upload(s, "{\"a\":1}\n", "a.jsonl");
    char id[STORE_ID_MAX];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(f, "id")));
    CHECK_EQ_U(json_integer_value(json_object_get(f, "bytes")), 8);
    CHECK_STR(json_string_value(json_object_get(f, "status")), "processed");
    json_decref(f);
    store_close(s);
    /* Reopened: same schema, the file is still there with its bytes. */
    s = open_fresh();
    CHECK(store_file_get(s, id, &f, NULL) == 0);
    json_decref(f);
    char path[512];
    CHECK(store_file_path(s, id, path, sizeof path) == 0);
    struct fj_buf b = {0};
    CHECK(fj_file_read(path, 1 << 20, &b, NULL) == 0);
    CHECK(b.len == 8 && memcmp(b.data, "{\"a\":1}\n", 8) == 0);
    fj_buf_free(&b);
    store_close(s);
}

static void test_upload_limit_and_abort(void)
{
    struct store *s = open_fresh();
    struct store_upload *up;
    struct fj_err err = {0};
    CHECK(store_upload_begin(s, 10, &up, NULL) == 0);
    CHECK(store_upload_write(up, "12345", 5, NULL) == 0);
    CHECK(store_upload_write(up, "1234567", 7, &err) == FJ_ERR_RANGE);
    json_t *f = NULL;
    CHECK(store_upload_commit(s, up, "x", "fine-tune", NULL, &f, NULL) != 0);
    CHECK(f == NULL);
    /* An abandoned upload leaves nothing in tmp/. */
    CHECK(store_upload_begin(s, 0, &up, NULL) == 0);
    CHECK(store_upload_write(up, "abc", 3, NULL) == 0);
    store_upload_abort(up);
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s/tmp", dir);
    CHECK(rmdir(tmp) == 0); /* empty */
    mkdir(tmp, 0755);
    /* A crash mid-upload leaves a temporary file: the next open removes it. */
    char left[600];
    snprintf(left, sizeof left, "%s/upload-crashed", tmp);
    CHECK(fj_file_write_atomic(left, "partial", 7, NULL) == 0);
    /* Bytes renamed into files/ whose row was never committed go too; recorded ones stay. */
    json_t *kept = upload(s, "{}\n", "kept.jsonl");
    char orphan[600], kept_path[600];
    snprintf(orphan, sizeof orphan, "%s/files/file-NeverRecorded0000000000", dir);
    CHECK(fj_file_write_atomic(orphan, "x", 1, NULL) == 0);
    CHECK(store_file_path(s, json_string_value(json_object_get(kept, "id")), kept_path,
                          sizeof kept_path) == 0);
    /* ... but not while another process or handle has the directory open (a running
     * server's uploads in progress look just the same) */
    struct store *other = NULL;
    CHECK(store_open(&other, dir, NULL) == 0);
    CHECK(fj_file_exists(left) && fj_file_exists(orphan));
    store_close(other);
    store_close(s);
    s = open_fresh();
    CHECK(!fj_file_exists(left));
    CHECK(!fj_file_exists(orphan));
    CHECK(fj_file_exists(kept_path));
    json_decref(kept);
    store_close(s);
}

static void test_ids(void)
{
    char id[STORE_ID_MAX];
    store_new_id("file-", id);
    CHECK(strlen(id) == 5 + 24);
    CHECK(store_id_valid(id, "file-"));
    CHECK(!store_id_valid(id, "ftjob-"));
    CHECK(!store_id_valid("file-../../etc/passwd", "file-"));
    CHECK(!store_id_valid("file-a/b", "file-"));
    CHECK(!store_id_valid("file-", "file-"));
    struct store *s = open_fresh();
    char path[512];
    CHECK(store_file_path(s, "file-..", path, sizeof path) != 0);
    store_close(s);
}

/* A page of a list as JSON, its first and last ids checked against its rows. */
static json_t *docs(int rc, struct store_list *l, bool *more)
{
    CHECK(rc == 0);
    *more = false;
    if (rc != 0)
        return json_array();
    json_t *arr = json_loads(l->data, 0, NULL);
    CHECK(json_is_array(arr));
    size_t n = json_array_size(arr);
    if (n > 0) {
        CHECK_STR(l->first_id, json_string_value(json_object_get(json_array_get(arr, 0), "id")));
        CHECK_STR(l->last_id, json_string_value(json_object_get(json_array_get(arr, n - 1), "id")));
    } else {
        CHECK(l->first_id[0] == '\0' && !l->has_more);
    }
    *more = l->has_more;
    store_list_free(l);
    return arr ? arr : json_array();
}

static json_t *job_doc(const char *id, const char *status, const char *train, json_t *md)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", id, "status", status, "created_at",
                     (json_int_t)1, "training_file", train, "metadata", md ? md : json_null());
}

static void test_jobs_pages_and_filter(void)
{
    struct store *s = open_fresh();
    json_t *spec = json_object();
    char ids[5][STORE_ID_MAX];
    for (int i = 0; i < 5; i++) {
        store_new_id("ftjob-", ids[i]);
        json_t *md = json_pack("{s:s}", "team", i % 2 ? "odd" : "even");
        json_t *doc = job_doc(ids[i], "succeeded", "file-x", md), *existing;
        CHECK(store_job_create(s, doc, spec, NULL, &existing, NULL) == 0);
        CHECK(existing == NULL);
        json_decref(doc);
    }
    /* Newest first, two at a time: 4 3 | 2 1 | 0. */
    struct store_page page = {.after = NULL, .limit = 2};
    json_t *list;
    struct store_list sl;
    bool more;
    int seen = 0, pages = 0;
    char after[STORE_ID_MAX];
    do {
        list = docs(store_job_list(s, NULL, &page, &sl, NULL), &sl, &more);
        for (size_t k = 0; k < json_array_size(list); k++, seen++)
            CHECK_STR(json_string_value(json_object_get(json_array_get(list, k), "id")),
                      ids[4 - seen]);
        if (json_array_size(list)) {
            snprintf(after, sizeof after, "%s",
                     json_string_value(
                         json_object_get(json_array_get(list, json_array_size(list) - 1), "id")));
            page.after = after;
        }
        json_decref(list);
        pages++;
    } while (more && pages < 10);
    CHECK(seen == 5 && pages == 3);
    /* metadata filter: the odd ones (1, 3), newest first. */
    json_t *want = json_pack("{s:s}", "team", "odd");
    page = (struct store_page){.after = NULL, .limit = 20};
    list = docs(store_job_list(s, want, &page, &sl, NULL), &sl, &more);
    CHECK(json_array_size(list) == 2 && !more);
    if (json_array_size(list) == 2) {
        CHECK_STR(json_string_value(json_object_get(json_array_get(list, 0), "id")), ids[3]);
        CHECK_STR(json_string_value(json_object_get(json_array_get(list, 1), "id")), ids[1]);
    }
    json_decref(list);
    json_object_set_new(want, "team", json_string("nobody"));
    list = docs(store_job_list(s, want, &page, &sl, NULL), &sl, &more);
    CHECK(json_array_size(list) == 0);
    json_decref(list);
    json_decref(want);
    /* The same idempotency key gives back the first job. */
    char id2[STORE_ID_MAX];
    store_new_id("ftjob-", id2);
    json_t *doc = job_doc(id2, "queued", "file-y", NULL), *existing = NULL;
    CHECK(store_job_create(s, doc, spec, "key-1", &existing, NULL) == 0 && !existing);
    json_decref(doc);
    char id3[STORE_ID_MAX];
    store_new_id("ftjob-", id3);
    doc = job_doc(id3, "queued", "file-y", NULL);
    CHECK(store_job_create(s, doc, spec, "key-1", &existing, NULL) == 0 && existing);
    if (existing)
        CHECK_STR(json_string_value(json_object_get(existing, "id")), id2);
    json_decref(existing);
    json_decref(doc);
    CHECK(store_job_get(s, id3, &doc, NULL) == FJ_ERR_NOT_FOUND);
    /* The oldest queued job, skipping those being handled. */
    struct store_job_row row;
    bool found;
    CHECK(store_job_next(s, "queued", "[]", &found, &row, NULL) == 0 && found);
    if (found)
        CHECK_STR(row.id, id2);
    store_job_row_free(&row);
    char skip[128];
    snprintf(skip, sizeof skip, "[\"%s\"]", id2);
    CHECK(store_job_next(s, "queued", skip, &found, &row, NULL) == 0 && !found);
    json_decref(spec);
    store_close(s);
}

static void test_file_in_use(void)
{
    struct store *s = open_fresh();
    json_t *f = upload(s, "{}\n", "t.jsonl");
    char fid[STORE_ID_MAX], jid[STORE_ID_MAX];
    snprintf(fid, sizeof fid, "%s", json_string_value(json_object_get(f, "id")));
    json_decref(f);
    store_new_id("ftjob-", jid);
    json_t *doc = job_doc(jid, "running", fid, NULL), *spec = json_object(), *existing;
    CHECK(store_job_create(s, doc, spec, NULL, &existing, NULL) == 0);
    CHECK(store_file_delete(s, fid, NULL) == FJ_ERR_BUSY);
    json_object_set_new(doc, "status", json_string("cancelled"));
    CHECK(store_job_put(s, jid, doc, NULL) == 0);
    CHECK(store_file_delete(s, fid, NULL) == 0);
    CHECK(store_file_get(s, fid, &f, NULL) == FJ_ERR_NOT_FOUND);
    CHECK(store_file_delete(s, fid, NULL) == FJ_ERR_NOT_FOUND);
    json_decref(doc);
    json_decref(spec);
    store_close(s);
}

static void test_events_and_checkpoints(void)
{
    struct store *s = open_fresh();
    char jid[STORE_ID_MAX];
    store_new_id("ftjob-", jid);
    for (int i = 0; i < 25; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "event %d", i);
        CHECK(store_event_add(s, jid, "info", "message", msg, NULL, NULL) == 0);
    }
    struct store_page page = {.limit = 20};
    json_t *list;
    struct store_list sl;
    bool more;
    list = docs(store_event_list(s, jid, &page, &sl, NULL), &sl, &more);
    CHECK(json_array_size(list) == 20 && more);
    CHECK_STR(json_string_value(json_object_get(json_array_get(list, 0), "message")), "event 24");
    json_decref(list);
    /* Checkpoints at steps 10..50, three kept: 50 40 30. Each is a model name until it is
     * dropped: after step 40 the name of step 10 is gone, those of 20..40 remain. */
    for (int step = 10; step <= 50; step += 10) {
        char id[STORE_ID_MAX], name[64];
        store_new_id("ftckpt-", id);
        snprintf(name, sizeof name, "ft:m:o::x:ckpt-step-%d", step);
        json_t *doc = json_pack("{s:s, s:s, s:i}", "id", id, "fine_tuned_model_checkpoint", name,
                                "step_number", step);
        CHECK(store_checkpoint_add(s, jid, step, doc, "/p/model", "base", 3, NULL) == 0);
        CHECK(store_model_get(s, name, NULL, 0, NULL, NULL) == 0);
        if (step == 40) {
            CHECK(store_model_get(s, "ft:m:o::x:ckpt-step-10", NULL, 0, NULL, NULL) ==
                  FJ_ERR_NOT_FOUND);
            CHECK(store_model_get(s, "ft:m:o::x:ckpt-step-20", NULL, 0, NULL, NULL) == 0);
        }
        json_decref(doc);
    }
    /* Deleting the fine-tuned model takes its job's checkpoint names with it, and nothing
     * of another job whose name merely looks alike (LIKE's '_' would have matched). */
    char other[STORE_ID_MAX];
    store_new_id("ftjob-", other);
    CHECK(store_model_add(s, "ft:m:o:a_b:x", jid, "/p/model", "base", false, NULL) == 0);
    CHECK(store_model_add(s, "ft:m:o:aXb:x:ckpt-step-1", other, "/q", "base", true, NULL) == 0);
    CHECK(store_model_delete(s, "ft:m:o:a_b:x", NULL) == 0);
    CHECK(store_model_get(s, "ft:m:o::x:ckpt-step-50", NULL, 0, NULL, NULL) == FJ_ERR_NOT_FOUND);
    CHECK(store_model_get(s, "ft:m:o:aXb:x:ckpt-step-1", NULL, 0, NULL, NULL) == 0);
    list = docs(store_checkpoint_list(s, jid, &page, &sl, NULL), &sl, &more);
    CHECK(json_array_size(list) == 3 && !more);
    CHECK_EQ_U(json_integer_value(json_object_get(json_array_get(list, 0), "step_number")), 50);
    CHECK_EQ_U(json_integer_value(json_object_get(json_array_get(list, 2), "step_number")), 30);
    json_decref(list);
    store_close(s);
}

static void test_keys(void)
{
    struct store *s = open_fresh();
    char *k1 = NULL, *k2 = NULL;
    json_t *info = NULL;
    CHECK(store_key_create(s, "ci", &k1, &info, NULL) == 0);
    CHECK(store_key_create(s, NULL, &k2, NULL, NULL) == 0);
    CHECK(k1 && strncmp(k1, "fj-", 3) == 0 && strlen(k1) == 43);
    CHECK(k1 && k2 && strcmp(k1, k2) != 0);
    CHECK(store_key_check(s, k1) && store_key_check(s, k2));
    CHECK(!store_key_check(s, "fj-wrong"));
    CHECK(!store_key_check(s, ""));
    CHECK(store_key_revoke(s, json_string_value(json_object_get(info, "id")), NULL) == 0);
    CHECK(!store_key_check(s, k1) && store_key_check(s, k2));
    int n = 0;
    CHECK(store_key_count(s, &n, NULL) == 0);
    CHECK(n >= 1);
    /* Only hashes are stored: the key's text is nowhere in the database file. */
    char db[512];
    snprintf(db, sizeof db, "%s/forja.db", dir);
    store_close(s);
    struct fj_buf b = {0};
    CHECK(fj_file_read(db, 64 << 20, &b, NULL) == 0);
    CHECK(b.data && !memmem(b.data, b.len, k2 + 3, 40));
    fj_buf_free(&b);
    free(k1);
    free(k2);
    json_decref(info);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/forja-test-store-%d", (int)getpid());
    fj_remove_tree(dir, NULL);
    RUN(test_schema_and_reopen);
    RUN(test_upload_limit_and_abort);
    RUN(test_ids);
    RUN(test_jobs_pages_and_filter);
    RUN(test_file_in_use);
    RUN(test_events_and_checkpoints);
    RUN(test_keys);
    fj_remove_tree(dir, NULL);
    return TEST_DONE();
}
