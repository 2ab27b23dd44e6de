/*
 * The linear-system subset DP of subset_dp.h for DP_LANES tokens at once, one token per
 * SIMD lane: every recurrence step becomes one vector operation across tokens, with no
 * short loops over degrees and no horizontal sums. Only for tokens whose logits pass
 * subset_dp_is_linear(); the router sends the others through subset_dp.c. A token's
 * results do not depend on the other tokens in its group.
 *
 * The forward pass writes what is costly to recompute (w = exp(θ − shift), the size weights,
 * Z: exponentials and logarithms) to one small block, which a router can keep from its
 * forward pass for the backward pass (subset_lanes_attach); F itself lives in the scratch.
 * Cov·u rebuilds F from w as it goes, keeping only every few columns and rebuilding the rest
 * block by block so that its tables stay in L1: a few FMAs per cell, cheaper than reading a
 * kept F (or a whole rebuilt one) back from L2.
 */
#ifndef PM_ROUTE_SUBSET_LANES_H
#define PM_ROUTE_SUBSET_LANES_H

#include <stddef.h>

#include "probmoe.h"

#define DP_LANES 8

typedef struct {
    int n, kmin, kmax;
    double *w;             /* (n, LANES) exp(θ − shift) */
    double *table;         /* (kmax+1, n+1, LANES) F[m][j] = e_m(w_1..w_j), in the scratch
                              (row 0, all ones, is written at j = 0 and j = n only) */
    double *degree_weight; /* (kmax+1, LANES) exp(m·shift − c) in range, else 0 */
    double *z_scaled;      /* (LANES) Σ_m degree_weight[m]·F[m][n] = Z·exp(−c) */
    double *log_z;         /* (LANES) */
    float top[DP_LANES];   /* the shift, max θ, of each lane (forward only) */
    double *scratch;       /* the rest of the scratch, for Cov·u */
} subset_lanes;

/* Doubles of the kept block (w, size weights, Z), of the scratch (F and Cov·u's), and both. */
size_t subset_lanes_tables_size(int n, int kmax);
size_t subset_lanes_scratch_size(int n, int kmax);
size_t subset_lanes_workspace(int n, int kmax);

/* theta[l] is lane l's logits (n values); unused lanes may repeat a token. Writes the kept
 * block to `tables` (subset_lanes_tables_size doubles) and F to scratch. */
void subset_lanes_forward(subset_lanes *dp, const float *const theta[DP_LANES], int n, int kmin,
                          int kmax, double *tables, double *scratch);

/* The DP whose block a subset_lanes_forward with the same (n, kmin, kmax) wrote to `tables`,
 * for subset_lanes_cov_mv (F is not there: do not sample from it). */
void subset_lanes_attach(subset_lanes *dp, int n, int kmin, int kmax, double *tables, double *scratch);

/* Uniforms one sample takes at most: the size's (when kmax > kmin), then one per item. */
int subset_lanes_uniforms(int kmin, int kmax);

/* One exact sample per lane, as subset_dp_sample with a generator whose uniforms are
 * uniforms[0 * DP_LANES + l], uniforms[1 * DP_LANES + l], ... (rng_lanes.h draws them for all
 * lanes at once): lane l's size to sizes[l] and its items, increasing, to
 * picks[i * DP_LANES + l] for i < sizes[l]. */
void subset_lanes_sample_all(const subset_lanes *dp, const double *uniforms, int *sizes, int *picks);

/* out = Cov(z)·u per lane; u and out are (n, LANES). */
void subset_lanes_cov_mv(const subset_lanes *dp, const double *u, double *out);

#endif
