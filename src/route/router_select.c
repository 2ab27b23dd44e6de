/* Deterministic selection (topk, densemixer, and probmoe/probmoe-dyn at inference) and the
 * vector-Jacobian products every router shares. */
#include <string.h>

#include "route/router_internal.h"
#include "route/subset_dp.h"

void softmax_vjp_add(const float *probs, const double *g, int n, double *dtheta) {
    double mean = 0.0;
    for (int i = 0; i < n; i++) mean += probs[i] * g[i];
    for (int i = 0; i < n; i++) dtheta[i] += probs[i] * (g[i] - mean);
}

void selected_weights_vjp(const float *probs, const int *selected, int count, const float *c,
                          bool renormalize, int num_experts, double *g) {
    memset(g, 0, sizeof(double) * num_experts);
    if (!renormalize) {
        for (int p = 0; p < count; p++) g[selected[p]] = c[p];
        return;
    }
    /* w_j = π_j / s, s = Σ_S π: dL/dπ_j = (c_j − Σ_S c_l w_l) / s. */
    double sum = 0.0, weighted = 0.0;
    for (int p = 0; p < count; p++) sum += probs[selected[p]];
    if (sum <= 0.0) return;
    for (int p = 0; p < count; p++) weighted += c[p] * probs[selected[p]] / sum;
    for (int p = 0; p < count; p++) g[selected[p]] = (c[p] - weighted) / sum;
}

void sort_pairs(int *experts, float *weights, int count) {
    for (int i = 1; i < count; i++) {
        int e = experts[i], j = i - 1;
        float w = weights[i];
        while (j >= 0 && experts[j] > e) {
            experts[j + 1] = experts[j];
            weights[j + 1] = weights[j];
            j--;
        }
        experts[j + 1] = e;
        weights[j + 1] = w;
    }
}

/* Weights π_j of the selected experts, divided by their sum with norm_topk_prob. */
static void probability_weights(const float *probs, const int *experts, int count, bool renormalize,
                                float *weights) {
    double sum = 0.0;
    for (int p = 0; p < count; p++) sum += probs[experts[p]];
    for (int p = 0; p < count; p++)
        weights[p] = renormalize && sum > 0.0 ? (float)(probs[experts[p]] / sum) : probs[experts[p]];
}

int deterministic_forward(const token_ctx *ctx, int *experts, float *weights) {
    const pm_router_config *cfg = &ctx->router->cfg;
    const int E = cfg->num_experts;
    int count;
    if (cfg->kind == PM_ROUTER_PROBMOE_DYN) {
        count = subset_map(ctx->logits, E, cfg->k_min, cfg->k_max, experts);
    } else if (cfg->kind == PM_ROUTER_TOPK && cfg->bias_rate > 0.0f) {
        /* DeepSeek-V3: the bias steers selection only; weights stay unbiased. */
        float *score = (float *)ctx->scratch;
        for (int i = 0; i < E; i++) score[i] = ctx->probs[i] + ctx->router->bias[i];
        count = cfg->k;
        top_k_indices(score, E, count, experts);
    } else {
        count = cfg->k;
        top_k_indices(ctx->probs, E, count, experts);
    }
    probability_weights(ctx->probs, experts, count, cfg->norm_topk_prob, weights);
    sort_pairs(experts, weights, count);
    return count;
}

void deterministic_backward(const token_ctx *ctx, const int *experts, int count, const float *c,
                            double *dtheta) {
    const pm_router_config *cfg = &ctx->router->cfg;
    double *g = ctx->scratch;
    selected_weights_vjp(ctx->probs, experts, count, c, cfg->norm_topk_prob, cfg->num_experts, g);
    memset(dtheta, 0, sizeof(double) * cfg->num_experts);
    softmax_vjp_add(ctx->probs, g, cfg->num_experts, dtheta);
}

/*
 * densemixer in training: the forward output is the sparse top-k one, but the router
 * gradient is that of the dense mixture Σ_j w_j f_j over all E experts (c holds all E).
 * With norm_topk_prob the selected weights are π_j / s and the unselected ones π_j / stop(s).
 */
void densemixer_backward(const token_ctx *ctx, const int *selected, int count, const float *c,
                         double *dtheta) {
    const pm_router_config *cfg = &ctx->router->cfg;
    const int E = cfg->num_experts;
    double *g = ctx->scratch;
    for (int j = 0; j < E; j++) g[j] = c[j];
    if (cfg->norm_topk_prob) {
        double sum = 0.0, weighted = 0.0;
        for (int p = 0; p < count; p++) sum += ctx->probs[selected[p]];
        for (int p = 0; p < count; p++) weighted += c[selected[p]] * ctx->probs[selected[p]] / sum;
        for (int j = 0; j < E; j++) g[j] = c[j] / sum;
        for (int p = 0; p < count; p++) g[selected[p]] -= weighted / sum;
    }
    memset(dtheta, 0, sizeof(double) * E);
    softmax_vjp_add(ctx->probs, g, E, dtheta);
}
