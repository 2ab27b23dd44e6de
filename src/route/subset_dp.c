#include "route/subset_dp.h"

#include <math.h>
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

size_t subset_dp_workspace(int n, int kmax) {
    size_t stride = (size_t)kmax + 1;
    /* w, F, DF (for cov_mv), degree weights, two backward columns */
    return (size_t)n + 2 * ((size_t)n + 1) * stride + stride + 2 * (stride + 1);
}

static void forward_linear(subset_dp *dp) {
    const int n = dp->n, K = dp->kmax, stride = K + 1;
    double *F = dp->table;
    F[0] = 1.0;
    for (int m = 1; m <= K; m++) F[m] = 0.0;
    for (int j = 1; j <= n; j++) {
        const double *prev = F + (size_t)(j - 1) * stride;
        double *cur = F + (size_t)j * stride;
        const double wj = dp->w[j - 1];
        cur[0] = 1.0;
        for (int m = 1; m <= K; m++) cur[m] = prev[m] + wj * prev[m - 1];
    }
    /* Degree m carries exp(m·shift); scale by exp(−c) with c the largest log term. */
    const double *last = F + (size_t)n * stride;
    double c = -INFINITY;
    for (int m = dp->kmin; m <= K; m++) {
        double term = m * dp->shift + log(last[m]);
        if (term > c) c = term;
    }
    dp->z_scaled = 0.0;
    for (int m = 0; m <= K; m++) {
        dp->degree_weight[m] = m >= dp->kmin ? exp(m * dp->shift - c) : 0.0;
        dp->z_scaled += dp->degree_weight[m] * last[m];
    }
    dp->log_z = c + log(dp->z_scaled);
}

static void forward_log(subset_dp *dp) {
    const int n = dp->n, K = dp->kmax, stride = K + 1;
    double *F = dp->table;
    F[0] = 0.0;
    for (int m = 1; m <= K; m++) F[m] = -INFINITY;
    for (int j = 1; j <= n; j++) {
        const double *prev = F + (size_t)(j - 1) * stride;
        double *cur = F + (size_t)j * stride;
        const double theta_j = dp->w[j - 1];
        cur[0] = 0.0;
        for (int m = 1; m <= K; m++) {
            double take = prev[m - 1] == -INFINITY ? -INFINITY : theta_j + prev[m - 1];
            cur[m] = log_add_exp(prev[m], take);
        }
    }
    const double *last = F + (size_t)n * stride;
    dp->log_z = -INFINITY;
    for (int m = 0; m <= K; m++) {
        dp->degree_weight[m] = m >= dp->kmin ? 0.0 : -INFINITY;
        if (m >= dp->kmin) dp->log_z = log_add_exp(dp->log_z, last[m]);
    }
    dp->z_scaled = 1.0;
}

void subset_dp_forward(subset_dp *dp, const float *theta, int n, int kmin, int kmax,
                       double *workspace, bool force_log) {
    const size_t stride = (size_t)kmax + 1;
    dp->n = n;
    dp->kmin = kmin;
    dp->kmax = kmax;
    dp->w = workspace;
    dp->table = dp->w + n;
    dp->degree_weight = dp->table + ((size_t)n + 1) * stride;
    dp->scratch = dp->degree_weight + stride;

    double lo = theta[0], hi = theta[0];
    for (int i = 1; i < n; i++) {
        if (theta[i] < lo) lo = theta[i];
        if (theta[i] > hi) hi = theta[i];
    }
    dp->log_domain =
        force_log || n > LINEAR_MAX_N || (hi - lo) * kmax > LINEAR_MAX_EXPONENT;
    dp->shift = dp->log_domain ? 0.0 : hi;
    if (dp->log_domain) {
        for (int i = 0; i < n; i++) dp->w[i] = theta[i];
        forward_log(dp);
    } else {
        for (int i = 0; i < n; i++) dp->w[i] = exp((double)theta[i] - hi);
        forward_linear(dp);
    }
}

/* ---------------------------------------------------------------- marginals */

/*
 * Both the marginals and Cov·u come from one backward sweep over the suffix adjoint
 * Fbar[j][m] = ∂Z/∂F[j][m] (ways to complete m choices among items j+1..n). For item j,
 *   G_j = Σ_m Fbar[j][m] F[j-1][m-1]  (subsets with j, without w_j),
 *   N_j = Σ_m Fbar[j][m] F[j-1][m]    (subsets without j),
 * so m_j = w_j G_j / Z and 1 − m_j = N_j / Z, both sums of positive terms.
 */
static void marginals_linear(const subset_dp *dp, double *marginals) {
    const int K = dp->kmax, stride = K + 1;
    double *fbar = dp->scratch;
    memcpy(fbar, dp->degree_weight, sizeof(double) * stride);
    fbar[K + 1] = 0.0;
    for (int j = dp->n; j >= 1; j--) {
        const double *prev = dp->table + (size_t)(j - 1) * stride;
        const double wj = dp->w[j - 1];
        double g = 0.0;
#pragma omp simd reduction(+ : g)
        for (int m = 1; m <= K; m++) g += fbar[m] * prev[m - 1];
        marginals[j - 1] = wj * g / dp->z_scaled;
        for (int m = 0; m <= K; m++) fbar[m] += wj * fbar[m + 1];
    }
}

