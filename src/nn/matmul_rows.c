/* Linear layers whose rows do not depend on one another, for decoding. BLAS picks its kernel by
 * the matrix shape, so the bits of one row's result change with the number of rows (OpenBLAS
 * 0.3.21 on AVX-512 from 5 rows on); a sequence decoded in a batch must get the same tokens as
 * decoded alone, which needs every row computed the same way whatever the batch.
 *
 * A decoding step has one or a few rows, so the product is a matrix-vector product bounded by
 * reading the weight: each weight row is read once, in memory order, for all T rows (it stays
 * in L1 while the T inputs pass over it), with one vector of partial sums. Reading the rows of
 * a block of outputs side by side, 1 KiB apart, ran at a third of the speed out of memory (the
 * prefetchers follow one stream, not four interleaved short ones); the accumulation chains of
 * successive rows overlap in the out-of-order core instead. Every output's sum has one fixed
 * order (16 lanes, lane j summing k ≡ j mod 16 in increasing k by fused multiply-adds, then a
 * fixed tree over the lanes), whatever T, the row's place in the batch or the thread count. */
#include <stddef.h>
#include <stdint.h>

#include "core/bf16.h"
#include "nn/nn.h"

enum {
    LANES = 16,
    /* Weights below which one thread is faster than waking the other (a 256 x 256 matrix is
     * worth splitting on this machine; the demo's router is not). */
    PARALLEL_WEIGHTS = 32768,
};

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>

/* 16 weights from `at` on (mask: those below K), widened to fp32: bf16 is fp32's top half, so
 * the widening is exact. */
static inline __m512 load_weights(const void *weight, size_t at, __mmask16 mask, bool bf16) {
    if (!bf16) return _mm512_maskz_loadu_ps(mask, (const float *)weight + at);
    const __m256i half = _mm256_maskz_loadu_epi16(mask, (const uint16_t *)weight + at);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
}

/* x · weight row `row` (K values). */
static inline float row_dot(const float *x, const void *weight, size_t row, int K, bool bf16) {
    __m512 acc = _mm512_setzero_ps();
    const size_t first = row * (size_t)K;
    int k = 0;
    for (; k + LANES <= K; k += LANES)
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(x + k), load_weights(weight, first + k, 0xFFFF, bf16), acc);
    if (k < K) { /* masked lanes load zeros and add exact zeros */
        const __mmask16 mask = (__mmask16)((1u << (K - k)) - 1);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, x + k), load_weights(weight, first + k, mask, bf16), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

#else

/* The portable order: the same lanes, multiplies and adds as written (no contraction in ISO
 * C), then the same halving tree. */
static inline float row_dot(const float *x, const void *weight, size_t row, int K, bool bf16) {
    const size_t first = row * (size_t)K;
    float partial[LANES] = {0};
    for (int k = 0; k < K; k++) {
        const float w = bf16 ? bf16_to_float(((const uint16_t *)weight)[first + k]) : ((const float *)weight)[first + k];
        partial[k % LANES] += x[k] * w;
    }
    for (int width = LANES / 2; width > 0; width /= 2)
        for (int j = 0; j < width; j++) partial[j] += partial[j + width];
    return partial[0];
}

#endif

static void rows_forward(float *out, const float *in, const void *weight, int T, int K, int N, bool bf16) {
    if (T <= 0 || N <= 0) return;
    /* the threads split the outputs, so the thread count changes no sum */
#pragma omp parallel for schedule(static) if ((size_t)K * N >= PARALLEL_WEIGHTS)
    for (int n = 0; n < N; n++)
        for (int t = 0; t < T; t++) out[(size_t)t * N + n] = row_dot(in + (size_t)t * K, weight, (size_t)n, K, bf16);
}

void matmul_rows_forward(float *out, const float *in, const float *weight, int T, int K, int N) {
    rows_forward(out, in, weight, T, K, N, false);
}

void matmul_rows_forward_bf16(float *out, const float *in, const uint16_t *weight, int T, int K, int N) {
    rows_forward(out, in, weight, T, K, N, true);
}
