/* The batched routers, one table of checks over every entry of the router table (as ggml's
 * test-backend-ops does over its operators): each router's forward against brute force,
 * dL/dlogits against central finite differences of an independent long-double reference of
 * its (surrogate) loss with the discrete choice held fixed, thread-count independence, and
 * the save/restore of its values. The reference is chosen by the blocks its rule uses, so a
 * router built from known blocks is checked without new test code; one with a block of its
 * own fails here until its reference is added. Then router-specific checks: probmoe against
 * the brute-force covariance formula and docs/ROUTING.md's worked example, auxiliary terms,
 * the selection bias, the softmoe budget, bad input. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "brute.h"
#include "check.h"
#include "route/router_internal.h"

enum { T = 5, E = 6, MAX_C = T * E };

/* Everything the reference loss needs about one forward pass. */
typedef struct {
    pm_router_config cfg;
    const route_rule *rule;
    const pm_routing *routing;
    const float *a;            /* c values, aligned with the compute list */
    long double theta0[T * E]; /* where stop-gradients are evaluated */
    long double soft_k, alpha;
} reference;

static void softmax_ld(const long double *theta, int n, long double *probs, long double *lse) {
    long double top = theta[0], sum = 0.0L;
    for (int i = 1; i < n; i++) top = fmaxl(top, theta[i]);
    for (int i = 0; i < n; i++) sum += expl(theta[i] - top);
    for (int i = 0; i < n; i++) probs[i] = expl(theta[i] - top) / sum;
    *lse = top + logl(sum);
}

/* The router's subset distribution as a brute-force constraint: its size range and, for
 * probmoe-group, its group limit. */
static brute_constraint constraint_of(const pm_router_config *cfg) {
    brute_constraint c = {0, cfg->num_experts, 1, 1};
    assert_true(pm_router_subset_range(cfg, &c.kmin, &c.kmax));
    pm_router_group_limit(cfg, &c.groups, &c.max_groups);
    return c;
}

/* L(θ) = Σ_t Σ_pairs a_p w_p(θ) + aux terms, ROUTING.md section 2 written out directly. */
static long double reference_loss(const reference *ref, const long double *theta,
                                  long double soft_k, long double alpha) {
    const pm_router_config *cfg = &ref->cfg;
    const pm_routing *routing = ref->routing;
    long double loss = 0.0L, mean_probs[E] = {0}, lse_squares = 0.0L;
    for (int t = 0; t < T; t++) {
        const long double *th = theta + t * E;
        long double probs[E], probs0[E], lse, lse0;
        softmax_ld(th, E, probs, &lse);
        softmax_ld(ref->theta0 + t * E, E, probs0, &lse0);
        for (int i = 0; i < E; i++) mean_probs[i] += probs[i] / T;
        lse_squares += lse * lse;
        const int begin = routing->offsets[t], end = routing->offsets[t + 1];
        const float *a = ref->a + routing->c_offsets[t];
        long double selected_sum = 0.0L, selected_sum0 = 0.0L;
        for (int p = begin; p < end; p++) {
            selected_sum += probs[routing->experts[p]];
            selected_sum0 += probs0[routing->experts[p]];
        }
        const route_backward_fn backward = ref->rule->backward;
        if (backward == route_backward_lapsum) {
            long double p[E], kept_sum = 0.0L;
            brute_lapsum(th, E, soft_k, alpha, p);
            for (int q = begin; q < end; q++) kept_sum += p[routing->experts[q]];
            for (int q = begin; q < end; q++)
                loss += a[q - begin] * p[routing->experts[q]] / (cfg->soft_renormalize ? kept_sum : 1.0L);
        } else if (backward == route_backward_marginal) {
            /* gate g = z + m(θ) − m(θ0): value z, gradient through the marginals; weights π_j */
            const brute_constraint constraint = constraint_of(cfg);
            long double m[E], m0[E], cov[E * E];
            brute_moments_ld_c(th, E, constraint, m, cov);
            brute_moments_ld_c(ref->theta0 + t * E, E, constraint, m0, cov);
            for (int p = begin; p < end; p++) {
                int j = routing->experts[p];
                loss += a[p - begin] * (1.0L + m[j] - m0[j]) * probs[j];
            }
        } else if (backward == route_backward_dense) {
            /* the dense mixture over all E; unselected weights use stop(Σ_S π) */
            for (int j = 0; j < E; j++) {
                bool selected = false;
                for (int p = begin; p < end; p++) selected |= routing->experts[p] == j;
                long double denominator = !cfg->norm_topk_prob ? 1.0L : selected ? selected_sum : selected_sum0;
                loss += a[j] * probs[j] / denominator;
            }
        } else if (backward == route_backward_softmax) {
            bool renormalize = cfg->norm_topk_prob && !ref->rule->unnormalized;
            for (int p = begin; p < end; p++)
                loss += a[p - begin] * probs[routing->experts[p]] / (renormalize ? selected_sum : 1.0L);
        } else {
            fail_msg("router %s: its backward block has no reference in tests/test_routers.c; add one",
                     pm_router_kind_name(cfg->kind));
        }
    }
    if (cfg->lb_coef > 0.0f) {
        long double pairs = routing->offsets[T], balance = 0.0L;
        for (int i = 0; i < E; i++) balance += routing->load[i] / pairs * mean_probs[i];
        loss += cfg->lb_coef * E * balance;
    }
    if (cfg->z_coef > 0.0f) loss += cfg->z_coef * lse_squares / T;
    return loss;
}

/* Runs forward + backward for cfg on fixed logits and compares every gradient with
 * central differences of reference_loss. */
