/* The dense kernels (nn.h) against double-precision references written out here: forward
 * values directly, backward passes against central differences of L = Σ w ⊙ out computed
 * with the same references, accumulation (+=), and independence from the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "check.h"
#include "nn/nn.h"

/* --------------------------------------------------------------- helpers */

static float *random_floats(pm_rng *rng, int n, double scale) {
    float *x = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    random_normal(rng, x, n, scale);
    return x;
}

static double *to_double(const float *x, int n) {
    double *y = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    for (int i = 0; i < n; i++) y[i] = x[i];
    return y;
}

static float *zeros(int n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

static double weighted_sum(const double *w, const double *out, int n) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += w[i] * out[i];
    return sum;
}

typedef double (*loss_fn)(const void *ctx);

/* grad[i] against (L(x + h e_i) − L(x − h e_i)) / 2h, where L reads x through ctx, for every
 * `every`-th i and the last. */
static void check_gradient_every(loss_fn loss, const void *ctx, double *x, int n,
                                 const float *grad, double step, double rel, double abs_floor,
                                 const char *what, int every) {
    for (int i = 0; i < n; i++) {
        if (i % every != 0 && i != n - 1) continue;
        double saved = x[i];
        x[i] = saved + step;
        double plus = loss(ctx);
        x[i] = saved - step;
        double minus = loss(ctx);
        x[i] = saved;
        assert_close(grad[i], (plus - minus) / (2.0 * step), rel, abs_floor, what, i);
    }
}

static void check_gradient(loss_fn loss, const void *ctx, double *x, int n, const float *grad,
                           double step, double rel, double abs_floor, const char *what) {
    check_gradient_every(loss, ctx, x, n, grad, step, rel, abs_floor, what, 1);
}

/* Gradient buffers that start at c must end at c + 2·g after two backward calls. */
static void check_doubled(const float *twice, const float *start, const float *once, int n,
                          const char *what) {
    for (int i = 0; i < n; i++)
        assert_close(twice[i], start[i] + 2.0 * once[i], 1e-5, 1e-6, what, i);
}

/* ---------------------------------------------------------------- matmul */

typedef struct {
    double *in, *weight, *w;
    int T, K, N;
} matmul_ctx;

static void ref_matmul(double *out, const double *in, const double *weight, int T, int K, int N) {
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++) {
            double sum = 0.0;
            for (int k = 0; k < K; k++) sum += in[t * K + k] * weight[n * K + k];
            out[t * N + n] = sum;
        }
}

static double matmul_loss(const void *ctx) {
    const matmul_ctx *c = ctx;
    double *out = malloc(sizeof(double) * (size_t)(c->T * c->N));
    ref_matmul(out, c->in, c->weight, c->T, c->K, c->N);
    double loss = weighted_sum(c->w, out, c->T * c->N);
    free(out);
    return loss;
}

static void test_matmul_forward(void **state) {
    (void)state;
    pm_rng rng;
    pm_rng_init(&rng, 101, 0);
    const int T = 5, K = 7, N = 3;
    float *in = random_floats(&rng, T * K, 1.0), *weight = random_floats(&rng, N * K, 1.0);
    float *out = random_floats(&rng, T * N, 1.0); /* garbage: forward overwrites */
    matmul_forward(out, in, weight, T, K, N);
    double *din = to_double(in, T * K), *dw = to_double(weight, N * K);
    double want[15];
    ref_matmul(want, din, dw, T, K, N);
    for (int i = 0; i < T * N; i++) assert_close(out[i], want[i], 1e-5, 1e-6, "matmul", i);
    /* K = 0: an empty sum. */
    matmul_forward(out, in, weight, T, 0, N);
    for (int i = 0; i < T * N; i++) assert_close(out[i], 0.0, 0, 0, "matmul K=0", i);
    free(in), free(weight), free(out), free(din), free(dw);
}

/* The row-independent product: the reference's values, and each row bit for bit the same
 * computed alone, among T rows (every T up to 9, at any row offset) and on 1 or 2 threads;
 * K = 37 leaves a partial group of partial sums, N = 300 crosses the threads' threshold. */
