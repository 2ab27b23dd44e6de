/* LapSum soft top-k: the threshold, the probabilities and the vector-jacobian product against
 * a long-double bisection oracle and finite differences; extreme inputs; bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "brute.h"
#include "check.h"
#include "core/error.h"
#include "route/lapsum.h"

#define MAX_N 512

static const float ALPHAS[] = {1e-3f, 0.1f, 1.0f, 10.0f, 1e3f};
#define NUM_ALPHAS ((int)(sizeof ALPHAS / sizeof ALPHAS[0]))

/* L = Σ v_i p_i(r, k, alpha), the scalar the vjp differentiates. */
static long double ref_loss(const long double *r, int n, const float *v, long double k,
                            long double alpha) {
    long double t = brute_lapsum_threshold(r, n, k, alpha), loss = 0.0L;
    for (int i = 0; i < n; i++) loss += v[i] * brute_laplace_cdf((r[i] - t) / alpha);
    return loss;
}

static void widen(const float *x, int n, long double *out) {
    for (int i = 0; i < n; i++) out[i] = x[i];
}

static double max_abs_float(const float *x, int n) {
    double m = 0.0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
    return m;
}

/* k in (0, n) with a fractional part in [0.1, 0.9]: Σ g_i >= dist(k, Z) keeps t well
 * conditioned (dt/dk = alpha / Σ g_i) even when alpha is tiny. */
static float random_k(pm_rng *rng, int n) {
    int whole = (int)(pm_rng_uniform(rng) * n);
    if (whole > n - 1) whole = n - 1;
    return (float)(whole + 0.1 + 0.8 * pm_rng_uniform(rng));
}

/* ------------------------------------------------------------------ tests */

static void test_threshold_and_probs_match_bisection(void **state) {
    (void)state;
    static const int sizes[] = {1, 2, 5, 17, 64};
    pm_rng rng;
    pm_rng_init(&rng, 11, 0);
    float r[64], p[64];
    long double rl[64];
    for (int si = 0; si < 5; si++)
        for (int ai = 0; ai < NUM_ALPHAS; ai++)
            for (int draw = 0; draw < 4; draw++) {
                int n = sizes[si];
                float alpha = ALPHAS[ai];
                /* Scores on the unit scale and on alpha's scale: hard and soft regimes. */
                random_normal(&rng, r, n, draw % 2 ? 1.0 : 2.0 * alpha);
                float k = random_k(&rng, n);
                widen(r, n, rl);
                long double t_ref = brute_lapsum_threshold(rl, n, k, alpha);
                double t_tol = 1e-12 * (max_abs_float(r, n) + alpha);

                double *scratch = malloc(sizeof(double) * lapsum_scratch_size(n));
                assert_non_null(scratch);
                double t = lapsum_threshold(r, n, k, alpha, scratch);
                free(scratch);
                assert_close(t, t_ref, 0.0, t_tol, "internal t", n);

                float t_public = pm_lapsum_forward(r, n, k, alpha, p);
                assert_close(t_public, t_ref, 1e-7, t_tol, "public t", n);
                double sum = 0.0;
                for (int i = 0; i < n; i++) {
                    long double want = brute_laplace_cdf((rl[i] - t_ref) / alpha);
                    assert_close(p[i], want, 0.0, 1e-7, "p", i);
                    sum += p[i];
                }
                assert_close(sum, k, 0.0, 1e-4, "sum p", n);
            }
}