static void check_router_gradient(pm_router_config cfg, bool training, uint64_t seed) {
    pm_rng rng;
    pm_rng_init(&rng, seed, 0);
    float logits[T * E], c[MAX_C], dlogits[T * E] = {0};
    random_normal(&rng, logits, T * E, 1.0);
    pm_router *router = pm_router_create(&cfg);
    assert_non_null(router);
    pm_routing *routing = pm_routing_create(router, T);
    assert_non_null(routing);
    assert_int_equal(pm_router_forward(router, routing, logits, T, training, &rng), 0);
    random_normal(&rng, c, routing->c_offsets[T], 1.0);
    assert_int_equal(pm_router_backward(router, dlogits, routing, logits, c, 1.0f), 0);

    static reference ref;
    ref.cfg = cfg;
    ref.rule = router_rule(router, training);
    ref.routing = routing;
    ref.a = c;
    ref.soft_k = cfg.soft_k;
    ref.alpha = cfg.alpha;
    for (int i = 0; i < T * E; i++) ref.theta0[i] = logits[i];
    long double theta[T * E];
    memcpy(theta, ref.theta0, sizeof theta);
    const long double h = 1e-5L;
    for (int i = 0; i < T * E; i++) {
        theta[i] = ref.theta0[i] + h;
        long double up = reference_loss(&ref, theta, ref.soft_k, ref.alpha);
        theta[i] = ref.theta0[i] - h;
        long double down = reference_loss(&ref, theta, ref.soft_k, ref.alpha);
        theta[i] = ref.theta0[i];
        assert_close(dlogits[i], (up - down) / (2 * h), 2e-4, 2e-6, pm_router_kind_name(cfg.kind), i);
    }
    double *d_soft_k_grad = NULL, *d_alpha_grad = NULL;
    if (router_param_find(router, "soft_k", &d_soft_k_grad) && router_param_find(router, "alpha", &d_alpha_grad)) {
        const double d_soft_k = *d_soft_k_grad, d_alpha = *d_alpha_grad;
        long double want_k = (reference_loss(&ref, theta, ref.soft_k + h, ref.alpha) -
                              reference_loss(&ref, theta, ref.soft_k - h, ref.alpha)) / (2 * h);
        long double want_alpha = (reference_loss(&ref, theta, ref.soft_k, ref.alpha + h) -
                                  reference_loss(&ref, theta, ref.soft_k, ref.alpha - h)) / (2 * h);
        assert_close(d_soft_k, want_k, 2e-4, 2e-6, "d soft_k", 0);
        assert_close(d_alpha, want_alpha, 2e-4, 2e-6, "d alpha", 0);
    }
    pm_routing_free(routing);
    pm_router_free(router);
}

static void test_gradients_topk(void **state) {
    (void)state;
    pm_router_config cfg = pm_router_config_default(PM_ROUTER_TOPK, E, 2);
    check_router_gradient(cfg, true, 1);
    cfg.norm_topk_prob = true;
    check_router_gradient(cfg, true, 2);
    cfg.lb_coef = 0.3f;
    cfg.z_coef = 0.05f;
    check_router_gradient(cfg, true, 3);
    cfg.bias_rate = 0.01f;
    check_router_gradient(cfg, false, 4);
}

static void test_gradients_probmoe(void **state) {
    (void)state;
    pm_router_config cfg = pm_router_config_default(PM_ROUTER_PROBMOE, E, 2);
    for (uint64_t seed = 10; seed < 14; seed++) check_router_gradient(cfg, true, seed);
    check_router_gradient(cfg, false, 14);
    cfg.norm_topk_prob = true; /* ignored in training, used at inference */
    check_router_gradient(cfg, true, 15);
    check_router_gradient(cfg, false, 16);
    cfg.k = 3;
    cfg.lb_coef = 0.1f;
    cfg.z_coef = 0.01f;
    check_router_gradient(cfg, true, 17);
}

static void test_gradients_probmoe_dyn(void **state) {
    (void)state;
    pm_router_config cfg = pm_router_config_default(PM_ROUTER_PROBMOE_DYN, E, 2);
    cfg.k_min = 1;
    cfg.k_max = 4;
    for (uint64_t seed = 20; seed < 24; seed++) check_router_gradient(cfg, true, seed);
    check_router_gradient(cfg, false, 24);
    cfg.k_min = 0;
    cfg.k_max = E;
    cfg.norm_topk_prob = true;
    check_router_gradient(cfg, true, 25);
    check_router_gradient(cfg, false, 26);
}

static void test_gradients_densemixer(void **state) {
    (void)state;
    pm_router_config cfg = pm_router_config_default(PM_ROUTER_DENSEMIXER, E, 2);
    check_router_gradient(cfg, true, 30);
    check_router_gradient(cfg, false, 31);
    cfg.norm_topk_prob = true;
    check_router_gradient(cfg, true, 32);
    cfg.lb_coef = 0.2f;
    check_router_gradient(cfg, true, 33);
}

static void test_gradients_softmoe(void **state) {
    (void)state;
    pm_router_config cfg = pm_router_config_default(PM_ROUTER_SOFTMOE, E, 2);
    cfg.soft_k = 2.5f;
    cfg.alpha = 0.7f;
    check_router_gradient(cfg, true, 40);
    cfg.soft_renormalize = true;
    check_router_gradient(cfg, true, 41);
    cfg.alpha = 0.1f;
    cfg.cap = 1.0f;
    cfg.z_coef = 0.02f;
    check_router_gradient(cfg, false, 42);
}

/* probmoe's router gradient equals Cov(z)·(z⊙c⊙π) + softmax-VJP(z⊙c) with the covariance
 * enumerated by brute force, for tokens in both number systems within one group. */
static void test_probmoe_against_covariance_formula(void **state) {
    (void)state;
    pm_router_config cfg = pm_router_config_default(PM_ROUTER_PROBMOE_DYN, E, 2);
    cfg.k_min = 2;
    cfg.k_max = 5;
    pm_rng rng;
    pm_rng_init(&rng, 50, 0);
    float logits[T * E], c[MAX_C], dlogits[T * E] = {0};
    /* spreads of 300 put tokens 1 and 3 in the log system, next to lane-batched ones */
    const double scales[T] = {3.0, 300.0, 0.5, 200.0, 3.0};
    for (int t = 0; t < T; t++) random_normal(&rng, logits + t * E, E, scales[t]);
    pm_router *router = pm_router_create(&cfg);
    pm_routing *routing = pm_routing_create(router, T);
    assert_int_equal(pm_router_forward(router, routing, logits, T, true, &rng), 0);
    random_normal(&rng, c, routing->c_offsets[T], 1.0);
    assert_int_equal(pm_router_backward(router, dlogits, routing, logits, c, 1.0f), 0);
    for (int t = 0; t < T; t++) {
        long double m[E], cov[E * E], probs[E], lse, zc[E] = {0}, u[E] = {0};
        long double theta[E];
        for (int i = 0; i < E; i++) theta[i] = logits[t * E + i];
        brute_moments_ld(theta, E, cfg.k_min, cfg.k_max, m, cov);
        softmax_ld(theta, E, probs, &lse);
        int size = routing->offsets[t + 1] - routing->offsets[t];
        assert_true(size >= cfg.k_min && size <= cfg.k_max);
        for (int p = routing->offsets[t]; p < routing->offsets[t + 1]; p++) {
            int j = routing->experts[p];
            assert_close(routing->weights[p], probs[j], 1e-6, 1e-37, "weight π_j", j);
            zc[j] = c[p];
            u[j] = c[p] * probs[j];
        }
        long double mean = 0.0L;
        for (int j = 0; j < E; j++) mean += probs[j] * zc[j];
        for (int i = 0; i < E; i++) {
            long double want = probs[i] * (zc[i] - mean);
            for (int j = 0; j < E; j++) want += cov[i * E + j] * u[j];
            assert_close(dlogits[t * E + i], want, 1e-5, 1e-7, "probmoe dθ", t * E + i);
        }
    }
    pm_routing_free(routing);
    pm_router_free(router);
}

