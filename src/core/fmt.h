/* fmt.h - number formatting that matches other tools' output byte for byte. */
#ifndef FJ_CORE_FMT_H
#define FJ_CORE_FMT_H

#include <stddef.h>

/* Longest text fj_fmt_repr writes, with its NUL. */
#define FJ_FMT_REPR_MAX 32

/* Writes x as Python's repr(float) (and numpy's str(float64)) does: the shortest decimal
 * that reads back as x, positional with a ".0" for integral values when 1e-4 <= |x| < 1e16,
 * scientific ("1e+16", "2.5e-05") otherwise; "nan", "inf", "-inf". Returns out. */
char *fj_fmt_repr(double x, char out[FJ_FMT_REPR_MAX]);

#endif
