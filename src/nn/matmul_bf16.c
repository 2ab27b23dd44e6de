/*
 * Matrix products through oneDNN's matmul (nn.h): the three products of a linear layer with
 * both inputs rounded to bf16 and the products accumulated and written in fp32, or all in f32.
 * Making a primitive costs about 0.1–0.4 ms and expert GEMMs change their row count every step,
 * so the row count (T) is a run-time dimension: one primitive per (input type, product, K, N),
 * made on first use and kept. On this machine (AVX512-BF16) the bf16 ones run at 380–420
 * GFLOP/s on the model's shapes, about what primitives of fixed shape reach with the same plain
 * layouts; in f32 oneDNN and OpenBLAS are about even (180–230 GFLOP/s), so which one runs an
 * fp32 product is chosen per product and shape (pm_fp32_matmul): by the table below, measured
 * with bench/matmul_sites, or by timing both when the shape first runs.
 * Products run side by side on the context's workers (nn.h) use primitives of their own, made
 * for one thread. Without oneDNN at build time the context cannot be created and every product
 * is OpenBLAS's.
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bf16.h"
#include "core/error.h"
#include "nn/nn.h"

/* In blocks over the threads: the conversion is a pass over memory, like the products' inputs. */
void float_to_bf16(uint16_t *out, const float *in, size_t n) {
    enum { BLOCK = 1 << 14 };
    const size_t blocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) if (blocks > 4)
    for (size_t b = 0; b < blocks; b++) {
        const size_t first = b * BLOCK, count = n - first < BLOCK ? n - first : BLOCK;
        bf16_from_floats(out + first, in + first, count);
    }
}

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
#include <oneapi/dnnl/dnnl.h>

typedef struct {
    dnnl_data_type_t input; /* of both inputs: bf16 or f32 */
    matmul_product kind;
    bool sum; /* dst += the product (the backward products; a data product may overwrite) */
    int64_t k, n;
    dnnl_primitive_t primitive;
    size_t scratchpad; /* bytes of the caller's scratchpad it runs with (one-thread primitives) */
} cached;

enum { CACHE_SLOTS = 256, TIMED_SITES = 64 };

/* Primitives by (input type, product, sum, K, N): open addressing, emptied when full. */
typedef struct {
    cached *slots; /* CACHE_SLOTS */
    int used;
    bool one_thread; /* made for one thread, each run with its caller's scratchpad: the workers' */
} primitive_cache;

/*
 * A context made by matmul_bf16_create, or one of its workers. A worker has its own stream,
 * bf16 copies and oneDNN scratchpad, and shares its owner's engine, its one-thread primitives
 * and its fp32 choices, which it only reads. oneDNN's default scratchpad belongs to the OS
 * thread that made the primitive, and some of its kernels split a product by the thread count
 * the primitive was made for, while inside a parallel region oneDNN runs on the calling thread
 * alone; so the workers' primitives are made for one thread and get the worker's scratchpad at
 * each run, which lets several threads run one primitive at once.
 */
struct matmul_bf16 {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    primitive_cache primitives, one_thread; /* an owner's: for all the threads, for its workers */
    uint16_t *a, *b; /* the bf16 copies of a product's two activations */
    size_t capacity; /* elements each */
    void *scratchpad; /* a worker's, for the one-thread primitives */
    size_t scratchpad_bytes;
    matmul_bf16 *owner; /* a worker's; NULL for a context of matmul_bf16_create */
    matmul_bf16 **workers;
    int worker_count;
    pm_fp32_matmul fp32; /* who runs the fp32 products */
    matmul_site timed[TIMED_SITES]; /* PM_FP32_MATMUL_AUTO's choices so far */
    int timed_count;
    bool warned, warned_fp32;
};

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

/* A worker owns its stream and buffers only. */
static void free_worker(matmul_bf16 *worker) {
    if (!worker) return;
    if (worker->stream) dnnl_stream_destroy(worker->stream);
    free(worker->a);
    free(worker->b);
    free(worker->scratchpad);
    free(worker);
}

