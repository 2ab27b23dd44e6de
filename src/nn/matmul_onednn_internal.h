/*
 * The oneDNN matrix-product context (nn.h's matmul_bf16) as the files that build it share it:
 * matmul_onednn.c (the context, its primitive cache, running a product), matmul_workers.c (the
 * per-thread workers), matmul_choice.c (OpenBLAS or oneDNN for an fp32 product) and linear.c
 * (the linear_* entry points). Only with oneDNN at build time (PM_HAVE_DNNL).
 */
#ifndef PM_NN_MATMUL_ONEDNN_INTERNAL_H
#define PM_NN_MATMUL_ONEDNN_INTERNAL_H

#include <oneapi/dnnl/dnnl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nn/nn.h"

typedef struct {
    dnnl_data_type_t input; /* of both inputs: bf16 or f32 */
    matmul_product kind;
    bool sum; /* dst += the product (the backward products; a data product may overwrite) */
    int64_t k, n;
    dnnl_primitive_t primitive;
    size_t scratchpad; /* bytes of the caller's scratchpad it runs with (one-thread primitives) */
} cached;

/* Primitives by (input type, product, sum, K, N): open addressing, emptied when full. */
typedef struct {
    cached *slots; /* CACHE_SLOTS (matmul_onednn.c) */
    int used;
    bool one_thread; /* made for one thread, each run with its caller's scratchpad: the workers' */
} primitive_cache;

enum { TIMED_SITES = 64 };

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

/* matmul_onednn.c */

/* The product's primitive in cache, made on first use; NULL if it could not be made. */
cached *primitive_cache_find(dnnl_engine_t engine, primitive_cache *cache, dnnl_data_type_t input, matmul_product kind,
                             bool sum, int64_t k, int64_t n);
/* The primitive ctx runs the product with: its own, made on first use; a worker's, only looked
 * up in its owner's one-thread cache (NULL if matmul_bf16_prepare did not make it). */
cached *onednn_primitive(matmul_bf16 *ctx, dnnl_data_type_t input, matmul_product kind, bool sum, int64_t k,
                         int64_t n);
/* Runs c's product for T rows on ctx's stream; false if it could not (a worker's scratchpad too
 * small: not prepared). */
bool onednn_run(matmul_bf16 *ctx, cached *c, int64_t T, const void *src, const void *weights, float *dst);
/* Room in ctx's bf16 copies for a and b elements (both get the larger). False if memory is short. */
bool onednn_reserve_copies(matmul_bf16 *ctx, size_t a, size_t b);
/* An fp32 product through oneDNN; sum: dst += the product, else dst := it (the forward
 * product; a data product into din). False, with nothing written, if it could not be set up. */
bool onednn_product(matmul_bf16 *ctx, matmul_product kind, bool sum, float *dst, const float *a, const float *b, int T,
                    int K, int N);

/* matmul_workers.c */

/* Frees a worker: it owns its stream and buffers only. */
void matmul_worker_free(matmul_bf16 *worker);

/* matmul_choice.c */

/* ctx's choice for this fp32 product and shape; *known is false while PM_FP32_MATMUL_AUTO has
 * yet to time it. */
bool matmul_chosen_onednn(const matmul_bf16 *ctx, matmul_product kind, int K, int N, bool *known);
/* Whether ctx runs this fp32 product through oneDNN, timing it first if the choice is
 * PM_FP32_MATMUL_AUTO's and it has not been timed. */
bool matmul_takes_onednn(matmul_bf16 *ctx, matmul_product kind, float *dst, const float *a, const float *b, int T,
                         int K, int N);

#endif
