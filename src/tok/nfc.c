/* nfc.c - Unicode Normalization Form C (UAX #15): canonical decomposition, canonical
 * ordering, canonical composition.
 *
 * Text is cut before every code point without the "may change" flag (nfc_table.c): such a
 * code point is a starter that nothing before it can compose with or reorder across, so
 * the pieces normalize independently. Runs of unflagged code points (all of ASCII, most
 * text) are copied as they are; only the short stretches around flagged ones go through the
 * three steps. Canonical ordering sorts runs of non-starters by combining class stably, by
 * counting when a run is long, so no input makes it quadratic.
 */
#include "tok/nfc.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/utf8.h"

/* Hangul syllables are composed and decomposed by arithmetic (Unicode 3.12). */
#define S_BASE  0xAC00u
#define L_BASE  0x1100u
#define V_BASE  0x1161u
#define T_BASE  0x11A7u
#define L_COUNT 19u
#define V_COUNT 21u
#define T_COUNT 28u
#define N_COUNT (V_COUNT * T_COUNT)
#define S_COUNT (L_COUNT * N_COUNT)

static inline bool flagged(uint32_t cp)
{
    return cp >= tok_nfc_min_flagged && (tok_nfc_info(cp) & 0x80);
}

static inline uint8_t ccc(uint32_t cp)
{
    return tok_nfc_info(cp) & 0x7F;
}

bool tok_nfc_quick(const uint8_t *s, size_t n)
{
    /* Every flagged code point is >= U+0300, whose UTF-8 lead byte is >= 0xCC. */
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0xCC)
            continue;
        int len;
        if (flagged(fj_utf8_decode(s + i, &len)))
            return false;
        i += (size_t)len - 1;
    }
    return true;
}

/* The code points of one stretch, with their class ranks. */
struct cps {
    uint32_t *cp;
    uint8_t *cls;
    size_t len, cap;
};

static int cps_push(struct cps *c, uint32_t cp)
{
    if (c->len == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        uint32_t *p = realloc(c->cp, cap * sizeof *p);
        if (p == NULL)
            return FJ_ERR_NOMEM;
        c->cp = p;
        uint8_t *q = realloc(c->cls, cap);
        if (q == NULL)
            return FJ_ERR_NOMEM;
        c->cls = q;
        c->cap = cap;
    }
    c->cls[c->len] = ccc(cp);
    c->cp[c->len++] = cp;
    return 0;
}

