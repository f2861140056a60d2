/* text.c - turning generated tokens into text that can be handed out: stop strings matched
 * across token boundaries (and left out), UTF-8 characters never split between deltas.
 *
 * A token's bytes join the pending text. Anything before the first occurrence of a stop
 * string is final; without one, the pending text is handed out except its longest tail that
 * is the start of a stop string (it may still become one) and an unfinished character. Since
 * what is kept back is always shorter than every stop string, a stop string that spans
 * several tokens is found whole in the pending text.
 */
#include <stdlib.h>
#include <string.h>

#include "infer/infer_internal.h"

/* The length of a valid UTF-8 sequence at s (n bytes available), 0 if invalid, or -1 if
 * it is a valid start cut short by the end. */
static int utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    int len = c < 0x80                ? 1
              : c >= 0xC2 && c < 0xE0 ? 2
              : c >= 0xE0 && c < 0xF0 ? 3
              : c >= 0xF0 && c < 0xF5 ? 4
                                      : 0;
    if (len <= 1)
        return len;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n)
            return -1;
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        if (i == 1 && ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0) ||
                       (c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90)))
            return 0;
    }
    return len;
}

int infer_utf8_clean(const uint8_t *s, size_t n, struct fj_buf *out)
{
    static const char replacement[] = "\xEF\xBF\xBD";
    size_t i = 0, run = 0; /* run: valid bytes not yet copied, ending at i */
    while (i < n) {
        int len = utf8_seq(s + i, n - i);
        if (len > 0) {
            i += (size_t)len;
            run += (size_t)len;
            continue;
        }
        if (fj_buf_append(out, s + i - run, run) != 0 || fj_buf_append(out, replacement, 3) != 0)
            return FJ_ERR_NOMEM;
        run = 0;
        i++;
    }
    return fj_buf_append(out, s + n - run, run);
}

/* Bytes at the end of s (n) that start a character not complete yet. */
static size_t unfinished_tail(const uint8_t *s, size_t n)
{
    for (size_t k = 1; k <= 3 && k <= n; k++)
        if ((s[n - k] & 0xC0) != 0x80) /* a start byte (or ASCII) k bytes from the end */
            return utf8_seq(s + n - k, k) < 0 ? k : 0;
    return 0;
}

/* The longest tail of s (n) that is a proper prefix of a stop string. */
static size_t stop_prefix_tail(const uint8_t *s, size_t n, char *const *stop, int n_stop)
{
    size_t best = 0;
    for (int i = 0; i < n_stop; i++) {
        size_t sl = strlen(stop[i]);
        for (size_t k = sl - 1 < n ? sl - 1 : n; k > best; k--)
            if (memcmp(s + n - k, stop[i], k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

/* The first occurrence of any stop string in s (n), or n. */
static size_t first_stop(const uint8_t *s, size_t n, char *const *stop, int n_stop)
{
    size_t at = n;
    for (int i = 0; i < n_stop; i++) {
        size_t sl = strlen(stop[i]);
        for (size_t p = 0; sl && p + sl <= n && p < at; p++)
            if (memcmp(s + p, stop[i], sl) == 0) {
                at = p;
                break;
            }
    }
    return at;
}

int infer_text_push(struct infer_text *t, const uint8_t *bytes, size_t len, char *const *stop,
                    int n_stop, bool final, char **out, size_t *out_len, bool *stopped)
{
    *out = NULL;
    *out_len = 0;
    *stopped = false;
    if (len && fj_buf_append(&t->pending, bytes, len) != 0)
        return FJ_ERR_NOMEM;
    const uint8_t *p = (const uint8_t *)t->pending.data;
    size_t n = t->pending.len, give = n;
    size_t at = p ? first_stop(p, n, stop, n_stop) : 0;
    if (p && at < n) {
        give = at;
        *stopped = true;
    } else if (p && !final) {
        give = n - stop_prefix_tail(p, n, stop, n_stop);
        give -= unfinished_tail(p, give);
    }
    if (give > 0) {
        struct fj_buf clean = {0};
        if (infer_utf8_clean(p, give, &clean) != 0 || fj_buf_append(&clean, "", 1) != 0) {
            fj_buf_free(&clean);
            return FJ_ERR_NOMEM;
        }
        *out = clean.data;
        *out_len = clean.len - 1;
    }
    size_t keep = *stopped ? 0 : n - give;
    if (keep)
        memmove(t->pending.data, t->pending.data + give, keep);
    t->pending.len = keep;
    return 0;
}

void infer_text_free(struct infer_text *t)
{
    fj_buf_free(&t->pending);
    json_decref(t->logprobs);
    t->logprobs = NULL;
}
