#include "route/subset_lanes.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "core/exp_lanes.h"

#define L DP_LANES

/*
 * One vector of L doubles (GCC/Clang vector extension: one zmm register with AVX-512, split
 * into narrower operations elsewhere). The recurrences below keep whole columns of the tables
 * (all degrees of one item) in such registers, so each cell costs its FMAs and one load or
 * store instead of a round trip through memory per operand. This file is compiled with
 * -ffp-contract=fast (CMakeLists.txt) so that a*b + c becomes one FMA.
 */
typedef double lanes_v __attribute__((vector_size(L * sizeof(double))));
typedef long long lanes_mask __attribute__((vector_size(L * sizeof(long long)))); /* comparisons */

/* Kernels with the degree count known at compile time, so columns stay in registers. */
#define REGISTER_MAX_K 16

static inline lanes_v load(const double *p) {
    lanes_v v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void store(double *p, lanes_v v) { memcpy(p, &v, sizeof v); }
static inline lanes_v splat(double x) { return (lanes_v){x, x, x, x, x, x, x, x}; }

static size_t table_size(int n, int kmax) { return ((size_t)kmax + 1) * ((size_t)n + 1) * L; }

/* Items per block of the sweep: a block's F and DF columns (2·K vectors each) stay in L1. */
#define COV_BLOCK 8

/* Doubles of cov_columns' checkpoints and block buffer (within the scratch after F). */
static size_t cov_block_size(int n, int K) {
    return ((size_t)n / COV_BLOCK + 1 + COV_BLOCK) * 2 * (size_t)K * L;
}

size_t subset_lanes_tables_size(int n, int kmax) {
    /* w, degree weights, z_scaled and log_z */
    return (size_t)n * L + ((size_t)kmax + 1) * L + 2 * L;
}

size_t subset_lanes_scratch_size(int n, int kmax) {
    /* F, DF, and (beyond REGISTER_MAX_K) the adjoint's two columns; or the register kernels'
     * checkpoints and block buffer */
    const size_t generic = 2 * table_size(n, kmax) + 2 * ((size_t)kmax + 2) * L;
    const size_t blocked = table_size(n, kmax) + cov_block_size(n, kmax);
    return generic > blocked ? generic : blocked;
}

size_t subset_lanes_workspace(int n, int kmax) {
    return subset_lanes_tables_size(n, kmax) + subset_lanes_scratch_size(n, kmax);
}

void subset_lanes_attach(subset_lanes *dp, int n, int kmin, int kmax, double *tables, double *scratch) {
    dp->n = n;
    dp->kmin = kmin;
    dp->kmax = kmax;
    dp->w = tables;
    dp->degree_weight = dp->w + (size_t)n * L;
    dp->z_scaled = dp->degree_weight + ((size_t)kmax + 1) * L;
    dp->log_z = dp->z_scaled + L;
    dp->table = scratch;
    dp->scratch = scratch + table_size(n, kmax);
}

/* Cell (m, j) of a (kmax+1, n+1, LANES) table. */
static inline size_t cell(const subset_lanes *dp, int m, int j) {
    return ((size_t)m * (dp->n + 1) + j) * L;
}

/* ------------------------------------------------------------------ forward */

/* F[m][j] = F[m][j-1] + w_j F[m-1][j-1]: the column of item j from that of item j-1, degrees
 * descending so that F[m-1] still holds item j-1's value when F[m] reads it. */
static inline __attribute__((always_inline)) void forward_columns(double *F, const double *w, int n, int K) {
    const size_t row = (size_t)(n + 1) * L;
    lanes_v col[REGISTER_MAX_K + 1];
#pragma GCC unroll 17
    for (int m = 0; m <= K; m++) {
        col[m] = splat(m == 0 ? 1.0 : 0.0);
        store(F + m * row, col[m]);
    }
    for (int j = 1; j <= n; j++) {
        const lanes_v wj = load(w + (size_t)(j - 1) * L);
#pragma GCC unroll 16
        for (int m = K; m >= 1; m--) col[m] = col[m] + wj * col[m - 1];
#pragma GCC unroll 16
        for (int m = 1; m <= K; m++) store(F + m * row + (size_t)j * L, col[m]);
    }
    /* row 0 (all ones) is read only at the last item (the size weights); the walk needs m >= 1 */
    store(F + (size_t)n * L, col[0]);
}

/* Any K, one cell at a time through memory. */
static void forward_generic(double *F, const double *w, int n, int K) {
    const size_t row = (size_t)(n + 1) * L;
    for (int j = 0; j <= n; j++) store(F + (size_t)j * L, splat(1.0));
    for (int m = 1; m <= K; m++) store(F + m * row, splat(0.0));
    for (int j = 1; j <= n; j++) {
        const lanes_v wj = load(w + (size_t)(j - 1) * L);
        for (int m = 1; m <= K; m++) {
            double *out = F + m * row + (size_t)j * L;
            store(out, load(out - L) + wj * load(out - row - L));
        }
    }
}

#define K_CASES(X) \
    X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16)

