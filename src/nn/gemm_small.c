/* gemm_small.c - C(M, N) = alpha A(M, K) B(N, K)^T + beta C for few rows M: a linear layer
 * applied to the handful of tokens of a decoding step (one per sequence of a batch).
 *
 * OpenBLAS's sgemm copies ("packs") panels of B before multiplying. For a large weight and
 * few rows that copy costs as much as the products themselves: in a 16-sequence decoding step
 * of the built-in model it took a third of the time. Here B is read once, in place: each
 * block of 4 rows of B (contiguous in K) stays in L1 while it meets every 4-row tile of A,
 * which is small enough (M <= NN_SMALL_M rows) to stay in L1 as well. Each 4x4 tile of C is
 * 16 vector accumulators over K. The threads split the columns of C.
 */
#include <omp.h>

#include "nn/gemm_small.h"
#include "nn/nn.h"
#include "nn/vec.h"

static inline __attribute__((always_inline)) float hsum(nn_v8f v)
{
    float s = 0;
    for (int i = 0; i < 8; i++)
        s += v[i];
    return s;
}

/* The sums of a, b, c and d's lanes, as one vector's first four lanes: pairwise adds and
 * shuffles instead of 28 scalar additions. */
static inline __attribute__((always_inline)) nn_v8f sum4(nn_v8f a, nn_v8f b, nn_v8f c, nn_v8f d)
{
    nn_v8f ab = __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11) +
                __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15);
    nn_v8f cd = __builtin_shufflevector(c, d, 0, 1, 2, 3, 8, 9, 10, 11) +
                __builtin_shufflevector(c, d, 4, 5, 6, 7, 12, 13, 14, 15);
    nn_v8f r = __builtin_shufflevector(ab, cd, 0, 1, 4, 5, 8, 9, 12, 13) +
               __builtin_shufflevector(ab, cd, 2, 3, 6, 7, 10, 11, 14, 15);
    return __builtin_shufflevector(r, r, 0, 2, 4, 6, 0, 2, 4, 6) +
           __builtin_shufflevector(r, r, 1, 3, 5, 7, 1, 3, 5, 7);
}

/* A full 4x4 tile with K a multiple of 8: 16 accumulators and 8 operands, which fit the
 * 32 vector registers of AVX-512 (AVX2's 16 spill a few). */
static inline __attribute__((always_inline)) void tile_4x4(int K, float alpha, const float *A,
                                                           int lda, const float *B, int ldb,
                                                           float beta, float *C, int ldc)
{
    nn_v8f acc[4][4] = {{{0}}};
    for (int k = 0; k < K; k += 8) {
        nn_v8f a[4], b[4];
        for (int i = 0; i < 4; i++)
            a[i] = nn_v8_load(A + (size_t)i * lda + k);
        for (int j = 0; j < 4; j++)
            b[j] = nn_v8_load(B + (size_t)j * ldb + k);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                acc[i][j] += a[i] * b[j];
    }
    for (int i = 0; i < 4; i++) {
        nn_v8f s = sum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
        float *c = C + (size_t)i * ldc;
        for (int j = 0; j < 4; j++)
            c[j] = beta == 0.0f ? alpha * s[j] : alpha * s[j] + beta * c[j];
    }
}

/* One tile: rows m0 .. m0+mr-1 of C (mr <= 4) and columns n0 .. n0+nr-1 (nr <= 4). */
static inline __attribute__((always_inline)) void tile(int mr, int nr, int K, float alpha,
                                                       const float *A, int lda, const float *B,
                                                       int ldb, float beta, float *C, int ldc)
{
    nn_v8f acc[4][4] = {{{0}}};
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        nn_v8f a[4], b[4];
        for (int i = 0; i < mr; i++)
            a[i] = nn_v8_load(A + (size_t)i * lda + k);
        for (int j = 0; j < nr; j++)
            b[j] = nn_v8_load(B + (size_t)j * ldb + k);
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++)
                acc[i][j] += a[i] * b[j];
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float s = hsum(acc[i][j]);
            for (int kk = k; kk < K; kk++)
                s += A[(size_t)i * lda + kk] * B[(size_t)j * ldb + kk];
            float *c = C + (size_t)i * ldc + j;
            *c = beta == 0.0f ? alpha * s : alpha * s + beta * *c;
        }
}

NN_VEC_CLONES
static void columns(int M, int n_begin, int n_end, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int n = n_begin; n < n_end; n += 4) {
        int nr = n_end - n < 4 ? n_end - n : 4;
        const float *b = B + (size_t)n * ldb;
        for (int m = 0; m < M; m += 4) {
            int mr = M - m < 4 ? M - m : 4;
            if (mr == 4 && nr == 4 && K % 8 == 0) /* the common case */
                tile_4x4(K, alpha, A + (size_t)m * lda, lda, b, ldb, beta, C + (size_t)m * ldc + n,
                         ldc);
            else
                tile(mr, nr, K, alpha, A + (size_t)m * lda, lda, b, ldb, beta,
                     C + (size_t)m * ldc + n, ldc);
        }
    }
}

void nn_gemm_small_m(int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                     int ldb, float beta, float *C, int ldc)
{
    int nt = omp_in_parallel() ? 1 : nn_threads();
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), n_t = omp_get_num_threads();
        int chunk = ((N + n_t - 1) / n_t + 3) / 4 * 4;
        int begin = t * chunk, end = begin + chunk < N ? begin + chunk : N;
        if (begin < end)
            columns(M, begin, end, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
}