static void test_matmul_rows_forward(void **state) {
    (void)state;
    pm_rng rng;
    pm_rng_init(&rng, 103, 0);
    enum { T = 9, K = 37, N = 300 };
    float *in = random_floats(&rng, T * K, 1.0), *weight = random_floats(&rng, N * K, 1.0);
    float *alone = zeros(T * N), *out = zeros(T * N);
    double *din = to_double(in, T * K), *dw = to_double(weight, N * K), *want = malloc(sizeof(double) * T * N);
    ref_matmul(want, din, dw, T, K, N);
    for (int t = 0; t < T; t++) matmul_rows_forward(alone + t * N, in + t * K, weight, 1, K, N);
    for (int i = 0; i < T * N; i++) assert_close(alone[i], want[i], 1e-5, 1e-5, "matmul_rows", i);
    const int saved = omp_get_max_threads();
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        for (int first = 0; first < T; first++)
            for (int rows = 1; first + rows <= T; rows++) {
                matmul_rows_forward(out, in + first * K, weight, rows, K, N);
                assert_memory_equal(out, alone + first * N, sizeof(float) * rows * N);
            }
    }
    omp_set_num_threads(saved);
    matmul_rows_forward(out, in, weight, T, 0, N); /* K = 0: an empty sum */
    for (int i = 0; i < T * N; i++) assert_close(out[i], 0.0, 0, 0, "matmul_rows K=0", i);
    free(in), free(weight), free(alone), free(out), free(din), free(dw), free(want);
}

static void test_matmul_backward(void **state) {
    (void)state;
    pm_rng rng;
    pm_rng_init(&rng, 102, 0);
    const int T = 4, K = 6, N = 5;
    float *in = random_floats(&rng, T * K, 1.0), *weight = random_floats(&rng, N * K, 1.0);
    float *w = random_floats(&rng, T * N, 1.0);
    float *gin = zeros(T * K), *gw = zeros(N * K);
    matmul_backward(gin, gw, w, in, weight, T, K, N);
    matmul_ctx ctx = {to_double(in, T * K), to_double(weight, N * K), to_double(w, T * N), T, K, N};
    check_gradient(matmul_loss, &ctx, ctx.in, T * K, gin, 1e-3, 1e-4, 1e-5, "matmul din");
    check_gradient(matmul_loss, &ctx, ctx.weight, N * K, gw, 1e-3, 1e-4, 1e-5, "matmul dweight");

    /* NULL skips a gradient; both accumulate. */
    float *start_in = random_floats(&rng, T * K, 1.0), *start_w = random_floats(&rng, N * K, 1.0);
    float *acc_in = malloc(sizeof(float) * T * K), *acc_w = malloc(sizeof(float) * N * K);
    memcpy(acc_in, start_in, sizeof(float) * T * K);
    memcpy(acc_w, start_w, sizeof(float) * N * K);
    matmul_backward(acc_in, NULL, w, in, weight, T, K, N);
    matmul_backward(NULL, acc_w, w, in, weight, T, K, N);
    for (int i = 0; i < N * K; i++)
        assert_close(acc_w[i], start_w[i] + gw[i], 1e-5, 1e-6, "dweight alone", i);
    matmul_backward(acc_in, acc_w, w, in, weight, T, K, N);
    check_doubled(acc_in, start_in, gin, T * K, "matmul din twice");
    for (int i = 0; i < N * K; i++)
        assert_close(acc_w[i], start_w[i] + 2.0 * gw[i], 1e-5, 1e-6, "matmul dweight twice", i);
    free(in), free(weight), free(w), free(gin), free(gw), free(ctx.in), free(ctx.weight);
    free(ctx.w), free(start_in), free(start_w), free(acc_in), free(acc_w);
}

/* --------------------------------------------------------------- rmsnorm */

#define RMS_EPS 1e-5f

typedef struct {
    double *in, *weight, *w;
    int T, C;
} rmsnorm_ctx;

static void ref_rmsnorm(double *out, double *rstd, const double *in, const double *weight, int T,
                        int C) {
    for (int t = 0; t < T; t++) {
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += in[t * C + c] * in[t * C + c];
        double r = 1.0 / sqrt(ss / C + (double)RMS_EPS);
        if (rstd) rstd[t] = r;
        for (int c = 0; c < C; c++) out[t * C + c] = in[t * C + c] * r * weight[c];
    }
}

static double rmsnorm_loss(const void *ctx) {
    const rmsnorm_ctx *c = ctx;
    double *out = malloc(sizeof(double) * (size_t)(c->T * c->C));
    ref_rmsnorm(out, NULL, c->in, c->weight, c->T, c->C);
    double loss = weighted_sum(c->w, out, c->T * c->C);
    free(out);
    return loss;
}

