/*
 * Causal grouped-KV attention with blocked loops. The per-head products are small (S up to
 * ~1k, D up to 128) and run inside our own OpenMP loop over heads, where the pthreads build
 * of OpenBLAS would start its own threads on top of ours; a register-tiled loop kernel keeps
 * them fast and deterministic.
 *
 * Queries go in blocks of QB rows. Per block the work is three small matrix products done by
 * tile_product; rows only ever touch keys j <= their last query, so the causal half is
 * skipped (up to a tile's rounding). Keys (forward) and values (backward) are transposed per
 * head into (D, sp) scratch so that score rows come out as contiguous tiles; dK and dV are
 * accumulated transposed the same way and added back at the end of a task. Padding columns
 * of the scratch (up to a whole tile) hold zeros, so tiles never need a ragged edge there.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "nn/nn.h"

/* ISO C mode turns off contraction of a*b + c into FMA; ask for it where the target has it. */
#ifdef FP_FAST_FMAF
#define MADD(a, b, c) fmaf((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

/* Tile of 4 rows × TC columns held in registers: 8 vectors with AVX-512, 8 with AVX2. */
#ifdef __AVX512F__
#define TC 32
#else
#define TC 16
#endif
#define TR 4
/* Query rows per block. */
#define QB 32

/*
 * C[r][c] (+)= Σ_{k<K} X[r·xr + k·xk] · Y[k·yk + c] for r < rows (<= TR), c < TC. Missing rows
 * reuse row 0's data and are not stored. Each element sums over k in order, so results do not
 * depend on how the caller splits the work. The four accumulator rows live in vector
 * registers; kept out of line because, inlined into the callers, GCC spilled them to the stack.
 */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void tile_full(float *restrict c, size_t cr, const float *restrict x, size_t xr,
                             size_t xk, const float *restrict y, size_t yk, int rows, int K,
                             int accumulate) {
    float acc0[TC], acc1[TC], acc2[TC], acc3[TC];
    const float *x0 = x, *x1 = x + (rows > 1 ? xr : 0), *x2 = x + (rows > 2 ? 2 * xr : 0),
                *x3 = x + (rows > 3 ? 3 * xr : 0);
    float *c0 = c, *c1 = c + (rows > 1 ? cr : 0), *c2 = c + (rows > 2 ? 2 * cr : 0),
          *c3 = c + (rows > 3 ? 3 * cr : 0);
#pragma omp simd
    for (int j = 0; j < TC; j++) {
        acc0[j] = accumulate ? c0[j] : 0.0f;
        acc1[j] = accumulate ? c1[j] : 0.0f;
        acc2[j] = accumulate ? c2[j] : 0.0f;
        acc3[j] = accumulate ? c3[j] : 0.0f;
    }
    for (int k = 0; k < K; k++) {
        const float *yy = y + k * yk;
        const float a0 = x0[k * xk], a1 = x1[k * xk], a2 = x2[k * xk], a3 = x3[k * xk];
#pragma omp simd
        for (int j = 0; j < TC; j++) {
            acc0[j] = MADD(a0, yy[j], acc0[j]);
            acc1[j] = MADD(a1, yy[j], acc1[j]);
            acc2[j] = MADD(a2, yy[j], acc2[j]);
            acc3[j] = MADD(a3, yy[j], acc3[j]);
        }
    }
    /* Highest row first: a missing row aliases row 0 and must not overwrite its result. */
    if (rows > 3)
        for (int j = 0; j < TC; j++) c3[j] = acc3[j];
    if (rows > 2)
        for (int j = 0; j < TC; j++) c2[j] = acc2[j];
    if (rows > 1)
        for (int j = 0; j < TC; j++) c1[j] = acc1[j];
    for (int j = 0; j < TC; j++) c0[j] = acc0[j];
}

/* The same for a last column tile narrower than TC (width < TC), one row at a time. */
static void tile_narrow(float *c, size_t cr, const float *x, size_t xr, size_t xk,
                        const float *y, size_t yk, int rows, int K, int width, int accumulate) {
    for (int r = 0; r < rows; r++) {
        float acc[TC];
        for (int j = 0; j < width; j++) acc[j] = accumulate ? c[r * cr + j] : 0.0f;
        for (int k = 0; k < K; k++) {
            const float a = x[r * xr + k * xk], *yy = y + k * yk;
            for (int j = 0; j < width; j++) acc[j] = MADD(a, yy[j], acc[j]);
        }
        for (int j = 0; j < width; j++) c[r * cr + j] = acc[j];
    }
}

