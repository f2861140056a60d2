/* rope.c - rotary position embeddings in transformers' rotate_half layout.
 *
 * transformers (modeling_llama.py, apply_rotary_pos_emb) computes
 *   q * cos + rotate_half(q) * sin,  rotate_half(x) = cat(-x[HS/2:], x[:HS/2]),
 * with cos/sin repeated over both halves: element i pairs with element i + HS/2 (not with
 * its neighbour, as in the original paper's interleaved layout). The model computes the
 * inverse frequencies (rope_theta, llama3 scaling); this file only rotates.
 */
#include <math.h>

#include "nn/nn.h"
#include "nn/par.h"

void nn_rope_tables(float *cos_t, float *sin_t, const double *inv_freq, int n_pos, int HS)
{
    int half = HS / 2;
    for (int p = 0; p < n_pos; p++)
        for (int i = 0; i < half; i++) {
            /* transformers forms the angle in fp32 (position * inv_freq); so do we, then
             * takes cos/sin of it */
            float angle = (float)p * (float)inv_freq[i];
            cos_t[(size_t)p * half + i] = (float)cos((double)angle);
            sin_t[(size_t)p * half + i] = (float)sin((double)angle);
        }
}

static void rope_rotate(float *x, int ld, const int32_t *pos, const float *cos_t,
                        const float *sin_t, int N, int n_heads, int HS, float sign)
{
    int half = HS / 2;
#pragma omp parallel for schedule(static) NN_PAR_IF((double)N *n_heads *HS)
    for (int n = 0; n < N; n++) {
        const float *c = cos_t + (size_t)pos[n] * half, *s = sin_t + (size_t)pos[n] * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)n * ld + (size_t)h * HS;
            for (int i = 0; i < half; i++) {
                float x1 = v[i], x2 = v[i + half], si = sign * s[i];
                v[i] = x1 * c[i] - x2 * si;
                v[i + half] = x2 * c[i] + x1 * si;
            }
        }
    }
}

void nn_rope_forward(float *x, int ld, const int32_t *pos, const float *cos_t, const float *sin_t,
                     int N, int n_heads, int HS)
{
    rope_rotate(x, ld, pos, cos_t, sin_t, N, n_heads, HS, 1.0f);
}

void nn_rope_backward(float *dx, int ld, const int32_t *pos, const float *cos_t, const float *sin_t,
                      int N, int n_heads, int HS)
{
    rope_rotate(dx, ld, pos, cos_t, sin_t, N, n_heads, HS, -1.0f);
}