/* ROUTING.md section 5: z = [1,1,0,0], c = [0.7, −0.4, ·, ·] gives
 * dθ = [0.277408, −0.208736, −0.047815, −0.020856]. Seeds are tried until the sampler
 * draws {1, 2} (probability 0.535). */
static void test_worked_example_gradient(void **state) {
    (void)state;
    const float probs[4] = {0.8f, 0.6f, 0.4f, 0.2f};
    float logits[4], dlogits[4] = {0}, c[2] = {0.7f, -0.4f};
    for (int i = 0; i < 4; i++) logits[i] = (float)log(probs[i] / (1.0 - probs[i]));
    pm_router_config cfg = pm_router_config_default(PM_ROUTER_PROBMOE, 4, 2);
    pm_router *router = pm_router_create(&cfg);
    pm_routing *routing = pm_routing_create(router, 1);
    pm_rng rng;
    int seed = 0;
    do {
        pm_rng_init(&rng, (uint64_t)seed++, 0);
        assert_int_equal(pm_router_forward(router, routing, logits, 1, true, &rng), 0);
    } while (!(routing->experts[0] == 0 && routing->experts[1] == 1) && seed < 100);
    assert_int_equal(routing->experts[0], 0);
    assert_int_equal(routing->experts[1], 1);
    assert_close(routing->weights[0], 0.623377, 0, 5e-7, "π", 0);
    assert_close(routing->weights[1], 0.233766, 0, 5e-7, "π", 1);
    assert_int_equal(pm_router_backward(router, dlogits, routing, logits, c, 1.0f), 0);
    const double want[4] = {0.277408, -0.208736, -0.047815, -0.020856};
    /* 6 digits: half a unit of the sixth decimal plus float rounding */
    for (int i = 0; i < 4; i++) assert_close(dlogits[i], want[i], 0, 6e-7, "dθ", i);
    pm_routing_free(routing);
    pm_router_free(router);
}

/* Same seed → bit-identical routing and gradients with 1 and 2 threads. */
static void test_thread_count_independence(void **state) {
    (void)state;
    enum { TOKENS = 997, EXPERTS = 16 };
    static float logits[TOKENS * EXPERTS], c[TOKENS * EXPERTS], grads[2][TOKENS * EXPERTS];
    static int experts[2][TOKENS * EXPERTS];
    static float weights[2][TOKENS * EXPERTS];
    pm_rng rng;
    pm_rng_init(&rng, 60, 0);
    random_normal(&rng, logits, TOKENS * EXPERTS, 2.0);
    random_normal(&rng, c, TOKENS * EXPERTS, 1.0);
    for (int kind = 0; kind < pm_router_kind_count(); kind++) {
        pm_router_config cfg = pm_router_config_default((pm_router_kind)kind, EXPERTS, 4);
        cfg.lb_coef = 0.01f;
        cfg.z_coef = 0.001f;
        float lb[2], mean_active[2];
        for (int run = 0; run < 2; run++) {
            omp_set_num_threads(run + 1);
            pm_router *router = pm_router_create(&cfg);
            pm_routing *routing = pm_routing_create(router, TOKENS);
            assert_int_equal(pm_router_forward(router, routing, logits, TOKENS, true, &rng), 0);
            memset(grads[run], 0, sizeof grads[run]);
            assert_int_equal(pm_router_backward(router, grads[run], routing, logits, c, 1.0f), 0);
            int pairs = routing->offsets[TOKENS];
            memcpy(experts[run], routing->experts, sizeof(int) * pairs);
            memcpy(weights[run], routing->weights, sizeof(float) * pairs);
            lb[run] = routing->lb_loss;
            mean_active[run] = (float)routing->mean_active;
            pm_routing_free(routing);
            pm_router_free(router);
        }
        omp_set_num_threads(2);
        assert_memory_equal(experts[0], experts[1], sizeof experts[0]);
        assert_memory_equal(weights[0], weights[1], sizeof weights[0]);
        assert_memory_equal(grads[0], grads[1], sizeof grads[0]);
        assert_true(lb[0] == lb[1] && mean_active[0] == mean_active[1]);
    }
}

/* Training samples of many identical tokens select expert i with frequency m_i. */
static void test_sampling_frequencies(void **state) {
    (void)state;
    enum { TOKENS = 20000 };
    static float logits[TOKENS * E];
    const float theta[E] = {1.2f, -0.3f, 0.4f, 2.0f, -1.5f, 0.0f};
    for (int t = 0; t < TOKENS; t++) memcpy(logits + t * E, theta, sizeof theta);
    pm_router_config cfg = pm_router_config_default(PM_ROUTER_PROBMOE_DYN, E, 2);
    cfg.k_min = 1;
    cfg.k_max = 4;
    pm_router *router = pm_router_create(&cfg);
    pm_routing *routing = pm_routing_create(router, TOKENS);
    pm_rng rng;
    pm_rng_init(&rng, 70, 3);
    assert_int_equal(pm_router_forward(router, routing, logits, TOKENS, true, &rng), 0);
    float m[E];
    assert_int_equal(pm_subset_marginals(theta, E, 1, 4, m), 0);
    double expected_active = 0.0;
    for (int i = 0; i < E; i++) {
        double frequency = (double)routing->load[i] / TOKENS;
        double sigma = sqrt(m[i] * (1.0 - m[i]) / TOKENS);
        assert_close(frequency, m[i], 0, 5.0 * sigma + 1e-9, "selection frequency", i);
        expected_active += m[i];
    }
    assert_close(routing->mean_active, expected_active, 0, 0.03, "mean active", 0);
    for (int t = 0; t < TOKENS; t++) {
        int size = routing->offsets[t + 1] - routing->offsets[t];
        assert_true(size >= 1 && size <= 4);
    }
    pm_routing_free(routing);
    pm_router_free(router);
}

/* Switches cfg to the other implementation of its subset distribution (dp ↔ circuit); false
 * when the router has no other (no subset distribution, or a group limit: circuit only). */
static bool other_impl(pm_router_config *cfg) {
    cfg->impl = cfg->impl == PM_IMPL_DP ? PM_IMPL_CIRCUIT : PM_IMPL_DP;
    return pm_router_config_check(cfg) == PM_OK;
}

/* Whether the subset touches at most max_groups of the constraint's groups. */
static bool within_groups(uint32_t mask, int n, brute_constraint c) {
    int touched = 0;
    for (int g = 0; g < c.groups; g++) touched += (mask >> (g * (n / c.groups)) & ((1u << (n / c.groups)) - 1)) != 0;
    return touched <= c.max_groups;
}

/* The combine weights a softmax-weighted rule must give: π_j, renormalised unless the rule
 * keeps them unnormalised. */
