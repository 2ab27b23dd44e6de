/* ProbMoE (exact-k and dynamic-k) in training: exact samples forward, the straight-through
 * gate g = z + m − stop(m) backward (ROUTING.md section 2). At inference both fall back to
 * the deterministic rules of router_select.c. */
#include <string.h>

#include "route/router_internal.h"
#include "route/subset_dp.h"
#include "route/subset_lanes.h"

static void size_range(const pm_router_config *cfg, int *kmin, int *kmax) {
    if (cfg->kind == PM_ROUTER_PROBMOE_DYN) {
        *kmin = cfg->k_min;
        *kmax = cfg->k_max;
    } else {
        *kmin = *kmax = cfg->k;
    }
}

int probmoe_forward(const token_ctx *ctx, int *experts, float *weights) {
    if (!ctx->training) return deterministic_forward(ctx, experts, weights);
    const pm_router_config *cfg = &ctx->router->cfg;
    int kmin, kmax;
    size_range(cfg, &kmin, &kmax);
    subset_dp dp;
    subset_dp_forward(&dp, ctx->logits, cfg->num_experts, kmin, kmax, ctx->scratch, false);
    pm_rng rng;
    pm_rng_substream(ctx->rng, (uint32_t)ctx->token, &rng);
    int count = subset_dp_sample(&dp, &rng, experts);
    /* The forward value of g_j π_j is z_j π_j: no renormalisation in training. */
    for (int p = 0; p < count; p++) weights[p] = ctx->probs[experts[p]];
    return count;
}

/* dθ = Cov(z)·(z ⊙ c ⊙ π) + softmax-VJP(z ⊙ c). */
void probmoe_backward(const token_ctx *ctx, const int *experts, int count, const float *c,
                      double *dtheta) {
    if (!ctx->training) {
        deterministic_backward(ctx, experts, count, c, dtheta);
        return;
    }
    const pm_router_config *cfg = &ctx->router->cfg;
    const int E = cfg->num_experts;
    int kmin, kmax;
    size_range(cfg, &kmin, &kmax);
    double *u = ctx->scratch + subset_dp_workspace(E, kmax), *zc = u + E;
    memset(u, 0, sizeof(double) * E);
    memset(zc, 0, sizeof(double) * E);
    for (int p = 0; p < count; p++) {
        zc[experts[p]] = c[p];
        u[experts[p]] = (double)c[p] * ctx->probs[experts[p]];
    }
    subset_dp dp;
    subset_dp_forward(&dp, ctx->logits, E, kmin, kmax, ctx->scratch, false);
    subset_dp_cov_mv(&dp, u, dtheta, NULL);
    softmax_vjp_add(ctx->probs, zc, E, dtheta);
}

/* ------------------------------------------------- groups of DP_LANES tokens */

/* Scratch layout: the scalar DP's workspace, u and z⊙c, then the lanes' workspace and
 * their (E, LANES) u and Cov·u. */
size_t probmoe_scratch_doubles(const pm_router_config *cfg) {
    int kmin, kmax;
    size_range(cfg, &kmin, &kmax);
    const size_t E = (size_t)cfg->num_experts;
    return subset_dp_workspace(cfg->num_experts, kmax) + 2 * E +
           subset_lanes_workspace(cfg->num_experts, kmax) + 2 * E * DP_LANES;
}

/* The size range, and the group split into tokens for the lanes (linear system) and the rest. */
static int split_group(const group_ctx *group, int *kmin, int *kmax, int *lane_token, int *scalar_token,
                       int *scalar_count) {
    const int E = group->router->cfg.num_experts;
    size_range(&group->router->cfg, kmin, kmax);
    int lanes = 0;
    *scalar_count = 0;
    for (int t = group->first; t < group->first + group->count; t++) {
        if (subset_dp_is_linear(group->logits + (size_t)t * E, E, *kmax))
            lane_token[lanes++] = t;
        else
            scalar_token[(*scalar_count)++] = t;
    }
    return lanes;
}

static double *lanes_workspace(const group_ctx *group, int kmax) {
    const int E = group->router->cfg.num_experts;
    return group->scratch + subset_dp_workspace(E, kmax) + 2 * (size_t)E;
}

