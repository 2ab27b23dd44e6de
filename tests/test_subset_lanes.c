/* The SIMD-lane DP against the single-token DP: the same samples for the same generator,
 * the same Cov·u, for lanes holding different tokens (and a partly filled group). */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "core/rng_lanes.h"
#include "route/subset_dp.h"
#include "route/subset_lanes.h"

static void compare(int n, int kmin, int kmax, double scale, uint64_t seed) {
    pm_rng rng;
    pm_rng_init(&rng, seed, 0);
    float *theta = malloc(sizeof(float) * n * DP_LANES);
    float *u_float = malloc(sizeof(float) * n * DP_LANES);
    double *u = malloc(sizeof(double) * n * DP_LANES), *out = malloc(sizeof(double) * n * DP_LANES);
    random_normal(&rng, theta, n * DP_LANES, scale);
    random_normal(&rng, u_float, n * DP_LANES, 1.0);
    const float *lanes[DP_LANES];
    for (int l = 0; l < DP_LANES; l++) {
        lanes[l] = theta + (size_t)l * n;
        assert_true(subset_dp_is_linear(lanes[l], n, kmax));
        for (int j = 0; j < n; j++) u[(size_t)j * DP_LANES + l] = u_float[(size_t)l * n + j];
    }
    double *lane_space = malloc(sizeof(double) * subset_lanes_workspace(n, kmax));
    double *single_space = malloc(sizeof(double) * subset_dp_workspace(n, kmax));
    double *single_u = malloc(sizeof(double) * n), *single_out = malloc(sizeof(double) * n);
    int *picks = malloc(sizeof(int) * kmax * DP_LANES), *single_idx = malloc(sizeof(int) * n), sizes[DP_LANES];
    double *uniforms = malloc(sizeof(double) * subset_lanes_uniforms(kmin, kmax) * DP_LANES);
    subset_lanes group;
    subset_lanes_forward(&group, lanes, n, kmin, kmax, lane_space,
                         lane_space + subset_lanes_tables_size(n, kmax));
    subset_lanes_cov_mv(&group, u, out);
    for (int l = 0; l < DP_LANES; l++) {
        subset_dp single;
        subset_dp_forward(&single, lanes[l], n, kmin, kmax, single_space, false);
        assert_close(group.log_z[l], single.log_z, 1e-13, 0, "log Z", l);
        for (int j = 0; j < n; j++) single_u[j] = u[(size_t)j * DP_LANES + l];
        subset_dp_cov_mv(&single, single_u, single_out, NULL);
        /* the lanes differentiate m_j directly, m_j (u_j − DZ/Z) + w_j DG / Z: rounding relative
         * to |u| where the result cancels to about 0 (items almost always or never taken) */
        double norm = 0.0, u_norm = 0.0;
        for (int j = 0; j < n; j++) norm = fmax(norm, fabs(single_out[j])), u_norm = fmax(u_norm, fabs(single_u[j]));
        for (int j = 0; j < n; j++)
            assert_close(out[(size_t)j * DP_LANES + l], single_out[j], 1e-10, 1e-12 * (norm + u_norm), "Cov·u", j);
        /* draw d: lane s's uniforms from substream 8d + s, as the single DP's generator */
        pm_rng base;
        pm_rng_init(&base, seed, 5);
        for (int draw = 0; draw < 200; draw++) {
            uint32_t substream[DP_LANES];
            for (int s = 0; s < DP_LANES; s++) substream[s] = (uint32_t)(draw * DP_LANES + s);
            rng_uniform_lanes(&base, substream, subset_lanes_uniforms(kmin, kmax), uniforms);
            subset_lanes_sample_all(&group, uniforms, sizes, picks);
            pm_rng b;
            pm_rng_substream(&base, substream[l], &b);
            assert_int_equal(sizes[l], subset_dp_sample(&single, &b, single_idx));
            for (int i = 0; i < sizes[l]; i++) assert_int_equal(picks[(size_t)i * DP_LANES + l], single_idx[i]);
        }
    }
    free(theta), free(u_float), free(u), free(out), free(lane_space), free(single_space);
    free(single_u), free(single_out), free(picks), free(single_idx), free(uniforms);
}

static void test_lanes_match_single_token_dp(void **state) {
    (void)state;
    compare(4, 2, 2, 1.0, 1);
    compare(8, 0, 8, 0.5, 2);
    compare(16, 4, 4, 2.0, 3);
    compare(64, 8, 8, 1.0, 4);
    compare(64, 4, 12, 1.0, 5);
    compare(60, 1, 4, 3.0, 6);
    compare(256, 8, 8, 1.0, 7);
    compare(5, 5, 5, 1.0, 8);
    compare(40, 10, 20, 0.3, 9); /* beyond the register kernels (k_max > 16) */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lanes_match_single_token_dp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
