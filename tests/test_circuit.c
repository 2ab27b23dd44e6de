/* The circuit engine and its compilers (src/route/circuit*.c): log Z, marginals, Cov·u and the
 * MAP against brute-force enumeration for every n <= 10 and every size range, and for every
 * valid group limit (k, G, M), in both number systems and eight tokens at a time; samples by
 * chi-square and, on the cardinality circuits, draw for draw the DP's; the properties the
 * builder checks; extreme logits; bad arguments. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "brute.h"
#include "check.h"
#include "route/circuit_compile.h"
#include "route/subset_dp.h"

#define MAX_N 10
enum { LANES = CIRCUIT_LANES };

/* Lane l's results against brute force: log Z, marginals, Cov·u (max norm), Σm = E|S|. */
static void check_lane(const circuit_eval *ev, int l, const float *theta, int n, brute_constraint bc,
                       const double *u, const double *marginals, const double *cov_u, int id) {
    long double want_m[MAX_N], cov[MAX_N * MAX_N];
    assert_close(ev->log_z[l], brute_logz_c(theta, n, bc), 1e-10, 1e-10, "log Z", id);
    brute_moments_c(theta, n, bc, want_m, cov);
    double norm = 0.0, want_cov_u[MAX_N];
    for (int i = 0; i < n; i++) {
        long double acc = 0.0L;
        for (int j = 0; j < n; j++) acc += cov[i * n + j] * u[j];
        want_cov_u[i] = (double)acc;
        norm = fmax(norm, fabs(want_cov_u[i]));
    }
    for (int i = 0; i < n; i++) {
        assert_close(marginals[i], want_m[i], 1e-9, 1e-12, "marginal", id * 16 + i);
        assert_close(cov_u[i], want_cov_u[i], 0, 1e-9 * norm + 1e-12, "Cov·u", id * 16 + i);
    }
}

/* LANES tokens of logits at `scale` through c: the linear ones together, every one alone in
 * logs; each against brute force, and the MAP against enumeration. */
static void check_circuit(const circuit *c, brute_constraint bc, double scale, pm_rng *rng, int id) {
    const int n = c->num_items;
    static float theta[LANES][MAX_N];
    static double u[LANES * MAX_N], marginals[LANES * MAX_N], cov_u[LANES * MAX_N], cov_m[LANES * MAX_N];
    double *workspace = malloc(sizeof(double) * circuit_workspace(c, LANES));
    const float *lanes[LANES];
    int linear = 0, linear_lane[LANES];
    for (int l = 0; l < LANES; l++) {
        float uf[MAX_N];
        random_normal(rng, theta[l], n, scale);
        random_normal(rng, uf, n, 1.0);
        for (int i = 0; i < n; i++) u[l * n + i] = uf[i];
        if (circuit_is_linear(c, theta[l])) linear_lane[linear] = l, lanes[linear++] = theta[l];
    }
    circuit_eval ev;
    if (linear > 0) {
        /* u of the linear lanes, in their order */
        double lane_u[LANES * MAX_N];
        for (int a = 0; a < linear; a++) memcpy(lane_u + a * n, u + linear_lane[a] * n, sizeof(double) * n);
        circuit_forward(&ev, c, lanes, linear, false, workspace);
        circuit_marginals(&ev, marginals);
        circuit_cov_mv(&ev, lane_u, cov_u, cov_m);
        for (int a = 0; a < linear; a++) {
            for (int i = 0; i < n; i++) assert_close(cov_m[a * n + i], marginals[a * n + i], 1e-12, 0, "m twice", i);
            check_lane(&ev, a, lanes[a], n, bc, lane_u + a * n, marginals + a * n, cov_u + a * n, id);
        }
    }
    for (int l = 0; l < LANES; l++) {
        const float *one[1] = {theta[l]};
        circuit_forward(&ev, c, one, 1, true, workspace);
        circuit_marginals(&ev, marginals);
        circuit_cov_mv(&ev, u + l * n, cov_u, NULL);
        check_lane(&ev, 0, theta[l], n, bc, u + l * n, marginals, cov_u, id);
        int idx[MAX_N];
        double *map_workspace = malloc(sizeof(double) * circuit_map_workspace(c));
        const int size = circuit_map(c, theta[l], idx, map_workspace);
        free(map_workspace);
        uint32_t mask = 0;
        for (int p = 0; p < size; p++) mask |= 1u << idx[p];
        assert_int_equal(mask, brute_map_c(theta[l], n, bc));
    }
    free(workspace);
}

