/* Mean ± std over seeds and the paired bootstrap interval (stats.h). */
#include "experiments/stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"

/* The stream of the resampling generator, apart from the model's and the loader's. */
#define STATS_BOOTSTRAP_STREAM 0x5747000000000000ull

int stats_mean_std(const double *x, int n, double *mean, double *std) {
    int used = 0;
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i])) {
            sum += x[i];
            used++;
        }
    if (used == 0) {
        *mean = *std = NAN;
        return 0;
    }
    *mean = sum / used;
    /* Two passes: squares about the mean do not cancel the way Σx² − (Σx)²/n does. */
    double squares = 0.0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i])) squares += (x[i] - *mean) * (x[i] - *mean);
    *std = used > 1 ? sqrt(squares / (used - 1)) : 0.0;
    return used;
}

/* One value of the bootstrap distribution of the mean, with its integer weight. */
typedef struct {
    double mean;
    uint64_t weight;
} weighted_mean;

static int by_mean(const void *a, const void *b) {
    const double x = ((const weighted_mean *)a)->mean, y = ((const weighted_mean *)b)->mean;
    return (x > y) - (x < y);
}

/* Sorts the distribution and applies the percentile rule of stats.h. */
static void percentiles(weighted_mean *values, size_t count, double *lo, double *hi) {
    qsort(values, count, sizeof *values, by_mean);
    uint64_t total = 0;
    for (size_t i = 0; i < count; i++) total += values[i].weight;
    uint64_t cumulative = 0;
    bool have_lo = false;
    for (size_t i = 0; i < count; i++) {
        cumulative += values[i].weight;
        if (!have_lo && 40 * cumulative >= total) {
            *lo = values[i].mean;
            have_lo = true;
        }
        if (40 * cumulative >= 39 * total) {
            *hi = values[i].mean;
            return;
        }
    }
}

static int check_input(const char *what, const double *d, int n) {
    if (n < 1) return pm_fail(PM_ERR_ARG, "%s: no value (n = %d)", what, n);
    for (int i = 0; i < n; i++)
        if (isnan(d[i])) return pm_fail(PM_ERR_NONFINITE, "%s: value %d is NaN; drop it first", what, i);
    return PM_OK;
}

/* C(2n − 1, n), the number of multisets of n seeds out of n, in floating point so that a
 * large n overflows to infinity instead of wrapping. */
static double multiset_count(int n) {
    double count = 1.0;
    for (int i = 1; i <= n; i++) count = count * (n - 1 + i) / i;
    return count;
}

typedef struct {
    const double *d;
    int n;
    const uint64_t *binomial; /* (n + 1, n + 1): binomial[m·(n + 1) + k] = C(m, k) */
    weighted_mean *out;
    size_t used;
} multiset_walk;

/* Chooses how many of the `left` draws not yet placed take seed i, i + 1, ...; sum is
 * Σ count·d over the seeds before i, ways the number of orders of the draws placed so far. */
static void walk_multisets(multiset_walk *walk, int i, int left, double sum, uint64_t ways) {
    const int row = walk->n + 1;
    if (i == walk->n - 1) {
        walk->out[walk->used++] = (weighted_mean){(sum + left * walk->d[i]) / walk->n, ways};
        return;
    }
    for (int count = 0; count <= left; count++)
        walk_multisets(walk, i + 1, left - count, sum + count * walk->d[i],
                       ways * walk->binomial[left * row + count]);
}

int stats_bootstrap_exact(const double *d, int n, double *lo, double *hi) {
    int status = check_input("stats_bootstrap_exact", d, n);
    if (status) return status;
    const double multisets = multiset_count(n);
    if (multisets > STATS_EXACT_MAX_MULTISETS)
        return pm_fail(PM_ERR_ARG, "stats_bootstrap_exact: %d seeds give %.3g resamples, over %d; "
                       "use stats_bootstrap_sampled", n, multisets, STATS_EXACT_MAX_MULTISETS);
    const int row = n + 1;
    uint64_t *binomial = calloc((size_t)row * row, sizeof *binomial);
    weighted_mean *values = malloc(sizeof *values * (size_t)multisets);
    if (!binomial || !values) {
        free(binomial);
        free(values);
        return pm_fail(PM_ERR_NOMEM, "stats_bootstrap_exact: out of memory");
    }
    for (int m = 0; m <= n; m++) {
        binomial[m * row] = 1;
        for (int k = 1; k <= m; k++)
            binomial[m * row + k] = binomial[(m - 1) * row + k - 1] + (k < m ? binomial[(m - 1) * row + k] : 0);
    }
    multiset_walk walk = {d, n, binomial, values, 0};
    walk_multisets(&walk, 0, n, 0.0, 1);
    percentiles(values, walk.used, lo, hi);
    free(binomial);
    free(values);
    return PM_OK;
}