static inline void tile_product(float *c, size_t cr, const float *x, size_t xr, size_t xk,
                                const float *y, size_t yk, int rows, int K, int width,
                                int accumulate) {
    if (width == TC) tile_full(c, cr, x, xr, xk, y, yk, rows, K, accumulate);
    else tile_narrow(c, cr, x, xr, xk, y, yk, rows, K, width, accumulate);
}

/* e^x for x <= 0 in float, vectorisable (libm's expf is not without -ffast-math, and the
 * double pm_exp cost 2 ms of a 12 ms forward): x = n ln2 + r with |r| <= ln2/2, a degree-7
 * Taylor polynomial (truncation < 1e-8 relative), 2^n built in the exponent bits from the
 * rounding trick's mantissa. Inputs below −87 are clamped there: e^−87 ~ 2e-38 is nothing next
 * to the softmax's largest term, 1. */
static inline float exp_nonpositive(float x) {
    const float log2e = 1.44269504f, ln2_hi = 0.693145752f, ln2_lo = 1.42860677e-6f,
                shifter = 0x1.8p23f;
    x = x < -87.0f ? -87.0f : x;
    const float rounded = MADD(x, log2e, shifter), n = rounded - shifter;
    const float r = MADD(-n, ln2_lo, MADD(-n, ln2_hi, x));
    float p = 1.0f / 5040.0f;
    p = MADD(p, r, 1.0f / 720.0f);
    p = MADD(p, r, 1.0f / 120.0f);
    p = MADD(p, r, 1.0f / 24.0f);
    p = MADD(p, r, 1.0f / 6.0f);
    p = MADD(p, r, 0.5f);
    p = MADD(p, r, 1.0f);
    p = MADD(p, r, 1.0f);
    /* rounded's low mantissa bits hold n (its ulp is 1); n + 127 in the exponent field. */
    uint32_t bits;
    memcpy(&bits, &rounded, sizeof bits);
    bits = (bits + 127u) << 23;
    float pow2n;
    memcpy(&pow2n, &bits, sizeof pow2n);
    return p * pow2n;
}

/* Thread-private scratch: one allocation per call, a slice per thread. The kernels return
 * void, so running out of memory here can only stop the program. */
static float *scratch_alloc(size_t per_thread) {
    size_t count = per_thread * (size_t)omp_get_max_threads();
    float *buffer = calloc(count, sizeof(float));
    if (!buffer) {
        fprintf(stderr, "probmoe: attention: out of memory (%zu floats)\n", count);
        abort();
    }
    return buffer;
}

static int round_up(int n, int to) { return (n + to - 1) / to * to; }

/* Row stride of the (·, S) scratch: room for whole column tiles, and an odd number of cache
 * lines, so walking down a column does not keep hitting the same few L1 sets (a stride of
 * 256 floats made the transposes several times slower). */
static int padded_stride(int S) {
    int sp = round_up(S, TC);
    return sp / 16 % 2 ? sp : sp + 16;
}

/* Transposes go in 16 × 16 blocks: both sides then stay within a few cache lines. */
#define TB 16

/* dst (D, sp) ← rows j < S of src (row stride `stride`), transposed. */
static void transpose_in(float *dst, int sp, const float *src, size_t stride, int S, int D) {
    for (int j0 = 0; j0 < S; j0 += TB)
        for (int d0 = 0; d0 < D; d0 += TB) {
            const int j1 = S - j0 < TB ? S : j0 + TB, d1 = D - d0 < TB ? D : d0 + TB;
            for (int d = d0; d < d1; d++)
                for (int j = j0; j < j1; j++) dst[(size_t)d * sp + j] = src[j * stride + d];
        }
}

/* dst rows j < S (row stride `stride`) += src (D, sp) transposed. */
static void transpose_add(float *dst, size_t stride, const float *src, int sp, int S, int D) {
    for (int j0 = 0; j0 < S; j0 += TB)
        for (int d0 = 0; d0 < D; d0 += TB) {
            const int j1 = S - j0 < TB ? S : j0 + TB, d1 = D - d0 < TB ? D : d0 + TB;
            for (int j = j0; j < j1; j++)
                for (int d = d0; d < d1; d++) dst[j * stride + d] += src[(size_t)d * sp + j];
        }
}

/* c (rows of the block, stride cr) ← x (block rows, stride xr) · t, t (D, sp) transposed:
 * row tile r0 gets columns j < r0 + rows (its last query + 1), rounded up to TC (t's padding
 * holds zeros). Column tiles outside, so a (D, TC) slab of t stays in L1 for all row tiles. */
