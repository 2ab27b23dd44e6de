/* probmoe, ProbMoE exact-k (arXiv 2606.01509): an exact sample of p(S) ∝ ∏ exp(θ_i) over
 * k-subsets forward, the straight-through gate through its marginals backward; top-k of π at
 * inference (docs/ROUTING.md section 2). */
#include "route/router_internal.h"

const router_ops router_probmoe = {
    .name = "probmoe",
    .help = "ProbMoE exact-k: sampled k-subsets forward, exact marginals backward (arXiv 2606.01509)",
    .check = route_check_k,
    .train = {.forward = route_forward_sample, .backward = route_backward_marginal, .samples = true,
              .own_softmax = true, .softmax_weights = true, .unnormalized = true,
              .kept_doubles = route_sample_kept_doubles},
    .infer = ROUTE_RULE_TOPK,
    .max_pairs = route_max_pairs_k,
    .subset_range = route_range_exact_k,
    .scratch_doubles = route_sample_scratch,
};
