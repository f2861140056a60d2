/* dropout.c - inverted dropout with a counter-based mask.
 *
 * The keep decision for element i is a hash of (seed, i), so backward redraws exactly the
 * mask forward used without storing it, and the result does not depend on the number of
 * threads. The caller derives a fresh seed per step and per layer from its own RNG state.
 */
#include "core/rng.h"
#include "nn/nn.h"
#include "nn/par.h"

/* uniform in [0, 1) with 24 bits */
static inline float dropout_uniform(uint64_t seed, size_t i)
{
    return (float)(fj_splitmix64(seed ^ fj_splitmix64(i)) >> 40) * (1.0f / 16777216.0f);
}

void nn_dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t seed)
{
    float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) NN_PAR_IF(n)
    for (size_t i = 0; i < n; i++)
        out[i] = dropout_uniform(seed, i) >= p ? inp[i] * scale : 0.0f;
}

void nn_dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t seed)
{
    float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) NN_PAR_IF(n)
    for (size_t i = 0; i < n; i++)
        if (dropout_uniform(seed, i) >= p)
            dinp[i] += dout[i] * scale;
}
