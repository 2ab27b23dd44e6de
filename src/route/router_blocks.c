/* The deterministic blocks routers are built from (top-k and most-probable-subset selection,
 * the softmax and dense backward passes) and the vector-Jacobian products they share. */
#include <string.h>

#include "core/error.h"
#include "route/router_internal.h"
#include "route/subset_dp.h"

void softmax_vjp_add(const float *probs, const double *g, int n, double *dtheta) {
    double mean = 0.0;
    /* vector partial sums: the order is fixed by the build, not by the data or the threads */
#pragma omp simd reduction(+ : mean)
    for (int i = 0; i < n; i++) mean += probs[i] * g[i];
#pragma omp simd
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

void softmax_weights(const float *probs, const int *experts, int count, bool renormalize,
                     float *weights) {
    double sum = 0.0;
    for (int p = 0; p < count; p++) sum += probs[experts[p]];
    for (int p = 0; p < count; p++)
        weights[p] = renormalize && sum > 0.0 ? (float)(probs[experts[p]] / sum) : probs[experts[p]];
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

int route_check_k(const pm_router_config *cfg) {
    if (cfg->k < 1 || cfg->k > cfg->num_experts)
        return pm_fail(PM_ERR_ARG, "router config (%s): k = %d; need 1 <= k <= num_experts = %d",
                       router_ops_of(cfg->kind)->name, cfg->k, cfg->num_experts);
    return PM_OK;
}

int route_max_pairs_k(const pm_router_config *cfg) { return cfg->k; }

void route_range_exact_k(const pm_router_config *cfg, int *kmin, int *kmax) { *kmin = *kmax = cfg->k; }

/* ---------------------------------------------------------------- forward */

void route_forward_topk(const group_ctx *group) {
    const pm_router_config *cfg = &group->router->cfg;
    const int E = cfg->num_experts;
    /* DeepSeek-V3: the bias steers selection only; weights stay unbiased. */
    const float *bias = cfg->bias_rate > 0.0f ? router_state_find(group->router, "selection_bias") : NULL;
    for (int t = group->first; t < group->first + group->count; t++) {
        const float *probs = group->probs + (size_t)t * E;
        int *experts = stage_experts(group, t);
        float *weights = stage_weights(group, t);
        if (bias) {
            float *score = (float *)group->scratch;
            for (int i = 0; i < E; i++) score[i] = probs[i] + bias[i];
            top_k_indices(score, E, cfg->k, experts);
        } else {
            top_k_indices(probs, E, cfg->k, experts);
        }
        softmax_weights(probs, experts, cfg->k, group->renormalize, weights);
        sort_pairs(experts, weights, cfg->k);
        group->state->stage_counts[t] = cfg->k;
    }
}

void route_forward_map(const group_ctx *group) {
    /* under a group limit the top-k* rule no longer holds: max-product on the circuit */
    if (group->router->ops->group_limit) {
        circuit_forward_map(group);
        return;
    }
    const pm_router_config *cfg = &group->router->cfg;
    const int E = cfg->num_experts;
    int kmin, kmax;
    group->router->ops->subset_range(cfg, &kmin, &kmax);
    for (int t = group->first; t < group->first + group->count; t++) {
        int *experts = stage_experts(group, t);
        float *weights = stage_weights(group, t);
        const int count = subset_map(group->logits + (size_t)t * E, E, kmin, kmax, experts);
        softmax_weights(group->probs + (size_t)t * E, experts, count, group->renormalize, weights);
        group->state->stage_counts[t] = count;
    }
}

/* --------------------------------------------------------------- backward */

void route_backward_softmax(const group_ctx *group, const pm_routing *routing, const float *c,
                            double *rows) {
    const int E = group->router->cfg.num_experts;
    double *g = group->scratch;
    for (int t = group->first; t < group->first + group->count; t++) {
        const int begin = routing->offsets[t], count = routing->offsets[t + 1] - begin;
        const float *probs = group->probs + (size_t)t * E;
        double *dtheta = rows + (size_t)(t - group->first) * E;
        selected_weights_vjp(probs, routing->experts + begin, count, c + routing->c_offsets[t],
                             group->renormalize, E, g);
        memset(dtheta, 0, sizeof(double) * E);
        softmax_vjp_add(probs, g, E, dtheta);
    }
}

/*
 * The forward output is the sparse top-k one, but the router gradient is that of the dense
 * mixture Σ_j w_j f_j over all E experts (c holds all E). With norm_topk_prob the selected
 * weights are π_j / s and the unselected ones π_j / stop(s).
 */
void route_backward_dense(const group_ctx *group, const pm_routing *routing, const float *c,
                          double *rows) {
    const int E = group->router->cfg.num_experts;
    double *g = group->scratch;
    for (int t = group->first; t < group->first + group->count; t++) {
        const int *selected = routing->experts + routing->offsets[t];
        const int count = routing->offsets[t + 1] - routing->offsets[t];
        const float *probs = group->probs + (size_t)t * E, *token_c = c + routing->c_offsets[t];
        double *dtheta = rows + (size_t)(t - group->first) * E;
        for (int j = 0; j < E; j++) g[j] = token_c[j];
        if (group->renormalize) {
            double sum = 0.0, weighted = 0.0;
            for (int p = 0; p < count; p++) sum += probs[selected[p]];
            for (int p = 0; p < count; p++) weighted += token_c[selected[p]] * probs[selected[p]] / sum;
            for (int j = 0; j < E; j++) g[j] = token_c[j] / sum;
            for (int p = 0; p < count; p++) g[selected[p]] -= weighted / sum;
        }
        memset(dtheta, 0, sizeof(double) * E);
        softmax_vjp_add(probs, g, E, dtheta);
    }
}
