#include "route/subset_lanes.h"

#include <math.h>
#include <string.h>

#include "core/fast_exp.h"

#define L DP_LANES

static size_t table_size(int n, int kmax) { return ((size_t)kmax + 1) * ((size_t)n + 1) * L; }

size_t subset_lanes_workspace(int n, int kmax) {
    /* w, F, degree weights; scratch: DF and the adjoint's two columns */
    return (size_t)n * L + 2 * table_size(n, kmax) + ((size_t)kmax + 1) * L + 2 * ((size_t)kmax + 2) * L;
}

/* Cell (m, j) of a (kmax+1, n+1, LANES) table. */
static inline size_t cell(const subset_lanes *dp, int m, int j) {
    return ((size_t)m * (dp->n + 1) + j) * L;
}

void subset_lanes_forward(subset_lanes *dp, const float *const theta[L], int n, int kmin,
                          int kmax, double *workspace) {
    dp->n = n;
    dp->kmin = kmin;
    dp->kmax = kmax;
    dp->w = workspace;
    dp->table = dp->w + (size_t)n * L;
    dp->degree_weight = dp->table + table_size(n, kmax);
    dp->scratch = dp->degree_weight + ((size_t)kmax + 1) * L;
    double shift[L];
    for (int l = 0; l < L; l++) {
        float hi = theta[l][0];
        for (int i = 1; i < n; i++) hi = theta[l][i] > hi ? theta[l][i] : hi;
        shift[l] = hi;
    }
    for (int j = 0; j < n; j++)
        for (int l = 0; l < L; l++) dp->w[(size_t)j * L + l] = (double)theta[l][j] - shift[l];
    /* one long loop: a loop of exactly L iterations is unrolled before it can vectorise */
#pragma omp simd
    for (size_t i = 0; i < (size_t)n * L; i++) dp->w[i] = pm_exp(dp->w[i]);
    double *F = dp->table;
    for (int j = 0; j <= n; j++)
        for (int l = 0; l < L; l++) F[cell(dp, 0, j) + l] = 1.0;
    for (int m = 1; m <= kmax; m++)
        for (int l = 0; l < L; l++) F[cell(dp, m, 0) + l] = 0.0;
    const size_t row = (size_t)(n + 1) * L;
    for (int j = 1; j <= n; j++) {
        const double *w = dp->w + (size_t)(j - 1) * L;
        for (int m = 1; m <= kmax; m++) {
            double *out = F + cell(dp, m, j);
            const double *keep = out - L, *take = out - row - L;
#pragma omp simd
            for (int l = 0; l < L; l++) out[l] = keep[l] + w[l] * take[l];
        }
    }
    /* Size weights exactly as subset_dp.c's forward_linear, per lane. */
    for (int l = 0; l < L; l++) {
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

int subset_lanes_sample(const subset_lanes *dp, int lane, pm_rng *rng, int *idx) {
    const double *F = dp->table + lane;
    int size = dp->kmin;
    if (dp->kmax > dp->kmin) {
        double u = pm_rng_uniform(rng), acc = 0.0;
        size = dp->kmax;
        for (int m = dp->kmin; m <= dp->kmax; m++) {
            acc += dp->degree_weight[(size_t)m * L + lane] * F[cell(dp, m, dp->n)] / dp->z_scaled[lane];
            if (u < acc) {
                size = m;
                break;
            }
        }
    }
    /* the next item taken is the largest i with F[need][i-1] <= u·F[need][j] (subset_dp.c) */
    int j = dp->n;
    for (int need = size; need > 0; need--) {
        const double bound = pm_rng_uniform(rng) * F[cell(dp, need, j)];
        while (j > need && F[cell(dp, need, j - 1)] > bound) j--;
        idx[need - 1] = j - 1;
        j--;
    }
    return size;
}

/*
 * The same formulas as subset_dp.c's cov_mv_linear, with lanes innermost, and the adjoint
 * swept as one column (fbar, dfbar over degrees) fused with the sums that use it.
 */
void subset_lanes_cov_mv(const subset_lanes *dp, const double *u, double *out) {
    const int n = dp->n, K = dp->kmax;
    const size_t row = (size_t)(n + 1) * L;
    const double *F = dp->table;
    double *DF = dp->scratch;
    double *fbar = DF + table_size(n, K), *dfbar = fbar + ((size_t)K + 2) * L;
    for (int j = 0; j <= n; j++)
        for (int l = 0; l < L; l++) DF[cell(dp, 0, j) + l] = 0.0;
    for (int m = 1; m <= K; m++)
        for (int l = 0; l < L; l++) DF[cell(dp, m, 0) + l] = 0.0;
    /* DF[m][j] = DF[m][j-1] + w_j (u_j F[m-1][j-1] + DF[m-1][j-1]) */
    for (int j = 1; j <= n; j++) {
        const double *w = dp->w + (size_t)(j - 1) * L, *uj = u + (size_t)(j - 1) * L;
        for (int m = 1; m <= K; m++) {
            const size_t at = cell(dp, m, j);
            const double *keep = DF + at - L, *take = DF + at - row - L, *f_take = F + at - row - L;
            double *d = DF + at;
#pragma omp simd
            for (int l = 0; l < L; l++) d[l] = keep[l] + w[l] * (uj[l] * f_take[l] + take[l]);
        }
    }
    memcpy(fbar, dp->degree_weight, sizeof(double) * ((size_t)K + 1) * L);
    memset(fbar + (size_t)(K + 1) * L, 0, sizeof(double) * L);
    memset(dfbar, 0, sizeof(double) * ((size_t)K + 2) * L);
    for (int j = n; j >= 1; j--) {
        double g[L] = {0}, dg[L] = {0}, none[L] = {0}, dnone[L] = {0};
        for (int m = 0; m <= K; m++) {
            const double *a = fbar + (size_t)m * L, *da = dfbar + (size_t)m * L;
            const double *c = F + cell(dp, m, j - 1), *dc = DF + cell(dp, m, j - 1);
#pragma omp simd
            for (int l = 0; l < L; l++) {
                none[l] += a[l] * c[l];
                dnone[l] += da[l] * c[l] + a[l] * dc[l];
            }
            if (m == 0) continue;
            const double *b = c - row, *db = dc - row;
#pragma omp simd
            for (int l = 0; l < L; l++) {
                g[l] += a[l] * b[l];
                dg[l] += da[l] * b[l] + a[l] * db[l];
            }
        }
        const double *w = dp->w + (size_t)(j - 1) * L, *uj = u + (size_t)(j - 1) * L;
        double *result = out + (size_t)(j - 1) * L;
#pragma omp simd
        for (int l = 0; l < L; l++) {
            const double m_j = w[l] * g[l] / dp->z_scaled[l], not_j = none[l] / dp->z_scaled[l];
            const double ratio_g = g[l] > 0.0 ? dg[l] / g[l] : 0.0;
            const double ratio_none = none[l] > 0.0 ? dnone[l] / none[l] : 0.0;
            result[l] = g[l] > 0.0 && none[l] > 0.0 ? m_j * not_j * (uj[l] + ratio_g - ratio_none) : 0.0;
        }
        /* Fbar[m][j-1] = Fbar[m][j] + w_j Fbar[m+1][j], ascending so m+1 is still old */
        for (int m = 0; m < K; m++) {
            double *a = fbar + (size_t)m * L, *da = dfbar + (size_t)m * L;
            const double *up = a + L, *dup = da + L;
#pragma omp simd
            for (int l = 0; l < L; l++) {
                da[l] += w[l] * (uj[l] * up[l] + dup[l]);
                a[l] += w[l] * up[l];
            }
        }
    }
}
