/* Linear layers whose rows do not depend on one another, for decoding. BLAS picks its kernel by
 * the matrix shape, so the bits of one row's result change with the number of rows (OpenBLAS
 * 0.3.21 on AVX-512 from 5 rows on); a sequence decoded in a batch must get the same tokens as
 * decoded alone, which needs every row computed the same way whatever the batch.
 *
 * A decoding step has one or a few rows, so the product is a matrix-vector product bounded by
 * reading the weight: each weight row is read once for all T rows, a few output rows at a
 * time (their weights stay in L1 while the T inputs pass over them), with one vector of
 * partial sums per output. Every output's sum has one fixed order (16 lanes, lane j summing
 * k ≡ j mod 16 in increasing k by fused multiply-adds, then a fixed tree over the lanes),
 * whatever T, the row's place in the batch, the blocking or the thread count. */
#include <stddef.h>
#include <stdint.h>

#include "core/bf16.h"
#include "nn/nn.h"

enum {
    LANES = 16,
    BLOCK = 4, /* output rows per pass: 4 accumulator chains hide the FMA latency; more spill */
    /* Weights below which one thread is faster than waking the other (a 256 x 256 matrix is
     * worth splitting on this machine; the demo's router is not). */
    PARALLEL_WEIGHTS = 32768,
};

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)

/* 16 weights from k on (mask: those below K), widened to fp32: bf16 is fp32's top half, so the
 * widening is exact. */
static inline __m512 load_weights(const void *weight, size_t at, __mmask16 mask, bool bf16) {
    if (!bf16) return _mm512_maskz_loadu_ps(mask, (const float *)weight + at);
    const __m256i half = _mm256_maskz_loadu_epi16(mask, (const uint16_t *)weight + at);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
}

/* out[r] = x · weight row (first + r), r < R; R is a constant at each call, so the accumulators
 * stay in registers. */
static inline void block_dots(float *out, const float *x, const void *weight, size_t first, int R, int K, bool bf16) {
    __m512 acc[BLOCK];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    int k = 0;
    for (; k + LANES <= K; k += LANES) {
        const __m512 xv = _mm512_loadu_ps(x + k);
        for (int r = 0; r < R; r++)
            acc[r] = _mm512_fmadd_ps(xv, load_weights(weight, (first + r) * K + k, 0xFFFF, bf16), acc[r]);
    }
    if (k < K) { /* masked lanes load zeros and add exact zeros */
        const __mmask16 mask = (__mmask16)((1u << (K - k)) - 1);
        const __m512 xv = _mm512_maskz_loadu_ps(mask, x + k);
        for (int r = 0; r < R; r++)
            acc[r] = _mm512_fmadd_ps(xv, load_weights(weight, (first + r) * K + k, mask, bf16), acc[r]);
    }
    for (int r = 0; r < R; r++) out[r] = _mm512_reduce_add_ps(acc[r]);
}

#else

/* The portable order: the same lanes, multiplies and adds as written (no contraction in ISO
 * C), then the same halving tree. */
static inline float weight_at(const void *weight, size_t at, bool bf16) {
    return bf16 ? bf16_to_float(((const uint16_t *)weight)[at]) : ((const float *)weight)[at];
}

static inline void block_dots(float *out, const float *x, const void *weight, size_t first, int R, int K, bool bf16) {
    for (int r = 0; r < R; r++) {
        const size_t row = (first + r) * K;
        float partial[LANES] = {0};
        for (int k = 0; k < K; k++) partial[k % LANES] += x[k] * weight_at(weight, row + k, bf16);
        for (int width = LANES / 2; width > 0; width /= 2)
            for (int j = 0; j < width; j++) partial[j] += partial[j + width];
        out[r] = partial[0];
    }
}

#endif

/* Outputs [first, first + R) of every row t; out's row stride is N. */
static inline void block_rows(float *out, const float *in, const void *weight, int first, int R, int T, int K, int N,
                              bool bf16) {
    for (int t = 0; t < T; t++) {
        float sums[BLOCK];
        if (R == BLOCK) block_dots(sums, in + (size_t)t * K, weight, (size_t)first, BLOCK, K, bf16);
        else
            for (int r = 0; r < R; r++) block_dots(sums + r, in + (size_t)t * K, weight, (size_t)first + r, 1, K, bf16);
        for (int r = 0; r < R; r++) out[(size_t)t * N + first + r] = sums[r];
    }
}

static void rows_forward(float *out, const float *in, const void *weight, int T, int K, int N, bool bf16) {
    if (T <= 0 || N <= 0) return;
    const int blocks = (N + BLOCK - 1) / BLOCK;
    /* the threads split the outputs, so the thread count changes no sum */
#pragma omp parallel for schedule(static) if ((size_t)K * N >= PARALLEL_WEIGHTS)
    for (int b = 0; b < blocks; b++) {
        const int first = b * BLOCK, R = N - first < BLOCK ? N - first : BLOCK;
        block_rows(out, in, weight, first, R, T, K, N, bf16);
    }
}

void matmul_rows_forward(float *out, const float *in, const float *weight, int T, int K, int N) {
    rows_forward(out, in, weight, T, K, N, false);
}

void matmul_rows_forward_bf16(float *out, const float *in, const uint16_t *weight, int T, int K, int N) {
    rows_forward(out, in, weight, T, K, N, true);
}
