/*
 * The linear-system subset DP of subset_dp.h for DP_LANES tokens at once, one token per
 * SIMD lane: every recurrence step becomes one vector operation across tokens, with no
 * short loops over degrees and no horizontal sums. Only for tokens whose logits pass
 * subset_dp_is_linear(); the router sends the others through subset_dp.c. A token's
 * results do not depend on the other tokens in its group.
 */
#ifndef PM_ROUTE_SUBSET_LANES_H
#define PM_ROUTE_SUBSET_LANES_H

#include <stddef.h>

#include "probmoe.h"

#define DP_LANES 8

typedef struct {
    int n, kmin, kmax;
    double *w;             /* (n, LANES) exp(θ − shift) */
    double *table;         /* (kmax+1, n+1, LANES) F[m][j] = e_m(w_1..w_j) */
    double *degree_weight; /* (kmax+1, LANES) exp(m·shift − c) in range, else 0 */
    double *scratch;
    double z_scaled[DP_LANES], log_z[DP_LANES];
} subset_lanes;

size_t subset_lanes_workspace(int n, int kmax);

/* theta[l] is lane l's logits (n values); unused lanes may repeat a token. */
void subset_lanes_forward(subset_lanes *dp, const float *const theta[DP_LANES], int n, int kmin,
                          int kmax, double *workspace);

/* One exact sample for one lane, as subset_dp_sample; returns |S|. */
int subset_lanes_sample(const subset_lanes *dp, int lane, pm_rng *rng, int *idx);

/* out = Cov(z)·u per lane; u and out are (n, LANES). */
void subset_lanes_cov_mv(const subset_lanes *dp, const double *u, double *out);

#endif