static void forward_table(double *F, const double *w, int n, int K) {
    switch (K) {
#define FORWARD_CASE(k) \
    case k: forward_columns(F, w, n, k); return;
        K_CASES(FORWARD_CASE)
#undef FORWARD_CASE
    default: forward_generic(F, w, n, K);
    }
}

void subset_lanes_forward(subset_lanes *dp, const float *const theta[L], int n, int kmin, int kmax,
                          double *tables, double *scratch) {
    subset_lanes_attach(dp, n, kmin, kmax, tables, scratch);
    double shift[L];
    for (int l = 0; l < L; l++) {
        const float *row = theta[l];
        float hi = row[0];
#pragma omp simd reduction(max : hi)
        for (int i = 0; i < n; i++) hi = row[i] > hi ? row[i] : hi;
        shift[l] = hi;
        dp->top[l] = hi;
    }
    for (int j = 0; j < n; j++)
        for (int l = 0; l < L; l++) dp->w[(size_t)j * L + l] = (double)theta[l][j] - shift[l];
    /* w = exp(θ − shift): exponents down to −600 on this linear path, where exp_lanes.h's
     * exponentials are pm_exp's; item j's lanes are one vector */
    exp_lanes batch[EXP_LANES_BATCH];
    for (int first = 0; first < n; first += EXP_LANES_BATCH) {
        const int count = n - first < EXP_LANES_BATCH ? n - first : EXP_LANES_BATCH;
        for (int v = 0; v < EXP_LANES_BATCH; v++)
            batch[v] = v < count ? load(dp->w + (size_t)(first + v) * L) : splat(0.0);
        exp_lanes_batch(batch);
        for (int v = 0; v < count; v++) store(dp->w + (size_t)(first + v) * L, batch[v]);
    }
    double *F = dp->table;
    forward_table(F, dp->w, n, kmax);
    /* Size weights as subset_dp.c's forward_linear, per lane. For one size k the weight is
     * exp(k·shift − c) = 1 / F[k][n] and Z·exp(−c) is 1 within a rounding, whose logarithm
     * log(1 + x) = x to 1e-32: one logarithm per token instead of two and an exponential. */
    for (int l = 0; kmin == kmax && l < L; l++) {
        const double f = F[cell(dp, kmax, n) + l];
        for (int m = 0; m < kmax; m++) dp->degree_weight[(size_t)m * L + l] = 0.0;
        dp->degree_weight[(size_t)kmax * L + l] = 1.0 / f;
        dp->z_scaled[l] = f * (1.0 / f);
        dp->log_z[l] = kmax * shift[l] + log(f) + (dp->z_scaled[l] - 1.0);
    }
    for (int l = 0; kmin < kmax && l < L; l++) {
        double c = -INFINITY;
        for (int m = kmin; m <= kmax; m++) {
            double term = m * shift[l] + log(F[cell(dp, m, n) + l]);
            if (term > c) c = term;
        }
        dp->z_scaled[l] = 0.0;
        for (int m = 0; m <= kmax; m++) {
            double weight = m >= kmin ? exp(m * shift[l] - c) : 0.0;
            dp->degree_weight[(size_t)m * L + l] = weight;
            dp->z_scaled[l] += weight * F[cell(dp, m, n) + l];
        }
        dp->log_z[l] = c + log(dp->z_scaled[l]);
    }
}

