/*
 * Matrix products through oneDNN's matmul (nn.h): the three products of a linear layer with
 * both inputs rounded to bf16 and the products accumulated and written in fp32, or all in f32.
 * Making a primitive costs about 0.1–0.4 ms and expert GEMMs change their row count every step,
 * so the row count (T) is a run-time dimension: one primitive per (input type, product, K, N),
 * made on first use and kept. On this machine (AVX512-BF16) the bf16 ones run at 380–420
 * GFLOP/s on the model's shapes, about what primitives of fixed shape reach with the same plain
 * layouts. Here: the context, its primitive cache and running one product; which library runs
 * an fp32 product is matmul_choice.c's, the workers are matmul_workers.c's, and without oneDNN
 * at build time matmul_no_onednn.c stands in.
 */
#ifdef PM_HAVE_DNNL
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "nn/matmul_onednn_internal.h"

enum { CACHE_SLOTS = 256 };

bool matmul_bf16_available(void) { return true; }

matmul_bf16 *matmul_bf16_create(void) {
    matmul_bf16 *ctx = calloc(1, sizeof *ctx);
    if (ctx) {
        ctx->primitives.slots = calloc(CACHE_SLOTS, sizeof(cached));
        ctx->one_thread.slots = calloc(CACHE_SLOTS, sizeof(cached));
        ctx->one_thread.one_thread = true;
    }
    if (!ctx || !ctx->primitives.slots || !ctx->one_thread.slots) {
        matmul_bf16_free(ctx);
        pm_fail(PM_ERR_NOMEM, "bf16 matrix products: out of memory");
        return NULL;
    }
    if (dnnl_engine_create(&ctx->engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&ctx->stream, ctx->engine, dnnl_stream_default_flags) != dnnl_success) {
        matmul_bf16_free(ctx);
        pm_fail(PM_ERR_STATE, "bf16 matrix products: oneDNN could not start a CPU engine");
        return NULL;
    }
    return ctx;
}

static void clear_cache(primitive_cache *cache) {
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (cache->slots[i].primitive) dnnl_primitive_destroy(cache->slots[i].primitive);
    memset(cache->slots, 0, sizeof(cached) * CACHE_SLOTS);
    cache->used = 0;
}

static void free_cache(primitive_cache *cache) {
    if (cache->slots) clear_cache(cache);
    free(cache->slots);
}

void matmul_bf16_free(matmul_bf16 *ctx) {
    if (!ctx) return;
    for (int i = 0; i < ctx->worker_count; i++) matmul_worker_free(ctx->workers[i]);
    free(ctx->workers);
    free_cache(&ctx->primitives);
    free_cache(&ctx->one_thread);
    if (ctx->stream) dnnl_stream_destroy(ctx->stream);
    if (ctx->engine) dnnl_engine_destroy(ctx->engine);
    free(ctx->a);
    free(ctx->b);
    free(ctx);
}

/* A 2-D descriptor of rows × cols with the given strides. */
static bool describe(dnnl_memory_desc_t *md, int64_t rows, int64_t cols, dnnl_data_type_t type, int64_t row_stride,
                     int64_t col_stride) {
    const dnnl_dims_t dims = {rows, cols}, strides = {row_stride, col_stride};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, type, strides) == dnnl_success;
}

/*
 * The three products as matmul dst (M × N') = src (M × K') · weights (K' × N'), for T rows (T
 * DNNL_RUNTIME_DIM_VAL when making the primitive, the real count when running it), with inputs
 * of type `in`:
 *   forward: out (T, N) = in (T, K) · Wᵀ, W (N, K) read as (K, N) with strides (1, K);
 *   data:    din (T, K) += dout (T, N) · W (N, K);
 *   weights: dW (N, K) += doutᵀ, read as (N, T) with strides (1, N), · in (T, K).
 */
