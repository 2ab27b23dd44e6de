/* Linear layers through BLAS: y = x·Wᵀ with W stored (out_features, in_features). */
#include <cblas.h>
#include <stdbool.h>
#include <string.h>

#include "nn/nn.h"

/* Debian's OpenBLAS (0.3.21) picks its kernels by CPU model; on a model it does not know (Intel's
 * Emerald Rapids, family 6 model 207, seen here) it falls back to "Prescott", its SSE3
 * kernels, and sgemm runs at about 37 GFLOP/s on 2 cores instead of about 200. On a CPU with
 * AVX2 that name can only be such a fallback. Asked once; the answer never changes. */
bool openblas_runs_fallback_kernels(void) {
    static _Atomic int known = -1;
    int value = known;
    if (value < 0) {
        const char *core = openblas_get_corename();
        value = core && strcmp(core, "Prescott") == 0 && __builtin_cpu_supports("avx2");
        known = value;
    }
    return value == 1;
}

/* BLAS rejects leading dimensions below 1 even when a size is 0. */
static int ld(int n) { return n > 1 ? n : 1; }

void matmul_forward(float *out, const float *in, const float *weight, int T, int K, int N) {
    if (T <= 0 || N <= 0) return;
    if (K <= 0) {
        memset(out, 0, sizeof(float) * (size_t)T * (size_t)N);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, N, K, 1.0f, in, ld(K), weight, ld(K),
                0.0f, out, ld(N));
}

/* din_beta 1: din +=; 0: din := (BLAS then never reads it, so it may hold anything). */
static void backward(float *din, float din_beta, float *dweight, const float *dout, const float *in,
                     const float *weight, int T, int K, int N) {
    if (T <= 0 || K <= 0) return;
    if (N <= 0) { /* an empty sum: din := 0 still holds */
        if (din && din_beta == 0.0f) memset(din, 0, sizeof(float) * (size_t)T * (size_t)K);
        return;
    }
    if (din)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, K, N, 1.0f, dout, ld(N), weight,
                    ld(K), din_beta, din, ld(K));
    if (dweight)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, T, 1.0f, dout, ld(N), in, ld(K),
                    1.0f, dweight, ld(K));
}

void matmul_backward(float *din, float *dweight, const float *dout, const float *in,
                     const float *weight, int T, int K, int N) {
    backward(din, 1.0f, dweight, dout, in, weight, T, K, N);
}

void matmul_backward_into(float *din, float *dweight, const float *dout, const float *in, const float *weight, int T,
                          int K, int N) {
    backward(din, 0.0f, dweight, dout, in, weight, T, K, N);
}

void matmul_blas_product(matmul_product kind, float *dst, const float *a, const float *b, int T, int K, int N) {
    switch (kind) {
    case MATMUL_FORWARD: matmul_forward(dst, a, b, T, K, N); break;
    case MATMUL_DATA: matmul_backward(dst, NULL, a, NULL, b, T, K, N); break;
    case MATMUL_WEIGHTS: matmul_backward(NULL, dst, a, b, NULL, T, K, N); break;
    }
}

size_t matmul_product_count(matmul_product kind, int T, int K, int N) {
    return kind == MATMUL_FORWARD ? (size_t)T * N : kind == MATMUL_DATA ? (size_t)T * K : (size_t)N * K;
}

const char *matmul_product_name(matmul_product kind) {
    return kind == MATMUL_FORWARD ? "forward" : kind == MATMUL_DATA ? "data" : "weights";
}