static void test_rmsnorm(void **state) {
    (void)state;
    pm_rng rng;
    pm_rng_init(&rng, 103, 0);
    const int T = 4, C = 70; /* C > one 64-channel block of the dweight reduction */
    float *in = random_floats(&rng, T * C, 2.0), *weight = random_floats(&rng, C, 1.0);
    float *w = random_floats(&rng, T * C, 1.0);
    float *out = zeros(T * C), *rstd = zeros(T);
    rmsnorm_forward(out, rstd, in, weight, T, C, RMS_EPS);
    rmsnorm_ctx ctx = {to_double(in, T * C), to_double(weight, C), to_double(w, T * C), T, C};
    double *want = malloc(sizeof(double) * T * C), want_rstd[4];
    ref_rmsnorm(want, want_rstd, ctx.in, ctx.weight, T, C);
    for (int i = 0; i < T * C; i++) assert_close(out[i], want[i], 1e-5, 1e-6, "rmsnorm", i);
    for (int t = 0; t < T; t++) assert_close(rstd[t], want_rstd[t], 1e-6, 0, "rstd", t);

    float *gin = zeros(T * C), *gw = zeros(C);
    rmsnorm_backward(gin, gw, w, in, weight, rstd, T, C);
    check_gradient(rmsnorm_loss, &ctx, ctx.in, T * C, gin, 1e-3, 1e-4, 1e-5, "rmsnorm din");
    check_gradient(rmsnorm_loss, &ctx, ctx.weight, C, gw, 1e-3, 1e-4, 1e-5, "rmsnorm dweight");

    float *start_in = random_floats(&rng, T * C, 1.0), *start_w = random_floats(&rng, C, 1.0);
    float *acc_in = malloc(sizeof(float) * T * C), *acc_w = malloc(sizeof(float) * C);
    memcpy(acc_in, start_in, sizeof(float) * T * C);
    memcpy(acc_w, start_w, sizeof(float) * C);
    rmsnorm_backward(acc_in, acc_w, w, in, weight, rstd, T, C);
    rmsnorm_backward(acc_in, acc_w, w, in, weight, rstd, T, C);
    check_doubled(acc_in, start_in, gin, T * C, "rmsnorm din twice");
    check_doubled(acc_w, start_w, gw, C, "rmsnorm dweight twice");
    /* dweight may be NULL. */
    rmsnorm_backward(acc_in, NULL, w, in, weight, rstd, T, C);
    free(in), free(weight), free(w), free(out), free(rstd), free(ctx.in), free(ctx.weight);
    free(ctx.w), free(want), free(gin), free(gw), free(start_in), free(start_w), free(acc_in);
    free(acc_w);
}

/* ------------------------------------------------------------------ rope */

#define ROPE_THETA 10000.0f

typedef struct {
    double *in, *w;
    const int32_t *positions;
    int T, heads, D;
} rope_ctx;

static void ref_rope(double *out, const double *in, const int32_t *positions, int T, int heads,
                     int D) {
    int half = D / 2;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < half; i++) {
                double angle = positions[t] * pow((double)ROPE_THETA, -2.0 * i / D);
                const double *x = in + (t * heads + h) * D;
                double *y = out + (t * heads + h) * D;
                y[i] = x[i] * cos(angle) - x[i + half] * sin(angle);
                y[i + half] = x[i + half] * cos(angle) + x[i] * sin(angle);
            }
}

static double rope_loss(const void *ctx) {
    const rope_ctx *c = ctx;
    int n = c->T * c->heads * c->D;
    double *out = malloc(sizeof(double) * (size_t)n);
    ref_rope(out, c->in, c->positions, c->T, c->heads, c->D);
    double loss = weighted_sum(c->w, out, n);
    free(out);
    return loss;
}

/* Positions up to 1e5 (float angles would be off by ~1e-2 there), two heads, D = 80 (more
 * than one 32-frequency pass); out of place and in place; pair norms kept. */
