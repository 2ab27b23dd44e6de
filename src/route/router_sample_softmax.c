/* sample-softmax, an ablation of the ProbMoE paper (its forward × backward study, Figure 2):
 * an exact k-subset sample forward as probmoe, topk's softmax gradient of the chosen experts
 * backward (no marginal term); top-k of π at inference. */
#include "route/router_internal.h"

const router_ops router_sample_softmax = {
    .name = "sample-softmax",
    .help = "ablation: ProbMoE's sampled k-subset forward, top-k's softmax gradient backward",
    .check = route_check_k,
    .train = {.forward = route_forward_sample, .backward = route_backward_softmax, .samples = true, .own_softmax = true,
              .softmax_weights = true, .unnormalized = true},
    .infer = ROUTE_RULE_TOPK,
    .ablation = true,
    .max_pairs = route_max_pairs_k,
    .subset_range = route_range_exact_k,
    .scratch_doubles = route_sample_scratch,
};