/* ----------------------------------------------------------------- sampling */

int subset_lanes_uniforms(int kmin, int kmax) { return kmax + (kmax > kmin); }

/* The size of lane l's sample: the first m with u < Σ_{m' <= m} P(|S| = m'), as subset_dp.c. */
static int sample_size(const subset_lanes *dp, int lane, double draw) {
    const double *F = dp->table + lane;
    double acc = 0.0;
    for (int m = dp->kmin; m <= dp->kmax; m++) {
        acc += dp->degree_weight[(size_t)m * L + lane] * F[cell(dp, m, dp->n)] / dp->z_scaled[lane];
        if (draw < acc) return m;
    }
    return dp->kmax;
}

/*
 * subset_dp.c's walk takes, with `need` items still to choose among items 1..j, the largest
 * i <= j with F[need][i-1] <= u·F[need][j]. F[need][·] never decreases along the items (each
 * step adds a product of non-negative numbers) and is 0 below item `need`, so that i is the
 * number of items i <= j with F[need][i-1] <= bound. Counting is branch-free and runs across
 * the lanes: one vector comparison per item, where walking one lane at a time paid a
 * mispredicted branch at every item taken. Lanes still needing different sizes (dynamic k)
 * count each size's row under a mask.
 */
void subset_lanes_sample_all(const subset_lanes *dp, const double *uniforms, int *sizes, int *picks) {
    const int n = dp->n;
    const bool sized = dp->kmax > dp->kmin;
    long long j[L], need[L], next_uniform[L];
    int stages = 0;
    for (int l = 0; l < L; l++) {
        sizes[l] = sized ? sample_size(dp, l, uniforms[l]) : dp->kmin;
        j[l] = n;
        need[l] = sizes[l];
        next_uniform[l] = sized ? 1 : 0;
        if (sizes[l] > stages) stages = sizes[l];
    }
    for (int stage = 0; stage < stages; stage++) {
        double bound[L];
        long long last = 0, low = dp->kmax, high = 0;
        for (int l = 0; l < L; l++) {
            bound[l] = -1.0; /* a finished lane counts nothing */
            if (need[l] == 0) continue;
            bound[l] = uniforms[(size_t)next_uniform[l]++ * L + l] * dp->table[cell(dp, (int)need[l], (int)j[l]) + l];
            last = j[l] > last ? j[l] : last;
            low = need[l] < low ? need[l] : low;
            high = need[l] > high ? need[l] : high;
        }
        const lanes_v bound_v = load(bound);
        lanes_mask need_v, j_v, count = {0};
        memcpy(&need_v, need, sizeof need_v);
        memcpy(&j_v, j, sizeof j_v);
        for (long long m = low; m <= high; m++) {
            const lanes_mask in_row = need_v == m;
            const double *row = dp->table + cell(dp, (int)m, 0);
            for (long long i = 1; i <= last; i++)
                count -= (load(row + (size_t)(i - 1) * L) <= bound_v) & (i <= j_v) & in_row;
        }
        for (int l = 0; l < L; l++) {
            if (need[l] == 0) continue;
            j[l] = count[l] - 1; /* the item taken; items before it remain */
            picks[(size_t)(need[l] - 1) * L + l] = (int)j[l];
            need[l]--;
        }
    }
}

