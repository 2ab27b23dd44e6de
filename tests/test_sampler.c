/* The exact sampler: chi-square goodness of fit against enumerated subset probabilities,
 * sizes always in range, indices increasing, in both number systems; and the generator. */
#include <math.h>
#include <stdlib.h>

#include "brute.h"
#include "check.h"
#include "core/rng_lanes.h"
#include "route/subset_dp.h"

enum { SAMPLES = 200000 };

/* Draws SAMPLES subsets and returns the chi-square statistic over subsets whose expected
 * count is at least 5 (the rest pooled into one cell); *cells gets the number of cells. */
static double chi_square(const float *theta, int n, int kmin, int kmax, bool force_log,
                         uint64_t seed, int *cells) {
    double *workspace = malloc(sizeof(double) * subset_dp_workspace(n, kmax));
    subset_dp dp;
    subset_dp_forward(&dp, theta, n, kmin, kmax, workspace, force_log);
    long double *prob = malloc(sizeof(long double) << n);
    long *count = calloc((size_t)1 << n, sizeof(long));
    brute_subset_probs(theta, n, kmin, kmax, prob);
    pm_rng rng;
    pm_rng_init(&rng, seed, 0);
    int idx[16];
    for (int s = 0; s < SAMPLES; s++) {
        int size = subset_dp_sample(&dp, &rng, idx);
        assert_true(size >= kmin && size <= kmax);
        uint32_t mask = 0;
        for (int i = 0; i < size; i++) {
            assert_true(idx[i] >= 0 && idx[i] < n);
            if (i > 0) assert_true(idx[i] > idx[i - 1]);
            mask |= 1u << idx[i];
        }
        assert_true(prob[mask] > 0.0L);
        count[mask]++;
    }
    double statistic = 0.0, pooled_expected = 0.0, pooled_observed = 0.0;
    *cells = 0;
    for (uint32_t mask = 0; mask < (1u << n); mask++) {
        double expected = (double)prob[mask] * SAMPLES;
        if (expected >= 5.0) {
            statistic += (count[mask] - expected) * (count[mask] - expected) / expected;
            (*cells)++;
        } else {
            pooled_expected += expected;
            pooled_observed += (double)count[mask];
        }
    }
    if (pooled_expected >= 5.0) {
        statistic += (pooled_observed - pooled_expected) * (pooled_observed - pooled_expected) / pooled_expected;
        (*cells)++;
    }
    free(count);
    free(prob);
    free(workspace);
    return statistic;
}

static void test_goodness_of_fit(void **state) {
    (void)state;
    const int configs[][3] = {{4, 2, 2}, {6, 3, 3}, {6, 1, 4}, {5, 0, 5}, {8, 2, 5}, {7, 7, 7}};
    pm_rng rng;
    pm_rng_init(&rng, 21, 0);
    float theta[8];
    for (int c = 0; c < 6; c++)
        for (int force_log = 0; force_log <= 1; force_log++) {
            int n = configs[c][0], cells = 0;
            random_normal(&rng, theta, n, 1.0);
            double statistic = chi_square(theta, n, configs[c][1], configs[c][2], force_log,
                                          100 + c, &cells);
            /* df = cells − 1; the bound df + 6·sqrt(2 df) is exceeded with p < 1e-6. */
            double df = cells > 1 ? cells - 1 : 1;
            if (!(statistic < df + 6.0 * sqrt(2.0 * df)))
                fail_msg("config %d (log %d): chi-square %.1f with %d cells", c, force_log, statistic, cells);
        }
}

/* A sampler that ignores the logits fails: uniform sampling is far off for scale 2 logits. */
static void test_chi_square_detects_a_wrong_sampler(void **state) {
    (void)state;
    float theta[6] = {2.0f, -1.0f, 0.5f, 1.5f, -2.0f, 0.0f}, flat[6] = {0};
    int cells;
    double good = chi_square(theta, 6, 2, 2, false, 7, &cells);
    /* Compare a flat sampler's counts against theta's probabilities by swapping roles. */
    double *workspace = malloc(sizeof(double) * subset_dp_workspace(6, 2));
    subset_dp dp;
    subset_dp_forward(&dp, flat, 6, 2, 2, workspace, false);
    long double prob[64];
    brute_subset_probs(theta, 6, 2, 2, prob);
    long count[64] = {0};
    pm_rng rng;
    pm_rng_init(&rng, 7, 0);
    int idx[6];
    for (int s = 0; s < SAMPLES; s++) {
        int size = subset_dp_sample(&dp, &rng, idx);
        count[(1u << idx[0]) | (1u << idx[size - 1])]++;
    }
    double bad = 0.0;
    for (int mask = 0; mask < 64; mask++)
        if (prob[mask] > 0.0L) {
            double expected = (double)prob[mask] * SAMPLES;
            bad += (count[mask] - expected) * (count[mask] - expected) / expected;
        }
    free(workspace);
    assert_true(good < 60.0);
    assert_true(bad > 1000.0);
}

