#include "route/subset_dp.h"

#include "core/fast_exp.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Beyond these the linear system could underflow or overflow (see subset_dp.h). */
#define LINEAR_MAX_EXPONENT 600.0
#define LINEAR_MAX_N 1000

static inline double log_add_exp(double a, double b) {
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    return a > b ? a + log1p(exp(b - a)) : b + log1p(exp(a - b));
}

/* exp(a − b), with exp(−inf − b) = 0. */
static inline double exp_diff(double a, double b) { return a == -INFINITY ? 0.0 : exp(a - b); }

/* Row m (degree m, items j = 0..n) of a (kmax+1, n+1) table. */
static inline double *row(const subset_dp *dp, double *table, int m) {
    return table + (size_t)m * (dp->n + 1);
}

static size_t table_size(int n, int kmax) { return ((size_t)kmax + 1) * ((size_t)n + 1); }

bool subset_dp_is_linear(const float *theta, int n, int kmax) {
    float lo = theta[0], hi = theta[0];
    /* exact in any order; without the pragma the float reductions stay scalar */
#pragma omp simd reduction(min : lo) reduction(max : hi)
    for (int i = 0; i < n; i++) {
        lo = theta[i] < lo ? theta[i] : lo;
        hi = theta[i] > hi ? theta[i] : hi;
    }
    return n <= LINEAR_MAX_N && ((double)hi - lo) * kmax <= LINEAR_MAX_EXPONENT;
}

size_t subset_dp_workspace(int n, int kmax) {
    /* w, F, degree weights; scratch: DF, Fbar, DFbar tables, four per-item sums, and two
     * columns for the log system's sweeps */
    return (size_t)n + 4 * table_size(n, kmax) + (size_t)kmax + 1 + 4 * (size_t)n + 2 * ((size_t)kmax + 2);
}

/* F[m][j] = F[m][j-1] + w_j F[m-1][j-1], item by item (the degrees of one item are independent). */
static void forward_linear(subset_dp *dp) {
    const int n = dp->n, K = dp->kmax, width = n + 1;
    double *F = dp->table;
    for (int j = 0; j <= n; j++) F[j] = 1.0;
    for (int m = 1; m <= K; m++) F[(size_t)m * width] = 0.0;
    for (int j = 1; j <= n; j++) {
        const double wj = dp->w[j - 1];
        for (int m = 1; m <= K; m++) {
            double *cell = F + (size_t)m * width + j;
            cell[0] = cell[-1] + wj * cell[-width - 1];
        }
    }
    /* Degree m carries exp(m·shift); scale by exp(−c) with c the largest log term. */
    double c = -INFINITY;
    for (int m = dp->kmin; m <= K; m++) {
        double term = m * dp->shift + log(row(dp, F, m)[n]);
        if (term > c) c = term;
    }
    dp->z_scaled = 0.0;
    for (int m = 0; m <= K; m++) {
        dp->degree_weight[m] = m >= dp->kmin ? exp(m * dp->shift - c) : 0.0;
        dp->z_scaled += dp->degree_weight[m] * row(dp, F, m)[n];
    }
    dp->log_z = c + log(dp->z_scaled);
}

static void forward_log(subset_dp *dp) {
    const int n = dp->n, K = dp->kmax, width = n + 1;
    double *F = dp->table;
    for (int j = 0; j <= n; j++) F[j] = 0.0;
    for (int m = 1; m <= K; m++) F[(size_t)m * width] = -INFINITY;
    for (int j = 1; j <= n; j++) {
        const double theta_j = dp->w[j - 1];
        for (int m = 1; m <= K; m++) {
            double *cell = F + (size_t)m * width + j;
            double take = cell[-width - 1] == -INFINITY ? -INFINITY : theta_j + cell[-width - 1];
            cell[0] = log_add_exp(cell[-1], take);
        }
    }
    dp->log_z = -INFINITY;
    for (int m = 0; m <= K; m++) {
        dp->degree_weight[m] = m >= dp->kmin ? 0.0 : -INFINITY;
        if (m >= dp->kmin) dp->log_z = log_add_exp(dp->log_z, row(dp, F, m)[n]);
    }
    dp->z_scaled = 1.0;
}