static void check_softmax_weights(const pm_router_config *cfg, const route_rule *rule, const float *theta,
                                  int experts, const pm_routing *routing, int t) {
    long double th[32], probs[32], lse, sum = 0.0L;
    for (int i = 0; i < experts; i++) th[i] = theta[i];
    softmax_ld(th, experts, probs, &lse);
    for (int p = routing->offsets[t]; p < routing->offsets[t + 1]; p++) sum += probs[routing->experts[p]];
    const bool renormalize = cfg->norm_topk_prob && !rule->unnormalized;
    for (int p = routing->offsets[t]; p < routing->offsets[t + 1]; p++)
        assert_close(routing->weights[p], probs[routing->experts[p]] / (renormalize ? sum : 1.0L), 1e-5, 1e-7,
                     "softmax weight", p);
}

/* softmoe's rule: the experts whose LapSum p exceeds tau, largest first up to ceil(cap·soft_k). */
static void check_lapsum_selection(const pm_router *router, const float *theta, int experts,
                                   const pm_routing *routing, int t) {
    const pm_router_config *cfg = pm_router_get_config(router);
    const float tau = *pm_router_find_value(router, "tau", NULL);
    const float soft_k = *pm_router_find_value(router, "soft_k", NULL);
    const float alpha = *pm_router_find_value(router, "alpha", NULL);
    long double r[32], p[32], kept_sum = 0.0L;
    for (int i = 0; i < experts; i++) r[i] = theta[i];
    brute_lapsum(r, experts, soft_k, alpha, p);
    const int most = (int)fminl(ceill((long double)cfg->cap * soft_k), experts);
    int above = 0;
    for (int i = 0; i < experts; i++) above += p[i] > tau;
    const int begin = routing->offsets[t], count = routing->offsets[t + 1] - begin;
    assert_int_equal(count, above < most ? above : most);
    for (int q = begin; q < begin + count; q++) kept_sum += p[routing->experts[q]];
    for (int q = begin; q < begin + count; q++) {
        const long double want = p[routing->experts[q]] / (cfg->soft_renormalize ? kept_sum : 1.0L);
        assert_true(p[routing->experts[q]] > tau);
        assert_close(routing->weights[q], want, 1e-5, 1e-6, "LapSum weight", q);
    }
}

/* Every router's forward, in both modes, against brute force for the block its rule uses:
 * top-k and the most probable subset by enumeration, samples within the range (their
 * distribution is checked by test_every_sampler_distribution), LapSum by bisection. */
static void test_every_router_forward(void **state) {
    (void)state;
    enum { TOKENS = 300, EXPERTS = 8 };
    static float logits[TOKENS * EXPERTS];
    pm_rng rng;
    pm_rng_init(&rng, 80, 0);
    random_normal(&rng, logits, TOKENS * EXPERTS, 1.5);
    for (int kind = 0; kind < pm_router_kind_count(); kind++)
        for (int variant = 0; variant < 4; variant++) {
            const int norm = variant & 1;
            pm_router_config cfg = pm_router_config_default(kind, EXPERTS, 3);
            cfg.norm_topk_prob = norm;
            cfg.soft_renormalize = norm;
            if (variant >= 2 && !other_impl(&cfg)) continue;
            pm_router *router = pm_router_create(&cfg);
            pm_routing *routing = pm_routing_create(router, TOKENS);
            for (int training = 0; training <= 1; training++) {
                const route_rule *rule = router_rule(router, training);
                assert_int_equal(pm_router_forward(router, routing, logits, TOKENS, training, &rng), 0);
                brute_constraint constraint = {cfg.k, cfg.k, 1, 1};
                if (pm_router_subset_range(&cfg, &constraint.kmin, &constraint.kmax)) constraint = constraint_of(&cfg);
                const int kmin = constraint.kmin, kmax = constraint.kmax;
                for (int t = 0; t < TOKENS; t++) {
                    const float *theta = logits + t * EXPERTS;
                    const int begin = routing->offsets[t], count = routing->offsets[t + 1] - begin;
                    uint32_t mask = 0;
                    for (int p = begin; p < begin + count; p++) {
                        if (p > begin) assert_true(routing->experts[p] > routing->experts[p - 1]);
                        mask |= 1u << routing->experts[p];
                    }
                    if (rule->forward == route_forward_topk)
                        assert_int_equal(mask, brute_map(theta, EXPERTS, cfg.k, cfg.k));
                    else if (rule->forward == route_forward_map)
                        assert_int_equal(mask, brute_map_c(theta, EXPERTS, constraint));
                    else if (rule->forward == route_forward_sample)
                        assert_true(count >= kmin && count <= kmax && within_groups(mask, EXPERTS, constraint));
                    else if (rule->forward == route_forward_lapsum)
                        check_lapsum_selection(router, theta, EXPERTS, routing, t);
                    else
                        fail_msg("router %s: its forward block has no reference here; add one", pm_router_kind_name(kind));
                    if (rule->softmax_weights) check_softmax_weights(&cfg, rule, theta, EXPERTS, routing, t);
                    const int compute = routing->c_offsets[t + 1] - routing->c_offsets[t];
                    assert_int_equal(compute, rule->compute_all ? EXPERTS : count);
                }
            }
            pm_routing_free(routing);
            pm_router_free(router);
        }
}

/* Every sampling router's subsets of many identical tokens follow p(S) of its range, by a
 * chi-square test over all subsets against brute-force probabilities. */
static void test_every_sampler_distribution(void **state) {
    (void)state;
    enum { TOKENS = 20000, EXPERTS = 5 };
    static float logits[TOKENS * EXPERTS];
    const float theta[EXPERTS] = {1.2f, -0.3f, 0.4f, 2.0f, -1.5f};
    for (int t = 0; t < TOKENS; t++) memcpy(logits + t * EXPERTS, theta, sizeof theta);
    int samplers = 0;
    for (int variant = 0; variant < 2 * pm_router_kind_count(); variant++) {
        const int kind = variant / 2;
        pm_router_config cfg = pm_router_config_default(kind, EXPERTS, 2);
        if (!pm_router_samples(&cfg) || (variant % 2 && !other_impl(&cfg))) continue;
        samplers++;
        const brute_constraint constraint = constraint_of(&cfg);
        pm_router *router = pm_router_create(&cfg);
        pm_routing *routing = pm_routing_create(router, TOKENS);
        pm_rng rng;
        pm_rng_init(&rng, 90 + (uint64_t)kind, 0);
        assert_int_equal(pm_router_forward(router, routing, logits, TOKENS, true, &rng), 0);
        long double prob[1 << EXPERTS];
        long counts[1 << EXPERTS] = {0};
        brute_subset_probs_c(theta, EXPERTS, constraint, prob);
        for (int t = 0; t < TOKENS; t++) {
            uint32_t mask = 0;
            for (int p = routing->offsets[t]; p < routing->offsets[t + 1]; p++) mask |= 1u << routing->experts[p];
            counts[mask]++;
        }
        double chi2 = 0.0;
        int cells = 0;
        for (int mask = 0; mask < 1 << EXPERTS; mask++) {
            if (prob[mask] == 0.0L) {
                assert_int_equal(counts[mask], 0);
                continue;
            }
            const double expected = (double)(prob[mask] * TOKENS);
            chi2 += (counts[mask] - expected) * (counts[mask] - expected) / expected;
            cells++;
        }
        /* mean cells − 1, sd sqrt(2(cells − 1)): 6 sd is a false alarm once in 10^9 */
        assert_true(chi2 < (cells - 1) + 6.0 * sqrt(2.0 * (cells - 1)));
        pm_routing_free(routing);
        pm_router_free(router);
    }
    assert_true(samplers >= 1);
}

