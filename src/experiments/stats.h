/*
 * Statistics over seeds for compare's report: mean and standard deviation, and a paired
 * bootstrap 95% interval of a router's mean difference to the baseline (topk), with a
 * verdict that says whether the seeds tell the two apart.
 *
 * NaN stands for a missing figure (a run that did not finish): it is skipped, and a pair
 * with a NaN on either side is dropped. Infinities are real values and propagate.
 */
#ifndef PM_EXPERIMENTS_STATS_H
#define PM_EXPERIMENTS_STATS_H

#include <stddef.h>
#include <stdint.h>

/* Mean and sample standard deviation (divisor n − 1) of the non-NaN values of x. Returns
 * how many values were used: 0 gives mean = std = NaN, 1 gives std = 0. */
int stats_mean_std(const double *x, int n, double *mean, double *std);

/*
 * Bootstrap 95% interval of the mean of d[0..n-1]: the distribution of the mean of n values
 * drawn from d with replacement, and its 2.5% and 97.5% percentiles. The percentile rule,
 * for a distribution given as values with weights (total W):
 *     lo = the smallest value whose cumulative weight is >= 0.025·W,
 *     hi = the smallest value whose cumulative weight is >= 0.975·W.
 * Weights are integers and compared exactly (40·cumulative >= W, 40·cumulative >= 39·W).
 */
enum {
    /* The exact distribution is used while it has at most this many distinct resamples
     * (multisets of n seeds, C(2n − 1, n) of them): n <= 10. */
    STATS_EXACT_MAX_MULTISETS = 100000,
    /* Resamples drawn otherwise. */
    STATS_BOOTSTRAP_RESAMPLES = 10000,
};
/* The seed of the drawn resamples, so a report is the same every time it is written. */
#define STATS_BOOTSTRAP_SEED 20240601u

/* The exact bootstrap distribution: every multiset of n seeds, weighted by the number of
 * ordered resamples that give it (n! / ∏ count_i!), so it equals enumerating all n^n
 * resamples. PM_ERR_ARG when n < 1 or there are more than STATS_EXACT_MAX_MULTISETS. */
int stats_bootstrap_exact(const double *d, int n, double *lo, double *hi);
/* resamples random resamples of n seeds (indices from pm_rng seeded with seed), each of
 * weight 1. Deterministic for a given seed. */
int stats_bootstrap_sampled(const double *d, int n, int resamples, uint64_t seed, double *lo,
                            double *hi);
/* The exact distribution when it is small enough, else STATS_BOOTSTRAP_RESAMPLES draws
 * seeded with STATS_BOOTSTRAP_SEED. */
int stats_bootstrap_interval(const double *d, int n, double *lo, double *hi);

typedef enum {
    STATS_NO_DATA,       /* no pair without NaN */
    STATS_ONE_SEED,      /* one pair: no interval */
    STATS_NO_DIFFERENCE, /* the interval contains 0 */
    STATS_HIGHER,        /* the whole interval is above 0: a is higher than b */
    STATS_LOWER,         /* the whole interval is below 0 */
} stats_verdict;

/* "no data", "one seed: no interval", "no difference", "higher", "lower". */
const char *stats_verdict_text(stats_verdict verdict);

typedef struct {
    double mean_diff; /* mean of a_i − b_i (NaN without data) */
    double lo, hi;    /* its bootstrap 95% interval (NaN with fewer than 2 pairs) */
    int n;            /* pairs used */
    stats_verdict verdict;
} stats_difference;

/* a (a router) against b (the baseline), paired by seed: the differences a_i − b_i of the
 * pairs without NaN, their mean, interval (stats_bootstrap_interval) and verdict. The
 * verdict follows the interval (lo > 0: higher, hi < 0: lower, else no difference), so it
 * never contradicts the interval printed next to it. */
int stats_paired_difference(const double *a, const double *b, int n, stats_difference *out);

/* Writes, with `decimals` digits after the point, "+0.012 [-0.004, +0.030] (no difference)";
 * "+0.012 (one seed: no interval)" for one pair; "n/a (no data)" without any. PM_ERR_ARG when
 * it does not fit in size. */
int stats_format_difference(char *out, size_t size, const stats_difference *difference,
                            int decimals);

#endif