static bool describe_product(dnnl_data_type_t in, matmul_product kind, int64_t T, int64_t K, int64_t N,
                             dnnl_memory_desc_t *src, dnnl_memory_desc_t *weights, dnnl_memory_desc_t *dst) {
    switch (kind) {
    case MATMUL_FORWARD:
        return describe(src, T, K, in, K, 1) && describe(weights, K, N, in, 1, K) &&
               describe(dst, T, N, dnnl_f32, N, 1);
    case MATMUL_DATA:
        return describe(src, T, N, in, N, 1) && describe(weights, N, K, in, K, 1) &&
               describe(dst, T, K, dnnl_f32, K, 1);
    default:
        return describe(src, N, T, in, 1, N) && describe(weights, T, K, in, K, 1) &&
               describe(dst, N, K, dnnl_f32, K, 1);
    }
}

/* A primitive for c's product; for one thread (the omp setting oneDNN sizes a primitive by,
 * restored after) with the scratchpad given at run time if one_thread. */
static bool make(dnnl_engine_t engine, bool one_thread, cached *c) {
    dnnl_memory_desc_t src, weights, dst;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t post_ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    const int threads = omp_get_max_threads();
    if (one_thread) omp_set_num_threads(1);
    bool ok = describe_product(c->input, c->kind, DNNL_RUNTIME_DIM_VAL, c->k, c->n, &src, &weights, &dst);
    ok = ok && dnnl_matmul_desc_init(&desc, &src, &weights, NULL, &dst) == dnnl_success;
    ok = ok && dnnl_primitive_attr_create(&attr) == dnnl_success;
    if (ok && c->sum)
        ok = dnnl_post_ops_create(&post_ops) == dnnl_success && dnnl_post_ops_append_sum(post_ops, 1.0f) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(attr, post_ops) == dnnl_success;
    if (ok && one_thread)
        ok = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
    ok = ok && dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL) == dnnl_success;
    if (ok && one_thread) {
        const dnnl_memory_desc_t *scratchpad = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        c->scratchpad = scratchpad ? dnnl_memory_desc_get_size(scratchpad) : 0;
    }
    ok = ok && dnnl_primitive_create(&c->primitive, pd) == dnnl_success;
    if (one_thread) omp_set_num_threads(threads);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (post_ops) dnnl_post_ops_destroy(post_ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return ok;
}

/* The slot that holds the product's primitive, or the empty one where it goes (NULL: full). */
static cached *slot_of(const primitive_cache *cache, dnnl_data_type_t input, matmul_product kind, bool sum, int64_t k,
                       int64_t n) {
    const uint64_t h = ((uint64_t)(2 * kind + sum) * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)k * 0x94d049bb133111ebull) ^
                       ((uint64_t)n * 0x2545f4914f6cdd1dull) ^ ((uint64_t)input * 0xbf58476d1ce4e5b9ull);
    for (int probe = 0; probe < CACHE_SLOTS; probe++) {
        cached *c = &cache->slots[(h + (uint64_t)probe) % CACHE_SLOTS];
        if (!c->primitive || (c->input == input && c->kind == kind && c->sum == sum && c->k == k && c->n == n))
            return c;
    }
    return NULL;
}

cached *primitive_cache_find(dnnl_engine_t engine, primitive_cache *cache, dnnl_data_type_t input, matmul_product kind,
                             bool sum, int64_t k, int64_t n) {
    cached *c = slot_of(cache, input, kind, sum, k, n);
    if (c && c->primitive) return c;
    if (!c || cache->used >= CACHE_SLOTS / 2) { /* more shapes than any model has: start afresh */
        clear_cache(cache);
        c = slot_of(cache, input, kind, sum, k, n);
    }
    *c = (cached){input, kind, sum, k, n, NULL, 0};
    if (!make(engine, cache->one_thread, c)) {
        if (c->primitive) dnnl_primitive_destroy(c->primitive);
        c->primitive = NULL;
        return NULL;
    }
    cache->used++;
    return c;
}

/* A worker only looks its owner's one-thread primitives up (matmul_bf16_prepare made them):
 * the workers run at once, and making one would change the table under the others. */