/* Every router's gradient against its reference in both modes, with and without the
 * renormalisation and the auxiliary terms. */
static void test_every_router_gradient(void **state) {
    (void)state;
    for (int kind = 0; kind < pm_router_kind_count(); kind++)
        for (int variant = 0; variant < 4; variant++)
            for (int training = 0; training <= 1; training++) {
                pm_router_config cfg = pm_router_config_default(kind, E, 2);
                cfg.norm_topk_prob = variant >= 1;
                cfg.soft_renormalize = variant >= 1;
                if (variant >= 2) {
                    cfg.lb_coef = 0.2f;
                    cfg.z_coef = 0.03f;
                }
                /* variant 3: the other implementation of p(S), where the router has one */
                if (variant == 3 && !other_impl(&cfg)) continue;
                check_router_gradient(cfg, training, 100 + 10 * (uint64_t)kind + 2 * (uint64_t)variant +
                                                          (uint64_t)training);
            }
}

/* Every router's values survive a round trip: a router trained a few batches (bias_rate > 0
 * where the router takes it) and a fresh one given its values route a batch bit for bit
 * alike, in both modes. */
static void test_every_router_values_round_trip(void **state) {
    (void)state;
    enum { TOKENS = 64, EXPERTS = 8 };
    static float logits[TOKENS * EXPERTS], c[TOKENS * EXPERTS], dlogits[TOKENS * EXPERTS];
    pm_rng rng;
    pm_rng_init(&rng, 95, 0);
    for (int kind = 0; kind < pm_router_kind_count(); kind++) {
        pm_router_config cfg = pm_router_config_default(kind, EXPERTS, 2);
        cfg.bias_rate = 0.05f;
        if (pm_router_config_check(&cfg) < 0) cfg.bias_rate = 0.0f;
        pm_router *trained = pm_router_create(&cfg), *fresh = pm_router_create(&cfg);
        pm_routing *a = pm_routing_create(trained, TOKENS), *b = pm_routing_create(fresh, TOKENS);
        for (int step = 0; step < 3; step++) {
            random_normal(&rng, logits, TOKENS * EXPERTS, 1.0 + step);
            assert_int_equal(pm_router_forward(trained, a, logits, TOKENS, true, &rng), 0);
            random_normal(&rng, c, a->c_offsets[TOKENS], 1.0);
            assert_int_equal(pm_router_backward(trained, dlogits, a, logits, c, 1.0f), 0);
            pm_router_step(trained);
        }
        /* learnable values move by hand here (the trainer's optimizer is not in this test) */
        for (int v = 0; v < pm_router_value_count(trained); v++) {
            pm_router_value value;
            assert_int_equal(pm_router_value_get(trained, v, &value), 0);
            if (value.learnable) value.values[0] *= 1.1f;
        }
        assert_int_equal(pm_router_copy_values(fresh, trained), 0);
        random_normal(&rng, logits, TOKENS * EXPERTS, 2.0);
        for (int training = 0; training <= 1; training++) {
            pm_rng same;
            pm_rng_init(&same, 96, 0);
            assert_int_equal(pm_router_forward(trained, a, logits, TOKENS, training, &same), 0);
            assert_int_equal(pm_router_forward(fresh, b, logits, TOKENS, training, &same), 0);
            assert_memory_equal(a->offsets, b->offsets, sizeof(int) * (TOKENS + 1));
            assert_memory_equal(a->experts, b->experts, sizeof(int) * a->offsets[TOKENS]);
            assert_memory_equal(a->weights, b->weights, sizeof(float) * a->offsets[TOKENS]);
        }
        if (cfg.bias_rate > 0.0f) {
            /* the bias moved, so the round trip is not trivially of zeros */
            const float *bias = pm_router_find_value(trained, "selection_bias", NULL);
            float moved = 0.0f;
            for (int e = 0; e < EXPERTS; e++) moved += fabsf(bias[e]);
            assert_true(moved > 0.0f);
        }
        pm_routing_free(a);
        pm_routing_free(b);
        pm_router_free(trained);
        pm_router_free(fresh);
    }
}

/* The Switch loss equals its coefficient at perfect balance; the z-loss is coef·mean lse². */
static void test_auxiliary_values(void **state) {
    (void)state;
    float logits[4 * 4] = {0};
    for (int t = 0; t < 4; t++) logits[t * 4 + t] = 2.0f; /* token t prefers expert t */
    pm_router_config cfg = pm_router_config_default(PM_ROUTER_TOPK, 4, 1);
    cfg.lb_coef = 0.01f;
    cfg.z_coef = 0.1f;
    pm_router *router = pm_router_create(&cfg);
    pm_routing *routing = pm_routing_create(router, 4);
    assert_int_equal(pm_router_forward(router, routing, logits, 4, true, NULL), 0);
    assert_close(routing->lb_loss, 0.01, 1e-6, 0, "balanced Switch loss", 0);
    double lse = log(exp(2.0) + 3.0);
    assert_close(routing->z_loss, 0.1 * lse * lse, 1e-6, 0, "z-loss", 0);
    /* all tokens to expert 0: f = e_0, so the loss is coef·E·P_0 */
    for (int t = 0; t < 4; t++) {
        memset(logits + t * 4, 0, sizeof(float) * 4);
        logits[t * 4] = 2.0f;
    }
    assert_int_equal(pm_router_forward(router, routing, logits, 4, true, NULL), 0);
    assert_close(routing->lb_loss, 0.01 * 4 * exp(2.0) / (exp(2.0) + 3.0), 1e-6, 0, "collapsed", 0);
    pm_routing_free(routing);
    pm_router_free(router);
}

/* DeepSeek-V3 bias: overloaded experts' bias falls, underloaded ones' rises, and a large
 * bias moves selection without changing the weights. */
