/* chat.h - chat templates: the Jinja subset Hugging Face models use to turn a conversation
 * into text, and the rendering of conversations for training (text, loss spans, tokens).
 *
 * A model folder's tokenizer_config.json carries a `chat_template` written in Jinja. forja
 * renders it byte for byte as npm @huggingface/jinja 0.5.11 does (the reference its tests
 * compare with; transformers.js uses it for apply_chat_template), quirks included: for
 * example `strip('x')` ignores its argument and trims whitespace, `{% break %}` drops the
 * output of the iteration it ends, and numbers print as JavaScript prints them. What the
 * subset holds, and what it refuses, is in docs/chat-templates.md. Anything outside it is
 * an error, never different text.
 *
 *     struct fj_err err = {0};
 *     struct chat_template *t = chat_template_new(src, strlen(src), &err);
 *     json_t *ctx = json_pack("{s:[{s:s,s:s}],s:b}", "messages", "role", "user",
 *                             "content", "hi", "add_generation_prompt", 1);
 *     struct fj_buf out = {0};
 *     chat_template_render(t, ctx, &out, &err);   // out.data = "<|im_start|>user\nhi..."
 *
 * Thread safety: a parsed template is immutable; any number of threads may render it at
 * once (each render has its own scratch memory). There is no global state.
 *
 * Limits: a template is at most 1 MiB; expressions nest at most 100 deep; a render runs at
 * most 20 million evaluation steps and 64 nested macro calls, writes at most 64 MiB and
 * uses at most 256 MiB of scratch memory. Going past one fails with FJ_ERR_RANGE, so a
 * hostile template can neither crash nor hang the process.
 */
#ifndef FJ_CHAT_CHAT_H
#define FJ_CHAT_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/err.h"
#include "tok/tok.h"

struct chat_template;

/* Parses a template (src[0..len), UTF-8; it need not be NUL-terminated and is copied).
 * Returns NULL and fills err on failure: FJ_ERR_FORMAT for a syntax error or a construct
 * outside the subset ("chat template 3:14: ..." with the 1-based line and column in the
 * source, and the construct's name), FJ_ERR_UTF8 for invalid UTF-8, FJ_ERR_RANGE for a
 * template over 1 MiB or nested too deeply, FJ_ERR_NOMEM. The caller owns the result and
 * frees it with chat_template_free. */
struct chat_template *chat_template_new(const char *src, size_t len, struct fj_err *err);

/* Frees a template. NULL is allowed. */
void chat_template_free(struct chat_template *t);

/* Renders t with ctx, a JSON object whose members are the template's variables (messages,
 * add_generation_prompt, bos_token, eos_token, tools, ...; NULL means none), and appends
 * the text to out. ctx is only read; numbers in it behave as JavaScript numbers (1.0 is the
 * integer 1). A member named like a global (true, none, range, namespace, raise_exception,
 * ...) is an error, as in @huggingface/jinja.
 * Returns 0, or on failure a negative code with out unchanged: FJ_ERR_INVALID when the
 * template fails at run time (a type error, an unsupported operation, or raise_exception,
 * whose message becomes err's message as is), FJ_ERR_RANGE when a limit is hit,
 * FJ_ERR_NOMEM. */
int chat_template_render(const struct chat_template *t, const json_t *ctx, struct fj_buf *out,
                         struct fj_err *err);

/* The ChatML template forja uses for models without one (the text of the template, for
 * chat_template_new). Static, borrowed; lives forever. */
const char *chat_chatml_template(void);

/* ---- conversations for training -------------------------------------------------------
 *
 * The training-span rule (docs/chat-templates.md; tests/chat/jinja_parity.mjs mirrors it).
 * With messages m[0..n), write R(k, g) for the template rendered with messages m[0..k),
 * add_generation_prompt g, and bos_token / eos_token (left undefined when NULL):
 *   - the text is T = R(n, false);
 *   - for each assistant message i (role "assistant"), P_i = R(i, true) and Q_i = R(i+1,
 *     false). P_i must be a prefix of Q_i and Q_i a prefix of T, and each P_i must not
 *     start before the previous Q ends; otherwise the template is not prefix-stable for
 *     this conversation and the call fails (FJ_ERR_INVALID naming the message and the byte
 *     where the texts part);
 *   - [len P_i, len Q_i) is message i's span: trainable when its "weight" is absent or 1,
 *     not when it is 0 (any other weight is FJ_ERR_INVALID);
 *   - the text between those spans (system and user turns, assistant headers, what the
 *     template adds at the end) forms the other spans, none trainable.
 * Empty spans are left out; adjacent spans are not merged, so text is cut at every
 * assistant message's boundaries. A message whose content is an array of parts
 * {"type":"text","text":...} is rendered with the parts' texts joined with no separator;
 * any other kind of part is FJ_ERR_INVALID. Other fields reach the template unchanged.
 * ------------------------------------------------------------------------------------- */

struct chat_span {
    size_t begin, end; /* byte offsets into the text, begin < end */
    int train;         /* 1: an assistant turn with weight 1 */
};

/* A conversation rendered for training. spans cover text in order with no gaps. */
struct chat_rendered {
    struct fj_buf text;
    struct chat_span *spans; /* owned */
    size_t n_spans;
};

/* Frees r's text and spans and zeroes it. NULL is allowed. */
void chat_rendered_free(struct chat_rendered *r);

/* Renders messages (a JSON array of message objects) by the rule above into out, which must
 * be zeroed or freed; on failure out is left empty. bos_token / eos_token may be NULL.
 * Errors: FJ_ERR_INVALID (messages not an array of objects, bad content parts, bad weight,
 * a template error, or a template that is not prefix-stable), FJ_ERR_RANGE, FJ_ERR_NOMEM. */
int chat_render_conversation(const struct chat_template *t, const json_t *messages,
                             const char *bos_token, const char *eos_token,
                             struct chat_rendered *out, struct fj_err *err);

/* Token ids and a 0/1 loss mask, one mask byte per id: mask[k] belongs to ids.data[k], so
 * the mask's length is ids.len. Owned by the caller; mask grows like ids (mask_cap bytes). */
struct chat_tokens {
    struct tok_ids ids;
    uint8_t *mask;
    size_t mask_cap;
};

/* Frees ids and mask and zeroes ct. NULL is allowed. */
void chat_tokens_free(struct chat_tokens *ct);

/* Tokenizes r span by span: each span's text is encoded on its own with special tokens
 * recognised (TOK_SPECIAL_ALLOW), and each of its tokens gets mask 1 if the span is
 * trainable, else 0. ids and mask are appended to out (whose mask must hold one byte per
 * id already there). Returns 0 or a negative code (FJ_ERR_UTF8, FJ_ERR_NOMEM); on failure
 * out keeps its old length. */
int chat_tokenize(const struct chat_rendered *r, const struct tok_encoding *enc,
                  struct chat_tokens *out, struct fj_err *err);

#endif
