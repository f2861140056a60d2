/* attention.c - causal scaled dot-product attention with grouped-query heads.
 *
 * Each (batch row, head) is a few GEMMs through nn_gemm - S = Q K^T, P = softmax(S),
 * O = P V - run on one thread each while the (b, h) pairs are spread over the threads.
 * The probabilities P are kept for backward: (B, NH, Tq, Tk) floats. Queries go in blocks
 * of ATT_BLOCK rows, each multiplied only with the keys it can see, so every product stays
 * in the fast GEMM kernel while most of the masked upper triangle is skipped. With key
 * starts (packed training rows), a query also ignores the keys before its segment's first
 * token; a block's products begin at the smallest start among its rows.
 */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "nn/nn.h"
#include "nn/par.h"
#include "nn/vec.h"

/* Queries are taken in blocks of this many rows: a block sees keys only up to its last
 * row's position, so the products skip most of the masked upper triangle. */
#define ATT_BLOCK 64

/* The first key query row r0 + i of batch row b may see: kstart's entry, or 0. */
static inline int key_start(const int32_t *kstart, int b, int Tq, int i)
{
    return kstart ? kstart[(size_t)b * Tq + i] : 0;
}

/* The smallest key start of rows r0 .. r0 + rows - 1 (where a block's products begin). */
static int block_key_start(const int32_t *kstart, int b, int Tq, int r0, int rows)
{
    int k0 = key_start(kstart, b, Tq, r0);
    for (int i = 1; kstart && i < rows; i++) {
        int s = key_start(kstart, b, Tq, r0 + i);
        k0 = s < k0 ? s : k0;
    }
    return k0;
}

void nn_attention_forward(float *out, int ldo, float *att, const float *q, int ldq, const float *k,
                          int ldk, const float *v, int ldv, const int32_t *kstart, int B, int Tq,
                          int Tk, int NH, int NKV, int HS)
{
    int group = NH / NKV, off = Tk - Tq;
    float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for schedule(dynamic, 1) NN_PAR_IF((double)B *NH *Tq *Tk *HS)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH, g = h / group;
        const float *qh = q + (size_t)b * Tq * ldq + (size_t)h * HS;
        const float *kg = k + (size_t)b * Tk * ldk + (size_t)g * HS;
        const float *vg = v + (size_t)b * Tk * ldv + (size_t)g * HS;
        float *p = att + (size_t)bh * Tq * Tk;
        for (int r0 = 0; r0 < Tq; r0 += ATT_BLOCK) {
            int rows = Tq - r0 < ATT_BLOCK ? Tq - r0 : ATT_BLOCK;
            int keys = off + r0 + rows; /* keys k0 .. keys-1 are visible to this block */
            int k0 = block_key_start(kstart, b, Tq, r0, rows);
            float *pb = p + (size_t)r0 * Tk;
            /* S (rows, keys - k0) = scale * Q (rows, HS) @ K[k0:keys]^T (HS, keys - k0) */
            nn_gemm(false, true, rows, keys - k0, HS, scale, qh + (size_t)r0 * ldq, ldq,
                    kg + (size_t)k0 * ldk, ldk, 0.0f, pb + k0, Tk);
            for (int i = 0; i < rows; i++) {
                float *row = pb + (size_t)i * Tk;
                size_t first = (size_t)key_start(kstart, b, Tq, r0 + i);
                size_t seen = (size_t)(off + r0 + i) + 1; /* keys first .. off + r0 + i */
                float max = nn_vec_max(row + first, seen - first);
                double sum = nn_vec_exp_sum(row + first, row + first, seen - first, max);
                nn_vec_scale(row + first, seen - first, (float)(1.0 / sum));
                memset(row, 0, first * sizeof(float));
                memset(row + seen, 0, (Tk - seen) * sizeof(float));
            }
            /* O (rows, HS) = P[:, k0:keys] (rows, keys - k0) @ V[k0:keys] (keys - k0, HS) */
            nn_gemm(false, false, rows, HS, keys - k0, 1.0f, pb + k0, Tk, vg + (size_t)k0 * ldv,
                    ldv, 0.0f, out + (size_t)b * Tq * ldo + (size_t)r0 * ldo + (size_t)h * HS, ldo);
        }
    }
}