static void test_cardinality_against_brute_force(void **state) {
    (void)state;
    const double scales[] = {0.1, 3.0, 30.0};
    pm_rng rng;
    pm_rng_init(&rng, 1501, 0);
    int cases = 0;
    for (int n = 1; n <= MAX_N; n++)
        for (int kmin = 0; kmin <= n; kmin++)
            for (int kmax = kmin; kmax <= n; kmax++) {
                circuit *c = circuit_compile_cardinality(n, kmin, kmax);
                assert_non_null(c);
                assert_int_equal(c->num_roots, kmax - kmin + 1);
                const brute_constraint range = {kmin, kmax, 1, 1};
                for (int s = 0; s < 3; s++) check_circuit(c, range, scales[s], &rng, n * 100 + kmin * 10 + kmax);
                circuit_free(c);
                cases++;
            }
    assert_int_equal(cases, 285);
}

/* Every n <= 10, every G dividing n, every 1 <= M <= G and every 1 <= k <= M·n/G. */
static void test_groups_against_brute_force(void **state) {
    (void)state;
    const double scales[] = {0.1, 3.0, 30.0};
    pm_rng rng;
    pm_rng_init(&rng, 1502, 0);
    int cases = 0;
    for (int n = 1; n <= MAX_N; n++)
        for (int G = 1; G <= n; G++) {
            if (n % G) continue;
            for (int M = 1; M <= G; M++)
                for (int k = 1; k <= M * (n / G); k++) {
                    circuit *c = circuit_compile_groups(n, k, G, M);
                    assert_non_null(c);
                    assert_int_equal(c->num_roots, 1);
                    assert_int_equal(c->max_degree, k);
                    const brute_constraint limit = {k, k, G, M};
                    for (int s = 0; s < 3; s++) check_circuit(c, limit, scales[s], &rng, cases);
                    circuit_free(c);
                    cases++;
                }
        }
    assert_true(cases > 200);
}

/* Chi-square over all subsets against the enumerated probabilities, in both systems. */
static void check_sampler(const circuit *c, brute_constraint bc, const float *theta, uint64_t seed) {
    enum { DRAWS = 100000 };
    const int n = c->num_items;
    long double prob[1 << MAX_N];
    brute_subset_probs_c(theta, n, bc, prob);
    double *workspace = malloc(sizeof(double) * circuit_workspace(c, LANES));
    int *stack = malloc(sizeof(int) * (size_t)c->num_nodes);
    for (int log_domain = 0; log_domain <= 1; log_domain++) {
        static long counts[1 << MAX_N];
        memset(counts, 0, sizeof counts);
        const float *lanes[LANES];
        for (int l = 0; l < LANES; l++) lanes[l] = theta;
        circuit_eval ev;
        circuit_forward(&ev, c, lanes, log_domain ? 1 : LANES, log_domain, workspace);
        pm_rng base;
        pm_rng_init(&base, seed + (uint64_t)log_domain, 0);
        for (int d = 0; d < DRAWS; d++) {
            pm_rng rng;
            pm_rng_substream(&base, (uint32_t)d, &rng);
            int idx[MAX_N];
            const int size = circuit_sample(&ev, log_domain ? 0 : d % LANES, &rng, idx, stack);
            uint32_t mask = 0;
            for (int p = 0; p < size; p++) {
                if (p > 0) assert_true(idx[p] > idx[p - 1]);
                mask |= 1u << idx[p];
            }
            counts[mask]++;
        }
        double chi2 = 0.0;
        int cells = 0;
        for (int mask = 0; mask < 1 << n; mask++) {
            if (prob[mask] == 0.0L) {
                assert_int_equal(counts[mask], 0); /* never a subset the constraint excludes */
                continue;
            }
            const double expected = (double)(prob[mask] * DRAWS);
            chi2 += (counts[mask] - expected) * (counts[mask] - expected) / expected;
            cells++;
        }
        /* mean cells − 1, sd sqrt(2(cells − 1)): 6 sd is a false alarm once in 10^9 */
        assert_true(cells >= 2);
        assert_true(chi2 < (cells - 1) + 6.0 * sqrt(2.0 * (cells - 1)));
    }
    free(stack);
    free(workspace);
}

