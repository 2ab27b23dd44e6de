/*
 * Which library runs an fp32 product (pm_fp32_matmul, nn.h). In f32 oneDNN and OpenBLAS are
 * about even on the model's shapes (180–230 GFLOP/s), so the choice is made per product and
 * shape: by the table below, measured with bench/matmul_sites, or by timing both when the shape
 * first runs. The table needs nothing of oneDNN and is built without it too.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "nn/nn.h"

/* The products and shapes for which bench/matmul_sites measured oneDNN's f32 matmul faster than
 * OpenBLAS by more than MATMUL_ONEDNN_MARGIN on the development machine (2 cores of an AMD
 * EPYC, Zen 4), for the demo and large configs: none, the two were within noise of each other
 * at every site (181-226 against 200-205 GFLOP/s). Every product runs with OpenBLAS, unless
 * OpenBLAS does not know the CPU and runs its generic kernels (openblas_runs_fallback_kernels):
 * then every product runs with oneDNN, which bench/matmul_sites measured 4.4-6.2x faster at
 * every site on such a machine (an Intel Xeon that Debian's OpenBLAS 0.3.21 calls Prescott). */
static const struct {
    matmul_product kind;
    int k, n;
} measured_onednn[] = {
    {MATMUL_FORWARD, 0, 0}, /* none yet: no shape has K = 0 */
};

bool matmul_measured_onednn(matmul_product kind, int K, int N) {
    if (K > 0 && N > 0 && openblas_runs_fallback_kernels()) return true;
    for (size_t i = 0; i < sizeof measured_onednn / sizeof measured_onednn[0]; i++)
        if (measured_onednn[i].kind == kind && measured_onednn[i].k == K && measured_onednn[i].n == N && K > 0)
            return true;
    return false;
}

#ifdef PM_HAVE_DNNL
#include "nn/matmul_onednn_internal.h"

void matmul_set_fp32(matmul_bf16 *ctx, pm_fp32_matmul choice) {
    ctx->fp32 = choice;
    ctx->timed_count = 0;
}

int matmul_timed_sites(const matmul_bf16 *ctx, matmul_site *out, int max) {
    for (int i = 0; i < ctx->timed_count && i < max; i++) out[i] = ctx->timed[i];
    return ctx->timed_count;
}

bool matmul_time_both(matmul_bf16 *ctx, matmul_product kind, float *dst, const float *a, const float *b, int T, int K,
                      int N, int runs, double *openblas, double *onednn) {
    *openblas = *onednn = INFINITY;
    bool onednn_ran = true;
    for (int run_index = 0; run_index <= runs && onednn_ran; run_index++) { /* run 0: the warm-up */
        const double start = omp_get_wtime();
        matmul_blas_product(kind, dst, a, b, T, K, N);
        const double middle = omp_get_wtime();
        onednn_ran = matmul_dnnl_product(ctx, kind, dst, a, b, T, K, N);
        const double end = omp_get_wtime();
        if (run_index == 0) continue;
        *openblas = fmin(*openblas, middle - start);
        *onednn = fmin(*onednn, end - middle);
    }
    return onednn_ran;
}

/* Times the product with both libraries on its real inputs, the backward products into
 * scratch rather than their gradients. */
static void time_site(matmul_bf16 *ctx, matmul_site *site, float *dst, const float *a, const float *b) {
    enum { TIMED_RUNS = 3 };
    const matmul_product kind = site->kind;
    const int T = site->rows, K = site->k, N = site->n;
    float *scratch = kind == MATMUL_FORWARD ? dst : calloc(matmul_product_count(kind, T, K, N), sizeof(float));
    double openblas = INFINITY, onednn = INFINITY;
    const bool onednn_ran =
        scratch && matmul_time_both(ctx, kind, scratch, a, b, T, K, N, TIMED_RUNS, &openblas, &onednn);
    if (scratch != dst) free(scratch);
    const double flops = 2.0 * T * K * N;
    site->openblas_gflops = onednn_ran ? flops / openblas * 1e-9 : 0.0;
    site->onednn_gflops = onednn_ran ? flops / onednn * 1e-9 : 0.0;
    site->onednn = onednn_ran && onednn * (1.0 + MATMUL_ONEDNN_MARGIN) < openblas;
}

bool matmul_chosen_onednn(const matmul_bf16 *ctx, matmul_product kind, int K, int N, bool *known) {
    *known = true;
    switch (ctx->fp32) {
    case PM_FP32_MATMUL_ONEDNN: return true;
    case PM_FP32_MATMUL_MEASURED: return matmul_measured_onednn(kind, K, N);
    case PM_FP32_MATMUL_AUTO: break;
    default: return false;
    }
    for (int i = 0; i < ctx->timed_count; i++)
        if (ctx->timed[i].kind == kind && ctx->timed[i].k == K && ctx->timed[i].n == N) return ctx->timed[i].onednn;
    *known = ctx->timed_count == TIMED_SITES; /* more shapes than any model has: OpenBLAS */
    return false;
}

/* By its owner's choice if a worker; PM_FP32_MATMUL_AUTO times a product and shape the first
 * time it comes, on the owner only (a worker takes OpenBLAS for a product not timed yet, which
 * matmul_bf16_prepare rules out). */
bool matmul_takes_onednn(matmul_bf16 *ctx, matmul_product kind, float *dst, const float *a, const float *b, int T,
                         int K, int N) {
    bool known;
    const bool onednn = matmul_chosen_onednn(ctx->owner ? ctx->owner : ctx, kind, K, N, &known);
    if (known || ctx->owner) return onednn;
    matmul_site *site = &ctx->timed[ctx->timed_count++];
    *site = (matmul_site){kind, K, N, T, false, 0.0, 0.0};
    time_site(ctx, site, dst, a, b);
    return site->onednn;
}

#endif