cached *onednn_primitive(matmul_bf16 *ctx, dnnl_data_type_t input, matmul_product kind, bool sum, int64_t k,
                         int64_t n) {
    if (!ctx->owner) return primitive_cache_find(ctx->engine, &ctx->primitives, input, kind, sum, k, n);
    cached *c = slot_of(&ctx->owner->one_thread, input, kind, sum, k, n);
    return c && c->primitive ? c : NULL;
}

bool onednn_run(matmul_bf16 *ctx, cached *c, int64_t T, const void *src, const void *weights, float *dst) {
    if (c->scratchpad > ctx->scratchpad_bytes) return false; /* not prepared: runs in fp32 */
    dnnl_memory_desc_t src_md, weights_md, dst_md, scratchpad_md;
    dnnl_memory_t memory[4] = {NULL, NULL, NULL, NULL};
    const dnnl_dims_t scratchpad_dims = {(int64_t)c->scratchpad};
    const int count = c->scratchpad ? 4 : 3;
    bool ok = describe_product(c->input, c->kind, T, c->k, c->n, &src_md, &weights_md, &dst_md) &&
              dnnl_memory_create(&memory[0], &src_md, ctx->engine, (void *)src) == dnnl_success &&
              dnnl_memory_create(&memory[1], &weights_md, ctx->engine, (void *)weights) == dnnl_success &&
              dnnl_memory_create(&memory[2], &dst_md, ctx->engine, dst) == dnnl_success;
    if (ok && c->scratchpad)
        ok = dnnl_memory_desc_init_by_tag(&scratchpad_md, 1, scratchpad_dims, dnnl_u8, dnnl_a) == dnnl_success &&
             dnnl_memory_create(&memory[3], &scratchpad_md, ctx->engine, ctx->scratchpad) == dnnl_success;
    if (ok) {
        const dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, memory[0]}, {DNNL_ARG_WEIGHTS, memory[1]},
                                         {DNNL_ARG_DST, memory[2]}, {DNNL_ARG_SCRATCHPAD, memory[3]}};
        ok = dnnl_primitive_execute(c->primitive, ctx->stream, count, args) == dnnl_success &&
             dnnl_stream_wait(ctx->stream) == dnnl_success;
    }
    for (int i = 0; i < 4; i++)
        if (memory[i]) dnnl_memory_destroy(memory[i]);
    return ok;
}

bool onednn_reserve_copies(matmul_bf16 *ctx, size_t a, size_t b) {
    const size_t need = a > b ? a : b;
    if (need <= ctx->capacity) return true;
    uint16_t *na = realloc(ctx->a, sizeof(uint16_t) * need), *nb = na ? realloc(ctx->b, sizeof(uint16_t) * need) : NULL;
    if (na) ctx->a = na;
    if (nb) ctx->b = nb;
    if (!na || !nb) return false;
    ctx->capacity = need;
    return true;
}

bool matmul_bf16_reserve(matmul_bf16 *ctx, size_t elements) { return onednn_reserve_copies(ctx, elements, elements); }

bool onednn_product(matmul_bf16 *ctx, matmul_product kind, bool sum, float *dst, const float *a, const float *b, int T,
                    int K, int N) {
    if (T <= 0 || (N <= 0 && kind != MATMUL_DATA) || (K <= 0 && kind != MATMUL_FORWARD)) return true;
    if (K <= 0 || N <= 0) { /* an empty sum, which oneDNN has no primitive for */
        if (!sum) memset(dst, 0, sizeof(float) * matmul_product_count(kind, T, K, N));
        return true;
    }
    cached *c = onednn_primitive(ctx, dnnl_f32, kind, sum, K, N);
    return c && onednn_run(ctx, c, T, a, b, dst);
}

bool matmul_dnnl_product(matmul_bf16 *ctx, matmul_product kind, float *dst, const float *a, const float *b, int T,
                         int K, int N) {
    return onednn_product(ctx, kind, kind != MATMUL_FORWARD, dst, a, b, T, K, N);
}

#endif