static void test_rope_forward(void **state) {
    (void)state;
    pm_rng rng;
    pm_rng_init(&rng, 104, 0);
    const int T = 6, heads = 2, D = 80, n = T * heads * D;
    const int32_t positions[6] = {3, 4, 5, 1000, 65537, 100000};
    float *in = random_floats(&rng, n, 1.0), *out = zeros(n);
    rope_forward(out, in, positions, T, heads, D, ROPE_THETA);
    double *din = to_double(in, n), *want = malloc(sizeof(double) * n);
    ref_rope(want, din, positions, T, heads, D);
    for (int i = 0; i < n; i++) assert_close(out[i], want[i], 1e-6, 1e-6, "rope", i);
    for (int th = 0; th < T * heads; th++)
        for (int i = 0; i < D / 2; i++) {
            const float *x = in + th * D, *y = out + th * D;
            double before = (double)x[i] * x[i] + (double)x[i + D / 2] * x[i + D / 2];
            double after = (double)y[i] * y[i] + (double)y[i + D / 2] * y[i + D / 2];
            assert_close(after, before, 1e-6, 1e-12, "rope pair norm", th * D + i);
        }
    float *inplace = malloc(sizeof(float) * n);
    memcpy(inplace, in, sizeof(float) * n);
    rope_forward(inplace, inplace, positions, T, heads, D, ROPE_THETA);
    assert_memory_equal(inplace, out, sizeof(float) * n);
    free(in), free(out), free(din), free(want), free(inplace);
}

static void test_rope_backward(void **state) {
    (void)state;
    pm_rng rng;
    pm_rng_init(&rng, 105, 0);
    const int T = 3, heads = 2, D = 8, n = T * heads * D;
    const int32_t positions[3] = {7, 8, 9};
    float *in = random_floats(&rng, n, 1.0), *w = random_floats(&rng, n, 1.0), *g = zeros(n);
    rope_backward(g, w, positions, T, heads, D, ROPE_THETA);
    rope_ctx ctx = {to_double(in, n), to_double(w, n), positions, T, heads, D};
    check_gradient(rope_loss, &ctx, ctx.in, n, g, 1e-3, 1e-4, 1e-6, "rope din");
    float *start = random_floats(&rng, n, 1.0), *acc = malloc(sizeof(float) * n);
    memcpy(acc, start, sizeof(float) * n);
    rope_backward(acc, w, positions, T, heads, D, ROPE_THETA);
    rope_backward(acc, w, positions, T, heads, D, ROPE_THETA);
    check_doubled(acc, start, g, n, "rope twice");
    free(in), free(w), free(g), free(ctx.in), free(ctx.w), free(start), free(acc);
}

/* ------------------------------------------------------------- attention */

typedef struct {
    int B, S, H, KVH, D;
} attn_shape;

static int q_size(attn_shape s) { return s.B * s.S * s.H * s.D; }
static int kv_size(attn_shape s) { return s.B * s.S * s.KVH * s.D; }

/* Naive per-head softmax(q kᵀ / sqrt(D) + causal mask) v; att may be NULL. */
static void ref_attention(double *out, double *att, const double *q, const double *k,
                          const double *v, attn_shape s) {
    const int group = s.H / s.KVH;
    double *p = malloc(sizeof(double) * (size_t)s.S);
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.H; h++)
            for (int i = 0; i < s.S; i++) {
                const double *qi = q + ((b * s.S + i) * s.H + h) * s.D;
                double m = -INFINITY;
                for (int j = 0; j <= i; j++) {
                    const double *kj = k + ((b * s.S + j) * s.KVH + h / group) * s.D;
                    double dot = 0.0;
                    for (int d = 0; d < s.D; d++) dot += qi[d] * kj[d];
                    p[j] = dot / sqrt((double)s.D);
                    m = fmax(m, p[j]);
                }
                double sum = 0.0;
                for (int j = 0; j <= i; j++) sum += p[j] = exp(p[j] - m);
                double *oi = out + ((b * s.S + i) * s.H + h) * s.D;
                for (int d = 0; d < s.D; d++) oi[d] = 0.0;
                for (int j = 0; j < s.S; j++) {
                    double pj = j <= i ? p[j] / sum : 0.0;
                    if (att) att[((b * s.H + h) * s.S + i) * s.S + j] = pj;
                    if (j > i) continue;
                    const double *vj = v + ((b * s.S + j) * s.KVH + h / group) * s.D;
                    for (int d = 0; d < s.D; d++) oi[d] += pj * vj[d];
                }
            }
    free(p);
}

typedef struct {
    double *q, *k, *v, *w;
    attn_shape s;
} attn_ctx;

static double attention_loss(const void *ctx) {
    const attn_ctx *c = ctx;
    double *out = malloc(sizeof(double) * (size_t)q_size(c->s));
    ref_attention(out, NULL, c->q, c->k, c->v, c->s);
    double loss = weighted_sum(c->w, out, q_size(c->s));
    free(out);
    return loss;
}

