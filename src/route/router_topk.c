/* topk: conventional top-k of softmax (Switch Transformer, Mixtral, OLMoE), with the optional
 * auxiliary-loss-free selection bias of DeepSeek-V3 (docs/ROUTING.md section 4). */
#include "route/router_internal.h"

/* b_i += γ·sign(mean load − load_i) from the training load since the last step. */
static void topk_step(pm_router *router) {
    const int E = router->cfg.num_experts;
    float *bias = router_state_find(router, "selection_bias");
    if (router->cfg.bias_rate <= 0.0f) return;
    double mean = 0.0;
    for (int i = 0; i < E; i++) mean += (double)router->step_load[i] / E;
    for (int i = 0; i < E; i++) {
        double gap = mean - (double)router->step_load[i];
        bias[i] += router->cfg.bias_rate * (float)((gap > 0) - (gap < 0));
    }
}

static int experts(const pm_router_config *cfg) { return cfg->num_experts; }
static float zero(const pm_router_config *cfg) { (void)cfg; return 0.0f; }

static const router_value topk_state[] = {
    {"selection_bias", "DeepSeek-V3 selection bias (bias_rate > 0), added to π for selection only", experts,
     zero},
};

const router_ops router_topk = {
    .name = "topk",
    .help = "conventional top-k of softmax; weights π_j (renormalised with norm_topk_prob)",
    .check = route_check_k,
    .train = ROUTE_RULE_TOPK,
    .infer = ROUTE_RULE_TOPK,
    .hf_aux_loss = true,
    .max_pairs = route_max_pairs_k,
    .step = topk_step,
    .state = topk_state,
    .state_count = 1,
};
