/* attention.c - causal scaled dot-product attention with grouped-query heads.
 *
 * Each (batch row, head) is a few GEMMs through nn_gemm - S = Q K^T, P = softmax(S),
 * O = P V - run on one thread each while the (b, h) pairs are spread over the threads.
 * The probabilities P are kept for backward: (B, NH, Tq, Tk) floats. Queries go in blocks
 * of ATT_BLOCK rows, each multiplied only with the keys it can see, so every product stays
 * in the fast GEMM kernel while most of the masked upper triangle is skipped.
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

void nn_attention_forward(float *out, int ldo, float *att, const float *q, int ldq, const float *k,
                          int ldk, const float *v, int ldv, int B, int Tq, int Tk, int NH, int NKV,
                          int HS)
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
            int keys = off + r0 + rows; /* keys 0 .. keys-1 are visible to this block */
            float *pb = p + (size_t)r0 * Tk;
            /* S (rows, keys) = scale * Q (rows, HS) @ K^T (HS, keys) */
            nn_gemm(false, true, rows, keys, HS, scale, qh + (size_t)r0 * ldq, ldq, kg, ldk, 0.0f,
                    pb, Tk);
            for (int i = 0; i < rows; i++) {
                float *row = pb + (size_t)i * Tk;
                size_t seen = (size_t)(off + r0 + i) + 1; /* keys 0 .. off + r0 + i */
                float max = nn_vec_max(row, seen);
                double sum = nn_vec_exp_sum(row, row, seen, max);
                nn_vec_scale(row, seen, (float)(1.0 / sum));
                memset(row + seen, 0, (Tk - seen) * sizeof(float));
            }
            /* O (rows, HS) = P (rows, keys) @ V (keys, HS) */
            nn_gemm(false, false, rows, HS, keys, 1.0f, pb, Tk, vg, ldv, 0.0f,
                    out + (size_t)b * Tq * ldo + (size_t)r0 * ldo + (size_t)h * HS, ldo);
        }
    }
}

void nn_attention_backward(float *dq, float *dk, float *dv, const float *dout, int ldo,
                           const float *att, const float *q, int ldq, const float *k, int ldk,
                           const float *v, int ldv, int B, int T, int NH, int NKV, int HS,
                           float *scratch)
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
                const float *p = att + ((size_t)b * NH + h) * T * T + (size_t)r0 * T;
                const float *doh = dout + (size_t)b * T * ldo + (size_t)r0 * ldo + (size_t)h * HS;
                const float *qh = q + (size_t)b * T * ldq + (size_t)r0 * ldq + (size_t)h * HS;
                float *dqh = dq + (size_t)b * T * ldq + (size_t)r0 * ldq + (size_t)h * HS;
                /* dV (keys, HS) += P^T (keys, rows) @ dO (rows, HS) */
                nn_gemm(true, false, keys, HS, rows, 1.0f, p, T, doh, ldo, 1.0f, dvg, ldv);
                /* dP (rows, keys) = dO (rows, HS) @ V^T (HS, keys) */
                nn_gemm(false, true, rows, keys, HS, 1.0f, doh, ldo, vg, ldv, 0.0f, dp, T);
                /* dS = P * (dP - rowsum(P * dP)); entries past the diagonal have P = 0 */
                for (int i = 0; i < rows; i++) {
                    const float *pr = p + (size_t)i * T;
                    float *dr = dp + (size_t)i * T;
                    int last = r0 + i;
                    double dot = 0;
                    for (int j = 0; j <= last; j++)
                        dot += (double)pr[j] * dr[j];
                    for (int j = 0; j <= last; j++)
                        dr[j] = pr[j] * (dr[j] - (float)dot);
                    for (int j = last + 1; j < keys; j++)
                        dr[j] = 0.0f;
                }
                /* dQ (rows, HS) += scale * dS (rows, keys) @ K (keys, HS) */
                nn_gemm(false, false, rows, HS, keys, scale, dp, T, kg, ldk, 1.0f, dqh, ldq);
                /* dK (keys, HS) += scale * dS^T (keys, rows) @ Q (rows, HS) */
                nn_gemm(true, false, keys, HS, rows, scale, dp, T, qh, ldq, 1.0f, dkg, ldk);
            }
    }
}