/* Forward output and probabilities against the reference; exact zeros above the diagonal. */
static void check_attention_forward(attn_shape s, double q_scale, uint64_t seed) {
    pm_rng rng;
    pm_rng_init(&rng, seed, 0);
    const int nq = q_size(s), nkv = kv_size(s), na = s.B * s.H * s.S * s.S;
    float *q = random_floats(&rng, nq, q_scale), *k = random_floats(&rng, nkv, 1.0);
    float *v = random_floats(&rng, nkv, 1.0);
    float *out = random_floats(&rng, nq, 1.0), *att = random_floats(&rng, na, 1.0);
    attention_forward(out, att, q, k, v, s.B, s.S, s.H, s.KVH, s.D);
    double *dq = to_double(q, nq), *dk = to_double(k, nkv), *dv = to_double(v, nkv);
    double *want = malloc(sizeof(double) * nq), *want_att = malloc(sizeof(double) * na);
    ref_attention(want, want_att, dq, dk, dv, s);
    for (int i = 0; i < nq; i++) assert_close(out[i], want[i], 1e-4, 1e-5, "attention out", i);
    for (int i = 0; i < na; i++) {
        int row = i / s.S, col = i % s.S;
        if (col > row % s.S) assert_close(att[i], 0.0, 0, 0, "att above diagonal", i);
        else assert_close(att[i], want_att[i], 1e-4, 1e-6, "att", i);
    }
    free(q), free(k), free(v), free(out), free(att), free(dq), free(dk), free(dv), free(want);
    free(want_att);
}

static void test_attention_forward(void **state) {
    (void)state;
    const attn_shape shapes[] = {
        {2, 5, 4, 4, 8},  {2, 5, 4, 2, 8},  {2, 5, 4, 1, 8}, {1, 1, 1, 1, 2},
        {1, 70, 2, 1, 40}, /* several query blocks, head size not a multiple of a tile */
        {2, 33, 3, 3, 6},  /* odd sizes everywhere */
        {1, 300, 2, 1, 8}, /* several key passes of the P·V product */
    };
    for (int i = 0; i < (int)(sizeof shapes / sizeof shapes[0]); i++)
        check_attention_forward(shapes[i], 1.0, 200 + i);
    /* Large scores (|q·k|/sqrt(D) in the tens): the softmax must subtract the maximum. */
    check_attention_forward((attn_shape){2, 9, 2, 1, 8}, 30.0, 210);
}

/* every > 1 samples the finite differences on long sequences. */
static void check_attention_backward(attn_shape s, uint64_t seed, int every) {
    pm_rng rng;
    pm_rng_init(&rng, seed, 0);
    const int nq = q_size(s), nkv = kv_size(s), na = s.B * s.H * s.S * s.S;
    float *q = random_floats(&rng, nq, 1.0), *k = random_floats(&rng, nkv, 1.0);
    float *v = random_floats(&rng, nkv, 1.0), *w = random_floats(&rng, nq, 1.0);
    float *out = zeros(nq), *att = zeros(na);
    attention_forward(out, att, q, k, v, s.B, s.S, s.H, s.KVH, s.D);
    float *gq = zeros(nq), *gk = zeros(nkv), *gv = zeros(nkv);
    attention_backward(gq, gk, gv, w, att, q, k, v, s.B, s.S, s.H, s.KVH, s.D);
    attn_ctx ctx = {to_double(q, nq), to_double(k, nkv), to_double(v, nkv), to_double(w, nq), s};
    check_gradient_every(attention_loss, &ctx, ctx.q, nq, gq, 1e-3, 1e-4, 1e-5, "attention dq",
                         every);
    check_gradient_every(attention_loss, &ctx, ctx.k, nkv, gk, 1e-3, 1e-4, 1e-5, "attention dk",
                         every);
    check_gradient_every(attention_loss, &ctx, ctx.v, nkv, gv, 1e-3, 1e-4, 1e-5, "attention dv",
                         every);

    const int ng = nq + 2 * nkv;
    float *start = random_floats(&rng, ng, 1.0), *acc = malloc(sizeof(float) * ng);
    memcpy(acc, start, sizeof(float) * ng);
    for (int rep = 0; rep < 2; rep++)
        attention_backward(acc, acc + nq, acc + nq + nkv, w, att, q, k, v, s.B, s.S, s.H, s.KVH,
                           s.D);
    check_doubled(acc, start, gq, nq, "attention dq twice");
    check_doubled(acc + nq, start + nq, gk, nkv, "attention dk twice");
    check_doubled(acc + nq + nkv, start + nq + nkv, gv, nkv, "attention dv twice");
    free(q), free(k), free(v), free(w), free(out), free(att), free(gq), free(gk), free(gv);
    free(ctx.q), free(ctx.k), free(ctx.v), free(ctx.w), free(start), free(acc);
}

