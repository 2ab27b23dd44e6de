/* Biases of linear layers (Qwen2-MoE's q, k and v): added to every row, and their gradient, the
 * column sums of the output gradient. */
#include "nn/nn.h"

void bias_forward(float *out, const float *bias, int T, int N) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *row = out + (size_t)t * N;
#pragma omp simd
        for (int n = 0; n < N; n++) row[n] += bias[n];
    }
}

/* Parallel over columns, so each column's sum runs over the rows in order whatever the threads. */
void bias_backward(float *dbias, const float *dout, int T, int N) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float sum = 0.0f;
        for (int t = 0; t < T; t++) sum += dout[(size_t)t * N + n];
        dbias[n] += sum;
    }
}
