/* act.c - activations: SwiGLU (Llama, Qwen2 MLPs) and GELU (GPT-2), forward and backward.
 *
 * The formulas are torch's: silu(x) = x * sigmoid(x); gelu_new / gelu_pytorch_tanh =
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); gelu = 0.5 x (1 + erf(x / sqrt(2))).
 */
#include <math.h>

#include "nn/nn.h"

#define NN_SQRT_2_OVER_PI 0.7978845608028654f
#define NN_GELU_CUBIC 0.044715f

static inline float sigmoidf(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

void nn_swiglu_forward(float *out, const float *hidden, int N, int FF)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *gate = hidden + (size_t)n * 2 * FF, *up = gate + FF;
        float *y = out + (size_t)n * FF;
        for (int i = 0; i < FF; i++)
            y[i] = gate[i] * sigmoidf(gate[i]) * up[i];
    }
}

/* d/dg [g sig(g)] = sig(g) (1 + g (1 - sig(g))) */
void nn_swiglu_backward(float *dhidden, const float *dout, const float *hidden, int N, int FF)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *gate = hidden + (size_t)n * 2 * FF, *up = gate + FF;
        const float *dy = dout + (size_t)n * FF;
        float *dgate = dhidden + (size_t)n * 2 * FF, *dup = dgate + FF;
        for (int i = 0; i < FF; i++) {
            float g = gate[i], s = sigmoidf(g);
            dgate[i] += dy[i] * up[i] * s * (1.0f + g * (1.0f - s));
            dup[i] += dy[i] * g * s;
        }
    }
}

void nn_gelu_forward(float *out, const float *inp, size_t n, bool tanh_approx)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        if (tanh_approx)
            out[i] = 0.5f * x * (1.0f + tanhf(NN_SQRT_2_OVER_PI * (x + NN_GELU_CUBIC * x * x * x)));
        else
            out[i] = (float)(0.5 * x * (1.0 + erf(x / sqrt(2.0))));
    }
}

void nn_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n,
                      bool tanh_approx)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i], grad;
        if (tanh_approx) {
            float u = NN_SQRT_2_OVER_PI * (x + NN_GELU_CUBIC * x * x * x);
            float t = tanhf(u);
            float du = NN_SQRT_2_OVER_PI * (1.0f + 3.0f * NN_GELU_CUBIC * x * x);
            grad = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
        } else {
            double xd = x;
            grad = (float)(0.5 * (1.0 + erf(xd / sqrt(2.0))) +
                           xd * exp(-0.5 * xd * xd) / sqrt(2.0 * M_PI));
        }
        dinp[i] += dout[i] * grad;
    }
}