static void test_attention_backward(void **state) {
    (void)state;
    check_attention_backward((attn_shape){2, 5, 4, 4, 8}, 300, 1);
    check_attention_backward((attn_shape){2, 5, 4, 2, 8}, 301, 1);
    check_attention_backward((attn_shape){2, 5, 4, 1, 8}, 302, 1);
    check_attention_backward((attn_shape){1, 37, 2, 1, 6}, 303, 1); /* two query blocks */
    /* Long enough for several key passes of the P·V and dS·K products. */
    check_attention_backward((attn_shape){1, 300, 2, 1, 4}, 304, 29);
}

/* ---------------------------------------------------------------- swiglu */

typedef struct {
    double *gate, *up, *w;
    int n;
} swiglu_ctx;

static double ref_silu(double x) { return x / (1.0 + exp(-x)); }

static double swiglu_loss(const void *ctx) {
    const swiglu_ctx *c = ctx;
    double loss = 0.0;
    for (int i = 0; i < c->n; i++) loss += c->w[i] * ref_silu(c->gate[i]) * c->up[i];
    return loss;
}

/* The kernels read gate and up side by side in each row (T, 2I) and write both gradients
 * there, overwriting. */
static void test_swiglu(void **state) {
    (void)state;
    pm_rng rng;
    pm_rng_init(&rng, 106, 0);
    const int T = 3, I = 11, n = T * I;
    float *gate = random_floats(&rng, n, 3.0), *up = random_floats(&rng, n, 1.0);
    float *w = random_floats(&rng, n, 1.0), *out = zeros(n);
    gate[0] = -900.0f; /* exp overflows here: silu must still be 0, not NaN */
    gate[1] = 60.0f;
    float *gate_up = malloc(sizeof(float) * 2 * n);
    for (int t = 0; t < T; t++) {
        memcpy(gate_up + 2 * t * I, gate + t * I, sizeof(float) * I);
        memcpy(gate_up + (2 * t + 1) * I, up + t * I, sizeof(float) * I);
    }
    swiglu_forward(out, gate_up, T, I);
    for (int i = 0; i < n; i++)
        assert_close(out[i], ref_silu(gate[i]) * up[i], 1e-6, 1e-7, "swiglu", i);
    float *grad = malloc(sizeof(float) * 2 * n), *again = malloc(sizeof(float) * 2 * n);
    for (int i = 0; i < 2 * n; i++) grad[i] = NAN; /* overwritten, never read */
    swiglu_backward(grad, w, gate_up, T, I);
    float *gg = zeros(n), *gu = zeros(n);
    for (int t = 0; t < T; t++) {
        memcpy(gg + t * I, grad + 2 * t * I, sizeof(float) * I);
        memcpy(gu + t * I, grad + (2 * t + 1) * I, sizeof(float) * I);
    }
    swiglu_ctx ctx = {to_double(gate, n), to_double(up, n), to_double(w, n), n};
    check_gradient(swiglu_loss, &ctx, ctx.gate, n, gg, 1e-3, 1e-4, 1e-6, "swiglu dgate");
    check_gradient(swiglu_loss, &ctx, ctx.up, n, gu, 1e-3, 1e-4, 1e-6, "swiglu dup");
    memcpy(again, grad, sizeof(float) * 2 * n);
    swiglu_backward(again, w, gate_up, T, I);
    assert_memory_equal(again, grad, sizeof(float) * 2 * n);
    free(gate), free(up), free(w), free(out), free(gate_up), free(grad), free(again), free(gg), free(gu);
    free(ctx.gate), free(ctx.up), free(ctx.w);
}

/* ------------------------------------------------------------- embedding */

typedef struct {
    double *table, *w;
    const int32_t *tokens;
    int T, C;
} embedding_ctx;

