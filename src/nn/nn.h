/*
 * Dense kernels of the transformer, in float32, row-major. Conventions (ARCHITECTURE.md):
 * kernels come in pairs foo_forward / foo_backward; outputs first, then inputs, then sizes;
 * shapes in comments; backward functions ACCUMULATE (+=) into every gradient buffer they
 * get, so a caller zeroes gradients once per step (the exceptions say so: the *_into products
 * overwrite the input gradient, which a scratch buffer would otherwise be zeroed for, and so
 * does swiglu_backward). Matrix products go through BLAS; loops
 * over rows are parallel with OpenMP and deterministic (no cross-thread reductions whose
 * order depends on the thread count).
 *
 * Linear layers use Hugging Face's layout: weight (out_features, in_features), y = x·Wᵀ.
 */
#ifndef PM_NN_H
#define PM_NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "probmoe.h"

/* out (T, N) = in (T, K) · weight (N, K)ᵀ. Overwrites out. */
void matmul_forward(float *out, const float *in, const float *weight, int T, int K, int N);
/* As matmul_forward, but row t of out depends only on row t of in, bit for bit, whatever T is
 * (BLAS's results change with the shape): batched decoding, whose sequences must decode exactly
 * as they would alone. Fast for the few rows of a decoding step, not for large T. */
void matmul_rows_forward(float *out, const float *in, const float *weight, int T, int K, int N);
/* As matmul_rows_forward with the weight (N, K) in bf16: each weight widened exactly to fp32,
 * the products and sums those of matmul_rows_forward on the widened weight (in stays fp32). */
void matmul_rows_forward_bf16(float *out, const float *in, const uint16_t *weight, int T, int K, int N);
/* din (T, K) += dout (T, N) · weight (N, K); dweight (N, K) += dout (T, N)ᵀ · in (T, K).
 * Either gradient pointer may be NULL to skip it. */
void matmul_backward(float *din, float *dweight, const float *dout, const float *in,
                     const float *weight, int T, int K, int N);
/* As matmul_backward, but din (T, K) := dout · weight, overwritten (it may hold anything, NaN
 * included, before); dweight still +=. Spares a caller the zeroing of a scratch din. */
void matmul_backward_into(float *din, float *dweight, const float *dout, const float *in, const float *weight, int T,
                          int K, int N);

/*
 * The matrix-product context (through oneDNN: matmul_onednn.c, workers in matmul_workers.c):
 * bf16 products, both inputs rounded to bf16 (round to nearest even), products accumulated and
 * written in fp32; and the choice, per product and shape, of OpenBLAS or oneDNN for fp32
 * products (pm_fp32_matmul, matmul_choice.c). It keeps the primitives and the scratch for the
 * inputs' bf16 copies; it is used by one thread at a time (the kernels themselves run on the
 * OpenMP threads), and its workers (below) let several threads run products at once. Without
 * oneDNN at build time no context can be made (matmul_no_onednn.c). linear_* are in linear.c.
 */
typedef struct matmul_bf16 matmul_bf16;
bool matmul_bf16_available(void);
/* NULL (with the reason in pm_last_error) without oneDNN or memory. Its fp32 products start
 * with OpenBLAS everywhere. */
matmul_bf16 *matmul_bf16_create(void);
void matmul_bf16_free(matmul_bf16 *ctx);
/* Makes room for products whose inputs have up to `elements` values, so they never allocate
 * (larger ones still grow it). False if memory is short. */
bool matmul_bf16_reserve(matmul_bf16 *ctx, size_t elements);
/*
 * Workers: contexts for products run side by side, one thread each inside a parallel region
 * (the MoE layer's small experts, each on one thread), worker i on thread i. Each has its own
 * stream, bf16 copies and oneDNN scratchpad, and shares ctx's engine, a cache of primitives made
 * for one thread and ctx's fp32 choices, all of which it only reads; ctx itself is not used
 * while they run. A worker's products are those ctx would run, but each on one thread.
 */
/* At least `count` workers, each with room for products whose inputs have up to `elements`
 * values. False if memory is short. */
bool matmul_bf16_reserve_workers(matmul_bf16 *ctx, int count, size_t elements);
/* How many workers ctx has, and in *elements (may be NULL) the room the smallest has. */
int matmul_bf16_workers(const matmul_bf16 *ctx, size_t *elements);
/* Worker i (0 <= i < matmul_bf16_workers), else NULL. */
matmul_bf16 *matmul_bf16_worker(matmul_bf16 *ctx, int i);
/* Makes ready what the workers need to run linear_forward (backward false) or
 * linear_backward_into (true) for a weight (N, K), in bf16 or fp32: the one-thread primitives
 * and the workers' scratchpads for them. False if that could not be done (out of memory), or if
 * ctx's fp32 choice for a product is PM_FP32_MATMUL_AUTO's and not timed yet: products on ctx
 * time it. Call it before the workers run (outside the parallel region). */
