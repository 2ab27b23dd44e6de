/* SwiGLU gate: out = silu(gate) · up, gate and up side by side in each row as the one product
 * x · [gate; up]ᵀ writes them (the experts' fused projection). */
#include <stddef.h>

#include "core/fast_exp.h"
#include "nn/nn.h"

/* The sigmoid in double through pm_exp, which vectorises (libm's expf does not without
 * -ffast-math); for gate < −745 it is exactly 0 and silu stays finite. */
static inline double sigmoid(float x) { return 1.0 / (1.0 + pm_exp(-(double)x)); }

/* A decoding step's few rows, or one expert's inside the experts' own parallel loop: cheaper on
 * one thread than waking the others. */
enum { PARALLEL_FLOATS = 16384 };

void swiglu_forward(float *out, const float *gate_up, int T, int N) {
#pragma omp parallel for schedule(static) if ((size_t)T * N > PARALLEL_FLOATS)
    for (int t = 0; t < T; t++) {
        const float *gate = gate_up + (size_t)t * 2 * N, *up = gate + N;
        float *row = out + (size_t)t * N;
#pragma omp simd
        for (int i = 0; i < N; i++) {
            float g = gate[i];
            row[i] = (float)(g * sigmoid(g)) * up[i];
        }
    }
}

/* silu'(g) = σ(g)·(1 + g·(1 − σ(g))). */
void swiglu_backward(float *dgate_up, const float *dout, const float *gate_up, int T, int N) {
#pragma omp parallel for schedule(static) if ((size_t)T * N > PARALLEL_FLOATS)
    for (int t = 0; t < T; t++) {
        const size_t row = (size_t)t * 2 * N;
        const float *gate = gate_up + row, *up = gate + N, *d = dout + (size_t)t * N;
        float *dgate = dgate_up + row, *dup = dgate + N;
#pragma omp simd
        for (int i = 0; i < N; i++) {
            float g = gate[i];
            double s = sigmoid(g);
            dup[i] = d[i] * (float)(g * s);
            dgate[i] = d[i] * up[i] * (float)(s * (1.0 + g * (1.0 - s)));
        }
    }
}