static void test_sampler_distribution(void **state) {
    (void)state;
    const float theta[8] = {1.2f, -0.3f, 0.4f, 2.0f, -1.5f, 0.0f, 0.7f, -0.8f};
    circuit *c = circuit_compile_groups(6, 3, 3, 2);
    check_sampler(c, (brute_constraint){3, 3, 3, 2}, theta, 10);
    circuit_free(c);
    c = circuit_compile_groups(8, 4, 4, 2);
    check_sampler(c, (brute_constraint){4, 4, 4, 2}, theta, 20);
    circuit_free(c);
    c = circuit_compile_groups(8, 2, 2, 1);
    check_sampler(c, (brute_constraint){2, 2, 2, 1}, theta, 30);
    circuit_free(c);
    c = circuit_compile_cardinality(6, 1, 4);
    check_sampler(c, (brute_constraint){1, 4, 1, 1}, theta, 40);
    circuit_free(c);
}

/* On the cardinality circuits the sampler spends its uniforms as the DP's does, so with the
 * same generator it draws the DP's subsets (a flip needs a uniform within rounding of a
 * boundary: about 1e-13 per choice). Linear tokens eight at a time, and the log system. */
static void test_samples_match_dp(void **state) {
    (void)state;
    enum { N = 16, TOKENS = 400 };
    const int ranges[][2] = {{4, 4}, {2, 6}, {0, N}, {1, 1}, {N, N}};
    pm_rng rng;
    pm_rng_init(&rng, 1503, 0);
    static float logits[TOKENS * N];
    for (int r = 0; r < 5; r++) {
        const int kmin = ranges[r][0], kmax = ranges[r][1];
        circuit *c = circuit_compile_cardinality(N, kmin, kmax);
        double *workspace = malloc(sizeof(double) * circuit_workspace(c, LANES));
        double *dp_workspace = malloc(sizeof(double) * subset_dp_workspace(N, kmax));
        int *stack = malloc(sizeof(int) * (size_t)c->num_nodes);
        for (int t = 0; t < TOKENS; t++) random_normal(&rng, logits + t * N, N, t % 50 == 7 ? 400.0 : 2.0);
        pm_rng base;
        pm_rng_init(&base, 77 + (uint64_t)r, 0);
        double *log_workspace = malloc(sizeof(double) * circuit_workspace(c, 1));
        int mismatches = 0, logs = 0;
        for (int first = 0; first < TOKENS; first += LANES) {
            /* the group's linear tokens in one pass, each log token in its own */
            const float *linear[LANES];
            int lane_of[LANES], count = 0;
            for (int l = 0; l < LANES; l++) {
                const float *theta = logits + (first + l) * N;
                lane_of[l] = circuit_is_linear(c, theta) ? count : -1;
                if (lane_of[l] >= 0) linear[count++] = theta;
            }
            circuit_eval batch, alone;
            if (count) circuit_forward(&batch, c, linear, count, false, workspace);
            for (int l = 0; l < LANES; l++) {
                const float *theta = logits + (first + l) * N;
                if (lane_of[l] < 0) {
                    circuit_forward(&alone, c, &theta, 1, true, log_workspace);
                    logs++;
                }
                pm_rng a, b;
                pm_rng_substream(&base, (uint32_t)(first + l), &a);
                pm_rng_substream(&base, (uint32_t)(first + l), &b);
                int got[N], want[N];
                const int size = lane_of[l] < 0 ? circuit_sample(&alone, 0, &a, got, stack)
                                                : circuit_sample(&batch, lane_of[l], &a, got, stack);
                subset_dp dp;
                subset_dp_forward(&dp, theta, N, kmin, kmax, dp_workspace, false);
                const int want_size = subset_dp_sample(&dp, &b, want);
                mismatches += size != want_size || memcmp(got, want, sizeof(int) * size) != 0;
            }
        }
        free(log_workspace);
        assert_true(logs > 0);
        assert_int_equal(mismatches, 0);
        free(stack);
        free(dp_workspace);
        free(workspace);
        circuit_free(c);
    }
}