static void test_selection_bias(void **state) {
    (void)state;
    float logits[2 * 4] = {3, 2, 1, 0, 3, 2, 1, 0};
    pm_router_config cfg = pm_router_config_default(PM_ROUTER_TOPK, 4, 1);
    cfg.bias_rate = 0.5f;
    pm_router *router = pm_router_create(&cfg);
    pm_routing *routing = pm_routing_create(router, 2);
    assert_int_equal(pm_router_forward(router, routing, logits, 2, true, NULL), 0);
    assert_int_equal(routing->experts[0], 0);
    pm_router_step(router);
    const float *bias = pm_router_find_value(router, "selection_bias", NULL);
    assert_close(bias[0], -0.5, 0, 0, "bias of the overloaded expert", 0);
    for (int i = 1; i < 4; i++) assert_close(bias[i], 0.5, 0, 0, "bias", i);
    pm_router_step(router); /* no load since: mean = load, no change */
    assert_close(bias[1], 0.5, 0, 0, "bias after an empty step", 1);
    assert_int_equal(pm_router_forward(router, routing, logits, 2, true, NULL), 0);
    /* scores π + b: expert 1 (0.237 + 0.5) now beats expert 0 (0.644 − 0.5) */
    assert_int_equal(routing->experts[0], 1);
    double z = exp(3.0) + exp(2.0) + exp(1.0) + 1.0;
    assert_close(routing->weights[0], exp(2.0) / z, 1e-6, 0, "unbiased weight", 0);
    pm_routing_free(routing);
    pm_router_free(router);
}

static void test_softmoe_budget(void **state) {
    (void)state;
    const float eta[4] = {0.3f, -1.0f, 0.5f, 0.0f}, d_k[4] = {0.2f, -0.7f, 1.1f, 0.4f};
    float k[4], d_eta[4] = {0};
    assert_int_equal(pm_softmoe_budget_forward(k, eta, 4, 10.0f), 0);
    double sum = 0.0;
    for (int l = 0; l < 4; l++) sum += k[l];
    assert_close(sum, 10.0, 1e-6, 0, "total budget", 0);
    assert_int_equal(pm_softmoe_budget_backward(d_eta, eta, d_k, 4, 10.0f), 0);
    for (int l = 0; l < 4; l++) {
        long double up = 0, down = 0, shares_up[4], shares_down[4], lse;
        long double e_up[4], e_down[4];
        for (int m = 0; m < 4; m++) e_up[m] = e_down[m] = eta[m];
        e_up[l] += 1e-6L;
        e_down[l] -= 1e-6L;
        softmax_ld(e_up, 4, shares_up, &lse);
        softmax_ld(e_down, 4, shares_down, &lse);
        for (int m = 0; m < 4; m++) {
            up += d_k[m] * (1 + 6 * shares_up[m]);
            down += d_k[m] * (1 + 6 * shares_down[m]);
        }
        assert_close(d_eta[l], (up - down) / 2e-6L, 1e-4, 1e-6, "d eta", l);
    }
    assert_true(pm_softmoe_budget_forward(k, eta, 4, 4.0f) < 0);
    assert_non_null(strstr(pm_last_error(), "K = 4"));
}

static void expect_config_error(pm_router_config cfg, const char *needle) {
    assert_true(pm_router_config_check(&cfg) < 0);
    assert_null(pm_router_create(&cfg));
    if (!strstr(pm_last_error(), needle)) fail_msg("message '%s' lacks '%s'", pm_last_error(), needle);
}

static void test_bad_input(void **state) {
    (void)state;
    pm_router_config cfg = pm_router_config_default(PM_ROUTER_TOPK, 8, 9);
    expect_config_error(cfg, "k = 9");
    cfg = pm_router_config_default(PM_ROUTER_PROBMOE_DYN, 8, 2);
    cfg.k_min = 5;
    cfg.k_max = 3;
    expect_config_error(cfg, "k_min = 5, k_max = 3");
    cfg = pm_router_config_default(PM_ROUTER_SOFTMOE, 8, 2);
    cfg.alpha = 0.0f;
    expect_config_error(cfg, "alpha = 0");
    cfg = pm_router_config_default(PM_ROUTER_SOFTMOE, 8, 2);
    cfg.soft_k = 8.0f;
    expect_config_error(cfg, "soft_k = 8");
    cfg = pm_router_config_default(PM_ROUTER_PROBMOE, 8, 2);
    cfg.bias_rate = 0.1f;
    expect_config_error(cfg, "topk only");
    cfg.bias_rate = 0.0f;
    cfg.lb_coef = NAN;
    expect_config_error(cfg, "lb_coef");
    pm_router_kind group;
    assert_int_equal(pm_router_kind_parse("probmoe-group", &group), PM_OK);
    cfg = pm_router_config_default(group, 8, 3);
    cfg.groups = 3;
    expect_config_error(cfg, "groups = 3 does not divide num_experts = 8");
    cfg.groups = 4;
    cfg.max_groups = 5;
    expect_config_error(cfg, "max_groups = 5 > groups = 4");
    cfg.max_groups = 1;
    expect_config_error(cfg, "k = 3, but max_groups = 1 groups of 2 experts hold at most 2");
    cfg.groups = 0;
    expect_config_error(cfg, "groups = 0, max_groups = 1; both must be at least 1");
    cfg.groups = 4;
    cfg.max_groups = 0;
    expect_config_error(cfg, "max_groups = 0");
    cfg.max_groups = 2;
    assert_int_equal(pm_router_config_check(&cfg), PM_OK);
    cfg.impl = PM_IMPL_DP;
    expect_config_error(cfg, "cannot express the group limit");
    cfg = pm_router_config_default(PM_ROUTER_TOPK, 8, 2);
    cfg.impl = PM_IMPL_CIRCUIT;
    expect_config_error(cfg, "topk has no subset distribution");
    cfg.impl = 7;
    expect_config_error(cfg, "impl = 7");
    cfg = pm_router_config_default(PM_ROUTER_PROBMOE_DYN, 4096, 8);
    cfg.k_min = 0;
    cfg.k_max = 4096;
    cfg.impl = PM_IMPL_CIRCUIT;
    expect_config_error(cfg, "router config (probmoe-dyn): circuit: the size range would need about");
    cfg = pm_router_config_default((pm_router_kind)17, 8, 2);
    expect_config_error(cfg, "kind = 17");
    cfg = pm_router_config_default(PM_ROUTER_TOPK, 0, 1);
    expect_config_error(cfg, "num_experts = 0");

    pm_router_kind kind;
    assert_true(pm_router_kind_parse("top2", &kind) < 0);
    assert_non_null(strstr(pm_last_error(), "unknown router 'top2'"));
    assert_int_equal(pm_router_kind_parse("probmoe-dyn", &kind), 0);
    assert_int_equal(kind, PM_ROUTER_PROBMOE_DYN);

    cfg = pm_router_config_default(PM_ROUTER_PROBMOE, 4, 2);
    pm_router *router = pm_router_create(&cfg);
    pm_routing *routing = pm_routing_create(router, 2);
    float logits[3 * 4] = {0}, dlogits[3 * 4], c[8] = {0};
    assert_true(pm_router_backward(router, dlogits, routing, logits, c, 1.0f) < 0);
    assert_non_null(strstr(pm_last_error(), "pm_router_forward first"));
    assert_true(pm_router_forward(router, routing, logits, 3, true, NULL) < 0);
    assert_non_null(strstr(pm_last_error(), "T = 3"));
    assert_true(pm_router_forward(router, routing, logits, 2, true, NULL) < 0);
    assert_non_null(strstr(pm_last_error(), "rng"));
    logits[6] = NAN;
    pm_rng rng;
    pm_rng_init(&rng, 1, 1);
    assert_int_equal(pm_router_forward(router, routing, logits, 2, true, &rng), PM_ERR_NONFINITE);
    assert_non_null(strstr(pm_last_error(), "token 1, expert 2"));
    pm_router_config other = pm_router_config_default(PM_ROUTER_TOPK, 5, 2);
    pm_router *other_router = pm_router_create(&other);
    logits[6] = 0.0f;
    assert_true(pm_router_forward(other_router, routing, logits, 2, false, NULL) < 0);
    assert_non_null(strstr(pm_last_error(), "another router"));
    pm_router_free(other_router);
    pm_routing_free(routing);
    pm_router_free(router);
}