void matmul_bf16_free(matmul_bf16 *ctx) {
    if (!ctx) return;
    for (int i = 0; i < ctx->worker_count; i++) free_worker(ctx->workers[i]);
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

/* The product's primitive in cache, made on first use. */
static cached *find_in(dnnl_engine_t engine, primitive_cache *cache, dnnl_data_type_t input, matmul_product kind,
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
static cached *find(matmul_bf16 *ctx, dnnl_data_type_t input, matmul_product kind, bool sum, int64_t k, int64_t n) {
    if (!ctx->owner) return find_in(ctx->engine, &ctx->primitives, input, kind, sum, k, n);
    cached *c = slot_of(&ctx->owner->one_thread, input, kind, sum, k, n);
    return c && c->primitive ? c : NULL;
}

static bool run(matmul_bf16 *ctx, cached *c, int64_t T, const void *src, const void *weights, float *dst) {
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

static bool reserve(matmul_bf16 *ctx, size_t a, size_t b) {
    const size_t need = a > b ? a : b;
    if (need <= ctx->capacity) return true;
    uint16_t *na = realloc(ctx->a, sizeof(uint16_t) * need), *nb = na ? realloc(ctx->b, sizeof(uint16_t) * need) : NULL;
    if (na) ctx->a = na;
    if (nb) ctx->b = nb;
    if (!na || !nb) return false;
    ctx->capacity = need;
    return true;
}

bool matmul_bf16_reserve(matmul_bf16 *ctx, size_t elements) { return reserve(ctx, elements, elements); }

/* A bf16 product that could not run (no memory for a primitive or the copies) runs in fp32;
 * said once, as results stay right but slower. */
static void fell_back(matmul_bf16 *ctx) {
    if (!ctx->warned)
        fprintf(stderr, "probmoe: a bf16 matrix product could not be set up (out of memory?); running it in fp32\n");
    ctx->warned = true;
}

/* sum: dst += the product, else dst := it (the forward product; a data product into din). */
static bool dnnl_product(matmul_bf16 *ctx, matmul_product kind, bool sum, float *dst, const float *a, const float *b,
                         int T, int K, int N) {
    if (T <= 0 || (N <= 0 && kind != MATMUL_DATA) || (K <= 0 && kind != MATMUL_FORWARD)) return true;
    if (K <= 0 || N <= 0) { /* an empty sum, which oneDNN has no primitive for */
        if (!sum) memset(dst, 0, sizeof(float) * matmul_product_count(kind, T, K, N));
        return true;
    }
    cached *c = find(ctx, dnnl_f32, kind, sum, K, N);
    return c && run(ctx, c, T, a, b, dst);
}

bool matmul_dnnl_product(matmul_bf16 *ctx, matmul_product kind, float *dst, const float *a, const float *b, int T,
                         int K, int N) {
    return dnnl_product(ctx, kind, kind != MATMUL_FORWARD, dst, a, b, T, K, N);
}

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

/* ctx's choice for this fp32 product and shape; *known is false while PM_FP32_MATMUL_AUTO has
 * yet to time it. */
static bool chosen_onednn(const matmul_bf16 *ctx, matmul_product kind, int K, int N, bool *known) {
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

/* Whether ctx runs this fp32 product through oneDNN, by its owner's choice if a worker;
 * PM_FP32_MATMUL_AUTO times a product and shape the first time it comes, on the owner only
 * (a worker takes OpenBLAS for a product not timed yet, which matmul_bf16_prepare rules out). */
static bool takes_onednn(matmul_bf16 *ctx, matmul_product kind, float *dst, const float *a, const float *b, int T,
                         int K, int N) {
    bool known;
    const bool onednn = chosen_onednn(ctx->owner ? ctx->owner : ctx, kind, K, N, &known);
    if (known || ctx->owner) return onednn;
    matmul_site *site = &ctx->timed[ctx->timed_count++];
    *site = (matmul_site){kind, K, N, T, false, 0.0, 0.0};
    time_site(ctx, site, dst, a, b);
    return site->onednn;
}

/* An fp32 product by ctx's choice; one that oneDNN could not set up runs with OpenBLAS. sum as in
 * dnnl_product. */
static void fp32_product(matmul_bf16 *ctx, matmul_product kind, bool sum, float *dst, const float *a, const float *b,
                         int T, int K, int N) {
    if (takes_onednn(ctx, kind, dst, a, b, T, K, N)) {
        if (dnnl_product(ctx, kind, sum, dst, a, b, T, K, N)) return;
        if (!ctx->warned_fp32)
            fprintf(stderr, "probmoe: a oneDNN fp32 matrix product could not be set up (out of memory?); running it "
                    "with OpenBLAS\n");
        ctx->warned_fp32 = true;
    }
    if (kind == MATMUL_DATA && !sum) matmul_backward_into(dst, NULL, a, NULL, b, T, K, N);
    else matmul_blas_product(kind, dst, a, b, T, K, N);
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
            free_worker(worker);
            return false;
        }
        ctx->workers[ctx->worker_count++] = worker;
    }
    for (int i = 0; i < ctx->worker_count; i++)
        if (!reserve(ctx->workers[i], elements, elements)) return false;
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
        const bool onednn = bf16 || chosen_onednn(ctx, kinds[i], K, N, &known);
        if (!known) return false;
        if (!onednn) continue;
        const cached *c = find_in(ctx->engine, &ctx->one_thread, bf16 ? dnnl_bf16 : dnnl_f32, kinds[i],
                                  kinds[i] == MATMUL_WEIGHTS, K, N);
        if (!c) return false;
        for (int w = 0; w < ctx->worker_count; w++)
            if (!reserve_scratchpad(ctx->workers[w], c->scratchpad)) return false;
    }
    return true;
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
    cached *c = reserve(ctx, (size_t)T * K, 0) ? find(ctx, dnnl_bf16, MATMUL_FORWARD, false, K, N) : NULL;
    if (c) float_to_bf16(ctx->a, in, (size_t)T * K);
    if (!c || !run(ctx, c, T, ctx->a, w16, out)) {
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
    if (!reserve(ctx, (size_t)T * N, (size_t)T * K)) {
        fell_back(ctx);
        blas_backward(din_sum, din, dweight, dout, in, w, T, K, N);
        return;
    }
    float_to_bf16(ctx->a, dout, (size_t)T * N);
    cached *c = din ? find(ctx, dnnl_bf16, MATMUL_DATA, din_sum, K, N) : NULL;
    if (din && (!c || !run(ctx, c, T, ctx->a, w16, din))) {
        fell_back(ctx);
        blas_backward(din_sum, din, NULL, dout, in, w, T, K, N);
    }
    if (!dweight) return;
    float_to_bf16(ctx->b, in, (size_t)T * K);
    c = find(ctx, dnnl_bf16, MATMUL_WEIGHTS, true, K, N);
    if (!c || !run(ctx, c, T, ctx->a, ctx->b, dweight)) {
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

#else /* without oneDNN: fp32 everywhere, and no context */

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