static double embedding_loss(const void *ctx) {
    const embedding_ctx *c = ctx;
    double loss = 0.0;
    for (int t = 0; t < c->T; t++)
        for (int ch = 0; ch < c->C; ch++)
            loss += c->w[t * c->C + ch] * c->table[c->tokens[t] * c->C + ch];
    return loss;
}

static void test_embedding(void **state) {
    (void)state;
    pm_rng rng;
    pm_rng_init(&rng, 107, 0);
    const int V = 6, T = 7, C = 5;
    const int32_t tokens[7] = {2, 5, 2, 0, 2, 5, 3}; /* 1 and 4 unused */
    float *table = random_floats(&rng, V * C, 1.0), *w = random_floats(&rng, T * C, 1.0);
    float *out = zeros(T * C), *g = zeros(V * C);
    embedding_forward(out, tokens, table, T, C);
    for (int t = 0; t < T; t++)
        for (int ch = 0; ch < C; ch++)
            assert_close(out[t * C + ch], table[tokens[t] * C + ch], 0, 0, "embedding", t * C + ch);
    embedding_backward(g, w, tokens, T, C);
    embedding_ctx ctx = {to_double(table, V * C), to_double(w, T * C), tokens, T, C};
    check_gradient(embedding_loss, &ctx, ctx.table, V * C, g, 1e-2, 1e-5, 1e-6, "embedding");
    float *start = random_floats(&rng, V * C, 1.0), *acc = malloc(sizeof(float) * V * C);
    memcpy(acc, start, sizeof(float) * V * C);
    embedding_backward(acc, w, tokens, T, C);
    embedding_backward(acc, w, tokens, T, C);
    check_doubled(acc, start, g, V * C, "embedding twice");
    free(table), free(w), free(out), free(g), free(ctx.table), free(ctx.w), free(start), free(acc);
}

/* --------------------------------------------------------- cross-entropy */

typedef struct {
    double *logits;
    const int32_t *targets;
    int T, V;
    double dloss;
} ce_ctx;

/* dloss · mean over counted rows of logsumexp(x) − x[target]. */
static double ce_loss(const void *ctx) {
    const ce_ctx *c = ctx;
    double total = 0.0;
    int count = 0;
    for (int t = 0; t < c->T; t++) {
        if (c->targets[t] < 0) continue;
        const double *x = c->logits + t * c->V;
        double m = -INFINITY, sum = 0.0;
        for (int v = 0; v < c->V; v++) m = fmax(m, x[v]);
        for (int v = 0; v < c->V; v++) sum += exp(x[v] - m);
        total += log(sum) + m - x[c->targets[t]];
        count++;
    }
    return count ? c->dloss * total / count : 0.0;
}

static void test_cross_entropy(void **state) {
    (void)state;
    pm_rng rng;
    pm_rng_init(&rng, 108, 0);
    const int T = 6, V = 9;
    const int32_t targets[6] = {3, -1, 0, 8, -100, 3};
    float *logits = random_floats(&rng, T * V, 2.0);
    logits[5 * V + 1] = 1e4f; /* one huge logit: exp must not overflow */
    int count = -1;
    float loss = cross_entropy_forward(logits, targets, T, V, &count);
    assert_int_equal(count, 4);
    ce_ctx ctx = {to_double(logits, T * V), targets, T, V, 1.0};
    assert_close(loss, ce_loss(&ctx), 1e-6, 1e-6, "cross-entropy", 0);
    assert_true(isfinite(loss) && loss > 2000.0f);

    ctx.dloss = 1.7;
    float *g = zeros(T * V);
    cross_entropy_backward(g, logits, targets, T, V, 1.7f);
    check_gradient(ce_loss, &ctx, ctx.logits, T * V, g, 1e-3, 1e-4, 1e-6, "cross-entropy grad");
    for (int v = 0; v < V; v++) {
        assert_close(g[1 * V + v], 0.0, 0, 0, "ignored row", v);
        assert_close(g[4 * V + v], 0.0, 0, 0, "ignored row", v);
    }
    float *start = random_floats(&rng, T * V, 1.0), *acc = malloc(sizeof(float) * T * V);
    memcpy(acc, start, sizeof(float) * T * V);
    cross_entropy_backward(acc, logits, targets, T, V, 1.7f);
    cross_entropy_backward(acc, logits, targets, T, V, 1.7f);
    check_doubled(acc, start, g, T * V, "cross-entropy twice");

    /* Every target ignored: loss 0, count 0, no gradient. */
    const int32_t none[6] = {-1, -1, -1, -1, -1, -1};
    count = -1;
    assert_close(cross_entropy_forward(logits, none, T, V, &count), 0.0, 0, 0, "all ignored", 0);
    assert_int_equal(count, 0);
    memcpy(acc, start, sizeof(float) * T * V);
    cross_entropy_backward(acc, logits, none, T, V, 1.0f);
    assert_memory_equal(acc, start, sizeof(float) * T * V);
    free(logits), free(ctx.logits), free(g), free(start), free(acc);
}

