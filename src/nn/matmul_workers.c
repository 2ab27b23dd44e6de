/*
 * The matrix-product context's workers (nn.h): contexts for products run side by side, one
 * thread each, with a stream, bf16 copies and a oneDNN scratchpad of their own, and their
 * owner's one-thread primitives, made here ahead of the parallel region (matmul_bf16_prepare)
 * since a worker only looks them up (matmul_onednn_internal.h says why).
 */
#ifdef PM_HAVE_DNNL
#include <stdint.h>
#include <stdlib.h>

#include "nn/matmul_onednn_internal.h"

void matmul_worker_free(matmul_bf16 *worker) {
    if (!worker) return;
    if (worker->stream) dnnl_stream_destroy(worker->stream);
    free(worker->a);
    free(worker->b);
    free(worker->scratchpad);
    free(worker);
}

bool matmul_bf16_reserve_workers(matmul_bf16 *ctx, int count, size_t elements) {
    if (count > ctx->worker_count) {
        matmul_bf16 **workers = realloc(ctx->workers, sizeof *workers * (size_t)count);
        if (!workers) return false;
        ctx->workers = workers;
    }
    while (ctx->worker_count < count) {
        matmul_bf16 *worker = calloc(1, sizeof *worker);
        if (!worker) return false;
        worker->owner = ctx;
        worker->engine = ctx->engine;
        if (dnnl_stream_create(&worker->stream, ctx->engine, dnnl_stream_default_flags) != dnnl_success) {
            matmul_worker_free(worker);
            return false;
        }
        ctx->workers[ctx->worker_count++] = worker;
    }
    for (int i = 0; i < ctx->worker_count; i++)
        if (!onednn_reserve_copies(ctx->workers[i], elements, elements)) return false;
    return true;
}

int matmul_bf16_workers(const matmul_bf16 *ctx, size_t *elements) {
    size_t fewest = ctx->worker_count ? SIZE_MAX : 0;
    for (int i = 0; i < ctx->worker_count; i++)
        if (ctx->workers[i]->capacity < fewest) fewest = ctx->workers[i]->capacity;
    if (elements) *elements = fewest;
    return ctx->worker_count;
}

matmul_bf16 *matmul_bf16_worker(matmul_bf16 *ctx, int i) {
    return i >= 0 && i < ctx->worker_count ? ctx->workers[i] : NULL;
}

/* A worker's scratchpad of at least `bytes`, aligned as oneDNN's own. */
static bool reserve_scratchpad(matmul_bf16 *worker, size_t bytes) {
    enum { ALIGN = 4096 };
    if (bytes <= worker->scratchpad_bytes) return true;
    const size_t rounded = (bytes + ALIGN - 1) / ALIGN * ALIGN;
    void *scratchpad = aligned_alloc(ALIGN, rounded);
    if (!scratchpad) return false;
    free(worker->scratchpad);
    worker->scratchpad = scratchpad;
    worker->scratchpad_bytes = rounded;
    return true;
}

bool matmul_bf16_prepare(matmul_bf16 *ctx, bool backward, bool bf16, int K, int N) {
    if (K <= 0 || N <= 0) return true; /* such products never reach oneDNN */
    /* the products of linear_forward, or of linear_backward_into: din :=, dweight += */
    const matmul_product kinds[2] = {backward ? MATMUL_DATA : MATMUL_FORWARD, MATMUL_WEIGHTS};
    for (int i = 0; i < (backward ? 2 : 1); i++) {
        bool known = true;
        const bool onednn = bf16 || matmul_chosen_onednn(ctx, kinds[i], K, N, &known);
        if (!known) return false;
        if (!onednn) continue;
        const cached *c = primitive_cache_find(ctx->engine, &ctx->one_thread, bf16 ? dnnl_bf16 : dnnl_f32, kinds[i],
                                               kinds[i] == MATMUL_WEIGHTS, K, N);
        if (!c) return false;
        for (int w = 0; w < ctx->worker_count; w++)
            if (!reserve_scratchpad(ctx->workers[w], c->scratchpad)) return false;
    }
    return true;
}

#endif