/* -------------------------------------------------------------------- Cov·u */

/*
 * Cov(z)·u is the derivative of the marginals m_j = w_j G_j / Z along θ + εu (ROUTING.md). First
 * the tangent table
 *   DF[m][j] = DF[m][j-1] + w_j (u_j F[m-1][j-1] + DF[m-1][j-1]),
 * whose last column gives Z's tangent DZ = Σ_m Fbar[m][n] DF[m][n]; then one sweep from the
 * last item down with the adjoint column Fbar and its tangent DFbar in registers, fused with
 * the sums over degrees G = Σ Fbar[m][j] F[m-1][j-1] and its tangent DG, which give
 *   (Cov·u)_j = m_j (u_j − DZ/Z) + w_j DG / Z.
 * Row 0 is known (F = 1, DF = 0) and is not read. DG runs in two accumulators (one per
 * product) so that no chain of dependent FMAs is longer than the number of degrees.
 * subset_dp.c computes the same through m_j (1 − m_j)(u_j + DG/G − DN/N), which needs the sums
 * N = Σ Fbar[m][j] F[m][j-1] and DN as well; the direct form saves them (a fifth of the
 * FMAs) at the price of rounding relative to |u| rather than to the result where it is near 0.
 * The kernel for larger k_max (cov_generic) keeps the four sums.
 */

/* Item j's result from its four sums, as cov_mv_linear's m_j (1 − m_j)(u_j + DG/G − DN/N) with
 * m_j = w_j G / Z and 1 − m_j = N / Z, multiplied out so that no lane divides:
 *   m_j (1 − m_j) u_j + (w_j DG / Z)(1 − m_j) − m_j (DN / Z).
 * Every factor is a probability or a tangent scaled by 1/Z, so nothing overflows. */
static inline void item_result(lanes_v w, lanes_v u, lanes_v g, lanes_v dg, lanes_v none, lanes_v dnone,
                               lanes_v inv_z, double *result) {
    const lanes_v m_j = w * g * inv_z, not_j = none * inv_z;
    const lanes_v value = m_j * not_j * u + w * dg * inv_z * not_j - m_j * (dnone * inv_z);
    const lanes_mask defined = (g > splat(0.0)) & (none > splat(0.0));
    lanes_mask bits;
    memcpy(&bits, &value, sizeof bits);
    bits &= defined;
    memcpy(result, &bits, sizeof bits);
}

/* Item j's step of F and DF (degrees descending: m−1 still holds item j−1's values); the one
 * definition both passes of cov_columns use, so they compute the same numbers. */
static inline __attribute__((always_inline)) void tangent_step(lanes_v *col, lanes_v *dcol, lanes_v wj,
                                                               lanes_v uj, int K) {
#pragma GCC unroll 16
    for (int m = K; m >= 1; m--) {
        dcol[m] = dcol[m] + wj * (uj * col[m - 1] + dcol[m - 1]);
        col[m] = col[m] + wj * col[m - 1];
    }
}

/* Columns 1..K of F and DF, one after the other (row 0 is known: F = 1, DF = 0). */
static inline __attribute__((always_inline)) void save_columns(double *at, const lanes_v *col,
                                                               const lanes_v *dcol, int K) {
#pragma GCC unroll 16
    for (int m = 1; m <= K; m++) {
        store(at + (size_t)(m - 1) * L, col[m]);
        store(at + (size_t)(K + m - 1) * L, dcol[m]);
    }
}

static inline __attribute__((always_inline)) void load_columns(const double *at, lanes_v *col, lanes_v *dcol,
                                                               int K) {
    col[0] = splat(1.0);
    dcol[0] = splat(0.0);
#pragma GCC unroll 16
    for (int m = 1; m <= K; m++) {
        col[m] = load(at + (size_t)(m - 1) * L);
        dcol[m] = load(at + (size_t)(K + m - 1) * L);
    }
}

