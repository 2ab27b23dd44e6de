/* The k-subset distribution (log Z, marginals, Cov·u, MAP) against brute-force enumeration,
 * ROUTING.md's worked example, stability at extreme logits, and bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "brute.h"
#include "check.h"
#include "route/subset_dp.h"

#define MAX_N 10

/* Runs the DP in the chosen number system and returns log Z, marginals and Cov·u. */
static double dp_results(const float *theta, int n, int kmin, int kmax, bool force_log,
                         const double *u, double *marginals, double *cov_u) {
    double *workspace = malloc(sizeof(double) * subset_dp_workspace(n, kmax));
    subset_dp dp;
    subset_dp_forward(&dp, theta, n, kmin, kmax, workspace, force_log);
    double log_z = dp.log_z;
    double *cov_marginals = malloc(sizeof(double) * n);
    subset_dp_marginals(&dp, marginals);
    subset_dp_cov_mv(&dp, u, cov_u, cov_marginals);
    for (int i = 0; i < n; i++) assert_close(cov_marginals[i], marginals[i], 1e-12, 0, "m", i);
    free(cov_marginals);
    free(workspace);
    return log_z;
}

/* Every n <= 10, every 0 <= kmin <= kmax <= n, logits of scale 0.1, 3 and 30, both number
 * systems: relative error <= 1e-5 (Cov·u in the max norm, the oracle's own cancellation
 * being ~1e-18). */
static void test_against_brute_force(void **state) {
    (void)state;
    const double scales[] = {0.1, 3.0, 30.0};
    pm_rng rng;
    pm_rng_init(&rng, 11, 0);
    float theta[MAX_N];
    double u[MAX_N], marginals[MAX_N], cov_u[MAX_N];
    long double want_m[MAX_N], cov[MAX_N * MAX_N];
    int cases = 0;
    for (int s = 0; s < 3; s++)
        for (int n = 1; n <= MAX_N; n++)
            for (int kmin = 0; kmin <= n; kmin++)
                for (int kmax = kmin; kmax <= n; kmax++) {
                    random_normal(&rng, theta, n, scales[s]);
                    float uf[MAX_N];
                    random_normal(&rng, uf, n, 1.0);
                    for (int i = 0; i < n; i++) u[i] = uf[i];
                    long double want_logz = brute_logz(theta, n, kmin, kmax);
                    brute_moments(theta, n, kmin, kmax, want_m, cov);
                    double want_cov_u[MAX_N], norm = 0.0;
                    for (int i = 0; i < n; i++) {
                        long double acc = 0.0L;
                        for (int j = 0; j < n; j++) acc += cov[i * n + j] * u[j];
                        want_cov_u[i] = (double)acc;
                        norm = fmax(norm, fabs(want_cov_u[i]));
                    }
                    for (int force_log = 0; force_log <= 1; force_log++) {
                        double log_z = dp_results(theta, n, kmin, kmax, force_log, u, marginals, cov_u);
                        assert_close(log_z, want_logz, 1e-5, 1e-9, "logZ", n * 100 + kmin * 10 + kmax);
                        for (int i = 0; i < n; i++) {
                            assert_close(marginals[i], want_m[i], 1e-5, 1e-300, "marginal", i);
                            assert_close(cov_u[i], want_cov_u[i], 1e-5, 1e-5 * norm + 1e-15, "cov_u", i);
                        }
                    }
                    cases++;
                }
    assert_int_equal(cases, 3 * 285);
}

/* The public float API agrees with the oracle too (including its rounding to float). */
static void test_public_api_against_brute_force(void **state) {
    (void)state;
    pm_rng rng;
    pm_rng_init(&rng, 12, 0);
    float theta[8], m[8], u[8], cov_u[8];
    long double want_m[8], cov[64];
    for (int kmin = 0; kmin <= 8; kmin++)
        for (int kmax = kmin; kmax <= 8; kmax++) {
            random_normal(&rng, theta, 8, 2.0);
            random_normal(&rng, u, 8, 1.0);
            assert_close(pm_subset_logz(theta, 8, kmin, kmax), brute_logz(theta, 8, kmin, kmax),
                         1e-6, 1e-9, "logZ", kmin * 10 + kmax);
            assert_int_equal(pm_subset_marginals(theta, 8, kmin, kmax, m), 0);
            assert_int_equal(pm_subset_cov_mv(theta, 8, kmin, kmax, u, cov_u), 0);
            brute_moments(theta, 8, kmin, kmax, want_m, cov);
            for (int i = 0; i < 8; i++) {
                long double want = 0.0L;
                for (int j = 0; j < 8; j++) want += cov[i * 8 + j] * u[j];
                assert_close(m[i], want_m[i], 1e-6, 1e-30, "marginal", i);
                assert_close(cov_u[i], want, 1e-5, 1e-6, "cov_u", i);
            }
        }
}