bool matmul_bf16_prepare(matmul_bf16 *ctx, bool backward, bool bf16, int K, int N);
/* out[i] = in[i] rounded to bf16 (nearest even; NaN stays NaN). */
void float_to_bf16(uint16_t *out, const float *in, size_t n);
/* matmul_forward and matmul_backward with the weight also given in bf16 (w16, the same
 * layout): in bf16 when ctx and w16 are both given; else in fp32 with w, through OpenBLAS
 * without ctx, or through what ctx's fp32 choice takes for the product and shape. */
void linear_forward(matmul_bf16 *ctx, float *out, const float *in, const float *w, const uint16_t *w16, int T, int K,
                    int N);
void linear_backward(matmul_bf16 *ctx, float *din, float *dweight, const float *dout, const float *in, const float *w,
                     const uint16_t *w16, int T, int K, int N);
/* As linear_backward with din := (matmul_backward_into), whichever library runs it. */
void linear_backward_into(matmul_bf16 *ctx, float *din, float *dweight, const float *dout, const float *in,
                          const float *w, const uint16_t *w16, int T, int K, int N);

/*
 * The three products of a linear layer with weight (N, K), as one call dst ·= a, b:
 *   MATMUL_FORWARD: dst (T, N)  = a (T, K) · b (N, K)ᵀ   (out, in, weight)
 *   MATMUL_DATA:    dst (T, K) += a (T, N) · b (N, K)    (din, dout, weight)
 *   MATMUL_WEIGHTS: dst (N, K) += a (T, N)ᵀ · b (T, K)   (dweight, dout, in)
 */
typedef enum { MATMUL_FORWARD, MATMUL_DATA, MATMUL_WEIGHTS } matmul_product;
enum { MATMUL_PRODUCTS = 3 };
/* "forward", "data" or "weights". */
const char *matmul_product_name(matmul_product kind);
/* The floats of dst: (T, N), (T, K) or (N, K). */
size_t matmul_product_count(matmul_product kind, int T, int K, int N);
/* One product in fp32 through OpenBLAS: matmul_forward or matmul_backward's half. */
void matmul_blas_product(matmul_product kind, float *dst, const float *a, const float *b, int T, int K, int N);
/* The same through oneDNN's f32 matmul (a primitive per product and shape, with T at run time,
 * kept in ctx); false, with nothing written, if oneDNN could not set it up or is not built in. */
bool matmul_dnnl_product(matmul_bf16 *ctx, matmul_product kind, float *dst, const float *a, const float *b, int T,
                         int K, int N);
/* Times the product with both libraries into dst (the backward products keep adding to it):
 * a warm-up each (which makes oneDNN's primitive), then `runs` alternating runs each; the best
 * seconds of each. false if oneDNN could not run it. */
bool matmul_time_both(matmul_bf16 *ctx, matmul_product kind, float *dst, const float *a, const float *b, int T, int K,
                      int N, int runs, double *openblas, double *onednn);
/* How ctx runs fp32 products from now on (pm_fp32_matmul, probmoe.h). */
void matmul_set_fp32(matmul_bf16 *ctx, pm_fp32_matmul choice);
/* Whether PM_FP32_MATMUL_MEASURED takes oneDNN for this product and shape. */
bool matmul_measured_onednn(matmul_product kind, int K, int N);
/* Whether OpenBLAS runs its generic SSE3 kernels on a CPU it does not recognise (matmul.c):
 * then `measured` sends every fp32 product to oneDNN. */
bool openblas_runs_fallback_kernels(void);
/* oneDNN replaces OpenBLAS only when faster than this fraction (3%): closer is noise, and
 * OpenBLAS is what bit-exact results were recorded with. */
#define MATMUL_ONEDNN_MARGIN 0.03
/* A product and shape that ctx timed (PM_FP32_MATMUL_AUTO) when it first ran with `rows` rows. */
typedef struct {
    matmul_product kind;
    int k, n, rows;
    bool onednn;                          /* the choice */
    double openblas_gflops, onednn_gflops; /* the best of the timed runs (onednn 0: could not run) */
} matmul_site;
/* Copies up to max of ctx's timed products into out; returns how many there are. */
int matmul_timed_sites(const matmul_bf16 *ctx, matmul_site *out, int max);

/* out (T, C) = in / sqrt(mean(in²) + eps) * weight (C); rstd (T) keeps 1/sqrt(mean + eps). */
void rmsnorm_forward(float *out, float *rstd, const float *in, const float *weight, int T, int C,
                     float eps);