int stats_bootstrap_sampled(const double *d, int n, int resamples, uint64_t seed, double *lo,
                            double *hi) {
    int status = check_input("stats_bootstrap_sampled", d, n);
    if (status) return status;
    if (resamples < 1) return pm_fail(PM_ERR_ARG, "stats_bootstrap_sampled: %d resamples", resamples);
    weighted_mean *values = malloc(sizeof *values * (size_t)resamples);
    if (!values) return pm_fail(PM_ERR_NOMEM, "stats_bootstrap_sampled: out of memory");
    pm_rng rng;
    pm_rng_init(&rng, seed, STATS_BOOTSTRAP_STREAM);
    for (int r = 0; r < resamples; r++) {
        double sum = 0.0;
        for (int draw = 0; draw < n; draw++) {
            int seed_index = (int)(pm_rng_uniform(&rng) * n); /* uniform is in [0, 1) */
            sum += d[seed_index];
        }
        values[r] = (weighted_mean){sum / n, 1};
    }
    percentiles(values, (size_t)resamples, lo, hi);
    free(values);
    return PM_OK;
}

int stats_bootstrap_interval(const double *d, int n, double *lo, double *hi) {
    if (n >= 1 && multiset_count(n) <= STATS_EXACT_MAX_MULTISETS) return stats_bootstrap_exact(d, n, lo, hi);
    return stats_bootstrap_sampled(d, n, STATS_BOOTSTRAP_RESAMPLES, STATS_BOOTSTRAP_SEED, lo, hi);
}

const char *stats_verdict_text(stats_verdict verdict) {
    switch (verdict) {
    case STATS_NO_DATA: return "no data";
    case STATS_ONE_SEED: return "one seed: no interval";
    case STATS_NO_DIFFERENCE: return "no difference";
    case STATS_HIGHER: return "higher";
    case STATS_LOWER: return "lower";
    }
    return "?";
}

int stats_paired_difference(const double *a, const double *b, int n, stats_difference *out) {
    *out = (stats_difference){NAN, NAN, NAN, 0, STATS_NO_DATA};
    if (n < 0) return pm_fail(PM_ERR_ARG, "stats_paired_difference: n = %d", n);
    double *differences = malloc(sizeof *differences * (size_t)(n > 0 ? n : 1));
    if (!differences) return pm_fail(PM_ERR_NOMEM, "stats_paired_difference: out of memory");
    int used = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(a[i]) && !isnan(b[i])) differences[used++] = a[i] - b[i];
    out->n = used;
    int status = PM_OK;
    if (used > 0) {
        double unused_std;
        stats_mean_std(differences, used, &out->mean_diff, &unused_std);
    }
    if (used == 1) {
        out->verdict = STATS_ONE_SEED;
    } else if (used > 1) {
        status = stats_bootstrap_interval(differences, used, &out->lo, &out->hi);
        if (!status)
            out->verdict = out->lo > 0.0 ? STATS_HIGHER : out->hi < 0.0 ? STATS_LOWER : STATS_NO_DIFFERENCE;
    }
    free(differences);
    return status;
}

int stats_format_difference(char *out, size_t size, const stats_difference *difference,
                            int decimals) {
    const char *verdict = stats_verdict_text(difference->verdict);
    int length;
    if (difference->verdict == STATS_NO_DATA)
        length = snprintf(out, size, "n/a (%s)", verdict);
    else if (difference->verdict == STATS_ONE_SEED)
        length = snprintf(out, size, "%+.*f (%s)", decimals, difference->mean_diff, verdict);
    else
        length = snprintf(out, size, "%+.*f [%+.*f, %+.*f] (%s)", decimals, difference->mean_diff,
                          decimals, difference->lo, decimals, difference->hi, verdict);
    if (length < 0 || (size_t)length >= size)
        return pm_fail(PM_ERR_ARG, "stats_format_difference: %zu bytes are too few", size);
    return PM_OK;
}
