/* test_nn.c - the kernels of src/nn against independent checks:
 *   - nn_gemm against a naive triple loop, for every transpose combination and for shapes
 *     that take each of its paths (one thread, split by rows, split by columns);
 *   - every backward against central finite differences of its forward, through a random
 *     projection of the output (loss = sum(out * R), so dout = R);
 *   - rotary embeddings: backward undoes forward (a rotation), and pairs i with i + HS/2;
 *   - dropout: the mask backward redraws is the one forward drew.
 * The model-level comparison with PyTorch is tests/model (test_arch).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "nn/nn.h"

static uint64_t rng_state = 42;

static float frand(void) /* uniform in [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) * (2.0 / 16777216.0) - 1.0);
}

static float *rand_vec(size_t n)
{
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = frand();
    return v;
}

static float *zeros(size_t n)
{
    return calloc(n, sizeof(float));
}

static void test_gemm(void)
{
    /* the last ones take the few-rows kernel (with tails in M, N and K) when not transposed */
    int shapes[][3] = {{3, 5, 7},       {1, 300, 64},   {200, 2, 33},
                       {130, 170, 90},  {64, 1000, 16}, {5, 3001, 130},
                       {16, 4099, 128}, {32, 2048, 67}, {2, 600, 512}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                float *A = rand_vec((size_t)M * K), *B = rand_vec((size_t)K * N);
                float *C = rand_vec((size_t)M * N), *ref = malloc((size_t)M * N * sizeof *ref);
                int lda = ta ? M : K, ldb = tb ? K : N;
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        double acc = 0;
                        for (int k = 0; k < K; k++) {
                            float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                            float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                            acc += (double)a * b;
                        }
                        ref[(size_t)i * N + j] = (float)(0.5 * acc + 2.0 * C[(size_t)i * N + j]);
                    }
                nn_gemm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 2.0f, C, N);
                double max_err = 0;
                for (size_t i = 0; i < (size_t)M * N; i++)
                    max_err = fmax(max_err, fabs(C[i] - ref[i]));
                CHECK(max_err < 1e-4);
                free(A);
                free(B);
                free(C);
                free(ref);
            }
}

/* A forward as a function of one input array, for finite differences. */
struct fd_case {
    void (*forward)(struct fd_case *c, float *out); /* reads c->x */
    float *x;
    size_t nx, nout;
    void *ctx;
};

static double projected(struct fd_case *c, const float *R, float *out)
{
    c->forward(c, out);
    double s = 0;
    for (size_t i = 0; i < c->nout; i++)
        s += (double)out[i] * R[i];
    return s;
}

/* max |analytic - numeric| / max |numeric| over the input, sampled at up to 200 points */
static double fd_error(struct fd_case *c, const float *R, const float *analytic)
{
    float *out = malloc(c->nout * sizeof *out);
    double max_err = 0, max_ref = 1e-6;
    size_t step = c->nx > 200 ? c->nx / 200 : 1;
    for (size_t i = 0; i < c->nx; i += step) {
        float keep = c->x[i], h = 1e-2f;
        c->x[i] = keep + h;
        double up = projected(c, R, out);
        c->x[i] = keep - h;
        double down = projected(c, R, out);
        c->x[i] = keep;
        double numeric = (up - down) / (2.0 * h);
        max_err = fmax(max_err, fabs(numeric - analytic[i]));
        max_ref = fmax(max_ref, fabs(numeric));
    }
    free(out);
    return max_err / max_ref;
}

#define FD_TOL 2e-3

/* ---- rmsnorm / layernorm ---- */
enum { NR = 3, NC = 16 };
static float norm_w[NC], norm_b[NC], norm_stat1[NR], norm_stat2[NR];

static void rms_fwd(struct fd_case *c, float *out)
{
    nn_rmsnorm_forward(out, norm_stat1, c->x, norm_w, NR, NC, 1e-5f);
}

static void rms_fwd_w(struct fd_case *c, float *out)
{
    nn_rmsnorm_forward(out, norm_stat1, c->ctx, c->x, NR, NC, 1e-5f);
}

static void ln_fwd(struct fd_case *c, float *out)
{
    nn_layernorm_forward(out, norm_stat1, norm_stat2, c->x, norm_w, norm_b, NR, NC, 1e-5f);
}