/* Runs the lanes' forward DP for the given tokens (unused lanes repeat the first). */
static void lanes_forward(const group_ctx *group, const int *lane_token, int lanes, int kmin,
                          int kmax, subset_lanes *dp) {
    const int E = group->router->cfg.num_experts;
    const float *theta[DP_LANES];
    for (int l = 0; l < DP_LANES; l++)
        theta[l] = group->logits + (size_t)lane_token[l < lanes ? l : 0] * E;
    subset_lanes_forward(dp, theta, E, kmin, kmax, lanes_workspace(group, kmax));
}

token_ctx group_token_ctx(const group_ctx *group, int t) {
    const int E = group->router->cfg.num_experts;
    token_ctx ctx = {group->router, group->logits + (size_t)t * E, group->probs + (size_t)t * E,
                     t, group->training, group->rng, group->scratch};
    return ctx;
}

void probmoe_forward_group(const group_ctx *group, int stride, int *experts, float *weights,
                           int *counts) {
    const int E = group->router->cfg.num_experts;
    int kmin, kmax, lane_token[DP_LANES], scalar_token[DP_LANES], scalar_count;
    const int lanes = split_group(group, &kmin, &kmax, lane_token, scalar_token, &scalar_count);
    for (int s = 0; s < scalar_count; s++) {
        const int t = scalar_token[s];
        token_ctx ctx = group_token_ctx(group, t);
        counts[t] = probmoe_forward(&ctx, experts + (size_t)t * stride, weights + (size_t)t * stride);
    }
    if (lanes == 0) return;
    subset_lanes dp;
    lanes_forward(group, lane_token, lanes, kmin, kmax, &dp);
    for (int l = 0; l < lanes; l++) {
        const int t = lane_token[l];
        pm_rng rng;
        pm_rng_substream(group->rng, (uint32_t)t, &rng);
        int *token_experts = experts + (size_t)t * stride;
        counts[t] = subset_lanes_sample(&dp, l, &rng, token_experts);
        for (int p = 0; p < counts[t]; p++)
            weights[(size_t)t * stride + p] = group->probs[(size_t)t * E + token_experts[p]];
    }
}

void probmoe_backward_group(const group_ctx *group, const pm_routing *routing, const float *c,
                            double *rows) {
    const int E = group->router->cfg.num_experts;
    int kmin, kmax, lane_token[DP_LANES], scalar_token[DP_LANES], scalar_count;
    const int lanes = split_group(group, &kmin, &kmax, lane_token, scalar_token, &scalar_count);
    for (int s = 0; s < scalar_count; s++) {
        const int t = scalar_token[s];
        token_ctx ctx = group_token_ctx(group, t);
        probmoe_backward(&ctx, routing->experts + routing->offsets[t],
                         routing->offsets[t + 1] - routing->offsets[t], c + routing->c_offsets[t],
                         rows + (size_t)(t - group->first) * E);
    }
    if (lanes == 0) return;
    subset_lanes dp;
    lanes_forward(group, lane_token, lanes, kmin, kmax, &dp);
    double *u = lanes_workspace(group, kmax) + subset_lanes_workspace(E, kmax);
    double *cov_u = u + (size_t)E * DP_LANES;
    memset(u, 0, sizeof(double) * E * DP_LANES);
    for (int l = 0; l < lanes; l++) {
        const int t = lane_token[l];
        for (int p = routing->offsets[t]; p < routing->offsets[t + 1]; p++) {
            const int j = routing->experts[p];
            u[(size_t)j * DP_LANES + l] = (double)c[p] * group->probs[(size_t)t * E + j];
        }
    }
    subset_lanes_cov_mv(&dp, u, cov_u);
    double *zc = group->scratch + subset_dp_workspace(E, kmax);
    for (int l = 0; l < lanes; l++) {
        const int t = lane_token[l];
        double *dtheta = rows + (size_t)(t - group->first) * E;
        memset(zc, 0, sizeof(double) * E);
        for (int p = routing->offsets[t]; p < routing->offsets[t + 1]; p++) zc[routing->experts[p]] = c[p];
        for (int j = 0; j < E; j++) dtheta[j] = cov_u[(size_t)j * DP_LANES + l];
        softmax_vjp_add(group->probs + (size_t)t * E, zc, E, dtheta);
    }
}