/*
 * The sweep from the last item down needs item j−1's columns of F and DF at item j. Writing
 * the whole tables (2·(K+1)·(n+1) vectors, 75 KB at n = 64, K = 8) and reading them back
 * costs more than the arithmetic: they leave L1. So the first pass keeps only every
 * COV_BLOCK-th column (checkpoints), and the sweep rebuilds each block's columns from its
 * checkpoint into a small buffer just before it needs them: 3 more FMAs per cell, all
 * memory traffic in L1. The rebuilt numbers are those of one pass (tangent_step either way).
 */
static inline __attribute__((always_inline)) void cov_columns(const subset_lanes *dp, const double *u,
                                                              double *out, int K) {
    const int n = dp->n;
    const size_t span = 2 * (size_t)K * L; /* one column of F and DF, degrees 1..K */
    double *checkpoint = dp->scratch;      /* (n / COV_BLOCK + 1) columns */
    double *block = checkpoint + ((size_t)n / COV_BLOCK + 1) * span; /* COV_BLOCK columns */
    lanes_v col[REGISTER_MAX_K + 1], dcol[REGISTER_MAX_K + 1];
#pragma GCC unroll 17
    for (int m = 0; m <= K; m++) {
        col[m] = splat(m == 0 ? 1.0 : 0.0);
        dcol[m] = splat(0.0);
    }
    save_columns(checkpoint, col, dcol, K);
    /* the sweep reads columns 0 .. n − 1; column n gives Z's tangent */
    for (int j = 1; j <= n; j++) {
        tangent_step(col, dcol, load(dp->w + (size_t)(j - 1) * L), load(u + (size_t)(j - 1) * L), K);
        if (j % COV_BLOCK == 0 && j < n) save_columns(checkpoint + (size_t)(j / COV_BLOCK) * span, col, dcol, K);
    }
    lanes_v fbar[REGISTER_MAX_K + 1], dfbar[REGISTER_MAX_K + 1], dz = splat(0.0);
#pragma GCC unroll 17
    for (int m = 0; m <= K; m++) {
        fbar[m] = load(dp->degree_weight + (size_t)m * L);
        dfbar[m] = splat(0.0);
        if (m > 0) dz = dz + fbar[m] * dcol[m];
    }
    const lanes_v inv_z = splat(1.0) / load(dp->z_scaled), dz_over_z = dz * inv_z;
    for (int first = (n - 1) / COV_BLOCK * COV_BLOCK; first >= 0; first -= COV_BLOCK) {
        const int last = first + COV_BLOCK < n ? first + COV_BLOCK - 1 : n - 1; /* columns */
        load_columns(checkpoint + (size_t)(first / COV_BLOCK) * span, col, dcol, K);
        save_columns(block, col, dcol, K);
        for (int c = first + 1; c <= last; c++) {
            tangent_step(col, dcol, load(dp->w + (size_t)(c - 1) * L), load(u + (size_t)(c - 1) * L), K);
            save_columns(block + (size_t)(c - first) * span, col, dcol, K);
        }
        for (int j = last + 1; j > first; j--) {
            const lanes_v wj = load(dp->w + (size_t)(j - 1) * L), uj = load(u + (size_t)(j - 1) * L);
            const double *f_prev = block + (size_t)(j - 1 - first) * span, *df_prev = f_prev + (size_t)K * L;
            /* degree 1's term of G (F[0] = 1, DF[0] = 0) starts the sums */
            lanes_v g = fbar[1], dg_a = dfbar[1], dg_b = splat(0.0);
#pragma GCC unroll 16
            for (int m = 1; m < K; m++) {
                const lanes_v c = load(f_prev + (size_t)(m - 1) * L), dc = load(df_prev + (size_t)(m - 1) * L);
                g = g + fbar[m + 1] * c;
                dg_a = dg_a + dfbar[m + 1] * c;
                dg_b = dg_b + fbar[m + 1] * dc;
            }
            /* m_j = w_j G / Z moves along u by m_j (u_j − DZ/Z) + w_j DG / Z */
            const lanes_v m_j = wj * g * inv_z;
            store(out + (size_t)(j - 1) * L, m_j * (uj - dz_over_z) + wj * (dg_a + dg_b) * inv_z);
            /* Fbar[m][j-1] = Fbar[m][j] + w_j Fbar[m+1][j], ascending so that m+1 is still old;
             * degree 0 feeds no sum */
#pragma GCC unroll 16
            for (int m = 1; m < K; m++) {
                dfbar[m] = dfbar[m] + wj * (uj * fbar[m + 1] + dfbar[m + 1]);
                fbar[m] = fbar[m] + wj * fbar[m + 1];
            }
        }
    }
}

