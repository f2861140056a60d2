/* vec.c - vectorised row loops (see vec.h): eight lanes at a time with GCC's vector
 * extension (two registers' worth of independent partial results to hide latency), then a
 * scalar tail. Sums are combined in double at the end. */
#include "nn/vec.h"

NN_VEC_CLONES float nn_vec_max(const float *x, size_t n)
{
    float best = x[0];
    size_t i = 0;
    if (n >= 8) {
        nn_v8f m = nn_v8_load(x);
        for (i = 8; i + 8 <= n; i += 8) {
            nn_v8f v = nn_v8_load(x + i);
            m = nn_v8_select(v > m, v, m);
        }
        for (int k = 0; k < 8; k++)
            best = m[k] > best ? m[k] : best;
    }
    for (; i < n; i++)
        best = x[i] > best ? x[i] : best;
    return best;
}

NN_VEC_CLONES double nn_vec_exp_sum(float *y, const float *x, size_t n, float shift)
{
    nn_v8f s0 = nn_v8_splat(0), s1 = nn_v8_splat(0);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        nn_v8f e0 = nn_v8_exp(nn_v8_load(x + i) - shift);
        nn_v8f e1 = nn_v8_exp(nn_v8_load(x + i + 8) - shift);
        nn_v8_store(y + i, e0);
        nn_v8_store(y + i + 8, e1);
        s0 += e0;
        s1 += e1;
    }
    double total = 0;
    for (int k = 0; k < 8; k++)
        total += (double)s0[k] + s1[k];
    for (; i < n; i++) {
        y[i] = nn_expf(x[i] - shift);
        total += y[i];
    }
    return total;
}

NN_VEC_CLONES double nn_vec_sum_exp(const float *x, size_t n, float shift)
{
    nn_v8f s0 = nn_v8_splat(0), s1 = nn_v8_splat(0);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 += nn_v8_exp(nn_v8_load(x + i) - shift);
        s1 += nn_v8_exp(nn_v8_load(x + i + 8) - shift);
    }
    double total = 0;
    for (int k = 0; k < 8; k++)
        total += (double)s0[k] + s1[k];
    for (; i < n; i++)
        total += nn_expf(x[i] - shift);
    return total;
}

NN_VEC_CLONES void nn_vec_scale(float *x, size_t n, float s)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        nn_v8_store(x + i, nn_v8_load(x + i) * s);
    for (; i < n; i++)
        x[i] *= s;
}

NN_VEC_CLONES void nn_vec_scaled_exp(float *y, const float *x, size_t n, float shift, float s)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        nn_v8_store(y + i, nn_v8_exp(nn_v8_load(x + i) - shift) * s);
    for (; i < n; i++)
        y[i] = s * nn_expf(x[i] - shift);
}
