/* SwiGLU gate: out = silu(gate) · up. */
#include <stddef.h>

#include "core/fast_exp.h"
#include "nn/nn.h"

/* The sigmoid in double through pm_exp, which vectorises (libm's expf does not without
 * -ffast-math); for gate < −745 it is exactly 0 and silu stays finite. */
static inline double sigmoid(float x) { return 1.0 / (1.0 + pm_exp(-(double)x)); }

void swiglu_forward(float *out, const float *gate, const float *up, int T, int N) {
    /* a decoding step's few rows: cheaper on one thread than waking the others */
#pragma omp parallel for schedule(static) if ((size_t)T * N > 16384)
    for (int t = 0; t < T; t++) {
        size_t row = (size_t)t * N;
#pragma omp simd
        for (int i = 0; i < N; i++) {
            float g = gate[row + i];
            out[row + i] = (float)(g * sigmoid(g)) * up[row + i];
        }
    }
}

/* silu'(g) = σ(g)·(1 + g·(1 − σ(g))). */
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                     const float *up, int T, int N) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        size_t row = (size_t)t * N;
#pragma omp simd
        for (int i = 0; i < N; i++) {
            float g = gate[row + i], d = dout[row + i];
            double s = sigmoid(g);
            dup[row + i] += d * (float)(g * s);
            dgate[row + i] += d * up[row + i] * (float)(s * (1.0 + g * (1.0 - s)));
        }
    }
}
