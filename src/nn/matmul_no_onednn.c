/*
 * The matrix-product context (nn.h) in a build without oneDNN: no context can be made, so bf16
 * is refused with what to install, and every product is OpenBLAS's in fp32.
 */
#ifndef PM_HAVE_DNNL
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "nn/nn.h"

struct matmul_bf16 {
    int unused;
};

bool matmul_bf16_available(void) { return false; }

matmul_bf16 *matmul_bf16_create(void) {
    pm_fail(PM_ERR_ARG, "bf16 needs oneDNN, which this probmoe was built without: install libdnnl-dev "
            "(apt-get install libdnnl-dev, or scripts/setup.sh) and rebuild, or train with --precision fp32");
    return NULL;
}

void matmul_bf16_free(matmul_bf16 *ctx) { free(ctx); }

bool matmul_bf16_reserve(matmul_bf16 *ctx, size_t elements) {
    (void)ctx, (void)elements;
    return false;
}

bool matmul_bf16_reserve_workers(matmul_bf16 *ctx, int count, size_t elements) {
    (void)ctx, (void)count, (void)elements;
    return false;
}

int matmul_bf16_workers(const matmul_bf16 *ctx, size_t *elements) {
    (void)ctx;
    if (elements) *elements = 0;
    return 0;
}

matmul_bf16 *matmul_bf16_worker(matmul_bf16 *ctx, int i) {
    (void)ctx, (void)i;
    return NULL;
}

bool matmul_bf16_prepare(matmul_bf16 *ctx, bool backward, bool bf16, int K, int N) {
    (void)ctx, (void)backward, (void)bf16, (void)K, (void)N;
    return false;
}

bool matmul_dnnl_product(matmul_bf16 *ctx, matmul_product kind, float *dst, const float *a, const float *b, int T,
                         int K, int N) {
    (void)ctx, (void)kind, (void)dst, (void)a, (void)b, (void)T, (void)K, (void)N;
    return false;
}

void matmul_set_fp32(matmul_bf16 *ctx, pm_fp32_matmul choice) { (void)ctx, (void)choice; }

int matmul_timed_sites(const matmul_bf16 *ctx, matmul_site *out, int max) {
    (void)ctx, (void)out, (void)max;
    return 0;
}

bool matmul_time_both(matmul_bf16 *ctx, matmul_product kind, float *dst, const float *a, const float *b, int T, int K,
                      int N, int runs, double *openblas, double *onednn) {
    (void)ctx, (void)kind, (void)dst, (void)a, (void)b, (void)T, (void)K, (void)N, (void)runs;
    *openblas = *onednn = INFINITY;
    return false;
}

void linear_forward(matmul_bf16 *ctx, float *out, const float *in, const float *w, const uint16_t *w16, int T, int K,
                    int N) {
    (void)ctx, (void)w16;
    matmul_forward(out, in, w, T, K, N);
}

void linear_backward(matmul_bf16 *ctx, float *din, float *dweight, const float *dout, const float *in, const float *w,
                     const uint16_t *w16, int T, int K, int N) {
    (void)ctx, (void)w16;
    matmul_backward(din, dweight, dout, in, w, T, K, N);
}

void linear_backward_into(matmul_bf16 *ctx, float *din, float *dweight, const float *dout, const float *in,
                          const float *w, const uint16_t *w16, int T, int K, int N) {
    (void)ctx, (void)w16;
    matmul_backward_into(din, dweight, dout, in, w, T, K, N);
}

#endif
