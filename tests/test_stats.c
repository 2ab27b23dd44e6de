/* Statistics over seeds: mean/std by hand, the exact bootstrap against a brute force over all
 * n^n ordered resamples, the drawn bootstrap against the exact one, verdicts and formatting. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "experiments/stats.h"

static void mean_std_by_hand(void **state) {
    (void)state;
    /* mean 5; squares about it 9+1+1+1+0+0+4+16 = 32; sample std sqrt(32/7) */
    const double x[8] = {2, 4, 4, 4, 5, 5, 7, 9};
    double mean, std;
    assert_int_equal(stats_mean_std(x, 8, &mean, &std), 8);
    assert_close(mean, 5.0, 0, 1e-15, "mean", 0);
    assert_close(std, sqrt(32.0 / 7.0), 1e-15, 0, "std", 0);

    /* NaN values are skipped and not counted */
    const double with_nan[5] = {NAN, 1.0, 3.0, NAN, 8.0};
    assert_int_equal(stats_mean_std(with_nan, 5, &mean, &std), 3);
    assert_close(mean, 4.0, 0, 1e-15, "mean", 1);
    assert_close(std, sqrt((9.0 + 1.0 + 16.0) / 2.0), 1e-15, 0, "std", 1);

    const double one = 2.5;
    assert_int_equal(stats_mean_std(&one, 1, &mean, &std), 1);
    assert_true(mean == 2.5 && std == 0.0);

    const double none[2] = {NAN, NAN};
    assert_int_equal(stats_mean_std(none, 2, &mean, &std), 0);
    assert_true(isnan(mean) && isnan(std));
}

/* The percentiles of the rule in stats.h, by brute force: all n^n ordered resamples, their
 * means sorted; lo is the ceil(N/40)-th, hi the ceil(39N/40)-th (1-based). */
static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void brute_force_interval(const double *d, int n, double *lo, double *hi) {
    size_t total = 1;
    for (int i = 0; i < n; i++) total *= (size_t)n;
    double *means = malloc(sizeof *means * total);
    assert_non_null(means);
    int picks[16] = {0}; /* the resample as n digits in base n */
    for (size_t r = 0; r < total; r++) {
        double sum = 0.0;
        for (int j = 0; j < n; j++) sum += d[picks[j]];
        means[r] = sum / n;
        for (int j = 0; j < n && ++picks[j] == n; j++) picks[j] = 0;
    }
    qsort(means, total, sizeof *means, by_value);
    *lo = means[(total + 39) / 40 - 1];
    *hi = means[(39 * total + 39) / 40 - 1];
    free(means);
}

static void exact_equals_brute_force(void **state) {
    (void)state;
    const double three[3][3] = {{0.1, -0.3, 0.25}, {1.0, 1.0, 4.0}, {-2.0, 0.5, 0.75}};
    const double four[4] = {0.02, -0.01, 0.05, 0.015};
    const double five[5] = {3.0, -1.0, 0.5, 0.5, 2.25};
    const double seven[7] = {0.031, -0.012, 0.004, 0.027, -0.03, 0.011, 0.09};
    const struct {
        const double *d;
        int n;
    } cases[6] = {{three[0], 3}, {three[1], 3}, {three[2], 3}, {four, 4}, {five, 5}, {seven, 7}};
    for (int c = 0; c < 6; c++) {
        double lo, hi, want_lo, want_hi;
        assert_int_equal(stats_bootstrap_exact(cases[c].d, cases[c].n, &lo, &hi), PM_OK);
        brute_force_interval(cases[c].d, cases[c].n, &want_lo, &want_hi);
        assert_close(lo, want_lo, 1e-12, 1e-15, "lo", c);
        assert_close(hi, want_hi, 1e-12, 1e-15, "hi", c);
        assert_true(lo < hi);
    }
    /* n = 3 by hand: one resample in 27 repeats the smallest value, more than 2.5%, so the
     * interval runs from the smallest to the largest difference. */
    double lo, hi;
    assert_int_equal(stats_bootstrap_exact(three[0], 3, &lo, &hi), PM_OK);
    assert_close(lo, -0.3, 1e-12, 0, "lo of n = 3", 0);
    assert_close(hi, 0.25, 1e-12, 0, "hi of n = 3", 0);
}

static void sampled_near_exact(void **state) {
    (void)state;
    const double d[7] = {0.031, -0.012, 0.004, 0.027, -0.03, 0.011, 0.09};
    double lo, hi, exact_lo, exact_hi;
    assert_int_equal(stats_bootstrap_exact(d, 7, &exact_lo, &exact_hi), PM_OK);
    assert_int_equal(stats_bootstrap_sampled(d, 7, 10000, 1, &lo, &hi), PM_OK);
    const double spread = exact_hi - exact_lo;
    assert_close(lo, exact_lo, 0, 0.05 * spread, "sampled lo", 0);
    assert_close(hi, exact_hi, 0, 0.05 * spread, "sampled hi", 0);
}

/* The exact distribution up to 10 seeds (C(19, 10) = 92378 multisets), draws beyond. */
static void interval_chooses_the_path(void **state) {
    (void)state;
    double d[11], lo, hi, want_lo, want_hi;
    for (int i = 0; i < 11; i++) d[i] = sin(1.7 * i) + 0.1;
    assert_int_equal(stats_bootstrap_interval(d, 10, &lo, &hi), PM_OK);
    assert_int_equal(stats_bootstrap_exact(d, 10, &want_lo, &want_hi), PM_OK);
    assert_true(lo == want_lo && hi == want_hi);
    assert_int_equal(stats_bootstrap_exact(d, 11, &lo, &hi), PM_ERR_ARG);
    assert_int_equal(stats_bootstrap_interval(d, 11, &lo, &hi), PM_OK);
    assert_int_equal(stats_bootstrap_sampled(d, 11, STATS_BOOTSTRAP_RESAMPLES, STATS_BOOTSTRAP_SEED,
                                             &want_lo, &want_hi), PM_OK);
    assert_true(lo == want_lo && hi == want_hi);
}