/* din (T, C) +=, dweight (C) += (dweight may be NULL). */
void rmsnorm_backward(float *din, float *dweight, const float *dout, const float *in,
                      const float *weight, const float *rstd, int T, int C);

/*
 * Rotary embedding, rotate-half convention (Hugging Face Llama/OLMoE): for each head's
 * vector x (D values, D even) at position p, with inv_freq_i = theta^(−2i/D), i < D/2:
 *   out_i       = x_i cos(p·f_i) − x_{i+D/2} sin(p·f_i)
 *   out_{i+D/2} = x_{i+D/2} cos(p·f_i) + x_i sin(p·f_i)
 * x is (T, heads, D), D even; positions (T). In place is allowed (out == in). Angles are
 * formed in double, so large positions (1e5) keep float accuracy.
 */
void rope_forward(float *out, const float *in, const int32_t *positions, int T, int heads, int D,
                  float theta);
/* din (T, heads, D) += the inverse rotation of dout. */
void rope_backward(float *din, const float *dout, const int32_t *positions, int T, int heads,
                   int D, float theta);

/*
 * Causal scaled dot-product attention with grouped KV heads, B sequences of S tokens:
 * q (B, S, H, D), k and v (B, S, KVH, D) with H % KVH == 0 (query head h reads KV head
 * h / (H / KVH)), scale 1/sqrt(D). out (B, S, H, D). att (B, H, S, S) keeps the softmax
 * probabilities for the backward pass (entries above the diagonal are 0).
 */
void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       int B, int S, int H, int KVH, int D);
/* As attention_forward with a sliding window (Mixtral): query i attends to keys
 * i − window < j <= i; window 0 means every earlier key. The backward is attention_backward's:
 * att holds zeros outside the window. */
void attention_forward_window(float *out, float *att, const float *q, const float *k, const float *v, int B, int S,
                              int H, int KVH, int D, int window);
/* One new token's attention over its cache of n positions (decoding): q (H, D), keys and values
 * (n, KVH, D) with the token's own at n − 1, out (H, D); scores (H, n) is scratch. */
void attention_decode_forward(float *out, float *scores, const float *q, const float *keys, const float *values,
                              int n, int H, int KVH, int D);
/* dq (B, S, H, D) +=, dk and dv (B, S, KVH, D) +=. Needs 64·S floats of scratch per thread; if
 * that allocation fails, dq, dk and dv are set to NaN instead (the failure then shows as a
 * non-finite gradient). */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                        const float *q, const float *k, const float *v, int B, int S, int H,
                        int KVH, int D);
/* The same on the caller's scratch of attention_backward_scratch_bytes(S, scratch_threads)
 * (the model's arena); the loop runs on at most scratch_threads threads. */
void attention_backward_in(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                           const float *k, const float *v, int B, int S, int H, int KVH, int D, float *scratch,
                           int scratch_threads);
/* The scratch for sequences of S tokens and that many threads, in bytes. */
size_t attention_backward_scratch_bytes(int S, int threads);

/* out (T, N) = silu(gate) * up, silu(x) = x / (1 + e^{−x}), where each row of gate_up (T, 2N)
 * is gate's row then up's (the product x · [gate; up]ᵀ of one (2N, K) weight). */
void swiglu_forward(float *out, const float *gate_up, int T, int N);
/* dgate_up (T, 2N) := the gradients of gate and up, laid out as gate_up. An exception to the
 * += rule: its one caller (the experts' backward) would otherwise zero the buffer first. */
void swiglu_backward(float *dgate_up, const float *dout, const float *gate_up, int T, int N);

/* out (T, N) += bias (N) on every row. */
void bias_forward(float *out, const float *bias, int T, int N);
/* dbias (N) += Σ_t dout (T, N), the rows summed in order (deterministic). */
void bias_backward(float *dbias, const float *dout, int T, int N);

/* out (T, C) = table[tokens[t]] (table (V, C), 0 <= tokens[t] < V). */
void embedding_forward(float *out, const int32_t *tokens, const float *table, int T, int C);
/* dtable (V, C) += scatter of dout (T, C); deterministic for repeated tokens. */
void embedding_backward(float *dtable, const float *dout, const int32_t *tokens, int T, int C);

/*
 * Mean cross-entropy over positions whose target is >= 0 (targets < 0 are ignored).
 * logits (T, V), targets < V. Returns the mean loss (0 if every target is ignored) and writes
 * the number of counted positions to *count (count may be NULL). Backward:
 * dlogits (T, V) += dloss · (softmax − onehot) / count on counted rows (ignored rows get
 * nothing).
 */
float cross_entropy_forward(const float *logits, const int32_t *targets, int T, int V,
                            int *count);
void cross_entropy_backward(float *dlogits, const float *logits, const int32_t *targets, int T,
                            int V, float dloss);

#endif
