/* gemm_small.h - the GEMM for few rows (gemm_small.c), used by nn_gemm. Internal to nn/. */
#ifndef FJ_NN_GEMM_SMALL_H
#define FJ_NN_GEMM_SMALL_H

/* Up to this many rows of A go to nn_gemm_small_m rather than sgemm. */
#define NN_SMALL_M 32

/* C(M, N) = alpha * A(M, K) @ B(N, K)^T + beta * C, row-major; B is read in place. */
void nn_gemm_small_m(int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                     int ldb, float beta, float *C, int ldc);

#endif