/* ROUTING.md section 5: θ = logit([0.8, 0.6, 0.4, 0.2]), exact-k with k = 2. */
static void test_worked_example(void **state) {
    (void)state;
    const float probs[4] = {0.8f, 0.6f, 0.4f, 0.2f};
    float theta[4], m[4], cov_row[4];
    for (int i = 0; i < 4; i++) theta[i] = (float)log(probs[i] / (1.0 - probs[i]));
    assert_close(pm_subset_logz(theta, 4, 2, 2), 2.416658, 0, 5e-7, "logZ", 0);
    assert_int_equal(pm_subset_marginals(theta, 4, 2, 2, m), 0);
    const double want_m[4] = {0.862454, 0.657993, 0.342007, 0.137546};
    for (int i = 0; i < 4; i++) assert_close(m[i], want_m[i], 0, 5e-7, "m", i);
    const float first_axis[4] = {1, 0, 0, 0};
    assert_int_equal(pm_subset_cov_mv(theta, 4, 2, 2, first_axis, cov_row), 0);
    const double want_cov[4] = {0.11863, -0.03217, -0.05705, -0.02941};
    for (int i = 0; i < 4; i++) assert_close(cov_row[i], want_cov[i], 0, 5e-6, "cov row 1", i);
    long double prob[16];
    brute_subset_probs(theta, 4, 2, 2, prob);
    assert_close(prob[0x3], 0.535316, 0, 5e-7, "p({1,2})", 0);
    assert_close(prob[0xC], 0.014870, 0, 5e-7, "p({3,4})", 0);
}

/* MAP against the brute-force argmax, with integer logits so ties and zeros are common. */
static void test_map_against_brute_force(void **state) {
    (void)state;
    pm_rng rng;
    pm_rng_init(&rng, 13, 0);
    float theta[MAX_N];
    int idx[MAX_N];
    for (int trial = 0; trial < 4; trial++)
        for (int n = 1; n <= MAX_N; n++)
            for (int kmin = 0; kmin <= n; kmin++)
                for (int kmax = kmin; kmax <= n; kmax++) {
                    for (int i = 0; i < n; i++)
                        theta[i] = trial < 2 ? (float)((int)(pm_rng_u32(&rng) % 5) - 2)
                                             : (float)(3.0 * (pm_rng_uniform(&rng) - 0.5));
                    int size = pm_subset_map(theta, n, kmin, kmax, idx);
                    uint32_t mask = 0;
                    for (int i = 0; i < size; i++) {
                        if (i > 0) assert_true(idx[i] > idx[i - 1]);
                        mask |= 1u << idx[i];
                    }
                    assert_int_equal(mask, brute_map(theta, n, kmin, kmax));
                }
}

/* Extreme logits: finite results, Σm = k for exact-k, and for the full range 0..n the
 * distribution is independent Bernoulli(σ(θ_i)), an exact oracle at any n. */
static void test_stability(void **state) {
    (void)state;
    enum { N = 512 };
    static float theta[N], m[N], u[N], out[N];
    pm_rng rng;
    pm_rng_init(&rng, 14, 0);
    const double spreads[] = {0.0, 1.0, 100.0, 1e4};
    const int sizes[] = {1, 7, 64, 512};
    for (int s = 0; s < 4; s++)
        for (int z = 0; z < 4; z++) {
            int n = sizes[z];
            for (int i = 0; i < n; i++)
                theta[i] = (float)(spreads[s] * (2.0 * pm_rng_uniform(&rng) - 1.0));
            random_normal(&rng, u, n, 1.0);
            const int ks[] = {1, n / 2, n};
            for (int c = 0; c < 3; c++) {
                int k = ks[c] < 1 ? 1 : ks[c];
                double log_z = pm_subset_logz(theta, n, k, k);
                assert_true(isfinite(log_z));
                assert_int_equal(pm_subset_marginals(theta, n, k, k, m), 0);
                assert_int_equal(pm_subset_cov_mv(theta, n, k, k, u, out), 0);
                double sum = 0.0, cov_sum = 0.0;
                for (int i = 0; i < n; i++) {
                    assert_true(isfinite(m[i]) && m[i] >= 0.0f && m[i] <= 1.0f + 1e-6f);
                    assert_true(isfinite(out[i]));
                    sum += m[i];
                    cov_sum += out[i];
                }
                assert_close(sum, k, 0, 1e-4, "sum of marginals", n);
                /* |S| is constant, so Cov·u sums to zero: Σ_i Cov_ij = Cov(|S|, z_j) = 0. */
                assert_close(cov_sum, 0.0, 0, 1e-4, "sum of Cov·u", n);
            }
            /* Full range: m_i = σ(θ_i), log Z = Σ log(1 + e^θ_i). */
            assert_int_equal(pm_subset_marginals(theta, n, 0, n, m), 0);
            double want_log_z = 0.0, sum = 0.0, want_sum = 0.0;
            for (int i = 0; i < n; i++) {
                double t = theta[i], sigma = 1.0 / (1.0 + exp(-t));
                want_log_z += t > 0 ? t + log1p(exp(-t)) : log1p(exp(t));
                assert_close(m[i], sigma, 1e-5, 1e-37, "Bernoulli marginal", i);
                sum += m[i];
                want_sum += sigma;
            }
            assert_close(pm_subset_logz(theta, n, 0, n), want_log_z, 1e-6, 1e-6, "Bernoulli logZ", n);
            assert_close(sum, want_sum, 0, 1e-4, "Bernoulli sum", n);
        }
}

