/*
 * Causal grouped-KV attention. Every matrix product is a cblas_sgemm; the softmax and its
 * backward are elementwise loops.
 *
 * Threads: an OpenMP loop runs over (sequence, head) pairs in the forward and over
 * (sequence, KV head) pairs in the backward, and each task calls sgemm on its own head. We
 * link the OpenMP build of OpenBLAS, which runs a call made inside a parallel region on the
 * calling thread alone, so BLAS does not start threads on top of ours, and every product is
 * computed the same way whatever the number of threads.
 *
 * One head's rows of q, k and v are strided by H·D or KVH·D in memory; the leading
 * dimensions passed to BLAS pick them out without copies. Queries go in blocks of QB rows,
 * and a block is multiplied only with keys 0 .. its last query: that skips most of the
 * upper triangle (all but the part inside the diagonal block) at the cost of a few more,
 * smaller sgemm calls.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "nn/nn.h"

/* ISO C mode turns off contraction of a*b + c into FMA; ask for it where the target has it. */
#ifdef FP_FAST_FMAF
#define MADD(a, b, c) fmaf((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

/* Query rows per block: big enough for sgemm to run near its peak, small enough that the
 * diagonal blocks' wasted upper halves stay a small part of the work at S in the hundreds. */
#define QB 64

/* C (M, N) = A (M, K) · B (K, N) + beta · C, row-major; ta / tb say whether A or B is stored
 * transposed. Leading dimensions are the row strides of the stored matrices. */
static void gemm(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C,
                 int ldc) {
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

/* e^x for x <= 0 in float, vectorisable (libm's expf is not without -ffast-math, and the
 * double pm_exp cost 2 ms of a 12 ms forward): x = n ln2 + r with |r| <= ln2/2, a degree-7
 * Taylor polynomial (truncation < 1e-8 relative), 2^n built in the exponent bits from the
 * rounding trick's mantissa. Inputs below −87 are clamped there: e^−87 ~ 2e-38 is nothing next
 * to the softmax's largest term, 1. */
static inline float exp_nonpositive(float x) {
    const float log2e = 1.44269504f, ln2_hi = 0.693145752f, ln2_lo = 1.42860677e-6f,
                shifter = 0x1.8p23f;
    x = x < -87.0f ? -87.0f : x;
    const float rounded = MADD(x, log2e, shifter), n = rounded - shifter;
    const float r = MADD(-n, ln2_lo, MADD(-n, ln2_hi, x));
    float p = 1.0f / 5040.0f;
    p = MADD(p, r, 1.0f / 720.0f);
    p = MADD(p, r, 1.0f / 120.0f);
    p = MADD(p, r, 1.0f / 24.0f);
    p = MADD(p, r, 1.0f / 6.0f);
    p = MADD(p, r, 0.5f);
    p = MADD(p, r, 1.0f);
    p = MADD(p, r, 1.0f);
    /* rounded's low mantissa bits hold n (its ulp is 1); n + 127 in the exponent field. */
    uint32_t bits;
    memcpy(&bits, &rounded, sizeof bits);
    bits = (bits + 127u) << 23;
    float pow2n;
    memcpy(&pow2n, &bits, sizeof pow2n);
    return p * pow2n;
}

/*
 * Rows first .. first + rows − 1 of one head's (S, S) attention matrix, a (rows, S): on entry
 * columns j <= first + rows − 1 hold the raw scores q·k. On return row i holds
 * softmax(scale · scores) over keys j <= i (and j > i − window with a sliding window) and exact
 * zeros elsewhere (the scores the block's sgemm computed above the diagonal included), so P·V
 * and the backward can read whole rows; the backward then gives the keys outside the window
 * nothing by itself. The maximum is subtracted first, so large scores do not overflow; the sum
 * is in double.
 */
static void causal_softmax_rows(float *a, int S, int first, int rows, float scale, int window) {
    for (int r = 0; r < rows; r++) {
        const int n = first + r + 1, lo = window > 0 && n > window ? n - window : 0;
        float *s = a + (size_t)r * S;
        float m = -INFINITY;
#pragma omp simd reduction(max : m)
        for (int j = lo; j < n; j++) m = s[j] > m ? s[j] : m;
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int j = lo; j < n; j++) {
            const float e = exp_nonpositive(scale * (s[j] - m));
            s[j] = e;
            sum += e;
        }
        const float inv = (float)(1.0 / sum);
#pragma omp simd
        for (int j = lo; j < n; j++) s[j] *= inv;
        memset(s, 0, sizeof(float) * (size_t)lo);
        memset(s + n, 0, sizeof(float) * (size_t)(S - n));
    }
}

