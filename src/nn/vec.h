/* vec.h - small loops over rows of floats, written so the compiler vectorises them, and
 * built for AVX-512, AVX2 and baseline x86-64 with the best chosen at run time
 * (target_clones). Internal to nn/.
 *
 * nn_expf is exp with a degree-6 polynomial on [-ln2/2, ln2/2] after range reduction
 * (relative error < 2e-7 over the float range, i.e. about an ulp), branch-free and without
 * a libm call, so that a loop calling it vectorises. Inputs below -87.3 give ~0 (not
 * denormals), above 88.3 give about 2e38 (finite).
 */
#ifndef FJ_NN_VEC_H
#define FJ_NN_VEC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define NN_VEC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define NN_VEC_CLONES
#endif

static inline float nn_expf(float x)
{
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x;
    /* n = round(x / ln2) by the 1.5 * 2^23 trick; r = x - n ln2 in two parts */
    float n = x * 1.44269504088896341f + 12582912.0f;
    n -= 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* The helpers below are always inlined into their (target-specific) callers, so how a
 * 32-byte vector would be passed between separately compiled functions never matters. */
#pragma GCC diagnostic ignored "-Wpsabi"

/* Eight floats: GCC's vector extension, lowered to one AVX register or two SSE ones. */
typedef float nn_v8f __attribute__((vector_size(32)));
typedef int32_t nn_v8i __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) nn_v8f nn_v8_load(const float *p)
{
    nn_v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) void nn_v8_store(float *p, nn_v8f v)
{
    memcpy(p, &v, sizeof v);
}

static inline __attribute__((always_inline)) nn_v8f nn_v8_splat(float x)
{
    return (nn_v8f){x, x, x, x, x, x, x, x};
}

/* mask ? a : b, mask lanes all ones or all zeros */
static inline __attribute__((always_inline)) nn_v8f nn_v8_select(nn_v8i mask, nn_v8f a, nn_v8f b)
{
    return (nn_v8f)(((nn_v8i)a & mask) | ((nn_v8i)b & ~mask));
}

/* nn_expf on eight lanes */
static inline __attribute__((always_inline)) nn_v8f nn_v8_exp(nn_v8f x)
{
    x = nn_v8_select(x < -87.3f, nn_v8_splat(-87.3f), x);
    x = nn_v8_select(x > 88.3f, nn_v8_splat(88.3f), x);
    nn_v8f n = x * 1.44269504088896341f + 12582912.0f;
    n -= 12582912.0f;
    nn_v8f r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    nn_v8f p = nn_v8_splat(1.0f / 720.0f);
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    nn_v8i bits = (__builtin_convertvector(n, nn_v8i) + 127) << 23;
    return p * (nn_v8f)bits;
}

/* max of x[0..n), n >= 1 */
float nn_vec_max(const float *x, size_t n);
/* y[i] = exp(x[i] - shift); returns the sum of y (in double over 16 partial float sums) */
double nn_vec_exp_sum(float *y, const float *x, size_t n, float shift);
/* sum of exp(x[i] - shift), nothing stored */
double nn_vec_sum_exp(const float *x, size_t n, float shift);
/* x[i] *= s */
void nn_vec_scale(float *x, size_t n, float s);
/* y[i] = s * exp(x[i] - shift) */
void nn_vec_scaled_exp(float *y, const float *x, size_t n, float shift, float s);

#endif
