/* utf8.h - UTF-8 validation and decoding.
 *
 * "Valid" is RFC 3629: no overlong forms, no surrogates (U+D800..DFFF), nothing above
 * U+10FFFF. The decoder assumes valid input; validate first.
 */
#ifndef FJ_CORE_UTF8_H
#define FJ_CORE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returns true if s[0..n) is valid UTF-8. Otherwise returns false and, if bad_offset is
 * not NULL, stores the byte offset where the first invalid or truncated sequence starts. */
bool fj_utf8_valid(const void *s, size_t n, size_t *bad_offset);

/* Number of code points in valid UTF-8 s[0..n) (counts non-continuation bytes). */
size_t fj_utf8_count(const void *s, size_t n);

/* Decodes the code point at s (valid UTF-8, at least one byte) and stores its length. */
static inline uint32_t fj_utf8_decode(const uint8_t *s, int *len)
{
    uint8_t c = s[0];
    if (c < 0x80) {
        *len = 1;
        return c;
    }
    if (c < 0xE0) {
        *len = 2;
        return ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
    }
    if (c < 0xF0) {
        *len = 3;
        return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
           ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

#endif
