/* chat_dump.c - drives forja's chat templates for tests/chat/jinja_parity.mjs, which compares
 * the results with @huggingface/jinja, transformers.js and tiktoken.
 *
 *   chat_dump < requests.jsonl > results.jsonl
 *
 * One JSON request per line, one JSON result per line:
 *   {"op":"render", "template":T, "ctx":{...}}
 *       -> {"ok":true, "text":S} | {"ok":false, "code":"invalid", "msg":M}
 *   {"op":"conversation", "template":T, "messages":[...], "bos":S|null, "eos":S|null}
 *       -> {"ok":true, "text":S, "spans":[[begin, end, train], ...]} (byte offsets)
 *   {"op":"tokenize", ...conversation fields..., "encoding":NAME | "hf":PATH,
 *    "special":{"<|im_start|>":100264, ...}}
 *       -> the conversation result plus "ids":[...], "mask":[...]
 *   {"op":"chatml"} -> {"ok":true, "text":the built-in ChatML template}
 * A failure's "stage" says where it happened: "parse", "render" or "tokenize".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"

static json_t *failure(const char *stage, const struct fj_err *err)
{
    return json_pack("{s:b,s:s,s:s,s:s}", "ok", 0, "stage", stage, "code", fj_code_name(err->code),
                     "msg", err->msg);
}

static json_t *text_json(const struct fj_buf *b)
{
    json_t *s = json_stringn(b->data ? b->data : "", b->len);
    return s != NULL ? s : json_string("<invalid UTF-8>");
}

/* Encodings are loaded once per distinct request (a tokenizer.json takes a while). */
#define CACHE_MAX 8
static struct {
    char *key;
    struct tok_encoding *enc;
} cache[CACHE_MAX];

static struct tok_encoding *load_encoding(const json_t *req, struct fj_err *err)
{
    const char *name = json_string_value(json_object_get(req, "encoding"));
    const char *hf = json_string_value(json_object_get(req, "hf"));
    struct tok_encoding *enc = hf != NULL ? tok_encoding_open_hf(hf, err)
                                          : tok_encoding_new(name ? name : "cl100k_base", err);
    json_t *special = json_object_get(req, "special");
    const char *key;
    json_t *val;
    if (enc != NULL && json_is_object(special)) {
        json_object_foreach(special, key, val)
        {
            if (tok_encoding_add_special(enc, key, (uint32_t)json_integer_value(val), err) != 0) {
                tok_encoding_free(enc);
                return NULL;
            }
        }
    }
    return enc;
}

static const struct tok_encoding *encoding_for(const json_t *req, struct fj_err *err)
{
    json_t *k = json_pack("{s:O?,s:O?,s:O?}", "encoding", json_object_get(req, "encoding"), "hf",
                          json_object_get(req, "hf"), "special", json_object_get(req, "special"));
    char *key = json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(k);
    for (int i = 0; i < CACHE_MAX && cache[i].key != NULL; i++)
        if (strcmp(cache[i].key, key) == 0) {
            free(key);
            return cache[i].enc;
        }
    struct tok_encoding *enc = load_encoding(req, err);
    for (int i = 0; enc != NULL && i < CACHE_MAX; i++)
        if (cache[i].key == NULL) {
            cache[i].key = key;
            cache[i].enc = enc;
            return enc;
        }
    free(key);
    return enc; /* not cached: leaks for the rest of the run, which is short */
}

static json_t *handle(const json_t *req)
{
    struct fj_err err = {0};
    const char *op = json_string_value(json_object_get(req, "op"));
    if (op == NULL)
        return json_pack("{s:b,s:s,s:s,s:s}", "ok", 0, "stage", "request", "code", "invalid", "msg",
                         "no op");
    if (strcmp(op, "chatml") == 0)
        return json_pack("{s:b,s:s}", "ok", 1, "text", chat_chatml_template());
    json_t *tj = json_object_get(req, "template");
    struct chat_template *t =
        chat_template_new(json_string_value(tj), json_string_length(tj), &err);
    if (t == NULL)
        return failure("parse", &err);
    json_t *res = NULL;
    if (strcmp(op, "render") == 0) {
        struct fj_buf out = {0};
        if (chat_template_render(t, json_object_get(req, "ctx"), &out, &err) != 0)
            res = failure("render", &err);
        else
            res = json_pack("{s:b,s:o}", "ok", 1, "text", text_json(&out));
        fj_buf_free(&out);
    } else {
        struct chat_rendered r = {0};
        const char *bos = json_string_value(json_object_get(req, "bos"));
        const char *eos = json_string_value(json_object_get(req, "eos"));
        if (chat_render_conversation(t, json_object_get(req, "messages"), bos, eos, &r, &err) !=
            0) {
            res = failure("render", &err);
        } else {
            json_t *spans = json_array();
            for (size_t i = 0; i < r.n_spans; i++)
                json_array_append_new(spans,
                                      json_pack("[I,I,i]", (json_int_t)r.spans[i].begin,
                                                (json_int_t)r.spans[i].end, r.spans[i].train));
            res = json_pack("{s:b,s:o,s:o}", "ok", 1, "text", text_json(&r.text), "spans", spans);
            if (strcmp(op, "tokenize") == 0) {
                const struct tok_encoding *enc = encoding_for(req, &err);
                struct chat_tokens ct = {0};
                if (enc == NULL || chat_tokenize(&r, enc, &ct, &err) != 0) {
                    json_decref(res);
                    res = failure("tokenize", &err);
                } else {
                    json_t *ids = json_array(), *mask = json_array();
                    for (size_t i = 0; i < ct.ids.len; i++) {
                        json_array_append_new(ids, json_integer(ct.ids.data[i]));
                        json_array_append_new(mask, json_integer(ct.mask[i]));
                    }
                    json_object_set_new(res, "ids", ids);
                    json_object_set_new(res, "mask", mask);
                }
                chat_tokens_free(&ct);
            }
        }
        chat_rendered_free(&r);
    }
    chat_template_free(t);
    return res;
}

int main(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        json_error_t jerr;
        json_t *req = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, &jerr);
        json_t *res = req != NULL ? handle(req)
                                  : json_pack("{s:b,s:s,s:s,s:s}", "ok", 0, "stage", "request",
                                              "code", "invalid", "msg", jerr.text);
        char *s = json_dumps(res, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (s == NULL) {
            fprintf(stderr, "chat_dump: cannot write a result\n");
            return 2;
        }
        puts(s);
        free(s);
        json_decref(res);
        json_decref(req);
    }
    free(line);
    for (int i = 0; i < CACHE_MAX; i++) {
        free(cache[i].key);
        tok_encoding_free(cache[i].enc);
    }
    return 0;
}