/* ---------------------------------------------------- thread independence */

/* Runs the kernels whose reductions could depend on the split between threads with 1 and
 * 2 threads; every output must be bit-identical. */
static void run_threaded_kernels(int threads, float *results, const float *q, const float *k,
                                 const float *v, const float *dout, attn_shape s,
                                 const int32_t *tokens, const float *demb, int T, int C, int V,
                                 const float *logits, const int32_t *targets) {
    omp_set_num_threads(threads);
    const int nq = q_size(s), nkv = kv_size(s), na = s.B * s.H * s.S * s.S;
    float *out = results, *att = out + nq, *gq = att + na, *gk = gq + nq, *gv = gk + nkv;
    float *dtable = gv + nkv, *dweight = dtable + V * C, *din = dweight + C, *loss = din + T * C;
    memset(gq, 0, sizeof(float) * (size_t)(nq + 2 * nkv + V * C + C + T * C));
    attention_forward(out, att, q, k, v, s.B, s.S, s.H, s.KVH, s.D);
    attention_backward(gq, gk, gv, dout, att, q, k, v, s.B, s.S, s.H, s.KVH, s.D);
    embedding_backward(dtable, demb, tokens, T, C);
    /* rmsnorm's dweight sums over tokens; reuse demb as input and logits as weight. */
    float *rstd = malloc(sizeof(float) * T), *normed = malloc(sizeof(float) * T * C);
    rmsnorm_forward(normed, rstd, demb, logits, T, C, RMS_EPS);
    rmsnorm_backward(din, dweight, demb, demb, logits, rstd, T, C);
    int count;
    *loss = cross_entropy_forward(logits, targets, T, C, &count);
    free(rstd), free(normed);
}

static void test_thread_independence(void **state) {
    (void)state;
    pm_rng rng;
    pm_rng_init(&rng, 109, 0);
    const attn_shape s = {2, 45, 4, 2, 16};
    const int T = 300, C = 150, V = 7;
    const int nq = q_size(s), nkv = kv_size(s), na = s.B * s.H * s.S * s.S;
    float *q = random_floats(&rng, nq, 1.0), *k = random_floats(&rng, nkv, 1.0);
    float *v = random_floats(&rng, nkv, 1.0), *dout = random_floats(&rng, nq, 1.0);
    float *demb = random_floats(&rng, T * C, 1.0), *logits = random_floats(&rng, T * C, 1.0);
    int32_t *tokens = malloc(sizeof(int32_t) * T), *targets = malloc(sizeof(int32_t) * T);
    for (int t = 0; t < T; t++) {
        tokens[t] = (int32_t)(pm_rng_u32(&rng) % V);
        targets[t] = t % 5 == 0 ? -1 : (int32_t)(pm_rng_u32(&rng) % C);
    }
    const size_t total = (size_t)(2 * nq + na + 2 * nkv + V * C + C + T * C + 1);
    float *one = malloc(sizeof(float) * total), *two = malloc(sizeof(float) * total);
    const int saved = omp_get_max_threads();
    run_threaded_kernels(1, one, q, k, v, dout, s, tokens, demb, T, C, V, logits, targets);
    run_threaded_kernels(2, two, q, k, v, dout, s, tokens, demb, T, C, V, logits, targets);
    omp_set_num_threads(saved);
    assert_memory_equal(one, two, sizeof(float) * total);
    free(q), free(k), free(v), free(dout), free(demb), free(logits), free(tokens), free(targets);
    free(one), free(two);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_forward),     cmocka_unit_test(test_matmul_rows_forward),
        cmocka_unit_test(test_matmul_backward),
        cmocka_unit_test(test_rmsnorm),            cmocka_unit_test(test_rope_forward),
        cmocka_unit_test(test_rope_backward),      cmocka_unit_test(test_attention_forward),
        cmocka_unit_test(test_attention_backward), cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_embedding),          cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_thread_independence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