static void ln_fwd_w(struct fd_case *c, float *out)
{
    nn_layernorm_forward(out, norm_stat1, norm_stat2, c->ctx, c->x, norm_b, NR, NC, 1e-5f);
}

static void ln_fwd_b(struct fd_case *c, float *out)
{
    nn_layernorm_forward(out, norm_stat1, norm_stat2, c->ctx, norm_w, c->x, NR, NC, 1e-5f);
}

static void test_norms(void)
{
    for (int i = 0; i < NC; i++) {
        norm_w[i] = 1 + 0.5f * frand();
        norm_b[i] = frand();
    }
    float *x = rand_vec(NR * NC), *R = rand_vec(NR * NC), *out = zeros(NR * NC);
    float *dx = zeros(NR * NC), *dw = zeros(NC), *db = zeros(NC);
    struct fd_case c = {rms_fwd, x, NR * NC, NR * NC, NULL};
    nn_rmsnorm_forward(out, norm_stat1, x, norm_w, NR, NC, 1e-5f);
    nn_rmsnorm_backward(dx, dw, R, x, norm_w, norm_stat1, NR, NC);
    CHECK(fd_error(&c, R, dx) < FD_TOL);
    struct fd_case cw = {rms_fwd_w, norm_w, NC, NR * NC, x};
    CHECK(fd_error(&cw, R, dw) < FD_TOL);

    memset(dx, 0, NR * NC * sizeof(float));
    memset(dw, 0, NC * sizeof(float));
    nn_layernorm_forward(out, norm_stat1, norm_stat2, x, norm_w, norm_b, NR, NC, 1e-5f);
    nn_layernorm_backward(dx, dw, db, R, x, norm_w, norm_stat1, norm_stat2, NR, NC);
    struct fd_case cl = {ln_fwd, x, NR * NC, NR * NC, NULL};
    CHECK(fd_error(&cl, R, dx) < FD_TOL);
    struct fd_case clw = {ln_fwd_w, norm_w, NC, NR * NC, x};
    CHECK(fd_error(&clw, R, dw) < FD_TOL);
    struct fd_case clb = {ln_fwd_b, norm_b, NC, NR * NC, x};
    CHECK(fd_error(&clb, R, db) < FD_TOL);
    free(x), free(R), free(out), free(dx), free(dw), free(db);
}

/* ---- attention ---- */
enum { AB = 2, AT = 5, ANH = 4, ANKV = 2, AHS = 8 };
#define AQ  (ANH * AHS)
#define AKV (ANKV * AHS)
static float att_buf[AB * ANH * AT * AT];
static float *att_q, *att_k, *att_v;

static void att_fwd(struct fd_case *c, float *out)
{
    (void)c;
    nn_attention_forward(out, AQ, att_buf, att_q, AQ, att_k, AKV, att_v, AKV, NULL, AB, AT, AT, ANH,
                         ANKV, AHS);
}

static void test_attention(void)
{
    size_t nq = AB * AT * AQ, nkv = AB * AT * AKV;
    att_q = rand_vec(nq);
    att_k = rand_vec(nkv);
    att_v = rand_vec(nkv);
    float *R = rand_vec(nq), *out = zeros(nq);
    float *dq = zeros(nq), *dk = zeros(nkv), *dv = zeros(nkv);
    float *scratch = zeros((size_t)nn_threads() * AT * AT);
    att_fwd(NULL, out);
    /* causality: the first query's output is exactly v of key 0 for its kv head */
    for (int h = 0; h < ANH; h++)
        for (int d = 0; d < AHS; d++)
            CHECK(fabsf(out[h * AHS + d] - att_v[(h / (ANH / ANKV)) * AHS + d]) < 1e-6f);
    nn_attention_backward(dq, dk, dv, R, AQ, att_buf, att_q, AQ, att_k, AKV, att_v, AKV, NULL, AB,
                          AT, ANH, ANKV, AHS, scratch);
    struct fd_case cq = {att_fwd, att_q, nq, nq, NULL};
    struct fd_case ck = {att_fwd, att_k, nkv, nq, NULL};
    struct fd_case cv = {att_fwd, att_v, nkv, nq, NULL};
    CHECK(fd_error(&cq, R, dq) < FD_TOL);
    CHECK(fd_error(&ck, R, dk) < FD_TOL);
    CHECK(fd_error(&cv, R, dv) < FD_TOL);
    /* a query chunk over a longer key range equals the matching rows of the full square */
    float *part = zeros(2 * AQ), *part_att = zeros(ANH * 2 * AT);
    nn_attention_forward(part, AQ, part_att, att_q + (size_t)(AT - 2) * AQ, AQ, att_k, AKV, att_v,
                         AKV, NULL, 1, 2, AT, ANH, ANKV, AHS);
    double e = 0;
    for (int i = 0; i < 2 * AQ; i++)
        e = fmax(e, fabs(part[i] - out[(size_t)(AT - 2) * AQ + i]));
    CHECK(e < 1e-6);
    free(att_q), free(att_k), free(att_v), free(R), free(out), free(dq), free(dk), free(dv);
    free(scratch), free(part), free(part_att);
}

