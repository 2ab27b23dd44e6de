#include "brute.h"

#include <math.h>
#include <stdlib.h>

static long double subset_log_weight(const long double *theta, int n, uint32_t mask) {
    long double s = 0.0L;
    for (int i = 0; i < n; i++)
        if (mask >> i & 1u) s += theta[i];
    return s;
}

enum { MAX_ITEMS = 24 };

static void widen(const float *theta, int n, long double *wide) {
    for (int i = 0; i < n; i++) wide[i] = theta[i];
}

/* The size range, and at most max_groups of `groups` equal, contiguous groups touched. */
static int allowed(uint32_t mask, int n, brute_constraint c) {
    const int size = __builtin_popcount(mask);
    if (size < c.kmin || size > c.kmax) return 0;
    if (c.groups <= 1) return 1;
    const int width = n / c.groups;
    int touched = 0;
    for (int g = 0; g < c.groups; g++) touched += (mask >> (g * width) & ((1u << width) - 1)) != 0;
    return touched <= c.max_groups;
}

static long double logz_ld(const long double *theta, int n, brute_constraint c) {
    long double top = -INFINITY;
    for (uint32_t mask = 0; mask < (1u << n); mask++)
        if (allowed(mask, n, c)) {
            long double s = subset_log_weight(theta, n, mask);
            if (s > top) top = s;
        }
    long double sum = 0.0L;
    for (uint32_t mask = 0; mask < (1u << n); mask++)
        if (allowed(mask, n, c)) sum += expl(subset_log_weight(theta, n, mask) - top);
    return top + logl(sum);
}

static void subset_probs_ld(const long double *theta, int n, brute_constraint c, long double *prob) {
    long double log_z = logz_ld(theta, n, c);
    for (uint32_t mask = 0; mask < (1u << n); mask++)
        prob[mask] = allowed(mask, n, c) ? expl(subset_log_weight(theta, n, mask) - log_z) : 0.0L;
}

void brute_moments_ld_c(const long double *theta, int n, brute_constraint c, long double *marginals,
                        long double *cov) {
    long double *prob = malloc(sizeof(long double) << n);
    subset_probs_ld(theta, n, c, prob);
    for (int i = 0; i < n; i++) marginals[i] = 0.0L;
    for (int i = 0; i < n * n; i++) cov[i] = 0.0L;
    for (uint32_t mask = 0; mask < (1u << n); mask++) {
        if (prob[mask] == 0.0L) continue;
        for (int i = 0; i < n; i++) {
            if (!(mask >> i & 1u)) continue;
            marginals[i] += prob[mask];
            for (int j = 0; j < n; j++)
                if (mask >> j & 1u) cov[i * n + j] += prob[mask];
        }
    }
    /* Cov_ij = P(i,j) − m_i m_j, but the diagonal as m_i (1 − m_i) with 1 − m_i summed
     * directly so that near-certain experts keep their relative accuracy. */
    for (int i = 0; i < n; i++) {
        long double not_i = 0.0L;
        for (uint32_t mask = 0; mask < (1u << n); mask++)
            if (!(mask >> i & 1u)) not_i += prob[mask];
        for (int j = 0; j < n; j++)
            cov[i * n + j] = i == j ? marginals[i] * not_i : cov[i * n + j] - marginals[i] * marginals[j];
    }
    free(prob);
}

static uint32_t map_ld(const long double *theta, int n, brute_constraint c) {
    uint32_t best = 0;
    long double best_weight = -INFINITY;
    int best_size = 0;
    for (uint32_t mask = 0; mask < (1u << n); mask++) {
        if (!allowed(mask, n, c)) continue;
        long double s = subset_log_weight(theta, n, mask);
        int size = __builtin_popcount(mask);
        /* Lower indices win ties: compare masks by their lowest differing item. */
        int better = s > best_weight ||
                     (s == best_weight && (size < best_size ||
                                           (size == best_size && ((mask ^ best) & mask & -(mask ^ best)))));
        if (better) {
            best = mask;
            best_weight = s;
            best_size = size;
        }
    }
    return best;
}

long double brute_laplace_cdf(long double u) {
    return u <= 0.0L ? 0.5L * expl(u) : 1.0L - 0.5L * expl(-u);
}

static long double soft_count(const long double *r, int n, long double t, long double alpha) {
    long double count = 0.0L;
    for (int i = 0; i < n; i++) count += brute_laplace_cdf((r[i] - t) / alpha);
    return count;
}

long double brute_lapsum_threshold(const long double *r, int n, long double k, long double alpha) {
    long double r_min = r[0], r_max = r[0];
    for (int i = 1; i < n; i++) {
        if (r[i] < r_min) r_min = r[i];
        if (r[i] > r_max) r_max = r[i];
    }
    /* Every u >= c with c >= ln(n / 2(n − k)) gives a count >= k; symmetrically above. */
    long double lo = r_min - alpha * (fabsl(logl(n / (2.0L * (n - k)))) + 1.0L);
    long double hi = r_max + alpha * (fabsl(logl(n / (2.0L * k))) + 1.0L);
    while (hi - lo > 1e-20L * (fabsl(lo) + fabsl(hi)) + 1e-24L * alpha) {
        long double mid = lo + 0.5L * (hi - lo);
        if (mid <= lo || mid >= hi) break;
        if (soft_count(r, n, mid, alpha) > k) lo = mid;
        else hi = mid;
    }
    return lo + 0.5L * (hi - lo);
}

long double brute_lapsum(const long double *r, int n, long double k, long double alpha,
                         long double *p) {
    long double t = brute_lapsum_threshold(r, n, k, alpha);
    for (int i = 0; i < n; i++) p[i] = brute_laplace_cdf((r[i] - t) / alpha);
    return t;
}

static brute_constraint range(int kmin, int kmax) { return (brute_constraint){kmin, kmax, 1, 1}; }

void brute_moments_ld(const long double *theta, int n, int kmin, int kmax, long double *marginals,
                      long double *cov) {
    brute_moments_ld_c(theta, n, range(kmin, kmax), marginals, cov);
}

long double brute_logz_c(const float *theta, int n, brute_constraint c) {
    long double wide[MAX_ITEMS] = {0};
    widen(theta, n, wide);
    return logz_ld(wide, n, c);
}

void brute_subset_probs_c(const float *theta, int n, brute_constraint c, long double *prob) {
    long double wide[MAX_ITEMS] = {0};
    widen(theta, n, wide);
    subset_probs_ld(wide, n, c, prob);
}

void brute_moments_c(const float *theta, int n, brute_constraint c, long double *marginals, long double *cov) {
    long double wide[MAX_ITEMS] = {0};
    widen(theta, n, wide);
    brute_moments_ld_c(wide, n, c, marginals, cov);
}

uint32_t brute_map_c(const float *theta, int n, brute_constraint c) {
    long double wide[MAX_ITEMS] = {0};
    widen(theta, n, wide);
    return map_ld(wide, n, c);
}

long double brute_logz(const float *theta, int n, int kmin, int kmax) { return brute_logz_c(theta, n, range(kmin, kmax)); }

void brute_subset_probs(const float *theta, int n, int kmin, int kmax, long double *prob) {
    brute_subset_probs_c(theta, n, range(kmin, kmax), prob);
}

void brute_moments(const float *theta, int n, int kmin, int kmax, long double *marginals,
                   long double *cov) {
    brute_moments_c(theta, n, range(kmin, kmax), marginals, cov);
}

uint32_t brute_map(const float *theta, int n, int kmin, int kmax) { return brute_map_c(theta, n, range(kmin, kmax)); }
