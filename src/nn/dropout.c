/* dropout.c - inverted dropout with a counter-based mask.
 *
 * The keep decision for element i is a hash of (seed, i), so backward redraws exactly the
 * mask forward used without storing it, and the result does not depend on the number of
 * threads. The caller derives a fresh seed per step and per layer from its own RNG state.
 */
#include "nn/nn.h"
#include "nn/par.h"

static inline uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* uniform in [0, 1) with 24 bits */
static inline float dropout_uniform(uint64_t seed, size_t i)
{
    return (float)(splitmix64(seed ^ splitmix64(i)) >> 40) * (1.0f / 16777216.0f);
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