/* Closed forms: one score, equal scores, and a symmetric gap that hard top-k splits. */
static void test_closed_forms(void **state) {
    (void)state;
    float p[8];
    /* n = 1: p = k, t = r − alpha F^{-1}(k). */
    float one = 2.0f;
    float t = pm_lapsum_forward(&one, 1, 0.25f, 0.5f, p);
    assert_close(t, 2.0 - 0.5 * log(0.5), 1e-6, 0.0, "t, n = 1", 0);
    assert_close(p[0], 0.25, 1e-6, 0.0, "p, n = 1", 0);
    /* Equal scores c: every p = k/n, t = c + alpha ln(n / 2k) for k <= n/2. */
    float equal[8] = {-3, -3, -3, -3, -3, -3, -3, -3};
    t = pm_lapsum_forward(equal, 8, 3.0f, 2.0f, p);
    assert_close(t, -3.0 + 2.0 * log(8.0 / 6.0), 1e-6, 0.0, "t, equal", 0);
    for (int i = 0; i < 8; i++) assert_close(p[i], 3.0 / 8.0, 1e-6, 0.0, "p, equal", i);
    /* Integer k over a gap: t at the midpoint by symmetry; alpha -> 0 gives hard top-k. */
    float ranked[5] = {1, 5, 2, 4, 3};
    t = pm_lapsum_forward(ranked, 5, 2.0f, 1e-3f, p);
    assert_close(t, 3.5, 1e-6, 0.0, "t, gap", 0);
    static const float hard[5] = {0, 1, 0, 1, 0};
    for (int i = 0; i < 5; i++) assert_close(p[i], hard[i], 0.0, 1e-6, "p, gap", i);
}

static void check_gradients(const float *r, int n, float k, float alpha, const float *v) {
    long double rl[64], shifted[64];
    widen(r, n, rl);
    /* Steps 1e-8 in units of alpha: far inside every smooth piece, and long double leaves
     * the central differences ~1e-9 relative rounding error. */
    long double h_r = 1e-8L * alpha, h_k = 1e-8L, h_alpha = 1e-8L * alpha;
    long double fd_dr[64], fd_dk, fd_dalpha;
    double dr_scale = 0.0, v_norm = 0.0;
    for (int j = 0; j < n; j++) {
        memcpy(shifted, rl, sizeof(long double) * n);
        shifted[j] = rl[j] + h_r;
        long double up = ref_loss(shifted, n, v, k, alpha);
        shifted[j] = rl[j] - h_r;
        fd_dr[j] = (up - ref_loss(shifted, n, v, k, alpha)) / (2.0L * h_r);
        dr_scale = fmax(dr_scale, fabs((double)fd_dr[j]));
        v_norm += fabs((double)v[j]);
    }
    fd_dk = (ref_loss(rl, n, v, k + h_k, alpha) - ref_loss(rl, n, v, k - h_k, alpha)) /
            (2.0L * h_k);
    fd_dalpha = (ref_loss(rl, n, v, k, alpha + h_alpha) -
                 ref_loss(rl, n, v, k, alpha - h_alpha)) / (2.0L * h_alpha);
    double dr_floor = 1e-6 * dr_scale + 1e-9 * v_norm / alpha;
    double dk_floor = 1e-7 * v_norm, dalpha_floor = 1e-7 * v_norm / alpha;

    /* Internal double core. */
    float dr[64];
    double dk, dalpha;
    double *scratch = malloc(sizeof(double) * lapsum_scratch_size(n));
    assert_non_null(scratch);
    double t = lapsum_threshold(r, n, k, alpha, scratch);
    free(scratch);
    lapsum_vjp(r, n, alpha, t, v, dr, &dk, &dalpha);
    double dr_sum = 0.0, dr_abs = 0.0;
    for (int j = 0; j < n; j++) {
        assert_close(dr[j], fd_dr[j], 1e-4, dr_floor, "internal dr", j);
        dr_sum += dr[j];
        dr_abs += fabs(dr[j]);
    }
    assert_close(dr_sum, 0.0, 0.0, 1e-6 * dr_abs + 1e-30, "sum of internal dr", n);
    assert_close(dk, fd_dk, 1e-5, dk_floor, "internal dk", n);
    assert_close(dalpha, fd_dalpha, 1e-5, dalpha_floor, "internal dalpha", n);

    /* Public wrappers, fed the float t the forward returned. */
    float p[64], dk_f, dalpha_f;
    float t_f = pm_lapsum_forward(r, n, k, alpha, p);
    assert_int_equal(pm_lapsum_backward(r, n, k, alpha, t_f, v, dr, &dk_f, &dalpha_f), PM_OK);
    dr_sum = dr_abs = 0.0;
    for (int j = 0; j < n; j++) {
        assert_close(dr[j], fd_dr[j], 1e-4, dr_floor, "public dr", j);
        dr_sum += dr[j];
        dr_abs += fabs(dr[j]);
    }
    assert_close(dr_sum, 0.0, 0.0, 1e-6 * dr_abs + 1e-30, "sum of public dr", n);
    assert_close(dk_f, fd_dk, 1e-4, dk_floor, "public dk", n);
    assert_close(dalpha_f, fd_dalpha, 1e-4, dalpha_floor, "public dalpha", n);
}

