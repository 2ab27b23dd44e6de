/*
 * The dynamic program behind the k-subset distribution p(S) ∝ ∏_{i∈S} exp(θ_i),
 * kmin <= |S| <= kmax. Internal: inputs are assumed valid (the pm_subset_* wrappers and
 * the routers check them).
 *
 * Table F[m][j] = e_m(w_1..w_j), the elementary symmetric polynomials of the first j
 * weights, m <= kmax, stored degree-major (row m holds j = 0..n contiguously) so that sums
 * over degrees vectorise across items and the sampler scans a contiguous row. Two number
 * systems:
 *  - linear: w = exp(θ - max θ) in double. Exact and fast while no product of up to kmax
 *    weights can underflow (spread·kmax bounded) and C(n, m) cannot overflow;
 *  - log: F holds log values and every sum is a log-add-exp. Slower, valid for any
 *    finite logits.
 * Degree m is scaled by exp(m·shift − c) when sizes are summed (linear system), which
 * undoes the shift of θ exactly and keeps the size weights in range.
 */
#ifndef PM_ROUTE_SUBSET_DP_H
#define PM_ROUTE_SUBSET_DP_H

#include <stdbool.h>
#include <stddef.h>

#include "probmoe.h"

typedef struct {
    int n, kmin, kmax;
    bool log_domain;
    double shift;          /* linear: max θ, subtracted before exp */
    double *w;             /* (n) linear: exp(θ − shift); log: θ */
    double *table;         /* (kmax+1, n+1) F, linear or log */
    double *degree_weight; /* (kmax+1) linear: exp(m·shift − c) for kmin <= m <= kmax, else 0;
                              log: 0 in range, −inf outside */
    double *scratch;       /* room for the backward sweeps */
    double log_z;          /* log of the partition function */
    double z_scaled;       /* linear: Σ_m degree_weight[m]·F[n][m] = Z·exp(−c) */
} subset_dp;

/* Whether the linear system is exact for these logits (else the log system is used). */
bool subset_dp_is_linear(const float *theta, int n, int kmax);

/* Doubles of workspace subset_dp_forward needs for (n, kmax). */
size_t subset_dp_workspace(int n, int kmax);

/* Fills the table for θ (n values). workspace holds subset_dp_workspace(n, kmax) doubles.
 * force_log selects the log system even where the linear one would do (for tests). */
void subset_dp_forward(subset_dp *dp, const float *theta, int n, int kmin, int kmax,
                       double *workspace, bool force_log);

/* m_i = P(i ∈ S) (n values). */
void subset_dp_marginals(const subset_dp *dp, double *marginals);

/* out = Cov(z)·u and, if marginals is not NULL, the marginals too. */
void subset_dp_cov_mv(const subset_dp *dp, const double *u, double *out, double *marginals);

/* One exact sample: writes |S| indices in increasing order and returns |S|. */
int subset_dp_sample(const subset_dp *dp, pm_rng *rng, int *idx);

/* Indices of the k largest scores, largest first, ties to the lower index. */
void top_k_indices(const float *score, int n, int k, int *idx);

/* Most probable subset: the top k* logits, k* = clamp(#{θ_i > 0}, kmin, kmax);
 * indices increasing; returns k*. */
int subset_map(const float *theta, int n, int kmin, int kmax, int *idx);

#endif
