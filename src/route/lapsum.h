/*
 * LapSum soft top-k in double precision (docs/ROUTING.md §3). Internal: inputs are assumed
 * valid (n >= 1, 0 < k < n, alpha > 0, everything finite); pm_lapsum_* and the softmoe
 * router check them. Nothing here allocates, so the router can call it per token.
 *
 * p_i = F((r_i − t)/alpha), F the Laplace CDF, with the threshold t solving Σ_i p_i = k.
 */
#ifndef PM_ROUTE_LAPSUM_H
#define PM_ROUTE_LAPSUM_H

#include <stddef.h>

/* Doubles of scratch lapsum_threshold needs for n scores: 3n + 1 (the scaled scores sorted
 * descending, the ratios of neighbouring exponentials, the scaled suffix sums). */
size_t lapsum_scratch_size(int n);

/* The threshold t with Σ_i F((r_i − t)/alpha) = k. O(n log n). scratch holds
 * lapsum_scratch_size(n) doubles. */
double lapsum_threshold(const float *r, int n, double k, double alpha, double *scratch);

/* p_i = F((r_i − t)/alpha) for the t lapsum_threshold returned. */
void lapsum_probs(const float *r, int n, double alpha, double t, float *p);

/* Vector-jacobian product of p(r, k, alpha) with dp = dL/dp: writes dr (n values, not
 * accumulated), *dk and *dalpha. t is the threshold of (r, k, alpha). */
void lapsum_vjp(const float *r, int n, double alpha, double t, const float *dp, float *dr,
                double *dk, double *dalpha);

#endif