static void marginals_log(const subset_dp *dp, double *marginals) {
    const int K = dp->kmax, stride = K + 1;
    double *fbar = dp->scratch;
    memcpy(fbar, dp->degree_weight, sizeof(double) * stride);
    fbar[K + 1] = -INFINITY;
    for (int j = dp->n; j >= 1; j--) {
        const double *prev = dp->table + (size_t)(j - 1) * stride;
        const double theta_j = dp->w[j - 1];
        double log_g = -INFINITY;
        for (int m = 1; m <= K; m++)
            if (fbar[m] != -INFINITY && prev[m - 1] != -INFINITY)
                log_g = log_add_exp(log_g, fbar[m] + prev[m - 1]);
        marginals[j - 1] = exp_diff(log_g, -theta_j + dp->log_z);
        for (int m = 0; m <= K; m++)
            if (fbar[m + 1] != -INFINITY) fbar[m] = log_add_exp(fbar[m], theta_j + fbar[m + 1]);
    }
}

void subset_dp_marginals(const subset_dp *dp, double *marginals) {
    if (dp->log_domain)
        marginals_log(dp, marginals);
    else
        marginals_linear(dp, marginals);
}

/* ------------------------------------------------------------------- Cov·u */

/*
 * Forward-mode differentiation of the marginals along u. Writing D for the directional
 * derivative, (Cov·u)_j = D m_j = m_j (1 − m_j) (u_j + D log G_j − D log N_j): the small
 * factor m_j (1 − m_j) is a product of positive sums, so near-certain choices keep their
 * relative accuracy instead of cancelling.
 */
static void cov_mv_linear(const subset_dp *dp, const double *u, double *out, double *marginals) {
    const int n = dp->n, K = dp->kmax, stride = K + 1;
    const double *F = dp->table;
    double *DF = dp->scratch + 2 * (size_t)(stride + 1);
    for (int m = 0; m <= K; m++) DF[m] = 0.0;
    for (int j = 1; j <= n; j++) {
        const double *prev = F + (size_t)(j - 1) * stride;
        const double *dprev = DF + (size_t)(j - 1) * stride;
        double *dcur = DF + (size_t)j * stride;
        const double wj = dp->w[j - 1], uj = u[j - 1];
        dcur[0] = 0.0;
        for (int m = 1; m <= K; m++) dcur[m] = dprev[m] + wj * (uj * prev[m - 1] + dprev[m - 1]);
    }
    double *fbar = dp->scratch, *dfbar = dp->scratch + stride + 1;
    memcpy(fbar, dp->degree_weight, sizeof(double) * stride);
    fbar[K + 1] = 0.0;
    for (int m = 0; m <= K + 1; m++) dfbar[m] = 0.0;
    for (int j = n; j >= 1; j--) {
        const double *prev = F + (size_t)(j - 1) * stride;
        const double *dprev = DF + (size_t)(j - 1) * stride;
        const double wj = dp->w[j - 1], uj = u[j - 1];
        double g = 0.0, dg = 0.0, none = fbar[0] * prev[0];
        double dnone = dfbar[0] * prev[0] + fbar[0] * dprev[0];
#pragma omp simd reduction(+ : g, dg, none, dnone)
        for (int m = 1; m <= K; m++) {
            g += fbar[m] * prev[m - 1];
            dg += dfbar[m] * prev[m - 1] + fbar[m] * dprev[m - 1];
            none += fbar[m] * prev[m];
            dnone += dfbar[m] * prev[m] + fbar[m] * dprev[m];
        }
        const double m_j = wj * g / dp->z_scaled, not_j = none / dp->z_scaled;
        if (marginals) marginals[j - 1] = m_j;
        out[j - 1] = (g > 0.0 && none > 0.0) ? m_j * not_j * (uj + dg / g - dnone / none) : 0.0;
        for (int m = 0; m <= K; m++) {
            dfbar[m] += wj * (uj * fbar[m + 1] + dfbar[m + 1]);
            fbar[m] += wj * fbar[m + 1];
        }
    }
}