static void test_gradients_match_finite_differences(void **state) {
    (void)state;
    static const int sizes[] = {1, 2, 5, 17, 40};
    pm_rng rng;
    pm_rng_init(&rng, 12, 0);
    float r[64], v[64];
    long double rl[64];
    for (int si = 0; si < 5; si++)
        for (int ai = 0; ai < NUM_ALPHAS; ai++)
            for (int draw = 0; draw < 2; draw++) {
                int n = sizes[si];
                float alpha = ALPHAS[ai];
                float k = random_k(&rng, n);
                /* Keep every r_i clear of t (in units of alpha) so no stencil crosses the kink
                 * of F' at 0; redraw the rare scores that sit on it. */
                int tries = 0;
                double closest;
                do {
                    random_normal(&rng, r, n, draw ? 1.0 : 2.0 * alpha);
                    widen(r, n, rl);
                    long double t = brute_lapsum_threshold(rl, n, k, alpha);
                    closest = INFINITY;
                    for (int i = 0; i < n; i++)
                        closest = fmin(closest, (double)(fabsl(rl[i] - t) / alpha));
                } while (closest < 1e-6 && ++tries < 20);
                assert_true(closest >= 1e-6);
                random_normal(&rng, v, n, 1.0);
                check_gradients(r, n, k, alpha, v);
            }
}

/* Far from 0 the float t the forward returns is off by a sizeable fraction of alpha; the
 * public backward must still match the double core at the double threshold. */
static void test_public_backward_matches_double_core(void **state) {
    (void)state;
    enum { n = 16 };
    float r[n], v[n], p[n], dr_public[n], dr_core[n], dk, dalpha;
    pm_rng rng;
    pm_rng_init(&rng, 14, 0);
    random_normal(&rng, r, n, 0.05);
    for (int i = 0; i < n; i++) r[i] += 3000.0f;
    random_normal(&rng, v, n, 1.0);
    const float k = 5.4f, alpha = 0.01f;
    double *scratch = malloc(sizeof(double) * lapsum_scratch_size(n)), dk_core, dalpha_core;
    assert_non_null(scratch);
    double t = lapsum_threshold(r, n, k, alpha, scratch);
    free(scratch);
    lapsum_vjp(r, n, alpha, t, v, dr_core, &dk_core, &dalpha_core);

    float t_public = pm_lapsum_forward(r, n, k, alpha, p);
    assert_true(t_public != t); /* the rounding this test is about */
    assert_int_equal(pm_lapsum_backward(r, n, k, alpha, t_public, v, dr_public, &dk, &dalpha),
                     PM_OK);
    double dr_scale = max_abs_float(dr_core, n);
    for (int j = 0; j < n; j++)
        assert_close(dr_public[j], dr_core[j], 1e-6, 1e-7 * dr_scale, "dr", j);
    assert_close(dk, dk_core, 1e-6, 0.0, "dk", 0);
    assert_close(dalpha, dalpha_core, 1e-6, 0.0, "dalpha", 0);
}

/* Forward and backward on r, checking only what must hold for any valid input. */
static void check_stable(const float *r, int n, float k, float alpha, pm_rng *rng) {
    static float p[MAX_N], v[MAX_N], dr[MAX_N];
    static long double rl[MAX_N];
    float t = pm_lapsum_forward(r, n, k, alpha, p);
    assert_true(isfinite(t));
    widen(r, n, rl);
    long double t_ref = brute_lapsum_threshold(rl, n, k, alpha);
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        assert_true(isfinite(p[i]) && p[i] >= 0.0f && p[i] <= 1.0f);
        assert_close(p[i], brute_laplace_cdf((rl[i] - t_ref) / alpha), 0.0, 1e-6, "p", i);
        sum += p[i];
    }
    assert_close(sum, k, 0.0, 1e-4, "sum p", n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (r[i] > r[j]) assert_true(p[i] >= p[j]);

    random_normal(rng, v, n, 1.0);
    float dk, dalpha;
    assert_int_equal(pm_lapsum_backward(r, n, k, alpha, t, v, dr, &dk, &dalpha), PM_OK);
    for (int j = 0; j < n; j++) assert_true(isfinite(dr[j]));
    assert_true(isfinite(dk) && isfinite(dalpha));
}

