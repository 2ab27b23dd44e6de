/* probmoe-dyn, ProbMoE dynamic-k (arXiv 2606.01509): the subset distribution over sizes
 * k_min..k_max, sampled in training, its most probable subset at inference, so the number of
 * experts per token adapts (docs/ROUTING.md section 2). */
#include "core/error.h"
#include "route/router_internal.h"

/* [max(1, k − 2), k] capped at E: the ranges of the ProbMoE paper's official runs end at the
 * exact-k model's k ([6, 8] for OLMoE's k = 8, [2, 4] for Qwen's k = 4), since dynamic-k is
 * meant to match exact-k's quality with fewer active experts. --kmin/--kmax give any other. */
static void dyn_defaults(pm_router_config *cfg) {
    const int k = cfg->k;
    cfg->k_min = k - 2 > 1 ? k - 2 : 1;
    cfg->k_max = k < cfg->num_experts ? k : cfg->num_experts;
    if (cfg->k_max < 1) cfg->k_max = 1;
}

static int dyn_check(const pm_router_config *cfg) {
    if (cfg->k_min < 0 || cfg->k_max < 1 || cfg->k_min > cfg->k_max || cfg->k_max > cfg->num_experts)
        return pm_fail(PM_ERR_ARG,
                       "router config (probmoe-dyn): k_min = %d, k_max = %d; need "
                       "0 <= k_min <= k_max <= num_experts = %d and k_max >= 1",
                       cfg->k_min, cfg->k_max, cfg->num_experts);
    return PM_OK;
}

static void dyn_range(const pm_router_config *cfg, int *kmin, int *kmax) {
    *kmin = cfg->k_min;
    *kmax = cfg->k_max;
}

static int dyn_max_pairs(const pm_router_config *cfg) { return cfg->k_max; }

const router_ops router_probmoe_dyn = {
    .name = "probmoe-dyn",
    .help = "ProbMoE dynamic-k: subsets of k_min..k_max experts; the most probable one at inference",
    .defaults = dyn_defaults,
    .check = dyn_check,
    .train = {.forward = route_forward_sample, .backward = route_backward_marginal, .samples = true,
              .own_softmax = true, .softmax_weights = true, .unnormalized = true,
              .kept_doubles = route_sample_kept_doubles},
    .infer = {.forward = route_forward_map, .backward = route_backward_softmax, .softmax_weights = true},
    .max_pairs = dyn_max_pairs,
    .subset_range = dyn_range,
    .scratch_doubles = route_sample_scratch,
};