/* A range on equal logits: P(|S| = m) ∝ C(n, m) e^{m θ}, so E|S| has a closed form. */
static void test_equal_logits_range(void **state) {
    (void)state;
    enum { N = 300 };
    static float theta[N], m[N];
    const float values[] = {-50.0f, -1.0f, 0.0f, 2.5f, 40.0f};
    for (int v = 0; v < 5; v++) {
        for (int i = 0; i < N; i++) theta[i] = values[v];
        const int kmin = 20, kmax = 260;
        long double log_terms[N + 1], top = -INFINITY;
        for (int k = kmin; k <= kmax; k++) {
            log_terms[k] = lgammal(N + 1.0L) - lgammal(k + 1.0L) - lgammal(N - k + 1.0L) + k * (long double)values[v];
            if (log_terms[k] > top) top = log_terms[k];
        }
        long double z = 0.0L, mean = 0.0L;
        for (int k = kmin; k <= kmax; k++) {
            z += expl(log_terms[k] - top);
            mean += k * expl(log_terms[k] - top);
        }
        assert_close(pm_subset_logz(theta, N, kmin, kmax), top + logl(z), 1e-7, 1e-7, "logZ", v);
        assert_int_equal(pm_subset_marginals(theta, N, kmin, kmax, m), 0);
        for (int i = 0; i < N; i++) assert_close(m[i] * N, mean / z, 1e-5, 1e-4, "E|S|", i);
    }
}

static void expect_error(int status, const char *needle) {
    assert_true(status < 0);
    assert_non_null(strstr(pm_last_error(), needle));
}

static void test_bad_input(void **state) {
    (void)state;
    float theta[4] = {0.1f, 0.2f, 0.3f, 0.4f}, m[4], u[4] = {1, 1, 1, 1}, out[4];
    int idx[4];
    pm_rng rng;
    pm_rng_init(&rng, 1, 0);
    expect_error(pm_subset_marginals(theta, 0, 0, 0, m), "n = 0");
    expect_error(pm_subset_marginals(theta, 4, -1, 2, m), "kmin = -1");
    expect_error(pm_subset_marginals(theta, 4, 3, 2, m), "kmin = 3 > kmax = 2");
    expect_error(pm_subset_cov_mv(theta, 4, 1, 5, u, out), "kmax = 5 > n = 4");
    expect_error(pm_subset_sample(theta, 4, 1, 5, &rng, idx), "kmax = 5");
    expect_error(pm_subset_sample(theta, 4, 1, 2, NULL, idx), "rng");
    expect_error(pm_subset_map(theta, -3, 0, 0, idx), "n = -3");
    assert_true(isnan(pm_subset_logz(theta, 4, 2, 1)));
    assert_non_null(strstr(pm_last_error(), "kmin = 2 > kmax = 1"));
    theta[2] = NAN;
    expect_error(pm_subset_marginals(theta, 4, 1, 2, m), "theta[2]");
    assert_int_equal(pm_subset_marginals(theta, 4, 1, 2, m), PM_ERR_NONFINITE);
    theta[2] = INFINITY;
    assert_true(isnan(pm_subset_logz(theta, 4, 1, 2)));
    expect_error(pm_subset_map(theta, 4, 1, 2, idx), "theta[2] = inf");
    theta[2] = 0.3f;
    u[3] = NAN;
    expect_error(pm_subset_cov_mv(theta, 4, 1, 2, u, out), "u[3]");
    expect_error(pm_subset_marginals(NULL, 4, 1, 2, m), "theta is NULL");
}

/* Small edge cases with known answers. */
static void test_edges(void **state) {
    (void)state;
    float theta[3] = {0.5f, -1.0f, 2.0f}, m[3];
    int idx[3];
    pm_rng rng;
    pm_rng_init(&rng, 2, 0);
    assert_close(pm_subset_logz(theta, 3, 0, 0), 0.0, 0, 1e-12, "empty set only", 0);
    assert_int_equal(pm_subset_marginals(theta, 3, 0, 0, m), 0);
    for (int i = 0; i < 3; i++) assert_close(m[i], 0.0, 0, 0, "m", i);
    assert_int_equal(pm_subset_sample(theta, 3, 0, 0, &rng, idx), 0);
    assert_int_equal(pm_subset_sample(theta, 3, 3, 3, &rng, idx), 3);
    assert_close(pm_subset_logz(theta, 3, 3, 3), 1.5, 0, 1e-6, "all items", 0);
    assert_close(pm_subset_logz(theta, 1, 1, 1), 0.5, 0, 1e-7, "n = 1", 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_brute_force),
        cmocka_unit_test(test_public_api_against_brute_force),
        cmocka_unit_test(test_worked_example),
        cmocka_unit_test(test_map_against_brute_force),
        cmocka_unit_test(test_stability),
        cmocka_unit_test(test_equal_logits_range),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