static void deterministic(void **state) {
    (void)state;
    double d[40];
    for (int i = 0; i < 40; i++) d[i] = cos(0.9 * i) * 0.02;
    double lo1, hi1, lo2, hi2, lo3, hi3;
    assert_int_equal(stats_bootstrap_interval(d, 40, &lo1, &hi1), PM_OK);
    assert_int_equal(stats_bootstrap_interval(d, 40, &lo2, &hi2), PM_OK);
    assert_true(lo1 == lo2 && hi1 == hi2);
    /* and the seed matters: another draws other resamples */
    assert_int_equal(stats_bootstrap_sampled(d, 40, STATS_BOOTSTRAP_RESAMPLES, 7, &lo3, &hi3), PM_OK);
    assert_true(lo3 != lo1 || hi3 != hi1);
}

static void constant_differences(void **state) {
    (void)state;
    const double c[3] = {0.125, -0.3, 0.0};
    const stats_verdict want[3] = {STATS_HIGHER, STATS_LOWER, STATS_NO_DIFFERENCE};
    const int sizes[2] = {4, 12}; /* the exact and the drawn path */
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < 3; k++) {
            double a[12], b[12];
            for (int i = 0; i < sizes[s]; i++) {
                b[i] = 3.0 + 0.5 * i;
                a[i] = b[i] + c[k];
            }
            stats_difference diff;
            assert_int_equal(stats_paired_difference(a, b, sizes[s], &diff), PM_OK);
            assert_int_equal(diff.n, sizes[s]);
            assert_close(diff.mean_diff, c[k], 1e-12, 1e-12, "mean_diff", k);
            assert_close(diff.lo, c[k], 1e-12, 1e-12, "lo", k);
            assert_close(diff.hi, c[k], 1e-12, 1e-12, "hi", k);
            assert_int_equal(diff.verdict, want[k]);
        }
}

static void verdicts(void **state) {
    (void)state;
    stats_difference diff;
    /* differences -1, 2, -0.5, 1.5: the interval straddles 0 */
    const double a[4] = {1.0, 4.0, 1.5, 3.5}, b[4] = {2.0, 2.0, 2.0, 2.0};
    assert_int_equal(stats_paired_difference(a, b, 4, &diff), PM_OK);
    assert_true(diff.lo < 0.0 && diff.hi > 0.0);
    assert_int_equal(diff.verdict, STATS_NO_DIFFERENCE);
    assert_string_equal(stats_verdict_text(diff.verdict), "no difference");

    /* noisy but all below: lower */
    const double worse[4] = {1.4, 1.5, 1.45, 1.3};
    assert_int_equal(stats_paired_difference(worse, b, 4, &diff), PM_OK);
    assert_true(diff.hi < 0.0);
    assert_string_equal(stats_verdict_text(diff.verdict), "lower");

    /* a NaN on either side drops the pair: one pair left */
    const double a_nan[3] = {NAN, 2.5, 3.0}, b_nan[3] = {1.0, 2.0, NAN};
    assert_int_equal(stats_paired_difference(a_nan, b_nan, 3, &diff), PM_OK);
    assert_int_equal(diff.n, 1);
    assert_close(diff.mean_diff, 0.5, 0, 1e-15, "one pair", 0);
    assert_true(isnan(diff.lo) && isnan(diff.hi));
    assert_string_equal(stats_verdict_text(diff.verdict), "one seed: no interval");

    assert_int_equal(stats_paired_difference(a_nan, b_nan, 1, &diff), PM_OK);
    assert_int_equal(diff.n, 0);
    assert_int_equal(diff.verdict, STATS_NO_DATA);

    double lo, hi;
    assert_int_equal(stats_bootstrap_exact(a_nan, 3, &lo, &hi), PM_ERR_NONFINITE);
    assert_int_equal(stats_bootstrap_sampled(a, 0, 100, 1, &lo, &hi), PM_ERR_ARG);
}

static void formatting(void **state) {
    (void)state;
    char text[64];
    stats_difference diff = {0.012, -0.004, 0.030, 3, STATS_NO_DIFFERENCE};
    assert_int_equal(stats_format_difference(text, sizeof text, &diff, 3), PM_OK);
    assert_string_equal(text, "+0.012 [-0.004, +0.030] (no difference)");
    diff = (stats_difference){-0.25, -0.5, -0.126, 5, STATS_LOWER};
    assert_int_equal(stats_format_difference(text, sizeof text, &diff, 2), PM_OK);
    assert_string_equal(text, "-0.25 [-0.50, -0.13] (lower)");
    diff = (stats_difference){0.012, NAN, NAN, 1, STATS_ONE_SEED};
    assert_int_equal(stats_format_difference(text, sizeof text, &diff, 3), PM_OK);
    assert_string_equal(text, "+0.012 (one seed: no interval)");
    diff = (stats_difference){NAN, NAN, NAN, 0, STATS_NO_DATA};
    assert_int_equal(stats_format_difference(text, sizeof text, &diff, 3), PM_OK);
    assert_string_equal(text, "n/a (no data)");
    assert_int_equal(stats_format_difference(text, 8, &diff, 3), PM_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mean_std_by_hand),
        cmocka_unit_test(exact_equals_brute_force),
        cmocka_unit_test(sampled_near_exact),
        cmocka_unit_test(interval_chooses_the_path),
        cmocka_unit_test(deterministic),
        cmocka_unit_test(constant_differences),
        cmocka_unit_test(verdicts),
        cmocka_unit_test(formatting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
