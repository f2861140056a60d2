/* embed.c - token (and learned position) embeddings. */
#include "nn/nn.h"
#include "nn/par.h"

void nn_embedding_forward(float *out, const int32_t *tokens, const int32_t *pos, const float *wte,
                          const float *wpe, int N, int C)
{
#pragma omp parallel for schedule(static) NN_PAR_IF((double)N *C)
    for (int n = 0; n < N; n++) {
        const float *e = wte + (size_t)tokens[n] * C;
        float *y = out + (size_t)n * C;
        if (wpe) {
            const float *p = wpe + (size_t)pos[n] * C;
            for (int c = 0; c < C; c++)
                y[c] = e[c] + p[c];
        } else {
            for (int c = 0; c < C; c++)
                y[c] = e[c];
        }
    }
}

/* Rows are added one after another: two rows may name the same token, and the order stays
 * deterministic (a parallel version would need per-thread partial sums). */
void nn_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                           const int32_t *pos, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const float *dy = dout + (size_t)n * C;
        if (dwte) {
            float *d = dwte + (size_t)tokens[n] * C;
            for (int c = 0; c < C; c++)
                d[c] += dy[c];
        }
        if (dwpe) {
            float *d = dwpe + (size_t)pos[n] * C;
            for (int c = 0; c < C; c++)
                d[c] += dy[c];
        }
    }
}
