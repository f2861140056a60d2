/* gemm.c - threads, the engine's one GEMM entry point, and linear layers built on it.
 *
 * nn_gemm splits the output over the OpenMP threads (by rows, or by columns when there are
 * few rows, as in one-token decoding) and hands each part to OpenBLAS's sgemm running
 * single-threaded, so that one thread pool - OpenMP's - owns the cores and OpenBLAS's own
 * threads never compete with it. See docs/engine.md.
 */
#include <cblas.h>
#include <omp.h>
#include <pthread.h>

#include "nn/gemm_small.h"
#include "nn/nn.h"
#include "nn/par.h"

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void blas_single_thread(void)
{
    openblas_set_num_threads(1);
}

void nn_set_threads(int n)
{
    if (n <= 0)
        n = omp_get_num_procs();
    omp_set_num_threads(n);
}

int nn_threads(void)
{
    return omp_get_max_threads();
}

/* Work below this many multiply-adds runs on one thread: splitting costs more. */
#define NN_GEMM_SPLIT_MIN (1 << 16)

void nn_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc)
{
    pthread_once(&blas_once, blas_single_thread);
    if (M <= 0 || N <= 0)
        return;
    enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
    int nt = nn_threads();
    if (nt <= 1 || (double)M * N * K < NN_GEMM_SPLIT_MIN || omp_in_parallel()) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (M == 1 && (double)N * K >= NN_GEMM_SPLIT_MIN) {
        /* a row vector times a matrix (decoding one token): sgemv over slices of the output,
         * without the packing copy sgemm makes of the whole matrix on every call */
#pragma omp parallel num_threads(nt)
        {
            int t = omp_get_thread_num(), n_t = omp_get_num_threads();
            int chunk = ((N + n_t - 1) / n_t + 15) / 16 * 16;
            int begin = t * chunk, end = begin + chunk < N ? begin + chunk : N;
            if (begin < end) {
                const float *a = A; /* op(A) is (1, K): contiguous when not transposed */
                int inc_a = trans_a ? lda : 1;
                if (trans_b) /* C = op(A) B^T = B (N, K) x */
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, end - begin, K, alpha,
                                B + (size_t)begin * ldb, ldb, a, inc_a, beta, C + begin, 1);
                else /* C = op(A) B = B^T x, B (K, N) */
                    cblas_sgemv(CblasRowMajor, CblasTrans, K, end - begin, alpha, B + begin, ldb, a,
                                inc_a, beta, C + begin, 1);
            }
        }
        return;
    }
    if (!trans_a && trans_b && M <= NN_SMALL_M && (double)N * K >= NN_GEMM_SPLIT_MIN * 4) {
        /* a few tokens through a big weight (a decoding step): no copy of the weight */
        nn_gemm_small_m(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    bool by_rows = M >= N || M >= 64 * nt;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n_t = omp_get_num_threads();
        int total = by_rows ? M : N;
        /* rows in multiples of 16 (columns of 64) keep the parts on kernel-tile edges */
        int align = by_rows ? 16 : 64;
        int chunk = (total + n_t - 1) / n_t;
        chunk = (chunk + align - 1) / align * align;
        int begin = t * chunk, end = begin + chunk < total ? begin + chunk : total;
        if (begin < end) {
            if (by_rows) {
                /* rows of C and op(A) */
                const float *a = trans_a ? A + begin : A + (size_t)begin * lda;
                cblas_sgemm(CblasRowMajor, ta, tb, end - begin, N, K, alpha, a, lda, B, ldb, beta,
                            C + (size_t)begin * ldc, ldc);
            } else {
                /* columns of C and op(B) */
                const float *b = trans_b ? B + (size_t)begin * ldb : B + begin;
                cblas_sgemm(CblasRowMajor, ta, tb, M, end - begin, K, alpha, A, lda, b, ldb, beta,
                            C + begin, ldc);
            }
        }
    }
}

void nn_linear_forward(float *out, int ldo, const float *inp, const float *weight,
                       const float *bias, int N, int C, int OC, bool accumulate)
{
    float beta = accumulate ? 1.0f : 0.0f;
    if (bias) {
#pragma omp parallel for schedule(static) NN_PAR_IF((double)N *OC)
        for (int n = 0; n < N; n++) {
            float *row = out + (size_t)n * ldo;
            for (int o = 0; o < OC; o++)
                row[o] = accumulate ? row[o] + bias[o] : bias[o];
        }
        beta = 1.0f;
    }
    nn_gemm(false, true, N, OC, C, 1.0f, inp, C, weight, C, beta, out, ldo);
}

void nn_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, int ldo,
                        const float *inp, const float *weight, int N, int C, int OC, bool set_dinp)
{
    if (dinp) /* (N, C) += (N, OC) @ (OC, C) */
        nn_gemm(false, false, N, C, OC, 1.0f, dout, ldo, weight, C, set_dinp ? 0.0f : 1.0f, dinp,
                C);
    if (dweight) /* (OC, C) += (N, OC)^T @ (N, C) */
        nn_gemm(true, false, OC, C, N, 1.0f, dout, ldo, inp, C, 1.0f, dweight, C);
    if (dbias) {
        /* column sums, a block of columns per task, walking rows in order (contiguous) */
        enum { BLOCK = 256 };
#pragma omp parallel for schedule(static) NN_PAR_IF((double)N *OC)
        for (int o0 = 0; o0 < OC; o0 += BLOCK) {
            int width = OC - o0 < BLOCK ? OC - o0 : BLOCK;
            double sum[BLOCK] = {0};
            for (int n = 0; n < N; n++) {
                const float *row = dout + (size_t)n * ldo + o0;
                for (int k = 0; k < width; k++)
                    sum[k] += row[k];
            }
            for (int k = 0; k < width; k++)
                dbias[o0 + k] += (float)sum[k];
        }
    }
}
