/* nn.h - the kernels of forja's transformer engine: forward/backward pairs, fp32, CPU.
 *
 * Conventions (llm.c's):
 *   - arguments go outputs, then inputs, then sizes;
 *   - a backward function takes the forward's name with _backward, and ADDS (+=) into
 *     every gradient it produces, so residual branches sum; zeroing is the caller's step;
 *   - dimension letters: B batch, T time, N = B*T rows, C channels, OC output channels,
 *     NH query heads, NKV key/value heads, HS head size, FF MLP width, V vocabulary.
 *   - matrices are row-major; a linear layer's weight is (OC, C) as in torch.nn.Linear
 *     (HF GPT-2's Conv1D weights are transposed to this layout when loaded).
 *
 * Kernels know no files, HTTP or SQL and never allocate: buffers come from the caller.
 * They run on all threads of the process's OpenMP team (nn_set_threads).
 */
#ifndef FJ_NN_NN_H
#define FJ_NN_NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- threads and GEMM ----------------------------------------------------------------- */

/* Sets the number of threads kernels use (<= 0: all cores). Process-wide configuration. */
void nn_set_threads(int n);
int nn_threads(void);

/* The one GEMM interface: C(M,N) = alpha * op(A)(M,K) @ op(B)(K,N) + beta * C, row-major,
 * op(X) = X or X^T (trans_a / trans_b), leading dimensions lda/ldb/ldc in elements. Every
 * matrix product of the engine goes through it, so the kernel behind it (OpenBLAS's sgemm
 * today, split over the threads) can be swapped without touching model code. On its first
 * call it sets OpenBLAS to one thread (process-wide): the parts run on OpenMP's threads. */
void nn_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc);

/* ---- linear --------------------------------------------------------------------------- */

/* out(N, OC) [row stride ldo] = inp(N, C) @ weight(OC, C)^T + bias(OC); bias may be NULL.
 * With accumulate, adds to out instead of overwriting it. */
void nn_linear_forward(float *out, int ldo, const float *inp, const float *weight,
                       const float *bias, int N, int C, int OC, bool accumulate);
/* dinp(N, C) += dout @ weight; dweight(OC, C) += dout^T @ inp; dbias(OC) += sum of dout.
 * Any of dinp, dweight, dbias may be NULL (not needed: frozen weights, first layer). With
 * set_dinp, dinp is overwritten instead (the one exception to adding: it spares zeroing a
 * fresh buffer, which costs as much memory traffic as the product's output). */
void nn_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, int ldo,
                        const float *inp, const float *weight, int N, int C, int OC, bool set_dinp);

/* ---- normalisation ------------------------------------------------------------------- */

/* RMSNorm as transformers' LlamaRMSNorm: out = inp * rsqrt(mean(inp^2) + eps) * weight.
 * out, inp (N, C); weight (C); rstd (N) saved for backward. */
void nn_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N,
                        int C, float eps);
void nn_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                         const float *weight, const float *rstd, int N, int C);

/* LayerNorm with bias (GPT-2). mean, rstd (N) saved for backward. */
void nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *weight, const float *bias, int N, int C, float eps);
void nn_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const float *mean,
                           const float *rstd, int N, int C);

/* ---- rotary position embeddings ------------------------------------------------------- */

/* Fills cos/sin (n_pos, HS/2) for positions 0..n_pos-1 from inverse frequencies
 * inv_freq (HS/2), computed by the model from rope_theta and its scaling. */
void nn_rope_tables(float *cos_t, float *sin_t, const double *inv_freq, int n_pos, int HS);

/* Rotates heads in place with transformers' rotate_half layout: for i < HS/2 the pair is
 * (x[i], x[i + HS/2]) at angle pos * inv_freq[i]. x holds N rows of n_heads heads of HS
 * floats, row stride ld; pos (N) are the rows' positions. */
void nn_rope_forward(float *x, int ld, const int32_t *pos, const float *cos_t, const float *sin_t,
                     int N, int n_heads, int HS);