/* Any K: the same sweeps with the columns in memory (scratch after DF). */
static void cov_generic(const subset_lanes *dp, const double *u, double *out) {
    const int n = dp->n, K = dp->kmax;
    const size_t row = (size_t)(n + 1) * L;
    const double *F = dp->table;
    double *DF = dp->scratch;
    double *fbar = DF + table_size(n, K), *dfbar = fbar + ((size_t)K + 2) * L;
    forward_generic(dp->table, dp->w, n, K);
    for (int j = 0; j <= n; j++) store(DF + (size_t)j * L, splat(0.0));
    for (int m = 1; m <= K; m++) store(DF + m * row, splat(0.0));
    for (int j = 1; j <= n; j++) {
        const lanes_v wj = load(dp->w + (size_t)(j - 1) * L), uj = load(u + (size_t)(j - 1) * L);
        for (int m = 1; m <= K; m++) {
            const size_t at = cell(dp, m, j);
            store(DF + at, load(DF + at - L) + wj * (uj * load(F + at - row - L) + load(DF + at - row - L)));
        }
    }
    memcpy(fbar, dp->degree_weight, sizeof(double) * ((size_t)K + 1) * L);
    store(fbar + (size_t)(K + 1) * L, splat(0.0));
    memset(dfbar, 0, sizeof(double) * ((size_t)K + 2) * L);
    const lanes_v inv_z = splat(1.0) / load(dp->z_scaled);
    for (int j = n; j >= 1; j--) {
        lanes_v g = splat(0.0), dg = g, none = g, dnone = g;
        for (int m = 0; m <= K; m++) {
            const lanes_v a = load(fbar + (size_t)m * L), da = load(dfbar + (size_t)m * L);
            const lanes_v c = load(F + cell(dp, m, j - 1)), dc = load(DF + cell(dp, m, j - 1));
            none = none + a * c;
            dnone = dnone + da * c + a * dc;
            if (m == 0) continue;
            g = g + a * load(F + cell(dp, m - 1, j - 1));
            dg = dg + da * load(F + cell(dp, m - 1, j - 1)) + a * load(DF + cell(dp, m - 1, j - 1));
        }
        const lanes_v wj = load(dp->w + (size_t)(j - 1) * L), uj = load(u + (size_t)(j - 1) * L);
        item_result(wj, uj, g, dg, none, dnone, inv_z, out + (size_t)(j - 1) * L);
        for (int m = 0; m < K; m++) {
            double *a = fbar + (size_t)m * L, *da = dfbar + (size_t)m * L;
            const lanes_v up = load(a + L), dup = load(da + L);
            store(da, load(da) + wj * (uj * up + dup));
            store(a, load(a) + wj * up);
        }
    }
}

void subset_lanes_cov_mv(const subset_lanes *dp, const double *u, double *out) {
    switch (dp->kmax) {
#define COV_CASE(k) \
    case k: cov_columns(dp, u, out, k); return;
        K_CASES(COV_CASE)
#undef COV_CASE
    default: cov_generic(dp, u, out);
    }
}
