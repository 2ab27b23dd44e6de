/* Linear layers whose rows do not depend on one another, for batched decoding. BLAS picks its
 * kernel by the matrix shape, so the bits of one row's result change with the number of rows
 * (OpenBLAS 0.3.21 on AVX-512 from 5 rows on); a sequence decoded in a batch must get the same
 * tokens as decoded alone, which needs every row computed the same way whatever the batch. */
#include <stddef.h>

#include "nn/nn.h"

/* Partial sums per dot product: the inner loop is one vector of them, so it vectorises without
 * reordering the sum (which the compiler may not do on its own, and which would then depend on
 * the code it chose). */
enum { LANES = 16 };

static float dot(const float *x, const float *w, int K) {
    float partial[LANES] = {0};
    int k = 0;
    for (; k + LANES <= K; k += LANES)
        for (int j = 0; j < LANES; j++) partial[j] += x[k + j] * w[k + j];
    for (int j = 0; k < K; k++, j++) partial[j] += x[k] * w[k];
    for (int width = LANES / 2; width > 0; width /= 2)
        for (int j = 0; j < width; j++) partial[j] += partial[j + width];
    return partial[0];
}

void matmul_rows_forward(float *out, const float *in, const float *weight, int T, int K, int N) {
    if (T <= 0 || N <= 0) return;
    /* each weight row is read once for all T rows: what a batch of decoding steps saves; the
     * threads split the outputs, so the thread count changes no sum */
#pragma omp parallel for schedule(static) if ((size_t)T * K * N > 65536)
    for (int n = 0; n < N; n++) {
        const float *w = weight + (size_t)n * K;
        for (int t = 0; t < T; t++) out[(size_t)t * N + n] = K > 0 ? dot(in + (size_t)t * K, w, K) : 0.0f;
    }
}