/* The inverse rotation, applied in place to the gradient (the rotation is orthogonal). */
void nn_rope_backward(float *dx, int ld, const int32_t *pos, const float *cos_t, const float *sin_t,
                      int N, int n_heads, int HS);

/* ---- attention ------------------------------------------------------------------------ */

/* Causal softmax attention with grouped-query heads (NH query heads share NKV key/value
 * heads, NH % NKV == 0), scaled by 1/sqrt(HS). Per batch row b:
 *   q (Tq, NH*HS) row stride ldq; k, v (Tk, NKV*HS) row strides ldk/ldv; query i sits at
 *   position Tk - Tq + i and sees keys 0..Tk-Tq+i.
 *   out (Tq, NH*HS) row stride ldo; att (NH, Tq, Tk) the probabilities, kept for backward
 *   (masked entries are 0).
 *   kstart (B, Tq) or NULL: query i sees only keys kstart[i] .. Tk-Tq+i (several sequences
 *   packed into one row, each attending only to itself); NULL means 0 for every query.
 * Batch strides are Tq*ldq etc. (B contiguous blocks). */
void nn_attention_forward(float *out, int ldo, float *att, const float *q, int ldq, const float *k,
                          int ldk, const float *v, int ldv, const int32_t *kstart, int B, int Tq,
                          int Tk, int NH, int NKV, int HS);
/* Gradients into dq, dk, dv (same layouts as q, k, v), for Tq == Tk == T, with the forward's
 * kstart. scratch: nn_threads() * T * T floats. */
void nn_attention_backward(float *dq, float *dk, float *dv, const float *dout, int ldo,
                           const float *att, const float *q, int ldq, const float *k, int ldk,
                           const float *v, int ldv, const int32_t *kstart, int B, int T, int NH,
                           int NKV, int HS, float *scratch);

/* ---- activations ---------------------------------------------------------------------- */

/* SwiGLU: out(N, FF) = silu(gate) * up, where hidden (N, 2*FF) holds gate then up per row. */
void nn_swiglu_forward(float *out, const float *hidden, int N, int FF);
void nn_swiglu_backward(float *dhidden, const float *dout, const float *hidden, int N, int FF);

/* GELU, tanh approximation (tanh_approx) or exact (erf). out, inp (n). */
void nn_gelu_forward(float *out, const float *inp, size_t n, bool tanh_approx);
void nn_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n, bool tanh_approx);

/* ---- embeddings ---------------------------------------------------------------------- */

/* out(N, C) = wte[tokens] (+ wpe[pos] when wpe is not NULL). */
void nn_embedding_forward(float *out, const int32_t *tokens, const int32_t *pos, const float *wte,
                          const float *wpe, int N, int C);
void nn_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                           const int32_t *pos, int N, int C);

/* ---- loss ----------------------------------------------------------------------------- */

/* Masked cross-entropy over the vocabulary. logits (N, V); targets (N); mask (N) of 0/1
 * weights (NULL: all 1). Returns in losses (N) each row's -log softmax(target) (0 where the
 * mask is 0), and in *n_correct the number of counted rows whose argmax (first maximum) is
 * the target. Targets must be in [0, V) where the mask is nonzero. */
void nn_crossentropy_forward(float *losses, int64_t *n_correct, const float *logits,
                             const int32_t *targets, const float *mask, int N, int V);
/* In place: logits (N, V) become dlogits = dloss * mask * (softmax(logits) - onehot). */
void nn_crossentropy_backward(float *logits, const int32_t *targets, const float *mask, float dloss,
                              int N, int V);

/* ---- LoRA dropout --------------------------------------------------------------------- */

/* out = inp * keep / (1 - p), keep ~ Bernoulli(1 - p) drawn from a counter-based generator
 * keyed by seed, so backward can redraw the same mask. n floats. */
void nn_dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t seed);
/* dinp += dout * keep / (1 - p), with the mask nn_dropout_forward drew for the same seed. */
void nn_dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t seed);

#endif