/* Logits up to ±1e4 in the log system: finite, Σm = k to 1e-4, Cov·u finite. */
static void test_extreme_logits(void **state) {
    (void)state;
    enum { N = 64 };
    pm_rng rng;
    pm_rng_init(&rng, 1504, 0);
    float theta[N];
    double u[N], m[N], cov_u[N];
    circuit *c = circuit_compile_groups(N, 8, 8, 4);
    double *workspace = malloc(sizeof(double) * circuit_workspace(c, 1));
    for (int trial = 0; trial < 4; trial++) {
        random_normal(&rng, theta, N, trial < 2 ? 1e4 : 0.0);
        for (int i = 0; i < N; i++) u[i] = i % 3 - 1.0;
        assert_false(trial < 2 && circuit_is_linear(c, theta));
        const float *one[1] = {theta};
        circuit_eval ev;
        circuit_forward(&ev, c, one, 1, true, workspace);
        circuit_cov_mv(&ev, u, cov_u, m);
        double sum = 0.0;
        for (int i = 0; i < N; i++) {
            assert_true(isfinite(m[i]) && isfinite(cov_u[i]));
            sum += m[i];
        }
        assert_true(isfinite(ev.log_z[0]));
        assert_close(sum, 8.0, 0, 1e-4, "Σm", trial);
    }
    free(workspace);
    circuit_free(c);
}

static void expect_refused(circuit_builder *b, const char *needle) {
    assert_null(circuit_finish(b));
    if (!strstr(pm_last_error(), needle)) fail_msg("message '%s' lacks '%s'", pm_last_error(), needle);
}

/* The builder refuses circuits the passes would get wrong. */
static void test_builder_checks_properties(void **state) {
    (void)state;
    circuit_builder b;
    circuit_builder_init(&b, 2);
    int two[2] = {circuit_literal(&b, 0, false), circuit_literal(&b, 1, false)};
    circuit_add_root(&b, circuit_node(&b, CIRCUIT_SUM, two, 2));
    expect_refused(&b, "not smooth");

    circuit_builder_init(&b, 1);
    int both[2] = {circuit_literal(&b, 0, false), circuit_literal(&b, 0, true)};
    circuit_add_root(&b, circuit_node(&b, CIRCUIT_PRODUCT, both, 2));
    expect_refused(&b, "not decomposable");

    circuit_builder_init(&b, 2);
    int x0 = circuit_literal(&b, 0, false), x1 = circuit_literal(&b, 1, false), n1 = circuit_literal(&b, 1, true);
    int one[2] = {x0, n1}, full[2] = {x0, x1};
    int sizes[2] = {circuit_node(&b, CIRCUIT_PRODUCT, one, 2), circuit_node(&b, CIRCUIT_PRODUCT, full, 2)};
    circuit_add_root(&b, circuit_node(&b, CIRCUIT_SUM, sizes, 2));
    expect_refused(&b, "mixes subsets of sizes 1 and 2");

    circuit_builder_init(&b, 2);
    circuit_add_root(&b, circuit_literal(&b, 0, false));
    expect_refused(&b, "does not mention expert 1");

    /* a good one is accepted, with its size */
    circuit *c = circuit_compile_groups(256, 8, 8, 4);
    assert_non_null(c);
    assert_true(c->num_nodes > 0 && c->num_edges > c->num_nodes && c->bytes > (size_t)c->num_edges * sizeof(int));
    circuit_free(c);
}

static void expect_bad_groups(int E, int k, int G, int M, const char *needle) {
    assert_null(circuit_compile_groups(E, k, G, M));
    if (!strstr(pm_last_error(), needle)) fail_msg("message '%s' lacks '%s'", pm_last_error(), needle);
}

static void test_bad_arguments(void **state) {
    (void)state;
    expect_bad_groups(8, 3, 3, 1, "groups = 3 does not divide num_experts = 8");
    expect_bad_groups(8, 3, 4, 5, "max_groups = 5 > groups = 4");
    expect_bad_groups(8, 5, 4, 2, "k = 5, but max_groups = 2 groups of 2 experts hold at most 4");
    expect_bad_groups(8, 2, 0, 1, "groups = 0, max_groups = 1; both must be at least 1");
    expect_bad_groups(8, 2, 2, 0, "max_groups = 0");
    assert_null(circuit_compile_cardinality(4, 3, 2));
    assert_non_null(strstr(pm_last_error(), "sizes 3..2 of 4"));
    /* sizes whose circuit would not fit are refused before anything is built */
    assert_null(circuit_compile_cardinality(4096, 0, 4096));
    assert_non_null(strstr(pm_last_error(), "use impl = dp"));
    assert_null(circuit_compile_groups(4096, 2048, 2, 1));
    assert_non_null(strstr(pm_last_error(), "the group limit would need"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cardinality_against_brute_force),
        cmocka_unit_test(test_groups_against_brute_force),
        cmocka_unit_test(test_sampler_distribution),
        cmocka_unit_test(test_samples_match_dp),
        cmocka_unit_test(test_extreme_logits),
        cmocka_unit_test(test_builder_checks_properties),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