/* Packed rows: one row holding several sequences, each attending only to itself (key
 * starts), gives every sequence the outputs and gradients it gets alone in a row of its own
 * (the path checked by finite differences above). Segment lengths put segment boundaries
 * inside and across the kernel's 64-query blocks. */
static void test_attention_packed(void)
{
    enum { T = 160, NSEG = 4 };
    static const int seg_len[NSEG] = {70, 3, 64, 23};
    size_t nq = (size_t)T * AQ, nkv = (size_t)T * AKV;
    float *q = rand_vec(nq), *k = rand_vec(nkv), *v = rand_vec(nkv), *R = rand_vec(nq);
    float *out = zeros(nq), *att = zeros((size_t)ANH * T * T);
    float *dq = zeros(nq), *dk = zeros(nkv), *dv = zeros(nkv);
    float *scratch = zeros((size_t)nn_threads() * T * T);
    int32_t kstart[T];
    for (int s = 0, t0 = 0; s < NSEG; t0 += seg_len[s++])
        for (int i = 0; i < seg_len[s]; i++)
            kstart[t0 + i] = t0;
    nn_attention_forward(out, AQ, att, q, AQ, k, AKV, v, AKV, kstart, 1, T, T, ANH, ANKV, AHS);
    nn_attention_backward(dq, dk, dv, R, AQ, att, q, AQ, k, AKV, v, AKV, kstart, 1, T, ANH, ANKV,
                          AHS, scratch);
    double e_out = 0, e_grad = 0, leak = 0;
    for (int s = 0, t0 = 0; s < NSEG; t0 += seg_len[s++]) {
        int n = seg_len[s];
        float *o1 = zeros((size_t)n * AQ), *a1 = zeros((size_t)ANH * n * n);
        float *dq1 = zeros((size_t)n * AQ), *dk1 = zeros((size_t)n * AKV),
              *dv1 = zeros((size_t)n * AKV);
        nn_attention_forward(o1, AQ, a1, q + (size_t)t0 * AQ, AQ, k + (size_t)t0 * AKV, AKV,
                             v + (size_t)t0 * AKV, AKV, NULL, 1, n, n, ANH, ANKV, AHS);
        nn_attention_backward(dq1, dk1, dv1, R + (size_t)t0 * AQ, AQ, a1, q + (size_t)t0 * AQ, AQ,
                              k + (size_t)t0 * AKV, AKV, v + (size_t)t0 * AKV, AKV, NULL, 1, n, ANH,
                              ANKV, AHS, scratch);
        for (size_t i = 0; i < (size_t)n * AQ; i++) {
            e_out = fmax(e_out, fabs(o1[i] - out[(size_t)t0 * AQ + i]));
            e_grad = fmax(e_grad, fabs(dq1[i] - dq[(size_t)t0 * AQ + i]));
        }
        for (size_t i = 0; i < (size_t)n * AKV; i++) {
            e_grad = fmax(e_grad, fabs(dk1[i] - dk[(size_t)t0 * AKV + i]));
            e_grad = fmax(e_grad, fabs(dv1[i] - dv[(size_t)t0 * AKV + i]));
        }
        /* no probability mass outside the segment */
        for (int h = 0; h < ANH; h++)
            for (int i = 0; i < n; i++)
                for (int j = 0; j < T; j++)
                    if (j < t0 || j > t0 + i)
                        leak = fmax(leak, fabs(att[((size_t)h * T + t0 + i) * T + j]));
        free(o1), free(a1), free(dq1), free(dk1), free(dv1);
    }
    CHECK(e_out < 1e-5);
    CHECK(e_grad < 1e-5);
    CHECK(leak == 0);
    free(q), free(k), free(v), free(R), free(out), free(att), free(dq), free(dk), free(dv);
    free(scratch);
}