void nn_attention_backward(float *dq, float *dk, float *dv, const float *dout, int ldo,
                           const float *att, const float *q, int ldq, const float *k, int ldk,
                           const float *v, int ldv, const int32_t *kstart, int B, int T, int NH,
                           int NKV, int HS, float *scratch)
{
    int group = NH / NKV;
    float scale = 1.0f / sqrtf((float)HS);
    /* One (b, kv head) per task: the query heads of a group all add into the same dK, dV,
     * so they stay on one thread. */
#pragma omp parallel for schedule(dynamic, 1) NN_PAR_IF((double)B *NH *T *T *HS)
    for (int bg = 0; bg < B * NKV; bg++) {
        int b = bg / NKV, g = bg % NKV;
        float *dp = scratch + (size_t)omp_get_thread_num() * T * T;
        const float *kg = k + (size_t)b * T * ldk + (size_t)g * HS;
        const float *vg = v + (size_t)b * T * ldv + (size_t)g * HS;
        float *dkg = dk + (size_t)b * T * ldk + (size_t)g * HS;
        float *dvg = dv + (size_t)b * T * ldv + (size_t)g * HS;
        for (int h = g * group; h < (g + 1) * group; h++)
            for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
                int rows = T - r0 < ATT_BLOCK ? T - r0 : ATT_BLOCK, keys = r0 + rows;
                int k0 = block_key_start(kstart, b, T, r0, rows), nk = keys - k0;
                const float *p = att + ((size_t)b * NH + h) * T * T + (size_t)r0 * T + k0;
                const float *doh = dout + (size_t)b * T * ldo + (size_t)r0 * ldo + (size_t)h * HS;
                const float *qh = q + (size_t)b * T * ldq + (size_t)r0 * ldq + (size_t)h * HS;
                float *dqh = dq + (size_t)b * T * ldq + (size_t)r0 * ldq + (size_t)h * HS;
                /* dV[k0:keys] (nk, HS) += P^T (nk, rows) @ dO (rows, HS) */
                nn_gemm(true, false, nk, HS, rows, 1.0f, p, T, doh, ldo, 1.0f,
                        dvg + (size_t)k0 * ldv, ldv);
                /* dP (rows, nk) = dO (rows, HS) @ V[k0:keys]^T (HS, nk) */
                nn_gemm(false, true, rows, nk, HS, 1.0f, doh, ldo, vg + (size_t)k0 * ldv, ldv, 0.0f,
                        dp, T);
                /* dS = P * (dP - rowsum(P * dP)); entries outside a row's keys have P = 0 */
                for (int i = 0; i < rows; i++) {
                    const float *pr = p + (size_t)i * T;
                    float *dr = dp + (size_t)i * T;
                    int first = key_start(kstart, b, T, r0 + i) - k0, last = r0 + i - k0;
                    double dot = 0;
                    for (int j = first; j <= last; j++)
                        dot += (double)pr[j] * dr[j];
                    for (int j = 0; j < first; j++)
                        dr[j] = 0.0f;
                    for (int j = first; j <= last; j++)
                        dr[j] = pr[j] * (dr[j] - (float)dot);
                    for (int j = last + 1; j < nk; j++)
                        dr[j] = 0.0f;
                }
                /* dQ (rows, HS) += scale * dS (rows, nk) @ K[k0:keys] (nk, HS) */
                nn_gemm(false, false, rows, HS, nk, scale, dp, T, kg + (size_t)k0 * ldk, ldk, 1.0f,
                        dqh, ldq);
                /* dK[k0:keys] (nk, HS) += scale * dS^T (nk, rows) @ Q (rows, HS) */
                nn_gemm(true, false, nk, HS, rows, scale, dp, T, qh, ldq, 1.0f,
                        dkg + (size_t)k0 * ldk, ldk);
            }
    }
}