/* The backward pass from the kept forward tables equals the one that recomputes them, bit for
 * bit (the same operations on the same numbers), for exact-k and a size range, with a partly
 * filled last group (recomputed either way) and tokens in the log system mixed in. */
static void test_kept_tables_match_recomputation(void **state) {
    (void)state;
    const int tokens = 29, experts = 64;
    for (int variant = 0; variant < 2; variant++) {
        pm_router_config cfg = pm_router_config_default(variant ? PM_ROUTER_PROBMOE_DYN : PM_ROUTER_PROBMOE, experts, 8);
        pm_router *router = pm_router_create(&cfg);
        pm_routing *routing = pm_routing_create(router, tokens);
        assert_non_null(routing);
        assert_non_null(routing->state->kept_tables);
        pm_rng rng;
        pm_rng_init(&rng, 11 + variant, 0);
        float *logits = malloc(sizeof(float) * tokens * experts), *c = malloc(sizeof(float) * tokens * experts);
        float *kept = calloc((size_t)tokens * experts, sizeof(float)), *recomputed = calloc((size_t)tokens * experts, sizeof(float));
        random_normal(&rng, logits, tokens * experts, 1.5);
        random_normal(&rng, c, tokens * experts, 1.0);
        for (int i = 0; i < experts; i++) logits[3 * experts + i] *= 200.0f; /* token 3: the log system */
        assert_int_equal(pm_router_forward(router, routing, logits, tokens, true, &rng), PM_OK);
        assert_true(routing->state->tables_kept);
        assert_int_equal(pm_router_backward(router, kept, routing, logits, c, 1.0f), PM_OK);
        routing->state->tables_kept = false;
        assert_int_equal(pm_router_backward(router, recomputed, routing, logits, c, 1.0f), PM_OK);
        assert_memory_equal(kept, recomputed, sizeof(float) * tokens * experts);
        free(logits), free(c), free(kept), free(recomputed);
        pm_routing_free(routing);
        pm_router_free(router);
    }
}

/* The sampling rules compute π and lse themselves in training, from their DP's exponentials:
 * bit for bit the batch softmax that inference uses (E not a multiple of 8, a partly filled
 * last group, a token in the log system). */
static void test_own_softmax_matches_batch_softmax(void **state) {
    (void)state;
    const int tokens = 29, experts = 60;
    pm_router_kind kinds[3] = {PM_ROUTER_PROBMOE, PM_ROUTER_PROBMOE_DYN, 0};
    assert_int_equal(pm_router_kind_parse("sample-softmax", &kinds[2]), PM_OK);
    for (int k = 0; k < 3; k++) {
        pm_router_config cfg = pm_router_config_default(kinds[k], experts, 6);
        cfg.z_coef = 1e-3f; /* lse feeds the z-loss */
        pm_router *router = pm_router_create(&cfg);
        pm_routing *routing = pm_routing_create(router, tokens);
        assert_true(router_rule(router, true)->own_softmax);
        pm_rng rng;
        pm_rng_init(&rng, 21 + k, 0);
        float *logits = malloc(sizeof(float) * tokens * experts);
        float *trained = malloc(sizeof(float) * tokens * experts), *trained_lse = malloc(sizeof(float) * tokens);
        random_normal(&rng, logits, tokens * experts, 2.0);
        for (int i = 0; i < experts; i++) logits[5 * experts + i] *= 300.0f; /* the log system */
        assert_int_equal(pm_router_forward(router, routing, logits, tokens, true, &rng), PM_OK);
        const float z_loss = routing->z_loss;
        memcpy(trained, pm_routing_probs(routing), sizeof(float) * tokens * experts);
        memcpy(trained_lse, routing->state->lse, sizeof(float) * tokens);
        assert_int_equal(pm_router_forward(router, routing, logits, tokens, false, NULL), PM_OK);
        assert_memory_equal(trained, pm_routing_probs(routing), sizeof(float) * tokens * experts);
        assert_memory_equal(trained_lse, routing->state->lse, sizeof(float) * tokens);
        assert_true(z_loss == routing->z_loss);
        free(logits), free(trained), free(trained_lse);
        pm_routing_free(routing);
        pm_router_free(router);
    }
}


/* --impl circuit gives the DP's results: the same samples draw for draw (the circuit's sampler
 * spends its uniforms as the DP's does), gradients equal up to rounding, the same inference, for
 * every router with a subset distribution and no group limit; E = 64 with tokens in the log
 * system and a partly filled last group, and a small E. */
