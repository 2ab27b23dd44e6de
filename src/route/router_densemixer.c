/* densemixer (yaof20/DenseMixer): the sparse top-k output forward, the dense router gradient
 * over all E experts backward, so training computes every expert for every token. */
#include "route/router_internal.h"

const router_ops router_densemixer = {
    .name = "densemixer",
    .help = "DenseMixer: top-k forward, the dense router gradient over all E experts backward",
    .check = route_check_k,
    .train = {.forward = route_forward_topk, .backward = route_backward_dense, .softmax_weights = true,
              .compute_all = true},
    .infer = ROUTE_RULE_TOPK,
    .hf_aux_loss = true,
    .max_pairs = route_max_pairs_k,
};
