/* probmoe-group: ProbMoE exact-k under DeepSeek-V3's group limit. The E experts form G equal,
 * contiguous groups (e.g. the machines that hold them) and a token's k experts come from at
 * most M of them. Where DeepSeek-V3 picks the M best groups and then the top-k inside them (a
 * heuristic), this router uses the exact distribution p(S) ∝ ∏ exp(θ_i) over the k-subsets that
 * meet the limit: samples and the straight-through marginal gradient in training, the most
 * probable such subset at inference, all on a compiled circuit (circuit_compile.c). */
#include "core/error.h"
#include "route/circuit_compile.h"
#include "route/router_internal.h"

/* G: the largest divisor of E up to 8 that leaves groups of at least 2 (8 of 256 in
 * DeepSeek-V3); M: half the groups (4 of 8 there), below k so that the limit binds, and at
 * least the groups k experts need. */
static void group_defaults(pm_router_config *cfg) {
    const int E = cfg->num_experts, k = cfg->k;
    int groups = 1;
    for (int g = 2; g <= 8 && g <= E / 2; g++)
        if (E % g == 0) groups = g;
    const int size = E / groups, needed = k > 0 ? (k + size - 1) / size : 1;
    const int half = groups / 2 < k - 1 ? groups / 2 : k - 1;
    cfg->groups = groups;
    cfg->max_groups = needed > half ? needed : half;
    if (cfg->max_groups < 1) cfg->max_groups = 1;
    cfg->impl = PM_IMPL_CIRCUIT;
}

static int group_check(const pm_router_config *cfg) {
    int status = route_check_k(cfg);
    if (status < 0) return status;
    const char *why = circuit_groups_invalid(cfg->num_experts, cfg->k, cfg->groups, cfg->max_groups);
    if (why) return pm_fail(PM_ERR_ARG, "router config (probmoe-group): %s", why);
    if (cfg->impl != PM_IMPL_CIRCUIT)
        return pm_fail(PM_ERR_ARG, "router config (probmoe-group): impl = dp, but the dynamic program cannot "
                       "express the group limit; probmoe-group runs on the circuit (set impl to circuit or drop "
                       "--impl dp)");
    return PM_OK;
}

static void group_limit(const pm_router_config *cfg, int *groups, int *max_groups) {
    *groups = cfg->groups;
    *max_groups = cfg->max_groups;
}

const router_ops router_probmoe_group = {
    .name = "probmoe-group",
    .help = "ProbMoE exact-k with k experts from at most M of G groups (--groups, --max-groups), exact",
    .defaults = group_defaults,
    .check = group_check,
    .train = {.forward = route_forward_sample, .backward = route_backward_marginal, .samples = true,
              .own_softmax = true, .softmax_weights = true, .unnormalized = true,
              .kept_doubles = route_sample_kept_doubles},
    .infer = {.forward = route_forward_map, .backward = route_backward_softmax, .softmax_weights = true},
    .max_pairs = route_max_pairs_k,
    .subset_range = route_range_exact_k,
    .group_limit = group_limit,
    .opt_in = true,
    .scratch_doubles = route_sample_scratch,
};
