#include "brute.h"

#include <math.h>
#include <stdlib.h>

static long double subset_log_weight(const float *theta, int n, uint32_t mask) {
    long double s = 0.0L;
    for (int i = 0; i < n; i++)
        if (mask >> i & 1u) s += theta[i];
    return s;
}

static int in_range(uint32_t mask, int kmin, int kmax) {
    int size = __builtin_popcount(mask);
    return size >= kmin && size <= kmax;
}

long double brute_logz(const float *theta, int n, int kmin, int kmax) {
    long double top = -INFINITY;
    for (uint32_t mask = 0; mask < (1u << n); mask++)
        if (in_range(mask, kmin, kmax)) {
            long double s = subset_log_weight(theta, n, mask);
            if (s > top) top = s;
        }
    long double sum = 0.0L;
    for (uint32_t mask = 0; mask < (1u << n); mask++)
        if (in_range(mask, kmin, kmax)) sum += expl(subset_log_weight(theta, n, mask) - top);
    return top + logl(sum);
}

void brute_subset_probs(const float *theta, int n, int kmin, int kmax, long double *prob) {
    long double log_z = brute_logz(theta, n, kmin, kmax);
    for (uint32_t mask = 0; mask < (1u << n); mask++)
        prob[mask] = in_range(mask, kmin, kmax) ? expl(subset_log_weight(theta, n, mask) - log_z) : 0.0L;
}

void brute_moments(const float *theta, int n, int kmin, int kmax, long double *marginals,
                   long double *cov) {
    long double *prob = malloc(sizeof(long double) << n);
    brute_subset_probs(theta, n, kmin, kmax, prob);
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

uint32_t brute_map(const float *theta, int n, int kmin, int kmax) {
    uint32_t best = 0;
    long double best_weight = -INFINITY;
    int best_size = 0;
    for (uint32_t mask = 0; mask < (1u << n); mask++) {
        if (!in_range(mask, kmin, kmax)) continue;
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