/* One (sequence, head): for each query block, scores straight into att, softmax in place,
 * then out = P·V over the block's keys. att is (S, S); q and out rows are strided by q_ld,
 * k and v rows by kv_ld. */
static void forward_head(float *out, float *att, const float *q, const float *k, const float *v, int S, int D,
                         int q_ld, int kv_ld, float scale, int window) {
    for (int i0 = 0; i0 < S; i0 += QB) {
        const int rows = S - i0 < QB ? S - i0 : QB, keys = i0 + rows;
        float *a = att + (size_t)i0 * S;
        gemm(CblasNoTrans, CblasTrans, rows, keys, D, q + (size_t)i0 * q_ld, q_ld, k, kv_ld,
             0.0f, a, S);
        causal_softmax_rows(a, S, i0, rows, scale, window);
        gemm(CblasNoTrans, CblasNoTrans, rows, D, keys, a, S, v, kv_ld, 0.0f,
             out + (size_t)i0 * q_ld, q_ld);
    }
}

void attention_forward_window(float *out, float *att, const float *q, const float *k, const float *v, int B, int S,
                              int H, int KVH, int D, int window) {
    if (B <= 0 || S <= 0 || H <= 0 || KVH <= 0 || D <= 0) return;
    const int group = H / KVH, q_ld = H * D, kv_ld = KVH * D;
    const float scale = (float)(1.0 / sqrt((double)D));
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        const int b = bh / H, h = bh % H, g = h / group;
        const size_t q_off = (size_t)b * S * q_ld + (size_t)h * D;
        const size_t kv_off = (size_t)b * S * kv_ld + (size_t)g * D;
        forward_head(out + q_off, att + (size_t)bh * S * S, q + q_off, k + kv_off, v + kv_off, S,
                     D, q_ld, kv_ld, scale, window);
    }
}

void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       int B, int S, int H, int KVH, int D) {
    attention_forward_window(out, att, q, k, v, B, S, H, KVH, D, 0);
}

/*
 * Softmax backward for rows first .. first + rows − 1: ds (rows, ld S) holds dP = dO·Vᵀ for
 * keys j < first + rows and p (rows, ld S) the probabilities. Row i becomes
 * dS = scale · P ⊙ (dP − Σ_j P·dP) for j <= i and exact zeros for i < j < first + rows, so the
 * products that follow can take the block's keys as one rectangle. The row sum is in double.
 */
static void softmax_backward_rows(float *ds, const float *p, int S, int first, int rows,
                                  double scale) {
    const int keys = first + rows;
    for (int r = 0; r < rows; r++) {
        const int n = first + r + 1;
        float *d = ds + (size_t)r * S;
        const float *pr = p + (size_t)r * S;
        double dot = 0.0;
#pragma omp simd reduction(+ : dot)
        for (int j = 0; j < n; j++) dot += (double)pr[j] * d[j];
#pragma omp simd
        for (int j = 0; j < n; j++) d[j] = (float)(scale * pr[j] * ((double)d[j] - dot));
        memset(d + n, 0, sizeof(float) * (size_t)(keys - n));
    }
}

/*
 * One (sequence, query head), accumulating into dq (its rows, ld q_ld) and into dk, dv of its
 * KV head (ld kv_ld). Per query block, with keys 0 .. block end:
 *   dP = dO·Vᵀ,  dS = softmax backward,  dQ += dS·K,  dK += dSᵀ·Q,  dV += Pᵀ·dO.
 * ds is (QB, S) scratch. Blocks go in order, so dk and dv always sum in the same order.
 */
