/* fmt.c - Python-compatible float repr (see fmt.h).
 *
 * The shortest round-trip digits come from trying %.{p}e for p = 0..16 and keeping the first
 * that strtod reads back exactly; that is the same digit string as Python's repr (David Gay's
 * shortest mode), since both pick the fewest digits and, among those, the nearest. The layout
 * rules are Python's float_repr_style 'short'.
 */
#include "core/fmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *fj_fmt_repr(double x, char out[FJ_FMT_REPR_MAX])
{
    if (isnan(x)) {
        strcpy(out, "nan");
        return out;
    }
    if (isinf(x)) {
        strcpy(out, x < 0 ? "-inf" : "inf");
        return out;
    }
    if (x == 0) {
        strcpy(out, signbit(x) ? "-0.0" : "0.0");
        return out;
    }
    char sci[40];
    for (int p = 0; p <= 16; p++) {
        snprintf(sci, sizeof sci, "%.*e", p, x);
        if (strtod(sci, NULL) == x)
            break;
    }
    /* sci is "[-]d[.ddd]e[+-]XX": split into sign, digits and exponent. */
    const char *s = sci;
    char *o = out;
    if (*s == '-')
        *o++ = *s++;
    char digits[24];
    int nd = 0;
    for (; *s != 'e'; s++)
        if (*s != '.')
            digits[nd++] = *s;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    int exp = atoi(s + 1);
    if (exp < -4 || exp >= 16) {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)nd - 1);
            o += nd - 1;
        }
        snprintf(o, 16, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        return out;
    }
    if (exp < 0) {
        *o++ = '0';
        *o++ = '.';
        for (int k = -1; k > exp; k--)
            *o++ = '0';
        memcpy(o, digits, (size_t)nd);
        o += nd;
    } else {
        for (int k = 0; k <= exp; k++)
            *o++ = k < nd ? digits[k] : '0';
        *o++ = '.';
        if (nd > exp + 1) {
            memcpy(o, digits + exp + 1, (size_t)(nd - exp - 1));
            o += nd - exp - 1;
        } else
            *o++ = '0';
    }
    *o = '\0';
    return out;
}