void subset_dp_forward(subset_dp *dp, const float *theta, int n, int kmin, int kmax,
                       double *workspace, bool force_log) {
    dp->n = n;
    dp->kmin = kmin;
    dp->kmax = kmax;
    dp->w = workspace;
    dp->table = dp->w + n;
    dp->degree_weight = dp->table + table_size(n, kmax);
    dp->scratch = dp->degree_weight + kmax + 1;

    float hi = theta[0];
    for (int i = 1; i < n; i++) hi = theta[i] > hi ? theta[i] : hi;
    dp->log_domain = force_log || !subset_dp_is_linear(theta, n, kmax);
    dp->shift = dp->log_domain ? 0.0 : hi;
    if (dp->log_domain) {
        for (int i = 0; i < n; i++) dp->w[i] = theta[i];
        forward_log(dp);
    } else {
#pragma omp simd
        for (int i = 0; i < n; i++) dp->w[i] = pm_exp((double)theta[i] - hi);
        forward_linear(dp);
    }
}

/* ------------------------------------------------- marginals and Cov·u, linear */

/*
 * Both come from the suffix adjoint Fbar[m][j] = ∂Z/∂F[m][j] (the ways to complete m
 * choices with items j+1..n), swept from the last item down. For item j,
 *   G_j = Σ_m Fbar[m][j] F[m-1][j-1]  (subsets with j, without w_j),
 *   N_j = Σ_m Fbar[m][j] F[m][j-1]    (subsets without j),
 * so m_j = w_j G_j / Z and 1 − m_j = N_j / Z, both sums of positive terms. The sums over
 * degrees run degree by degree across all items, which vectorises.
 *
 * Cov·u is the forward-mode derivative D of the marginals along u:
 *   (Cov·u)_j = D m_j = m_j (1 − m_j) (u_j + D log G_j − D log N_j),
 * so the small factor m_j (1 − m_j) keeps its relative accuracy for near-certain choices.
 */

/* Fbar (and its derivative DFbar along u when u is not NULL), rows m = 0..K, items 0..n. */
static void adjoint_linear(const subset_dp *dp, const double *u, double *fbar, double *dfbar) {
    const int n = dp->n, K = dp->kmax, width = n + 1;
    for (int m = 0; m <= K; m++) {
        fbar[(size_t)m * width + n] = dp->degree_weight[m];
        if (u) dfbar[(size_t)m * width + n] = 0.0;
    }
    for (int j = n; j >= 1; j--) {
        const double wj = dp->w[j - 1];
        for (int m = 0; m < K; m++) {
            const double *next = fbar + (size_t)m * width + j; /* Fbar[m][j] */
            fbar[(size_t)m * width + j - 1] = next[0] + wj * next[width];
        }
        fbar[(size_t)K * width + j - 1] = fbar[(size_t)K * width + j];
        if (!u) continue;
        const double uj = u[j - 1];
        for (int m = 0; m < K; m++) {
            const double *next = dfbar + (size_t)m * width + j;
            dfbar[(size_t)m * width + j - 1] =
                next[0] + wj * (uj * fbar[(size_t)(m + 1) * width + j] + next[width]);
        }
        dfbar[(size_t)K * width + j - 1] = dfbar[(size_t)K * width + j];
    }
}

/* sums[j-1] += Σ_m a[m][j] b[m + shift][j-1] for degrees m from m_first to K. */
static void degree_sums(const subset_dp *dp, const double *a, const double *b, int b_offset,
                        int m_first, double *sums) {
    const int n = dp->n, K = dp->kmax, width = n + 1;
    for (int m = m_first; m <= K; m++) {
        const double *a_row = a + (size_t)m * width + 1;
        const double *b_row = b + (size_t)(m + b_offset) * width;
#pragma omp simd
        for (int j = 0; j < n; j++) sums[j] += a_row[j] * b_row[j];
    }
}