static void test_extreme_inputs_stay_finite(void **state) {
    (void)state;
    static const float alphas[] = {1e-3f, 1e-2f, 1.0f, 1e3f};
    static const int sizes[] = {2, 64, 512};
    static float r[MAX_N];
    pm_rng rng;
    pm_rng_init(&rng, 13, 0);
    for (int si = 0; si < 3; si++)
        for (int ai = 0; ai < 4; ai++) {
            int n = sizes[si];
            float alpha = alphas[ai];
            const float ks[] = {1e-3f, 0.5f, n / 3.0f + 0.3f, n - 0.5f, n - 1e-3f};
            for (int ki = 0; ki < 5; ki++) {
                float k = ks[ki];
                /* Spread over ±1e4. */
                for (int i = 0; i < n; i++) r[i] = (float)(2e4 * pm_rng_uniform(&rng) - 1e4);
                check_stable(r, n, k, alpha, &rng);
                /* All equal, far from 0. */
                for (int i = 0; i < n; i++) r[i] = -1e4f;
                check_stable(r, n, k, alpha, &rng);
                /* Two clusters at ±1e4: with integer k every g_i underflows. */
                for (int i = 0; i < n; i++) r[i] = i % 2 ? 1e4f : -1e4f;
                check_stable(r, n, k, alpha, &rng);
            }
        }
}

/* Between two far clusters with k = n/2, q is uniform although every g_i is ~e^{-1e7}:
 * dk must be the plain mean of v, and dr vanishes. */
static void test_underflowing_weights_keep_dk(void **state) {
    (void)state;
    float r[6] = {1e4f, -1e4f, 1e4f, -1e4f, 1e4f, -1e4f}, p[6], dr[6], dk, dalpha;
    float v[6] = {1, 2, 3, 4, 5, 6};
    float t = pm_lapsum_forward(r, 6, 3.0f, 1e-3f, p);
    assert_close(t, 0.0, 0.0, 1e-6, "t", 0);
    assert_int_equal(pm_lapsum_backward(r, 6, 3.0f, 1e-3f, t, v, dr, &dk, &dalpha), PM_OK);
    assert_close(dk, 3.5, 1e-5, 0.0, "dk", 0);
    for (int j = 0; j < 6; j++) assert_close(dr[j], 0.0, 0.0, 1e-30, "dr", j);
    assert_true(isfinite(dalpha));
}

static void expect_forward_error(const float *r, int n, float k, float alpha, float *p,
                                 const char *names) {
    pm_clear_error();
    float t = pm_lapsum_forward(r, n, k, alpha, p);
    assert_true(isnan(t));
    if (!strstr(pm_last_error(), names)) fail_msg("error '%s' lacks '%s'", pm_last_error(), names);
}

static void expect_backward_error(const float *r, int n, float k, float alpha, float t,
                                  const float *dp, float *dr, float *dk, float *dalpha,
                                  int status, const char *names) {
    pm_clear_error();
    assert_int_equal(pm_lapsum_backward(r, n, k, alpha, t, dp, dr, dk, dalpha), status);
    if (!strstr(pm_last_error(), names)) fail_msg("error '%s' lacks '%s'", pm_last_error(), names);
}

