/* norm.c - RMSNorm (Llama, Qwen2) and LayerNorm (GPT-2), forward and backward.
 *
 * Row statistics are accumulated in double: the rows are short enough that it costs
 * nothing, and the result then rounds like transformers' fp32 computation to within an ulp.
 */
#include <math.h>

#include "nn/nn.h"
#include "nn/par.h"

/* Columns per task when summing a weight gradient over the rows. */
#define NORM_BLOCK 128

void nn_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N,
                        int C, float eps)
{
#pragma omp parallel for schedule(static) NN_PAR_IF((double)N *C)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        double ss = 0;
        for (int c = 0; c < C; c++)
            ss += (double)x[c] * x[c];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        for (int c = 0; c < C; c++)
            y[c] = x[c] * r * weight[c];
        rstd[n] = r;
    }
}

/* y = x * r * w with r = (mean(x^2) + eps)^-1/2:
 * dx = r * (dy * w) - x * r^3 / C * sum(dy * w * x);  dw += dy * x * r. */
void nn_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                         const float *weight, const float *rstd, int N, int C)
{
#pragma omp parallel for schedule(static) NN_PAR_IF((double)N *C)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float r = rstd[n];
        double dot = 0;
        for (int c = 0; c < C; c++)
            dot += (double)dy[c] * weight[c] * x[c];
        float k = (float)(dot * r * r * r / C);
        for (int c = 0; c < C; c++)
            dx[c] += r * dy[c] * weight[c] - x[c] * k;
    }
    if (dweight) {
        /* column sums over the rows, a block of columns per task, rows walked in order */
#pragma omp parallel for schedule(static) NN_PAR_IF((double)N *C)
        for (int c0 = 0; c0 < C; c0 += NORM_BLOCK) {
            int width = C - c0 < NORM_BLOCK ? C - c0 : NORM_BLOCK;
            double sum[NORM_BLOCK] = {0};
            for (int n = 0; n < N; n++) {
                const float *dy = dout + (size_t)n * C + c0, *x = inp + (size_t)n * C + c0;
                float r = rstd[n];
                for (int k = 0; k < width; k++)
                    sum[k] += (double)(dy[k] * x[k] * r);
            }
            for (int k = 0; k < width; k++)
                dweight[c0 + k] += (float)sum[k];
        }
    }
}

void nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *weight, const float *bias, int N, int C, float eps)
{
#pragma omp parallel for schedule(static) NN_PAR_IF((double)N *C)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++)
            m += x[c];
        m /= C;
        for (int c = 0; c < C; c++)
            v += (x[c] - m) * (x[c] - m);
        v /= C;
        float r = (float)(1.0 / sqrt(v + eps)), mf = (float)m;
        for (int c = 0; c < C; c++)
            y[c] = (x[c] - mf) * r * weight[c] + bias[c];
        mean[n] = mf;
        rstd[n] = r;
    }
}

/* xhat = (x - m) r; y = xhat w + b:
 * dx = r * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w. */
void nn_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const float *mean,
                           const float *rstd, int N, int C)
{
#pragma omp parallel for schedule(static) NN_PAR_IF((double)N *C)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float m = mean[n], r = rstd[n];
        double g_mean = 0, gx_mean = 0;
        for (int c = 0; c < C; c++) {
            double g = (double)dy[c] * weight[c];
            g_mean += g;
            gx_mean += g * (x[c] - m) * r;
        }
        float gm = (float)(g_mean / C), gxm = (float)(gx_mean / C);
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - m) * r;
            dx[c] += r * (dy[c] * weight[c] - gm - xhat * gxm);
        }
    }
    if (dweight || dbias) {
#pragma omp parallel for schedule(static) NN_PAR_IF((double)N *C)
        for (int c0 = 0; c0 < C; c0 += NORM_BLOCK) {
            int width = C - c0 < NORM_BLOCK ? C - c0 : NORM_BLOCK;
            double sw[NORM_BLOCK] = {0}, sb[NORM_BLOCK] = {0};
            for (int n = 0; n < N; n++) {
                const float *dy = dout + (size_t)n * C + c0, *x = inp + (size_t)n * C + c0;
                float m = mean[n], r = rstd[n];
                for (int k = 0; k < width; k++) {
                    sw[k] += (double)(dy[k] * ((x[k] - m) * r));
                    sb[k] += dy[k];
                }
            }
            for (int k = 0; k < width; k++) {
                if (dweight)
                    dweight[c0 + k] += (float)sw[k];
                if (dbias)
                    dbias[c0 + k] += (float)sb[k];
            }
        }
    }
}