static void marginals_linear(const subset_dp *dp, double *marginals) {
    const int n = dp->n;
    double *fbar = dp->scratch + table_size(n, dp->kmax);
    adjoint_linear(dp, NULL, fbar, NULL);
    memset(marginals, 0, sizeof(double) * n);
    degree_sums(dp, fbar, dp->table, -1, 1, marginals);
    const double scale = 1.0 / dp->z_scaled;
    for (int j = 0; j < n; j++) marginals[j] *= dp->w[j] * scale;
}

static void cov_mv_linear(const subset_dp *dp, const double *u, double *out, double *marginals) {
    const int n = dp->n, K = dp->kmax, width = n + 1;
    const double *F = dp->table;
    double *DF = dp->scratch, *fbar = DF + table_size(n, K), *dfbar = fbar + table_size(n, K);
    double *g = dfbar + table_size(n, K), *dg = g + n, *none = dg + n, *dnone = none + n;
    /* DF[m][j] = DF[m][j-1] + w_j (u_j F[m-1][j-1] + DF[m-1][j-1]) */
    for (int j = 0; j <= n; j++) DF[j] = 0.0;
    for (int m = 1; m <= K; m++) DF[(size_t)m * width] = 0.0;
    for (int j = 1; j <= n; j++) {
        const double wj = dp->w[j - 1], uj = u[j - 1];
        for (int m = 1; m <= K; m++) {
            const size_t at = (size_t)m * width + j;
            DF[at] = DF[at - 1] + wj * (uj * F[at - width - 1] + DF[at - width - 1]);
        }
    }
    adjoint_linear(dp, u, fbar, dfbar);
    memset(g, 0, sizeof(double) * 4 * n);
    degree_sums(dp, fbar, F, -1, 1, g);
    degree_sums(dp, dfbar, F, -1, 1, dg);
    degree_sums(dp, fbar, DF, -1, 1, dg);
    degree_sums(dp, fbar, F, 0, 0, none);
    degree_sums(dp, dfbar, F, 0, 0, dnone);
    degree_sums(dp, fbar, DF, 0, 0, dnone);
    const double scale = 1.0 / dp->z_scaled;
    for (int j = 0; j < n; j++) {
        const double m_j = dp->w[j] * g[j] * scale, not_j = none[j] * scale;
        if (marginals) marginals[j] = m_j;
        /* m_j (1 − m_j)(u_j + DG/G − DN/N), multiplied out (no divisions, as subset_lanes.c) */
        out[j] = (g[j] > 0.0 && none[j] > 0.0)
                     ? m_j * not_j * u[j] + dp->w[j] * dg[j] * scale * not_j - m_j * (dnone[j] * scale)
                     : 0.0;
    }
}

/* ---------------------------------------------------- marginals and Cov·u, log */

/* The same sweeps in logs, item by item with one adjoint column; R = D log F is a convex
 * combination of its two predecessors' values, so it needs no logs of signed numbers. */