/* ---- activations, loss, linear, embedding ---- */
enum { FN = 3, FF = 7 };

static void swiglu_fwd(struct fd_case *c, float *out)
{
    nn_swiglu_forward(out, c->x, FN, FF);
}

static void gelu_fwd(struct fd_case *c, float *out)
{
    nn_gelu_forward(out, c->x, c->nx, *(bool *)c->ctx);
}

static void test_activations(void)
{
    float *h = rand_vec(FN * 2 * FF), *R = rand_vec(FN * FF), *out = zeros(FN * FF);
    float *dh = zeros(FN * 2 * FF);
    for (int i = 0; i < FN * 2 * FF; i++)
        h[i] *= 3;
    nn_swiglu_backward(dh, R, h, FN, FF);
    struct fd_case c = {swiglu_fwd, h, FN * 2 * FF, FN * FF, NULL};
    CHECK(fd_error(&c, R, dh) < FD_TOL);
    for (int approx = 0; approx < 2; approx++) {
        bool a = approx;
        float *dx = zeros(FN * FF);
        nn_gelu_backward(dx, R, h, FN * FF, a);
        struct fd_case cg = {gelu_fwd, h, FN * FF, FN * FF, &a};
        CHECK(fd_error(&cg, R, dx) < FD_TOL);
        free(dx);
    }
    /* GELU values: gelu(1) = 0.8413447 exactly; the tanh form gives 0.8411920 */
    float one = 1.0f, y;
    nn_gelu_forward(&y, &one, 1, false);
    CHECK(fabsf(y - 0.8413447f) < 1e-6f);
    nn_gelu_forward(&y, &one, 1, true);
    CHECK(fabsf(y - 0.8411920f) < 1e-6f);
    free(h), free(R), free(out), free(dh);
}

enum { LN = 4, LV = 11 };
static int32_t loss_targets[LN] = {3, 0, 10, 5};
static float loss_mask[LN] = {1, 0, 1, 1};

static void ce_fwd(struct fd_case *c, float *out)
{
    nn_crossentropy_forward(out, NULL, c->x, loss_targets, loss_mask, LN, LV);
}

static void test_loss(void)
{
    float *logits = rand_vec(LN * LV), *losses = zeros(LN), *R = rand_vec(LN);
    for (int i = 0; i < LN * LV; i++)
        logits[i] *= 4;
    for (int n = 0; n < LN; n++)
        R[n] = 0.25f; /* the mean over the counted rows' weight, a constant dloss */
    int64_t correct;
    nn_crossentropy_forward(losses, &correct, logits, loss_targets, loss_mask, LN, LV);
    /* each loss against a direct log-softmax in double */
    for (int n = 0; n < LN; n++) {
        double mx = -1e30, s = 0;
        for (int v = 0; v < LV; v++)
            mx = fmax(mx, logits[n * LV + v]);
        for (int v = 0; v < LV; v++)
            s += exp(logits[n * LV + v] - mx);
        double want = loss_mask[n] ? mx + log(s) - logits[n * LV + loss_targets[n]] : 0;
        CHECK(fabs(losses[n] - want) < 1e-5);
    }
    float *d = malloc(LN * LV * sizeof *d);
    memcpy(d, logits, LN * LV * sizeof *d);
    nn_crossentropy_backward(d, loss_targets, loss_mask, 0.25f, LN, LV);
    struct fd_case c = {ce_fwd, logits, LN * LV, LN, NULL};
    CHECK(fd_error(&c, R, d) < FD_TOL);
    /* a masked row contributes nothing */
    for (int v = 0; v < LV; v++)
        CHECK(d[1 * LV + v] == 0.0f);
    free(logits), free(losses), free(R), free(d);
}

enum { LIN_N = 5, LIN_C = 6, LIN_OC = 4 };
static float *lin_w, *lin_b, *lin_x;

