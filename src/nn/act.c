/* act.c - activations: SwiGLU (Llama, Qwen2 MLPs) and GELU (GPT-2), forward and backward.
 *
 * The formulas are torch's: silu(x) = x * sigmoid(x); gelu_new / gelu_pytorch_tanh =
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); gelu = 0.5 x (1 + erf(x / sqrt(2))).
 * sigmoid and tanh go through nn_expf (vec.h) so that the loops vectorise; each thread
 * runs a vectorised function over its share of the elements.
 */
#include <math.h>
#include <omp.h>

#include "nn/nn.h"
#include "nn/par.h"
#include "nn/vec.h"

#define NN_SQRT_2_OVER_PI 0.7978845608028654f
#define NN_GELU_CUBIC     0.044715f

static inline float sigmoidf(float x)
{
    return 1.0f / (1.0f + nn_expf(-x));
}

/* tanh(u) = 1 - 2 / (exp(2u) + 1): exact at both ends, absolute error ~1e-7 near 0 */
static inline float tanh_fast(float u)
{
    return 1.0f - 2.0f / (nn_expf(2.0f * u) + 1.0f);
}

/* This thread's share [*begin, *end) of n elements, in a parallel region. */
static void thread_share(size_t n, size_t *begin, size_t *end)
{
    size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
    size_t chunk = (n + nt - 1) / nt;
    *begin = t * chunk < n ? t * chunk : n;
    *end = *begin + chunk < n ? *begin + chunk : n;
}

static NN_VEC_CLONES void swiglu_rows(float *out, const float *hidden, size_t r0, size_t r1,
                                      size_t FF)
{
    for (size_t n = r0; n < r1; n++) {
        const float *gate = hidden + n * 2 * FF, *up = gate + FF;
        float *y = out + n * FF;
        size_t i = 0;
        for (; i + 8 <= FF; i += 8) {
            nn_v8f g = nn_v8_load(gate + i);
            nn_v8_store(y + i, g / (1.0f + nn_v8_exp(-g)) * nn_v8_load(up + i));
        }
        for (; i < FF; i++)
            y[i] = gate[i] * sigmoidf(gate[i]) * up[i];
    }
}

void nn_swiglu_forward(float *out, const float *hidden, int N, int FF)
{
#pragma omp parallel NN_PAR_IF((double)N *FF)
    {
        size_t b, e;
        thread_share((size_t)N, &b, &e);
        swiglu_rows(out, hidden, b, e, (size_t)FF);
    }
}

/* d/dg [g sig(g)] = sig(g) (1 + g (1 - sig(g))) */
static NN_VEC_CLONES void swiglu_back_rows(float *dhidden, const float *dout, const float *hidden,
                                           size_t r0, size_t r1, size_t FF)
{
    for (size_t n = r0; n < r1; n++) {
        const float *gate = hidden + n * 2 * FF, *up = gate + FF;
        const float *dy = dout + n * FF;
        float *dgate = dhidden + n * 2 * FF, *dup = dgate + FF;
        size_t i = 0;
        for (; i + 8 <= FF; i += 8) {
            nn_v8f g = nn_v8_load(gate + i), dyv = nn_v8_load(dy + i);
            nn_v8f sg = 1.0f / (1.0f + nn_v8_exp(-g));
            nn_v8_store(dgate + i, nn_v8_load(dgate + i) +
                                       dyv * nn_v8_load(up + i) * sg * (1.0f + g * (1.0f - sg)));
            nn_v8_store(dup + i, nn_v8_load(dup + i) + dyv * g * sg);
        }
        for (; i < FF; i++) {
            float g = gate[i], s = sigmoidf(g);
            dgate[i] += dy[i] * up[i] * s * (1.0f + g * (1.0f - s));
            dup[i] += dy[i] * g * s;
        }
    }
}

void nn_swiglu_backward(float *dhidden, const float *dout, const float *hidden, int N, int FF)
{
#pragma omp parallel NN_PAR_IF((double)N *FF)
    {
        size_t b, e;
        thread_share((size_t)N, &b, &e);
        swiglu_back_rows(dhidden, dout, hidden, b, e, (size_t)FF);
    }
}

static inline __attribute__((always_inline)) nn_v8f v8_gelu_t(nn_v8f x)
{
    nn_v8f u = NN_SQRT_2_OVER_PI * (x + NN_GELU_CUBIC * x * x * x);
    return 1.0f - 2.0f / (nn_v8_exp(2.0f * u) + 1.0f);
}

static NN_VEC_CLONES void gelu_tanh_range(float *out, const float *inp, size_t b, size_t e)
{
    for (; b + 8 <= e; b += 8) {
        nn_v8f x = nn_v8_load(inp + b);
        nn_v8_store(out + b, 0.5f * x * (1.0f + v8_gelu_t(x)));
    }
    for (size_t i = b; i < e; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanh_fast(NN_SQRT_2_OVER_PI * (x + NN_GELU_CUBIC * x * x * x)));
    }
}

static NN_VEC_CLONES void gelu_tanh_back_range(float *dinp, const float *dout, const float *inp,
                                               size_t b, size_t e)
{
    for (; b + 8 <= e; b += 8) {
        nn_v8f x = nn_v8_load(inp + b), t = v8_gelu_t(x);
        nn_v8f du = NN_SQRT_2_OVER_PI * (1.0f + 3.0f * NN_GELU_CUBIC * x * x);
        nn_v8f g = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
        nn_v8_store(dinp + b, nn_v8_load(dinp + b) + nn_v8_load(dout + b) * g);
    }
    for (size_t i = b; i < e; i++) {
        float x = inp[i];
        float t = tanh_fast(NN_SQRT_2_OVER_PI * (x + NN_GELU_CUBIC * x * x * x));
        float du = NN_SQRT_2_OVER_PI * (1.0f + 3.0f * NN_GELU_CUBIC * x * x);
        dinp[i] += dout[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
    }
}

void nn_gelu_forward(float *out, const float *inp, size_t n, bool tanh_approx)
{
#pragma omp parallel NN_PAR_IF(n)
    {
        size_t b, e;
        thread_share(n, &b, &e);
        if (tanh_approx)
            gelu_tanh_range(out, inp, b, e);
        else
            for (size_t i = b; i < e; i++)
                out[i] = (float)(0.5 * inp[i] * (1.0 + erf(inp[i] / sqrt(2.0))));
    }
}

void nn_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n, bool tanh_approx)
{
#pragma omp parallel NN_PAR_IF(n)
    {
        size_t b, e;
        thread_share(n, &b, &e);
        if (tanh_approx) {
            gelu_tanh_back_range(dinp, dout, inp, b, e);
        } else {
            for (size_t i = b; i < e; i++) {
                double x = inp[i];
                double grad =
                    0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
                dinp[i] += dout[i] * (float)grad;
            }
        }
    }
}
