/* Brute-force oracle for the k-subset distribution: enumerate every subset of n <= 24 items
 * in long double. The tests compare the DP, the sampler and the routers against it. */
#ifndef PM_TEST_BRUTE_H
#define PM_TEST_BRUTE_H

#include <stdint.h>

/* log Σ_{kmin <= |S| <= kmax} exp(Σ_{i∈S} θ_i). */
long double brute_logz(const float *theta, int n, int kmin, int kmax);
/* p(S) for every bit mask S (1 << n entries; 0 outside the size range). */
void brute_subset_probs(const float *theta, int n, int kmin, int kmax, long double *prob);
/* Marginals (n) and covariance of the indicator vector (n × n, row-major). */
void brute_moments(const float *theta, int n, int kmin, int kmax, long double *marginals,
                   long double *cov);
/* The same in long double, for finite differences. */
void brute_moments_ld(const long double *theta, int n, int kmin, int kmax,
                      long double *marginals, long double *cov);
/* The most probable subset as a bit mask: largest Σθ, then fewer items, then lower indices. */
uint32_t brute_map(const float *theta, int n, int kmin, int kmax);

/* The same under a constraint: kmin <= |S| <= kmax and, when groups > 1, S touches at most
 * max_groups of `groups` equal, contiguous groups of n / groups items (probmoe-group). */
typedef struct {
    int kmin, kmax, groups, max_groups;
} brute_constraint;
long double brute_logz_c(const float *theta, int n, brute_constraint c);
void brute_subset_probs_c(const float *theta, int n, brute_constraint c, long double *prob);
void brute_moments_c(const float *theta, int n, brute_constraint c, long double *marginals, long double *cov);
void brute_moments_ld_c(const long double *theta, int n, brute_constraint c, long double *marginals,
                        long double *cov);
uint32_t brute_map_c(const float *theta, int n, brute_constraint c);



/* LapSum by bisection in long double, independent of the closed form under test:
 * F the Laplace CDF, t with Σ F((r_i − t)/alpha) = k, p_i = F((r_i − t)/alpha). */
long double brute_laplace_cdf(long double u);
long double brute_lapsum_threshold(const long double *r, int n, long double k, long double alpha);
long double brute_lapsum(const long double *r, int n, long double k, long double alpha,
                         long double *p);
#endif
