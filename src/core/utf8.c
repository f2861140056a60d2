/* utf8.c - UTF-8 validation (see utf8.h).
 *
 * The loop skips runs of ASCII eight bytes at a time, which is most of real text; multi-byte
 * sequences are checked against the well-formed byte ranges of the Unicode standard
 * (table 3-7), which rule out overlongs, surrogates and values past U+10FFFF.
 */
#include "core/utf8.h"

#include <string.h>

static size_t ascii_prefix(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ull)
            break;
        i += 8;
    }
    while (i < n && s[i] < 0x80)
        i++;
    return i;
}

/* Length of the well-formed sequence at s[0..n), or 0 if it is not one. */
static int sequence_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    uint8_t lo = 0x80, hi = 0xBF;
    int len;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if ((size_t)len > n)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (int k = 2; k < len; k++)
        if (s[k] < 0x80 || s[k] > 0xBF)
            return 0;
    return len;
}

bool fj_utf8_valid(const void *text, size_t n, size_t *bad_offset)
{
    const uint8_t *s = text;
    size_t i = 0;
    while (i < n) {
        i += ascii_prefix(s + i, n - i);
        if (i >= n)
            break;
        int len = sequence_len(s + i, n - i);
        if (len == 0) {
            if (bad_offset)
                *bad_offset = i;
            return false;
        }
        i += (size_t)len;
    }
    return true;
}

size_t fj_utf8_count(const void *text, size_t n)
{
    const uint8_t *s = text;
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += (s[i] & 0xC0) != 0x80;
    return count;
}
