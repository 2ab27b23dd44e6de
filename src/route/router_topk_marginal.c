/* topk-marginal, an ablation of the ProbMoE paper (its forward × backward study, Figure 2):
 * the top-k of π forward as topk, the exact-k marginal gradient backward as probmoe, with z
 * the top-k indicator. In training the weights are π_j, as under probmoe's gate. */
#include "route/router_internal.h"

const router_ops router_topk_marginal = {
    .name = "topk-marginal",
    .help = "ablation: top-k forward, ProbMoE's exact-k marginal gradient backward",
    .check = route_check_k,
    .train = {.forward = route_forward_topk, .backward = route_backward_marginal, .softmax_weights = true,
              .unnormalized = true},
    .infer = ROUTE_RULE_TOPK,
    .ablation = true,
    .max_pairs = route_max_pairs_k,
    .subset_range = route_range_exact_k,
    .scratch_doubles = route_sample_scratch,
};