static void lin_fwd(struct fd_case *c, float *out)
{
    (void)c;
    nn_linear_forward(out, LIN_OC, lin_x, lin_w, lin_b, LIN_N, LIN_C, LIN_OC, false);
}

static void test_linear(void)
{
    lin_w = rand_vec(LIN_OC * LIN_C);
    lin_b = rand_vec(LIN_OC);
    lin_x = rand_vec(LIN_N * LIN_C);
    float *R = rand_vec(LIN_N * LIN_OC), *dx = zeros(LIN_N * LIN_C);
    float *dw = zeros(LIN_OC * LIN_C), *db = zeros(LIN_OC);
    nn_linear_backward(dx, dw, db, R, LIN_OC, lin_x, lin_w, LIN_N, LIN_C, LIN_OC, false);
    struct fd_case cx = {lin_fwd, lin_x, LIN_N * LIN_C, LIN_N * LIN_OC, NULL};
    struct fd_case cw = {lin_fwd, lin_w, LIN_OC * LIN_C, LIN_N * LIN_OC, NULL};
    struct fd_case cb = {lin_fwd, lin_b, LIN_OC, LIN_N * LIN_OC, NULL};
    CHECK(fd_error(&cx, R, dx) < FD_TOL);
    CHECK(fd_error(&cw, R, dw) < FD_TOL);
    CHECK(fd_error(&cb, R, db) < FD_TOL);
    free(lin_w), free(lin_b), free(lin_x), free(R), free(dx), free(dw), free(db);
}

static void test_rope(void)
{
    enum { N = 4, H = 3, HS = 8 };
    double inv[HS / 2];
    for (int i = 0; i < HS / 2; i++)
        inv[i] = 1.0 / pow(10000.0, 2.0 * i / HS);
    float cos_t[N * HS / 2], sin_t[N * HS / 2];
    nn_rope_tables(cos_t, sin_t, inv, N, HS);
    int32_t pos[N] = {0, 1, 2, 3};
    float *x = rand_vec(N * H * HS), *y = malloc(N * H * HS * sizeof *y);
    memcpy(y, x, N * H * HS * sizeof *y);
    nn_rope_forward(y, H * HS, pos, cos_t, sin_t, N, H, HS);
    /* position 0 is the identity; position 1, pair 0 rotates (x0, x4) by 1 radian */
    for (int i = 0; i < H * HS; i++)
        CHECK(y[i] == x[i]);
    const float *x1 = x + H * HS, *y1 = y + H * HS;
    CHECK(fabsf(y1[0] - (x1[0] * cosf(1) - x1[4] * sinf(1))) < 1e-6f);
    CHECK(fabsf(y1[4] - (x1[4] * cosf(1) + x1[0] * sinf(1))) < 1e-6f);
    nn_rope_backward(y, H * HS, pos, cos_t, sin_t, N, H, HS);
    double e = 0;
    for (int i = 0; i < N * H * HS; i++)
        e = fmax(e, fabs(y[i] - x[i]));
    CHECK(e < 1e-6);
    free(x), free(y);
}

static void test_dropout(void)
{
    enum { N = 10000 };
    float *x = rand_vec(N), *y = zeros(N), *dx = zeros(N), *ones = malloc(N * sizeof *ones);
    for (int i = 0; i < N; i++)
        ones[i] = 1;
    nn_dropout_forward(y, x, N, 0.25f, 7);
    nn_dropout_backward(dx, ones, N, 0.25f, 7);
    int dropped = 0;
    for (int i = 0; i < N; i++) {
        dropped += y[i] == 0.0f;
        /* forward and backward agree on every element's mask and scale */
        CHECK(fabsf(y[i] - x[i] * dx[i]) < 1e-6f);
    }
    CHECK(dropped > N / 4 - 300 && dropped < N / 4 + 300);
    free(x), free(y), free(dx), free(ones);
}

int main(void)
{
    nn_set_threads(2);
    RUN(test_gemm);
    RUN(test_norms);
    RUN(test_attention);
    RUN(test_attention_packed);
    RUN(test_activations);
    RUN(test_loss);
    RUN(test_linear);
    RUN(test_rope);
    RUN(test_dropout);
    return TEST_DONE();
}