static void test_bad_input(void **state) {
    (void)state;
    float r[4] = {0.5f, -1.0f, 2.0f, 0.0f}, dp[4] = {1, 2, 3, 4}, p[4], dr[4], dk, dalpha;
    float bad_r[4] = {0.5f, -1.0f, NAN, 0.0f}, inf_r[4] = {INFINITY, 0, 0, 0};
    float bad_dp[4] = {1, -INFINITY, 3, 4};

    expect_forward_error(r, 0, 1.0f, 1.0f, p, "n = 0");
    expect_forward_error(r, -3, 1.0f, 1.0f, p, "n = -3");
    expect_forward_error(r, 4, 0.0f, 1.0f, p, "k = 0");
    expect_forward_error(r, 4, -1.0f, 1.0f, p, "k = -1");
    expect_forward_error(r, 4, 4.0f, 1.0f, p, "k = 4");
    expect_forward_error(r, 4, 5.0f, 1.0f, p, "k = 5");
    expect_forward_error(r, 4, NAN, 1.0f, p, "k = ");
    expect_forward_error(r, 4, 1.0f, 0.0f, p, "alpha = 0");
    expect_forward_error(r, 4, 1.0f, -2.0f, p, "alpha = -2");
    expect_forward_error(r, 4, 1.0f, INFINITY, p, "alpha = inf");
    expect_forward_error(r, 4, 1.0f, NAN, p, "alpha = ");
    expect_forward_error(bad_r, 4, 1.0f, 1.0f, p, "r[2]");
    expect_forward_error(inf_r, 4, 1.0f, 1.0f, p, "r[0]");
    expect_forward_error(NULL, 4, 1.0f, 1.0f, p, "r is NULL");
    expect_forward_error(r, 4, 1.0f, 1.0f, NULL, "p is NULL");

    float t = pm_lapsum_forward(r, 4, 1.5f, 1.0f, p);
    assert_true(isfinite(t));
    expect_backward_error(r, 0, 1.5f, 1.0f, t, dp, dr, &dk, &dalpha, PM_ERR_ARG, "n = 0");
    expect_backward_error(r, 4, 0.0f, 1.0f, t, dp, dr, &dk, &dalpha, PM_ERR_ARG, "k = 0");
    expect_backward_error(r, 4, 4.0f, 1.0f, t, dp, dr, &dk, &dalpha, PM_ERR_ARG, "k = 4");
    expect_backward_error(r, 4, 1.5f, 0.0f, t, dp, dr, &dk, &dalpha, PM_ERR_ARG, "alpha = 0");
    expect_backward_error(r, 4, 1.5f, -1.0f, t, dp, dr, &dk, &dalpha, PM_ERR_ARG, "alpha");
    expect_backward_error(bad_r, 4, 1.5f, 1.0f, t, dp, dr, &dk, &dalpha, PM_ERR_NONFINITE,
                          "r[2]");
    expect_backward_error(r, 4, 1.5f, 1.0f, t, bad_dp, dr, &dk, &dalpha, PM_ERR_NONFINITE,
                          "dp[1]");
    expect_backward_error(r, 4, 1.5f, 1.0f, t, NULL, dr, &dk, &dalpha, PM_ERR_ARG,
                          "dp is NULL");
    expect_backward_error(r, 4, 1.5f, 1.0f, NAN, dp, dr, &dk, &dalpha, PM_ERR_NONFINITE,
                          "t = ");
    expect_backward_error(r, 4, 1.5f, 1.0f, -INFINITY, dp, dr, &dk, &dalpha,
                          PM_ERR_NONFINITE, "t = -inf");
    expect_backward_error(r, 4, 1.5f, 1.0f, t, dp, NULL, &dk, &dalpha, PM_ERR_ARG,
                          "dr is NULL");
    expect_backward_error(r, 4, 1.5f, 1.0f, t, dp, dr, NULL, &dalpha, PM_ERR_ARG,
                          "dk is NULL");
    expect_backward_error(r, 4, 1.5f, 1.0f, t, dp, dr, &dk, NULL, PM_ERR_ARG,
                          "dalpha is NULL");
    /* After all that, valid input still works. */
    assert_int_equal(pm_lapsum_backward(r, 4, 1.5f, 1.0f, t, dp, dr, &dk, &dalpha), PM_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threshold_and_probs_match_bisection),
        cmocka_unit_test(test_closed_forms),
        cmocka_unit_test(test_gradients_match_finite_differences),
        cmocka_unit_test(test_public_backward_matches_double_core),
        cmocka_unit_test(test_extreme_inputs_stay_finite),
        cmocka_unit_test(test_underflowing_weights_keep_dk),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