static void block_times_transposed(float *c, size_t cr, const float *x, size_t xr,
                                   const float *t, int sp, int first, int rows, int D) {
    for (int j0 = 0; j0 < first + rows; j0 += TC)
        for (int r0 = j0 > first ? (j0 - first) / TR * TR : 0; r0 < rows; r0 += TR) {
            const int tr = rows - r0 < TR ? rows - r0 : TR;
            tile_product(c + r0 * cr + j0, cr, x + r0 * xr, xr, 1, t + j0, (size_t)sp, tr, D,
                         TC, 0);
        }
}

/* Keys per pass of block_times_rows: bounds the rows of y streamed per tile. */
#define KB 256

/* out (block rows, stride outr) (+)= w (block rows, stride wr) · rows of y (stride ys), D
 * columns; row tile r0 sums over keys j < its last query + 1 (w is 0 beyond each row's own
 * last key), in passes of KB keys so those rows of y stay in cache across row tiles. */
static void block_times_rows(float *out, size_t outr, const float *w, size_t wr, const float *y,
                             size_t ys, int first, int rows, int D, int accumulate) {
    for (int k0 = 0; k0 < first + rows; k0 += KB)
        for (int r0 = k0 > first ? (k0 - first) / TR * TR : 0; r0 < rows; r0 += TR) {
            const int tr = rows - r0 < TR ? rows - r0 : TR, n = first + r0 + tr;
            const int k1 = n - k0 < KB ? n : k0 + KB;
            for (int d0 = 0; d0 < D; d0 += TC) {
                const int width = D - d0 < TC ? D - d0 : TC;
                tile_product(out + r0 * outr + d0, outr, w + r0 * wr + k0, wr, 1,
                             y + k0 * ys + d0, ys, tr, k1 - k0, width, accumulate || k0 > 0);
            }
        }
}

/* acct (D, sp) += xᵀ · w for block rows x (stride xr, D columns) and w (stride wr = sp);
 * key column tile j0 only gathers queries i >= j0. Column tiles outside, so w's (rows, TC)
 * slab stays in L1 for all of D. */
static void block_transposed_update(float *acct, int sp, const float *x, size_t xr,
                                    const float *w, int first, int rows, int D) {
    for (int j0 = 0; j0 < first + rows; j0 += TC) {
        const int k0 = j0 > first ? j0 - first : 0;
        for (int d0 = 0; d0 < D; d0 += TR) {
            const int tr = D - d0 < TR ? D - d0 : TR;
            tile_product(acct + (size_t)d0 * sp + j0, (size_t)sp, x + k0 * xr + d0, 1, xr,
                         w + (size_t)k0 * sp + j0, (size_t)sp, tr, rows - k0, TC, 1);
        }
    }
}

void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       int B, int S, int H, int KVH, int D) {
    if (B <= 0 || S <= 0 || H <= 0 || KVH <= 0 || D <= 0) return;
    const int group = H / KVH, sp = padded_stride(S);
    const size_t q_stride = (size_t)H * D, kv_stride = (size_t)KVH * D;
    const float fscale = (float)(1.0 / sqrt((double)D));
    /* kt (D, sp) and the block's scores (QB, sp); padding columns stay 0. */
    const size_t per_thread = (size_t)(D + QB) * sp;
    float *scratch = scratch_alloc(per_thread);
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        const int b = bh / H, h = bh % H, g = h / group;
        float *kt = scratch + per_thread * (size_t)omp_get_thread_num();
        float *sc = kt + (size_t)D * sp;
        const size_t kv_base = (size_t)b * S * kv_stride + (size_t)g * D;
        transpose_in(kt, sp, k + kv_base, kv_stride, S, D);
        for (int i0 = 0; i0 < S; i0 += QB) {
            const int rows = S - i0 < QB ? S - i0 : QB;
            const size_t q_off = ((size_t)b * S + i0) * q_stride + (size_t)h * D;
            block_times_transposed(sc, (size_t)sp, q + q_off, q_stride, kt, sp, i0, rows, D);
            for (int r = 0; r < rows; r++) {
                const int n = i0 + r + 1;
                float *s = sc + (size_t)r * sp;
                float m = -INFINITY;
#pragma omp simd reduction(max : m)
                for (int j = 0; j < n; j++) m = s[j] > m ? s[j] : m;
                double sum = 0.0;
#pragma omp simd reduction(+ : sum)
                for (int j = 0; j < n; j++) {
                    float e = exp_nonpositive(fscale * (s[j] - m));
                    s[j] = (float)e;
                    sum += e;
                }
                const float inv = (float)(1.0 / sum);
#pragma omp simd
                for (int j = 0; j < n; j++) s[j] *= inv;
                /* Zeros up to the block's last key: the P·V tiles read that far. */
                memset(s + n, 0, sizeof(float) * (size_t)(round_up(i0 + rows, TC) - n));
                float *a = att + ((size_t)bh * S + i0 + r) * S;
                memcpy(a, s, sizeof(float) * (size_t)n);
                memset(a + n, 0, sizeof(float) * (size_t)(S - n));
            }
            block_times_rows(out + q_off, q_stride, sc, (size_t)sp, v + kv_base, kv_stride, i0,
                             rows, D, 0);
        }
    }
    free(scratch);
}

