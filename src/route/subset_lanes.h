/*
 * The linear-system subset DP of subset_dp.h for DP_LANES tokens at once, one token per
 * SIMD lane: every recurrence step becomes one vector operation across tokens, with no
 * short loops over degrees and no horizontal sums. Only for tokens whose logits pass
 * subset_dp_is_linear(); the router sends the others through subset_dp.c. A token's
 * results do not depend on the other tokens in its group.
 *
 * The forward pass writes its tables (w, F, the size weights, Z) to one block, so that a
 * router can keep that block from its forward pass and hand it to the backward pass
 * (subset_lanes_attach) instead of recomputing it.
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
    double *z_scaled;      /* (LANES) Σ_m degree_weight[m]·F[m][n] = Z·exp(−c) */
    double *log_z;         /* (LANES) */
    double *scratch;       /* subset_lanes_scratch_size doubles for Cov·u */
} subset_lanes;

/* Doubles of the forward pass's tables, of Cov·u's scratch, and both. */
size_t subset_lanes_tables_size(int n, int kmax);
size_t subset_lanes_scratch_size(int n, int kmax);
size_t subset_lanes_workspace(int n, int kmax);

/* theta[l] is lane l's logits (n values); unused lanes may repeat a token. Writes the tables
 * to `tables` (subset_lanes_tables_size doubles); scratch is for subset_lanes_cov_mv. */
void subset_lanes_forward(subset_lanes *dp, const float *const theta[DP_LANES], int n, int kmin,
                          int kmax, double *tables, double *scratch);

/* The DP whose tables a subset_lanes_forward with the same (n, kmin, kmax) wrote to `tables`. */
void subset_lanes_attach(subset_lanes *dp, int n, int kmin, int kmax, double *tables, double *scratch);

/* One exact sample for one lane, as subset_dp_sample; returns |S|. */
int subset_lanes_sample(const subset_lanes *dp, int lane, pm_rng *rng, int *idx);

/* out = Cov(z)·u per lane; u and out are (n, LANES). */
void subset_lanes_cov_mv(const subset_lanes *dp, const double *u, double *out);

#endif