static void sweep_log(const subset_dp *dp, const double *u, const double *R, double *out,
                      double *marginals) {
    const int n = dp->n, K = dp->kmax, width = n + 1;
    const double *F = dp->table;
    double *fbar = dp->scratch + 3 * table_size(n, K) + 4 * (size_t)n; /* after cov_mv_linear's */
    double *rbar = fbar + K + 2;
    memcpy(fbar, dp->degree_weight, sizeof(double) * (K + 1));
    fbar[K + 1] = -INFINITY;
    for (int m = 0; m <= K + 1; m++) rbar[m] = 0.0;
    for (int j = n; j >= 1; j--) {
        const double theta_j = dp->w[j - 1], uj = u ? u[j - 1] : 0.0;
        double log_g = -INFINITY, log_none = -INFINITY;
        for (int m = 0; m <= K; m++) {
            if (fbar[m] == -INFINITY) continue;
            const double with = m >= 1 ? F[(size_t)(m - 1) * width + j - 1] : -INFINITY;
            const double without = F[(size_t)m * width + j - 1];
            if (with != -INFINITY) log_g = log_add_exp(log_g, fbar[m] + with);
            if (without != -INFINITY) log_none = log_add_exp(log_none, fbar[m] + without);
        }
        const double m_j = exp_diff(log_g, dp->log_z - theta_j);
        if (marginals) marginals[j - 1] = m_j;
        if (u) {
            double dlog_g = 0.0, dlog_none = 0.0;
            for (int m = 0; m <= K; m++) {
                if (fbar[m] == -INFINITY) continue;
                const size_t with = (size_t)(m - 1) * width + j - 1, without = (size_t)m * width + j - 1;
                if (m >= 1 && F[with] != -INFINITY)
                    dlog_g += exp(fbar[m] + F[with] - log_g) * (rbar[m] + R[with]);
                if (F[without] != -INFINITY)
                    dlog_none += exp(fbar[m] + F[without] - log_none) * (rbar[m] + R[without]);
            }
            const double not_j = exp_diff(log_none, dp->log_z);
            out[j - 1] = (log_g != -INFINITY && log_none != -INFINITY)
                             ? m_j * not_j * (uj + dlog_g - dlog_none)
                             : 0.0;
        }
        for (int m = 0; m <= K; m++) {
            if (fbar[m + 1] == -INFINITY) continue;
            const double merged = log_add_exp(fbar[m], theta_j + fbar[m + 1]);
            if (u) {
                const double keep = exp_diff(fbar[m], merged), take = exp(theta_j + fbar[m + 1] - merged);
                rbar[m] = keep * rbar[m] + take * (uj + rbar[m + 1]);
            }
            fbar[m] = merged;
        }
    }
}

static void cov_mv_log(const subset_dp *dp, const double *u, double *out, double *marginals) {
    const int n = dp->n, K = dp->kmax, width = n + 1;
    const double *F = dp->table;
    double *R = dp->scratch;
    for (int j = 0; j <= n; j++) R[j] = 0.0;
    for (int m = 1; m <= K; m++) R[(size_t)m * width] = 0.0;
    for (int j = 1; j <= n; j++) {
        const double theta_j = dp->w[j - 1], uj = u[j - 1];
        for (int m = 1; m <= K; m++) {
            const size_t at = (size_t)m * width + j;
            if (F[at] == -INFINITY) {
                R[at] = 0.0;
                continue;
            }
            const double keep = exp_diff(F[at - 1], F[at]);
            const double take = exp_diff(F[at - width - 1], F[at] - theta_j);
            R[at] = keep * R[at - 1] + take * (uj + R[at - width - 1]);
        }
    }
    sweep_log(dp, u, R, out, marginals);
}

void subset_dp_marginals(const subset_dp *dp, double *marginals) {
    if (dp->log_domain)
        sweep_log(dp, NULL, NULL, NULL, marginals);
    else
        marginals_linear(dp, marginals);
}

void subset_dp_cov_mv(const subset_dp *dp, const double *u, double *out, double *marginals) {
    if (dp->log_domain)
        cov_mv_log(dp, u, out, marginals);
    else
        cov_mv_linear(dp, u, out, marginals);
}

/* ----------------------------------------------------------------- sampling */

/* P(|S| = m): linear degree_weight[m]·F[m][n]/z_scaled, log exp(dw + F − log Z). */
static double size_probability(const subset_dp *dp, int m) {
    const double f = row(dp, dp->table, m)[dp->n];
    if (dp->log_domain) return exp_diff(f + dp->degree_weight[m], dp->log_z);
    return dp->degree_weight[m] * f / dp->z_scaled;
}

