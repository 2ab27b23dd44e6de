/*
 * linear_forward, linear_backward and linear_backward_into with the matrix-product context
 * (nn.h): in bf16 through oneDNN when the weight's bf16 copy is given, else in fp32 through the
 * library ctx's choice takes for the product and shape (matmul_choice.c); a product oneDNN
 * could not set up runs in fp32 through OpenBLAS. Without oneDNN see matmul_no_onednn.c.
 */
#ifdef PM_HAVE_DNNL
#include <stdio.h>

#include "nn/matmul_onednn_internal.h"

/* A bf16 product that could not run (no memory for a primitive or the copies) runs in fp32;
 * said once, as results stay right but slower. */
static void fell_back(matmul_bf16 *ctx) {
    if (!ctx->warned)
        fprintf(stderr, "probmoe: a bf16 matrix product could not be set up (out of memory?); running it in fp32\n");
    ctx->warned = true;
}

/* An fp32 product by ctx's choice; one that oneDNN could not set up runs with OpenBLAS. sum as in
 * onednn_product. */
static void fp32_product(matmul_bf16 *ctx, matmul_product kind, bool sum, float *dst, const float *a, const float *b,
                         int T, int K, int N) {
    if (matmul_takes_onednn(ctx, kind, dst, a, b, T, K, N)) {
        if (onednn_product(ctx, kind, sum, dst, a, b, T, K, N)) return;
        if (!ctx->warned_fp32)
            fprintf(stderr, "probmoe: a oneDNN fp32 matrix product could not be set up (out of memory?); running it "
                    "with OpenBLAS\n");
        ctx->warned_fp32 = true;
    }
    if (kind == MATMUL_DATA && !sum) matmul_backward_into(dst, NULL, a, NULL, b, T, K, N);
    else matmul_blas_product(kind, dst, a, b, T, K, N);
}

void linear_forward(matmul_bf16 *ctx, float *out, const float *in, const float *w, const uint16_t *w16, int T, int K,
                    int N) {
    if (!ctx || T <= 0 || K <= 0 || N <= 0) {
        matmul_forward(out, in, w, T, K, N);
        return;
    }
    if (!w16) {
        fp32_product(ctx, MATMUL_FORWARD, false, out, in, w, T, K, N);
        return;
    }
    cached *c = onednn_reserve_copies(ctx, (size_t)T * K, 0)
                    ? onednn_primitive(ctx, dnnl_bf16, MATMUL_FORWARD, false, K, N)
                    : NULL;
    if (c) float_to_bf16(ctx->a, in, (size_t)T * K);
    if (!c || !onednn_run(ctx, c, T, ctx->a, w16, out)) {
        fell_back(ctx);
        matmul_forward(out, in, w, T, K, N);
    }
}

/* The fp32 products of matmul_backward (din_sum) or matmul_backward_into. */
static void blas_backward(bool din_sum, float *din, float *dweight, const float *dout, const float *in, const float *w,
                          int T, int K, int N) {
    if (din_sum) matmul_backward(din, dweight, dout, in, w, T, K, N);
    else matmul_backward_into(din, dweight, dout, in, w, T, K, N);
}

static void backward(matmul_bf16 *ctx, bool din_sum, float *din, float *dweight, const float *dout, const float *in,
                     const float *w, const uint16_t *w16, int T, int K, int N) {
    if (!ctx || T <= 0 || K <= 0 || N <= 0) {
        blas_backward(din_sum, din, dweight, dout, in, w, T, K, N);
        return;
    }
    if (!w16) {
        if (din) fp32_product(ctx, MATMUL_DATA, din_sum, din, dout, w, T, K, N);
        if (dweight) fp32_product(ctx, MATMUL_WEIGHTS, true, dweight, dout, in, T, K, N);
        return;
    }
    if (!onednn_reserve_copies(ctx, (size_t)T * N, (size_t)T * K)) {
        fell_back(ctx);
        blas_backward(din_sum, din, dweight, dout, in, w, T, K, N);
        return;
    }
    float_to_bf16(ctx->a, dout, (size_t)T * N);
    cached *c = din ? onednn_primitive(ctx, dnnl_bf16, MATMUL_DATA, din_sum, K, N) : NULL;
    if (din && (!c || !onednn_run(ctx, c, T, ctx->a, w16, din))) {
        fell_back(ctx);
        blas_backward(din_sum, din, NULL, dout, in, w, T, K, N);
    }
    if (!dweight) return;
    float_to_bf16(ctx->b, in, (size_t)T * K);
    c = onednn_primitive(ctx, dnnl_bf16, MATMUL_WEIGHTS, true, K, N);
    if (!c || !onednn_run(ctx, c, T, ctx->a, ctx->b, dweight)) {
        fell_back(ctx);
        matmul_backward(NULL, dweight, dout, in, w, T, K, N);
    }
}

void linear_backward(matmul_bf16 *ctx, float *din, float *dweight, const float *dout, const float *in, const float *w,
                     const uint16_t *w16, int T, int K, int N) {
    backward(ctx, true, din, dweight, dout, in, w, w16, T, K, N);
}

void linear_backward_into(matmul_bf16 *ctx, float *din, float *dweight, const float *dout, const float *in,
                          const float *w, const uint16_t *w16, int T, int K, int N) {
    backward(ctx, false, din, dweight, dout, in, w, w16, T, K, N);
}

#endif
