/* loss.c - masked cross-entropy over the vocabulary, fused with the softmax.
 *
 * The loss of a row is logsumexp(logits) - logits[target], accumulated in double over the
 * vocabulary. Backward overwrites the logits with their gradient: (N, V) floats are the
 * largest activation of a training step, and nothing needs the logits afterwards.
 */
#include <math.h>

#include "nn/nn.h"
#include "nn/par.h"
#include "nn/vec.h"

static double row_logsumexp(const float *row, int V, int *argmax)
{
    float max = nn_vec_max(row, (size_t)V);
    if (argmax) { /* the first maximum, as torch.argmax */
        int arg = 0;
        while (row[arg] != max)
            arg++;
        *argmax = arg;
    }
    return max + log(nn_vec_sum_exp(row, (size_t)V, max));
}

void nn_crossentropy_forward(float *losses, int64_t *n_correct, const float *logits,
                             const int32_t *targets, const float *mask, int N, int V)
{
    int64_t correct = 0;
#pragma omp parallel for schedule(static) reduction(+ : correct) NN_PAR_IF((double)N *V)
    for (int n = 0; n < N; n++) {
        if (mask && mask[n] == 0.0f) {
            losses[n] = 0.0f;
            continue;
        }
        const float *row = logits + (size_t)n * V;
        int arg;
        double lse = row_logsumexp(row, V, &arg);
        losses[n] = (float)(lse - row[targets[n]]);
        correct += arg == targets[n];
    }
    if (n_correct)
        *n_correct = correct;
}

void nn_crossentropy_backward(float *logits, const int32_t *targets, const float *mask, float dloss,
                              int N, int V)
{
#pragma omp parallel for schedule(static) NN_PAR_IF((double)N *V)
    for (int n = 0; n < N; n++) {
        float *row = logits + (size_t)n * V;
        float w = mask ? mask[n] : 1.0f;
        if (w == 0.0f) {
            for (int v = 0; v < V; v++)
                row[v] = 0.0f;
            continue;
        }
        double lse = row_logsumexp(row, V, NULL);
        float scale = dloss * w;
        nn_vec_scaled_exp(row, row, (size_t)V, (float)lse, scale);
        row[targets[n]] -= scale;
    }
}