static void backward_head(float *dq, float *dk, float *dv, float *ds, const float *dout,
                          const float *att, const float *q, const float *k, const float *v,
                          int S, int D, int q_ld, int kv_ld, double scale) {
    for (int i0 = 0; i0 < S; i0 += QB) {
        const int rows = S - i0 < QB ? S - i0 : QB, keys = i0 + rows;
        const size_t q_off = (size_t)i0 * q_ld;
        const float *p = att + (size_t)i0 * S;
        gemm(CblasNoTrans, CblasTrans, rows, keys, D, dout + q_off, q_ld, v, kv_ld, 0.0f, ds, S);
        softmax_backward_rows(ds, p, S, i0, rows, scale);
        gemm(CblasNoTrans, CblasNoTrans, rows, D, keys, ds, S, k, kv_ld, 1.0f, dq + q_off, q_ld);
        gemm(CblasTrans, CblasNoTrans, keys, D, rows, ds, S, q + q_off, q_ld, 1.0f, dk, kv_ld);
        gemm(CblasTrans, CblasNoTrans, keys, D, rows, p, S, dout + q_off, q_ld, 1.0f, dv, kv_ld);
    }
}

static void fill_nan(float *x, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

/* One (QB, S) slice of dS per thread. */
size_t attention_backward_scratch_bytes(int S, int threads) { return sizeof(float) * (size_t)QB * (size_t)S * (size_t)threads; }

/*
 * A task owns one (sequence, KV head) pair and walks its query heads in order: dk and dv of a
 * KV head shared by several query heads are then summed by one thread in a fixed order, and
 * no two threads write the same rows of dq, dk or dv.
 */
void attention_backward_in(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                           const float *k, const float *v, int B, int S, int H, int KVH, int D, float *scratch,
                           int scratch_threads) {
    if (B <= 0 || S <= 0 || H <= 0 || KVH <= 0 || D <= 0) return;
    const int group = H / KVH, q_ld = H * D, kv_ld = KVH * D;
    const double scale = 1.0 / sqrt((double)D);
    const size_t per_thread = (size_t)QB * S;
    const int threads = omp_get_max_threads() < scratch_threads ? omp_get_max_threads() : scratch_threads;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int bg = 0; bg < B * KVH; bg++) {
        const int b = bg / KVH, g = bg % KVH;
        float *ds = scratch + per_thread * (size_t)omp_get_thread_num();
        const size_t kv_off = (size_t)b * S * kv_ld + (size_t)g * D;
        for (int h = g * group; h < (g + 1) * group; h++) {
            const size_t q_off = (size_t)b * S * q_ld + (size_t)h * D;
            backward_head(dq + q_off, dk + kv_off, dv + kv_off, ds, dout + q_off,
                          att + ((size_t)b * H + h) * S * S, q + q_off, k + kv_off, v + kv_off,
                          S, D, q_ld, kv_ld, scale);
        }
    }
}

void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                        const float *q, const float *k, const float *v, int B, int S, int H,
                        int KVH, int D) {
    if (B <= 0 || S <= 0 || H <= 0 || KVH <= 0 || D <= 0) return;
    const int threads = omp_get_max_threads();
    float *scratch = malloc(attention_backward_scratch_bytes(S, threads));
    if (!scratch) {
        /* This function cannot report errors: poison the gradients so the failure shows up
         * (a non-finite gradient norm stops training) instead of silently missing a term. */
        fill_nan(dq, (size_t)B * S * H * D);
        fill_nan(dk, (size_t)B * S * KVH * D);
        fill_nan(dv, (size_t)B * S * KVH * D);
        return;
    }
    attention_backward_in(dq, dk, dv, dout, att, q, k, v, B, S, H, KVH, D, scratch, threads);
    free(scratch);
}