/*
 * One uniform per chosen item: with `need` items still to choose among items 1..j, the
 * chance that none of items i..j is taken is F[need][i-1] / F[need][j], so the next item
 * taken is the largest i with F[need][i-1] <= u·F[need][j]. Exactly the distribution of
 * walking item by item, at the cost of a scan instead of a random number per item.
 */
static int next_item(const subset_dp *dp, int j, int need, double u) {
    const double *counts = row(dp, dp->table, need);
    const double bound = dp->log_domain ? log(u) + counts[j] : u * counts[j];
    while (j > need && counts[j - 1] > bound) j--;
    return j;
}

int subset_dp_sample(const subset_dp *dp, pm_rng *rng, int *idx) {
    int size = dp->kmin;
    if (dp->kmax > dp->kmin) {
        /* Invert the size distribution; fall back to the last possible size on rounding. */
        double u = pm_rng_uniform(rng), acc = 0.0;
        size = dp->kmax;
        for (int m = dp->kmin; m <= dp->kmax; m++) {
            acc += size_probability(dp, m);
            if (u < acc) {
                size = m;
                break;
            }
        }
    }
    int j = dp->n;
    for (int need = size; need > 0; need--) {
        j = next_item(dp, j, need, pm_rng_uniform(rng));
        idx[need - 1] = j - 1;
        j--;
    }
    return size;
}

/* ---------------------------------------------------------------------- MAP */

/* Orders (score, index) pairs as integers: larger score first, then lower index. */
static inline uint64_t order_key(float score, int index) {
    float normalized = score + 0.0f; /* −0 becomes +0 */
    uint32_t bits;
    memcpy(&bits, &normalized, sizeof bits);
    bits = (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
    return (uint64_t)bits << 32 | (uint32_t)~(uint32_t)index;
}

/* Experts whose keys top_k_indices computes once (on the stack); beyond, every pass does. */
#define TOP_K_KEPT_KEYS 512

/* k passes of a branch-free max over integer keys: vectorises and never mispredicts, which
 * beats insertion into a sorted list for the small k of routing. Keys are never 0. */
void top_k_indices(const float *score, int n, int k, int *idx) {
    uint64_t previous = UINT64_MAX;
    if (n <= TOP_K_KEPT_KEYS) {
        uint64_t keys[TOP_K_KEPT_KEYS];
#pragma omp simd
        for (int i = 0; i < n; i++) keys[i] = order_key(score[i], i);
        for (int p = 0; p < k; p++) {
            uint64_t best = 0;
#pragma omp simd reduction(max : best)
            for (int i = 0; i < n; i++) {
                /* a plain max over masked keys: one vpmaxuq per vector in the loop-carried
                 * chain, where a combined condition became compare, or and blend */
                const uint64_t key = keys[i] < previous ? keys[i] : 0;
                best = key > best ? key : best;
            }
            idx[p] = (int)~(uint32_t)best;
            previous = best;
        }
        return;
    }
    for (int p = 0; p < k; p++) {
        uint64_t best = 0;
#pragma omp simd reduction(max : best)
        for (int i = 0; i < n; i++) {
            uint64_t key = order_key(score[i], i);
            key = key < previous ? key : 0;
            best = key > best ? key : best;
        }
        idx[p] = (int)~(uint32_t)best;
        previous = best;
    }
}

static void sort_ints(int *a, int count) {
    for (int i = 1; i < count; i++) {
        int v = a[i], j = i - 1;
        while (j >= 0 && a[j] > v) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = v;
    }
}

int subset_map(const float *theta, int n, int kmin, int kmax, int *idx) {
    int positive = 0;
    for (int i = 0; i < n; i++) positive += theta[i] > 0.0f;
    int size = positive < kmin ? kmin : positive > kmax ? kmax : positive;
    if (size == 0) return 0;
    top_k_indices(theta, n, size, idx);
    sort_ints(idx, size);
    return size;
}