/* Extreme logits: every sample has a valid size, and near-certain choices are made. */
static void test_extreme_logits(void **state) {
    (void)state;
    enum { N = 256 };
    static float theta[N];
    static int idx[N];
    pm_rng rng;
    pm_rng_init(&rng, 22, 0);
    for (int i = 0; i < N; i++) theta[i] = (float)(1e4 * (2.0 * pm_rng_uniform(&rng) - 1.0));
    theta[17] = 2e4f;
    theta[200] = 1.9e4f;
    for (int s = 0; s < 50; s++) {
        int size = pm_subset_sample(theta, N, 2, 2, &rng, idx);
        assert_int_equal(size, 2);
        assert_int_equal(idx[0], 17);
        assert_int_equal(idx[1], 200);
        size = pm_subset_sample(theta, N, 1, 40, &rng, idx);
        assert_true(size >= 1 && size <= 40);
        for (int i = 1; i < size; i++) assert_true(idx[i] > idx[i - 1]);
    }
}

/* Philox4x32-10 known-answer vectors (Random123's kat_vectors). */
static void test_philox_known_answers(void **state) {
    (void)state;
    pm_rng rng;
    pm_rng_init(&rng, 0, 0);
    const uint32_t zero[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u};
    for (int i = 0; i < 4; i++) assert_int_equal(pm_rng_u32(&rng), zero[i]);
    /* counter = (243f6a88, 85a308d3, 13198a2e, 03707344), key = (a4093822, 299f31d0) */
    pm_rng_init(&rng, 0x299f31d0a4093822ull, 0x0370734413198a2eull);
    rng.substream = 0x85a308d3u;
    rng.counter = 0x243f6a88u;
    const uint32_t pi[4] = {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u};
    for (int i = 0; i < 4; i++) assert_int_equal(pm_rng_u32(&rng), pi[i]);
}

/* Substreams are reproducible and independent of the base generator's position. */
static void test_substreams(void **state) {
    (void)state;
    pm_rng base, a, b, c;
    pm_rng_init(&base, 5, 9);
    pm_rng_substream(&base, 3, &a);
    for (int i = 0; i < 10; i++) pm_rng_u32(&base);
    pm_rng_substream(&base, 3, &b);
    pm_rng_substream(&base, 4, &c);
    int same = 0;
    for (int i = 0; i < 100; i++) {
        uint32_t x = pm_rng_u32(&a);
        assert_int_equal(x, pm_rng_u32(&b));
        same += x == pm_rng_u32(&c);
    }
    assert_true(same < 3);
    double mean = 0.0;
    for (int i = 0; i < 100000; i++) {
        double v = pm_rng_uniform(&a);
        assert_true(v >= 0.0 && v < 1.0);
        mean += v;
    }
    assert_close(mean / 100000, 0.5, 0, 0.005, "uniform mean", 0);
}

/* Eight substreams at once give each substream's own uniforms, bit for bit (odd counts,
 * seeds and streams with high bits set, substreams far apart). */
static void test_uniform_lanes(void **state) {
    (void)state;
    const uint64_t seeds[2] = {7, 0xfedcba9876543210u}, streams[2] = {0, 0x123456789abcdefu};
    const uint32_t substream[RNG_LANES] = {0, 1, 2, 77, 4096, 0x7fffffffu, 0xfffffffeu, 3};
    double lanes[9 * RNG_LANES];
    for (int s = 0; s < 2; s++)
        for (int count = 1; count <= 9; count++) {
            pm_rng base;
            pm_rng_init(&base, seeds[s], streams[s]);
            rng_uniform_lanes(&base, substream, count, lanes);
            for (int l = 0; l < RNG_LANES; l++) {
                pm_rng one;
                pm_rng_substream(&base, substream[l], &one);
                for (int i = 0; i < count; i++)
                    assert_true(lanes[(size_t)i * RNG_LANES + l] == pm_rng_uniform(&one));
            }
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform_lanes),
        cmocka_unit_test(test_goodness_of_fit),
        cmocka_unit_test(test_chi_square_detects_a_wrong_sampler),
        cmocka_unit_test(test_extreme_logits),
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_substreams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