/*
 * With P the probabilities, dP = dO·Vᵀ and dS = scale · P ⊙ (dP − rowsum(P ⊙ dP)):
 * dQ += dS·K, dK += dSᵀ·Q, dV += Pᵀ·dO. A task owns one (sequence, KV head) pair and walks its
 * query heads and blocks in order, so dk and dv sum in a fixed order.
 */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                        const float *q, const float *k, const float *v, int B, int S, int H,
                        int KVH, int D) {
    if (B <= 0 || S <= 0 || H <= 0 || KVH <= 0 || D <= 0) return;
    const int group = H / KVH, sp = padded_stride(S);
    const size_t q_stride = (size_t)H * D, kv_stride = (size_t)KVH * D;
    const double scale = 1.0 / sqrt((double)D);
    /* vt, dkt, dvt (D, sp); dS and P of the block (QB, sp). */
    const size_t per_thread = (size_t)(3 * D + 2 * QB) * sp;
    float *scratch = scratch_alloc(per_thread);
#pragma omp parallel for schedule(static)
    for (int bg = 0; bg < B * KVH; bg++) {
        const int b = bg / KVH, g = bg % KVH;
        float *vt = scratch + per_thread * (size_t)omp_get_thread_num();
        float *dkt = vt + (size_t)D * sp, *dvt = dkt + (size_t)D * sp;
        float *ds = dvt + (size_t)D * sp, *pb = ds + (size_t)QB * sp;
        const size_t kv_base = (size_t)b * S * kv_stride + (size_t)g * D;
        transpose_in(vt, sp, v + kv_base, kv_stride, S, D);
        memset(dkt, 0, sizeof(float) * 2 * (size_t)D * sp);
        for (int h = g * group; h < (g + 1) * group; h++) {
            for (int i0 = 0; i0 < S; i0 += QB) {
                const int rows = S - i0 < QB ? S - i0 : QB, end = round_up(i0 + rows, TC);
                const size_t q_off = ((size_t)b * S + i0) * q_stride + (size_t)h * D;
                block_times_transposed(ds, (size_t)sp, dout + q_off, q_stride, vt, sp, i0, rows,
                                       D);
                for (int r = 0; r < rows; r++) {
                    const int n = i0 + r + 1;
                    const float *p = att + (((size_t)b * H + h) * S + i0 + r) * S;
                    float *dsr = ds + (size_t)r * sp, *pr = pb + (size_t)r * sp;
                    double dot = 0.0;
#pragma omp simd reduction(+ : dot)
                    for (int j = 0; j < n; j++) dot += (double)p[j] * dsr[j];
#pragma omp simd
                    for (int j = 0; j < n; j++) {
                        dsr[j] = (float)(scale * p[j] * ((double)dsr[j] - dot));
                        pr[j] = p[j];
                    }
                    memset(dsr + n, 0, sizeof(float) * (size_t)(end - n));
                    memset(pr + n, 0, sizeof(float) * (size_t)(end - n));
                }
                block_times_rows(dq + q_off, q_stride, ds, (size_t)sp, k + kv_base, kv_stride,
                                 i0, rows, D, 1);
                block_transposed_update(dkt, sp, q + q_off, q_stride, ds, i0, rows, D);
                block_transposed_update(dvt, sp, dout + q_off, q_stride, pb, i0, rows, D);
            }
        }
        transpose_add(dk + kv_base, kv_stride, dkt, sp, S, D);
        transpose_add(dv + kv_base, kv_stride, dvt, sp, S, D);
    }
    free(scratch);
}
