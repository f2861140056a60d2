/* attention.c - causal scaled dot-product attention with grouped-query heads.
 *
 * Each (batch row, head) is a few GEMMs through nn_gemm - S = Q K^T, P = softmax(S),
 * O = P V - run on one thread each while the (b, h) pairs are spread over the threads.
 * The probabilities P are kept for backward: (B, NH, Tq, Tk) floats. Computing the full
 * square and then masking wastes the upper triangle's multiply-adds but keeps every product
 * in the fast GEMM kernel, which is far quicker than a triangular scalar loop.
 */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "nn/nn.h"
#include "nn/par.h"
#include "nn/vec.h"

void nn_attention_forward(float *out, int ldo, float *att, const float *q, int ldq,
                          const float *k, int ldk, const float *v, int ldv, int B, int Tq,
                          int Tk, int NH, int NKV, int HS)
{
    int group = NH / NKV, off = Tk - Tq;
    float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for schedule(dynamic, 1) NN_PAR_IF((double)B * NH * Tq * Tk * HS)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH, g = h / group;
        const float *qh = q + (size_t)b * Tq * ldq + (size_t)h * HS;
        const float *kg = k + (size_t)b * Tk * ldk + (size_t)g * HS;
        const float *vg = v + (size_t)b * Tk * ldv + (size_t)g * HS;
        float *p = att + (size_t)bh * Tq * Tk;
        /* S (Tq, Tk) = scale * Q (Tq, HS) @ K^T (HS, Tk) */
        nn_gemm(false, true, Tq, Tk, HS, scale, qh, ldq, kg, ldk, 0.0f, p, Tk);
        for (int i = 0; i < Tq; i++) {
            float *row = p + (size_t)i * Tk;
            size_t seen = (size_t)(off + i) + 1; /* keys 0 .. off + i */
            float max = nn_vec_max(row, seen);
            double sum = nn_vec_exp_sum(row, row, seen, max);
            nn_vec_scale(row, seen, (float)(1.0 / sum));
            memset(row + seen, 0, (Tk - seen) * sizeof(float));
        }
        /* O (Tq, HS) = P (Tq, Tk) @ V (Tk, HS) */
        nn_gemm(false, false, Tq, HS, Tk, 1.0f, p, Tk, vg, ldv, 0.0f,
                out + (size_t)b * Tq * ldo + (size_t)h * HS, ldo);
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
#pragma omp parallel for schedule(dynamic, 1) NN_PAR_IF((double)B * NH * T * T * HS)
    for (int bg = 0; bg < B * NKV; bg++) {
        int b = bg / NKV, g = bg % NKV;
        float *dp = scratch + (size_t)omp_get_thread_num() * T * T;
        const float *kg = k + (size_t)b * T * ldk + (size_t)g * HS;
        const float *vg = v + (size_t)b * T * ldv + (size_t)g * HS;
        float *dkg = dk + (size_t)b * T * ldk + (size_t)g * HS;
        float *dvg = dv + (size_t)b * T * ldv + (size_t)g * HS;
        for (int h = g * group; h < (g + 1) * group; h++) {
            const float *p = att + ((size_t)b * NH + h) * T * T;
            const float *doh = dout + (size_t)b * T * ldo + (size_t)h * HS;
            const float *qh = q + (size_t)b * T * ldq + (size_t)h * HS;
            float *dqh = dq + (size_t)b * T * ldq + (size_t)h * HS;
            /* dV (T, HS) += P^T (T, T) @ dO (T, HS) */
            nn_gemm(true, false, T, HS, T, 1.0f, p, T, doh, ldo, 1.0f, dvg, ldv);
            /* dP (T, T) = dO (T, HS) @ V^T (HS, T) */
            nn_gemm(false, true, T, T, HS, 1.0f, doh, ldo, vg, ldv, 0.0f, dp, T);
            /* dS = P * (dP - rowsum(P * dP)); masked entries have P = 0, so dS = 0 */
            for (int i = 0; i < T; i++) {
                const float *pr = p + (size_t)i * T;
                float *dr = dp + (size_t)i * T;
                double dot = 0;
                for (int j = 0; j <= i; j++)
                    dot += (double)pr[j] * dr[j];
                for (int j = 0; j <= i; j++)
                    dr[j] = pr[j] * (dr[j] - (float)dot);
                for (int j = i + 1; j < T; j++)
                    dr[j] = 0.0f;
            }
            /* dQ (T, HS) += scale * dS (T, T) @ K (T, HS) */
            nn_gemm(false, false, T, HS, T, scale, dp, T, kg, ldk, 1.0f, dqh, ldq);
            /* dK (T, HS) += scale * dS^T (T, T) @ Q (T, HS) */
            nn_gemm(true, false, T, HS, T, scale, dp, T, qh, ldq, 1.0f, dkg, ldk);
        }
    }
}