/* Log system: R[j][m] = D log F[j][m], a convex combination of its two predecessors'. */
static void cov_mv_log(const subset_dp *dp, const double *u, double *out, double *marginals) {
    const int n = dp->n, K = dp->kmax, stride = K + 1;
    const double *F = dp->table;
    double *R = dp->scratch + 2 * (size_t)(stride + 1);
    for (int m = 0; m <= K; m++) R[m] = 0.0;
    for (int j = 1; j <= n; j++) {
        const double *prev = F + (size_t)(j - 1) * stride, *cur = F + (size_t)j * stride;
        const double *rprev = R + (size_t)(j - 1) * stride;
        double *rcur = R + (size_t)j * stride;
        const double theta_j = dp->w[j - 1], uj = u[j - 1];
        rcur[0] = 0.0;
        for (int m = 1; m <= K; m++) {
            if (cur[m] == -INFINITY) {
                rcur[m] = 0.0;
                continue;
            }
            double keep = exp_diff(prev[m], cur[m]);
            double take = prev[m - 1] == -INFINITY ? 0.0 : exp(theta_j + prev[m - 1] - cur[m]);
            rcur[m] = keep * rprev[m] + take * (uj + rprev[m - 1]);
        }
    }
    double *fbar = dp->scratch, *rbar = dp->scratch + stride + 1;
    memcpy(fbar, dp->degree_weight, sizeof(double) * stride);
    fbar[K + 1] = -INFINITY;
    for (int m = 0; m <= K + 1; m++) rbar[m] = 0.0;
    for (int j = n; j >= 1; j--) {
        const double *prev = F + (size_t)(j - 1) * stride;
        const double *rprev = R + (size_t)(j - 1) * stride;
        const double theta_j = dp->w[j - 1], uj = u[j - 1];
        double log_g = -INFINITY, log_none = -INFINITY;
        for (int m = 0; m <= K; m++) {
            if (fbar[m] == -INFINITY) continue;
            if (m >= 1 && prev[m - 1] != -INFINITY) log_g = log_add_exp(log_g, fbar[m] + prev[m - 1]);
            if (prev[m] != -INFINITY) log_none = log_add_exp(log_none, fbar[m] + prev[m]);
        }
        double dlog_g = 0.0, dlog_none = 0.0;
        for (int m = 0; m <= K; m++) {
            if (fbar[m] == -INFINITY) continue;
            if (m >= 1 && prev[m - 1] != -INFINITY)
                dlog_g += exp(fbar[m] + prev[m - 1] - log_g) * (rbar[m] + rprev[m - 1]);
            if (prev[m] != -INFINITY)
                dlog_none += exp(fbar[m] + prev[m] - log_none) * (rbar[m] + rprev[m]);
        }
        const double m_j = exp_diff(log_g, dp->log_z - theta_j);
        const double not_j = exp_diff(log_none, dp->log_z);
        if (marginals) marginals[j - 1] = m_j;
        out[j - 1] = (log_g != -INFINITY && log_none != -INFINITY)
                         ? m_j * not_j * (uj + dlog_g - dlog_none)
                         : 0.0;
        for (int m = 0; m <= K; m++) {
            if (fbar[m + 1] == -INFINITY) continue;
            double merged = log_add_exp(fbar[m], theta_j + fbar[m + 1]);
            double keep = exp_diff(fbar[m], merged), take = exp(theta_j + fbar[m + 1] - merged);
            rbar[m] = keep * rbar[m] + take * (uj + rbar[m + 1]);
            fbar[m] = merged;
        }
    }
}

void subset_dp_cov_mv(const subset_dp *dp, const double *u, double *out, double *marginals) {
    if (dp->log_domain)
        cov_mv_log(dp, u, out, marginals);
    else
        cov_mv_linear(dp, u, out, marginals);
}

/* ----------------------------------------------------------------- sampling */

/* P(|S| = m): linear degree_weight[m]·F[n][m]/z_scaled, log exp(dw + F − log Z). */
static double size_probability(const subset_dp *dp, int m) {
    const double f = dp->table[(size_t)dp->n * (dp->kmax + 1) + m];
    if (dp->log_domain) return exp_diff(f + dp->degree_weight[m], dp->log_z);
    return dp->degree_weight[m] * f / dp->z_scaled;
}

/*
 * One uniform per chosen item: with `need` items still to choose among items 1..j, the
 * chance that none of items i..j is taken is F[i-1][need] / F[j][need], so the next item
 * taken is the largest i with F[i-1][need] <= u·F[j][need]. Exactly the distribution of
 * walking item by item, at the cost of a scan instead of a random number per item.
 */
static int next_item(const subset_dp *dp, int j, int need, double u) {
    const int stride = dp->kmax + 1;
    const double *column = dp->table + need;
    if (dp->log_domain) {
        const double bound = log(u) + column[(size_t)j * stride];
        while (j > need && column[(size_t)(j - 1) * stride] > bound) j--;
    } else {
        const double bound = u * column[(size_t)j * stride];
        while (j > need && column[(size_t)(j - 1) * stride] > bound) j--;
    }
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

void top_k_indices(const float *score, int n, int k, int *idx) {
    int filled = 0;
    for (int i = 0; i < n; i++) {
        if (filled == k && !(score[i] > score[idx[k - 1]])) continue;
        int pos = filled < k ? filled++ : k - 1;
        while (pos > 0 && score[i] > score[idx[pos - 1]]) {
            idx[pos] = idx[pos - 1];
            pos--;
        }
        idx[pos] = i;
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