static void test_impl_circuit_matches_dp(void **state) {
    (void)state;
    const int shapes[][2] = {{64, 8}, {12, 3}};
    const int tokens = 29;
    int routers = 0;
    for (int s = 0; s < 2; s++)
        for (int kind = 0; kind < pm_router_kind_count(); kind++) {
            const int experts = shapes[s][0];
            pm_router_config dp = pm_router_config_default(kind, experts, shapes[s][1]), circ = dp;
            if (dp.impl != PM_IMPL_DP || !other_impl(&circ)) continue;
            routers++;
            pm_router *a = pm_router_create(&dp), *b = pm_router_create(&circ);
            assert_false(pm_router_circuit_info(a, NULL));
            pm_circuit_info info;
            assert_true(pm_router_circuit_info(b, &info));
            assert_true(info.nodes > experts && info.edges > info.nodes && info.bytes > 0);
            pm_routing *ra = pm_routing_create(a, tokens), *rb = pm_routing_create(b, tokens);
            pm_rng rng;
            pm_rng_init(&rng, 1600 + (uint64_t)kind, 0);
            float *logits = malloc(sizeof(float) * tokens * experts), *c = malloc(sizeof(float) * tokens * experts);
            float *da = calloc((size_t)tokens * experts, sizeof(float)), *db = calloc((size_t)tokens * experts, sizeof(float));
            random_normal(&rng, logits, tokens * experts, 1.5);
            random_normal(&rng, c, tokens * experts, 1.0);
            for (int i = 0; i < experts; i++) logits[3 * experts + i] *= 300.0f; /* the log system */
            for (int training = 1; training >= 0; training--) {
                pm_rng same_a, same_b;
                pm_rng_init(&same_a, 1700, 0);
                pm_rng_init(&same_b, 1700, 0);
                assert_int_equal(pm_router_forward(a, ra, logits, tokens, training, &same_a), PM_OK);
                assert_int_equal(pm_router_forward(b, rb, logits, tokens, training, &same_b), PM_OK);
                assert_memory_equal(ra->offsets, rb->offsets, sizeof(int) * (tokens + 1));
                assert_memory_equal(ra->experts, rb->experts, sizeof(int) * ra->offsets[tokens]);
                assert_memory_equal(ra->weights, rb->weights, sizeof(float) * ra->offsets[tokens]);
                memset(da, 0, sizeof(float) * tokens * experts);
                memset(db, 0, sizeof(float) * tokens * experts);
                assert_int_equal(pm_router_backward(a, da, ra, logits, c, 1.0f), PM_OK);
                assert_int_equal(pm_router_backward(b, db, rb, logits, c, 1.0f), PM_OK);
                float largest = 0.0f;
                for (int i = 0; i < tokens * experts; i++) largest = fmaxf(largest, fabsf(da[i]));
                for (int i = 0; i < tokens * experts; i++) assert_close(db[i], da[i], 1e-5, 1e-6 * largest, "dθ circuit vs dp", i);
            }
            free(logits), free(c), free(da), free(db);
            pm_routing_free(ra);
            pm_routing_free(rb);
            pm_router_free(a);
            pm_router_free(b);
        }
    assert_int_equal(routers, 8); /* probmoe, probmoe-dyn, topk-marginal, sample-softmax at two shapes */
}

/* probmoe-group's samples follow p(S) under the limit where it binds (chi-square against the
 * enumeration, no excluded subset drawn), and its inference is the most probable allowed subset. */
static void test_group_router_distribution(void **state) {
    (void)state;
    enum { TOKENS = 40000 };
    const int shapes[][4] = {{6, 3, 3, 2}, {8, 4, 4, 2}, {8, 2, 2, 1}, {9, 4, 3, 2}};
    const float theta[9] = {1.2f, -0.3f, 0.4f, 2.0f, -1.5f, 0.0f, 0.7f, -0.8f, 0.9f};
    static float logits[TOKENS * 9];
    pm_router_kind kind;
    assert_int_equal(pm_router_kind_parse("probmoe-group", &kind), PM_OK);
    for (int s = 0; s < 4; s++) {
        const int experts = shapes[s][0];
        pm_router_config cfg = pm_router_config_default(kind, experts, shapes[s][1]);
        cfg.groups = shapes[s][2];
        cfg.max_groups = shapes[s][3];
        const brute_constraint constraint = constraint_of(&cfg);
        assert_int_equal(constraint.groups, cfg.groups);
        for (int t = 0; t < TOKENS; t++) memcpy(logits + t * experts, theta, sizeof(float) * experts);
        pm_router *router = pm_router_create(&cfg);
        pm_routing *routing = pm_routing_create(router, TOKENS);
        pm_rng rng;
        pm_rng_init(&rng, 1800 + (uint64_t)s, 0);
        assert_int_equal(pm_router_forward(router, routing, logits, TOKENS, true, &rng), PM_OK);
        static long double prob[1 << 9];
        static long counts[1 << 9];
        memset(counts, 0, sizeof counts);
        brute_subset_probs_c(theta, experts, constraint, prob);
        for (int t = 0; t < TOKENS; t++) {
            uint32_t mask = 0;
            for (int p = routing->offsets[t]; p < routing->offsets[t + 1]; p++) mask |= 1u << routing->experts[p];
            counts[mask]++;
        }
        double chi2 = 0.0;
        int cells = 0, excluded = 0;
        for (int mask = 0; mask < 1 << experts; mask++) {
            if (prob[mask] == 0.0L) {
                assert_int_equal(counts[mask], 0);
                excluded += __builtin_popcount((unsigned)mask) == cfg.k; /* k-subsets the limit excludes */
                continue;
            }
            const double expected = (double)(prob[mask] * TOKENS);
            chi2 += (counts[mask] - expected) * (counts[mask] - expected) / expected;
            cells++;
        }
        assert_true(excluded > 0); /* the limit binds */
        assert_true(chi2 < (cells - 1) + 6.0 * sqrt(2.0 * (cells - 1)));
        assert_int_equal(pm_router_forward(router, routing, logits, 1, false, NULL), PM_OK);
        uint32_t mask = 0;
        for (int p = routing->offsets[0]; p < routing->offsets[1]; p++) mask |= 1u << routing->experts[p];
        assert_int_equal(mask, brute_map_c(theta, experts, constraint));
        pm_routing_free(routing);
        pm_router_free(router);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_own_softmax_matches_batch_softmax),
        cmocka_unit_test(test_kept_tables_match_recomputation),
        cmocka_unit_test(test_gradients_topk),
        cmocka_unit_test(test_gradients_probmoe),
        cmocka_unit_test(test_gradients_probmoe_dyn),
        cmocka_unit_test(test_gradients_densemixer),
        cmocka_unit_test(test_gradients_softmoe),
        cmocka_unit_test(test_probmoe_against_covariance_formula),
        cmocka_unit_test(test_worked_example_gradient),
        cmocka_unit_test(test_thread_count_independence),
        cmocka_unit_test(test_sampling_frequencies),
        cmocka_unit_test(test_every_router_forward),
        cmocka_unit_test(test_every_sampler_distribution),
        cmocka_unit_test(test_every_router_gradient),
        cmocka_unit_test(test_every_router_values_round_trip),
        cmocka_unit_test(test_auxiliary_values),
        cmocka_unit_test(test_selection_bias),
        cmocka_unit_test(test_softmoe_budget),
        cmocka_unit_test(test_impl_circuit_matches_dp),
        cmocka_unit_test(test_group_router_distribution),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