static long find_decomp(uint32_t cp)
{
    size_t lo = 0, hi = tok_nfc_n_decomp;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (tok_nfc_decomp_cp[mid] < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < tok_nfc_n_decomp && tok_nfc_decomp_cp[lo] == cp ? (long)lo : -1;
}

/* The primary composite of (a, b), or 0. */
static uint32_t compose(uint32_t a, uint32_t b)
{
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE &&
        b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    uint64_t key = ((uint64_t)a << 21) | b;
    size_t lo = 0, hi = tok_nfc_n_pairs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (tok_nfc_pair_key[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < tok_nfc_n_pairs && tok_nfc_pair_key[lo] == key ? tok_nfc_pair_cp[lo] : 0;
}

static int decompose(struct cps *c, uint32_t cp)
{
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE, t = s % T_COUNT;
        int rc = cps_push(c, L_BASE + s / N_COUNT);
        if (rc == 0)
            rc = cps_push(c, V_BASE + (s % N_COUNT) / T_COUNT);
        if (rc == 0 && t != 0)
            rc = cps_push(c, T_BASE + t);
        return rc;
    }
    long k = find_decomp(cp);
    if (k < 0)
        return cps_push(c, cp);
    for (int i = 0; i < tok_nfc_decomp_len[k]; i++)
        if (cps_push(c, tok_nfc_pool[tok_nfc_decomp_off[k] + i]) != 0)
            return FJ_ERR_NOMEM;
    return 0;
}

/* Stable sort of c[a..b) (all non-starters) by class: insertion for short runs, counting
 * for long ones. tmp has room for b - a entries when b - a > 16. */
static void sort_run(struct cps *c, size_t a, size_t b, uint32_t *tmp)
{
    if (b - a <= 16) {
        for (size_t i = a + 1; i < b; i++) {
            uint32_t cp = c->cp[i];
            uint8_t k = c->cls[i];
            size_t j = i;
            for (; j > a && c->cls[j - 1] > k; j--) {
                c->cp[j] = c->cp[j - 1];
                c->cls[j] = c->cls[j - 1];
            }
            c->cp[j] = cp;
            c->cls[j] = k;
        }
        return;
    }
    size_t start[129] = {0};
    for (size_t i = a; i < b; i++)
        start[c->cls[i] + 1]++;
    for (int k = 1; k < 129; k++)
        start[k] += start[k - 1];
    for (size_t i = a; i < b; i++)
        tmp[start[c->cls[i]]++] = c->cp[i];
    for (size_t i = a; i < b; i++) {
        c->cp[i] = tmp[i - a];
        c->cls[i] = ccc(c->cp[i]);
    }
}

static int put_utf8(struct fj_buf *out, uint32_t cp)
{
    uint8_t b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (uint8_t)(0xC0 | (cp >> 6));
        b[1] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (uint8_t)(0xE0 | (cp >> 12));
        b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (uint8_t)(0xF0 | (cp >> 18));
        b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return fj_buf_append(out, b, n);
}

/* Normalizes the stretch s[0..n) through the three steps and appends it to out. */
static int normalize_stretch(const uint8_t *s, size_t n, struct cps *c, struct fj_buf *out)
{
    c->len = 0;
    for (size_t i = 0; i < n;) {
        int len;
        uint32_t cp = fj_utf8_decode(s + i, &len);
        if (decompose(c, cp) != 0)
            return FJ_ERR_NOMEM;
        i += (size_t)len;
    }
    /* Canonical ordering: each maximal run of non-starters, sorted by class. */
    uint32_t *tmp = NULL;
    for (size_t i = 0; i < c->len;) {
        if (c->cls[i] == 0) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < c->len && c->cls[j] != 0)
            j++;
        if (j - i > 16 && tmp == NULL && (tmp = malloc(c->len * sizeof *tmp)) == NULL)
            return FJ_ERR_NOMEM;
        sort_run(c, i, j, tmp);
        i = j;
    }
    free(tmp);
    /* Canonical composition, in place: o is the output length, starter the index of the
     * last starter in the output (or -1), last the class of the last code point written. */
    size_t o = 0;
    long starter = -1;
    for (size_t i = 0; i < c->len; i++) {
        uint32_t cp = c->cp[i];
        uint8_t k = c->cls[i];
        if (starter >= 0) {
            /* Blocked unless it follows the starter directly or every code point between
             * has a lower, non-zero class (the run is sorted, so the last one tells). */
            bool adjacent = (size_t)starter == o - 1;
            uint8_t last = c->cls[o - 1];
            if (adjacent || (last != 0 && last < k)) {
                uint32_t comp = compose(c->cp[starter], cp);
                if (comp != 0) {
                    c->cp[starter] = comp;
                    continue;
                }
            }
        }
        if (k == 0)
            starter = (long)o;
        c->cp[o] = cp;
        c->cls[o] = k;
        o++;
    }
    for (size_t i = 0; i < o; i++)
        if (put_utf8(out, c->cp[i]) != 0)
            return FJ_ERR_NOMEM;
    return 0;
}

int tok_nfc(const uint8_t *s, size_t n, struct fj_buf *out)
{
    struct cps c = {0};
    int rc = fj_buf_reserve(out, n);
    size_t done = 0;   /* s[0..done) is in out */
    size_t stable = 0; /* where the last unflagged code point starts */
    for (size_t i = 0; i < n && rc == 0;) {
        int len = 1;
        uint32_t cp = s[i] < 0xCC ? 0 : fj_utf8_decode(s + i, &len);
        if (s[i] < 0xCC) /* below U+0300: never flagged; step over the whole character */
            len = s[i] < 0x80 ? 1 : 2;
        if (!flagged(cp)) {
            stable = i;
            i += (size_t)len;
            continue;
        }
        /* The stretch runs from the last unflagged code point (which flagged ones may
         * compose with) to the next unflagged one. */
        size_t from = stable > done ? stable : done, j = i + (size_t)len;
        while (j < n) {
            uint32_t next = fj_utf8_decode(s + j, &len);
            if (!flagged(next))
                break;
            j += (size_t)len;
        }
        rc = fj_buf_append(out, s + done, from - done);
        if (rc == 0)
            rc = normalize_stretch(s + from, j - from, &c, out);
        done = stable = i = j;
    }
    if (rc == 0)
        rc = fj_buf_append(out, s + done, n - done);
    free(c.cp);
    free(c.cls);
    return rc;
}
