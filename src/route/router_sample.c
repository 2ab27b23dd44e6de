/* The sampling blocks of ProbMoE (arXiv 2606.01509): an exact sample of p(S) forward, the
 * straight-through gate g = z + m − stop(m) backward (docs/ROUTING.md section 2). Tokens whose
 * logits allow the linear number system go through DP_LANES SIMD lanes; the rest through the
 * scalar dynamic program. The range kmin..kmax is the router's (ops->subset_range). */
#include <string.h>

#include "core/rng_lanes.h"
#include "route/router_internal.h"
#include "route/subset_dp.h"
#include "route/subset_lanes.h"

static void size_range(const group_ctx *group, int *kmin, int *kmax) {
    group->router->ops->subset_range(&group->router->cfg, kmin, kmax);
}

/* One token through the scalar DP: a sample, weights π_j. */
static int sample_token(const group_ctx *group, int t, int kmin, int kmax, int *experts, float *weights) {
    const int E = group->router->cfg.num_experts;
    subset_dp dp;
    subset_dp_forward(&dp, group->logits + (size_t)t * E, E, kmin, kmax, group->scratch, false);
    pm_rng rng;
    pm_rng_substream(group->rng, group->router->first_token + (uint32_t)t, &rng);
    int count = subset_dp_sample(&dp, &rng, experts);
    /* The forward value of g_j π_j is z_j π_j: no renormalisation. */
    for (int p = 0; p < count; p++) weights[p] = group->probs[(size_t)t * E + experts[p]];
    return count;
}

/* dθ = Cov(z)·(z ⊙ c ⊙ π) + softmax-VJP(z ⊙ c) for one token through the scalar DP. */
static void marginal_token(const group_ctx *group, int t, int kmin, int kmax, const int *experts, int count,
                           const float *c, double *dtheta) {
    const int E = group->router->cfg.num_experts;
    const float *probs = group->probs + (size_t)t * E;
    double *u = group->scratch + subset_dp_workspace(E, kmax), *zc = u + E;
    memset(u, 0, sizeof(double) * E);
    memset(zc, 0, sizeof(double) * E);
    for (int p = 0; p < count; p++) {
        zc[experts[p]] = c[p];
        u[experts[p]] = (double)c[p] * probs[experts[p]];
    }
    subset_dp dp;
    subset_dp_forward(&dp, group->logits + (size_t)t * E, E, kmin, kmax, group->scratch, false);
    subset_dp_cov_mv(&dp, u, dtheta, NULL);
    softmax_vjp_add(probs, zc, E, dtheta);
}

/* ------------------------------------------------- groups of DP_LANES tokens */

typedef double lane_vector __attribute__((vector_size(DP_LANES * sizeof(double))));
typedef lane_vector lanes_block[DP_LANES];

/* An 8 × 8 block of doubles transposed in registers (three rounds of pairwise shuffles;
 * __builtin_shufflevector is GCC's since 12 and clang's): row r of the result is column r of
 * the input. Going through memory one element at a time cost more than the arithmetic
 * around it. */
static inline void transpose_block(lanes_block b) {
    lane_vector t[DP_LANES], u[DP_LANES];
    for (int r = 0; r < DP_LANES; r += 2) {
        t[r] = __builtin_shufflevector(b[r], b[r + 1], 0, 8, 2, 10, 4, 12, 6, 14);
        t[r + 1] = __builtin_shufflevector(b[r], b[r + 1], 1, 9, 3, 11, 5, 13, 7, 15);
    }
    for (int r = 0; r < DP_LANES; r += 4)
        for (int h = 0; h < 2; h++) {
            u[r + h] = __builtin_shufflevector(t[r + h], t[r + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            u[r + h + 2] = __builtin_shufflevector(t[r + h], t[r + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (int r = 0; r < 4; r++) {
        b[r] = __builtin_shufflevector(u[r], u[r + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        b[r + 4] = __builtin_shufflevector(u[r], u[r + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

/* Scratch layout: the scalar DP's workspace, u and z⊙c, then the lanes' workspace, their
 * (E, LANES) u and Cov·u, and their uniforms. */
size_t route_sample_scratch(const pm_router_config *cfg) {
    if (router_uses_circuit(cfg)) return router_circuit_scratch(cfg);
    int kmin, kmax;
    router_ops_of(cfg->kind)->subset_range(cfg, &kmin, &kmax);
    const size_t E = (size_t)cfg->num_experts;
    return subset_dp_workspace(cfg->num_experts, kmax) + 2 * E +
           subset_lanes_workspace(cfg->num_experts, kmax) + 2 * E * DP_LANES +
           (size_t)subset_lanes_uniforms(kmin, kmax) * DP_LANES + (size_t)kmax * DP_LANES;
}

/* Bit l set: token first + l goes through the lanes (its logits pass subset_dp_is_linear). */
static unsigned linear_tokens(const group_ctx *group, int kmax) {
    const int E = group->router->cfg.num_experts;
    unsigned mask = 0;
    for (int l = 0; l < group->count; l++)
        if (subset_dp_is_linear(group->logits + (size_t)(group->first + l) * E, E, kmax)) mask |= 1u << l;
    return mask;
}

/* The group's tokens for the lanes (linear system) and the rest, from a linear_tokens mask. */
static int split_group(const group_ctx *group, unsigned linear, int *lane_token, int *scalar_token,
                       int *scalar_count) {
    int lanes = 0;
    *scalar_count = 0;
    for (int l = 0; l < group->count; l++) {
        if (linear & (1u << l))
            lane_token[lanes++] = group->first + l;
        else
            scalar_token[(*scalar_count)++] = group->first + l;
    }
    return lanes;
}

static double *lanes_workspace(const group_ctx *group, int kmax) {
    const int E = group->router->cfg.num_experts;
    return group->scratch + subset_dp_workspace(E, kmax) + 2 * (size_t)E;
}

size_t route_sample_kept_doubles(const pm_router_config *cfg) {
    if (router_uses_circuit(cfg)) return 0; /* the circuit's backward pass recomputes its forward pass */
    int kmin, kmax;
    router_ops_of(cfg->kind)->subset_range(cfg, &kmin, &kmax);
    return subset_lanes_tables_size(cfg->num_experts, kmax) + 1; /* + the linear_tokens mask */
}

/* Where a group's lane tables live: the block the routing keeps for this group when it keeps
 * them (full groups only: the block is DP_LANES tokens' share), else this thread's scratch. */
static double *group_tables(const group_ctx *group, int kmax) {
    const struct pm_routing_state *state = group->state;
    if (state->kept_tables && group->count == DP_LANES)
        return state->kept_tables + (size_t)(group->first / DP_LANES) * state->kept_group_stride;
    return lanes_workspace(group, kmax);
}

/* The kept block's last double: the forward pass's linear_tokens mask (an integer below
 * 2^DP_LANES, exact as a double), so that the backward pass need not scan the logits again.
 * NULL when the routing keeps no block for this group. */
static double *kept_split(const group_ctx *group, int kmax) {
    if (!group->state->kept_tables || group->count != DP_LANES) return NULL;
    return group_tables(group, kmax) + subset_lanes_tables_size(group->router->cfg.num_experts, kmax);
}

static double *lanes_scratch(const group_ctx *group, int kmax) {
    return lanes_workspace(group, kmax) + subset_lanes_tables_size(group->router->cfg.num_experts, kmax);
}

/* The lanes' u (E, LANES), then Cov·u (E, LANES), then the uniforms and the picks. */
static double *lanes_u(const group_ctx *group, int kmax) {
    return lanes_workspace(group, kmax) + subset_lanes_workspace(group->router->cfg.num_experts, kmax);
}

/* Runs the lanes' forward DP for the given tokens (unused lanes repeat the first). */
static void lanes_forward(const group_ctx *group, const int *lane_token, int lanes, int kmin,
                          int kmax, double *tables, subset_lanes *dp) {
    const int E = group->router->cfg.num_experts;
    const float *theta[DP_LANES];
    for (int l = 0; l < DP_LANES; l++)
        theta[l] = group->logits + (size_t)lane_token[l < lanes ? l : 0] * E;
    subset_lanes_forward(dp, theta, E, kmin, kmax, tables, lanes_scratch(group, kmax));
}

void route_forward_sample(const group_ctx *group) {
    if (group->router->circuit) {
        circuit_forward_sample(group);
        return;
    }
    const int E = group->router->cfg.num_experts;
    int *counts = group->state->stage_counts;
    int kmin, kmax, lane_token[DP_LANES], scalar_token[DP_LANES], scalar_count;
    size_range(group, &kmin, &kmax);
    const unsigned linear = linear_tokens(group, kmax);
    double *split = kept_split(group, kmax);
    if (split) *split = linear;
    const int lanes = split_group(group, linear, lane_token, scalar_token, &scalar_count);
    float *probs = group->state->probs, *lse = group->state->lse; /* this rule's own softmax */
    for (int s = 0; s < scalar_count; s++) {
        const int t = scalar_token[s];
        route_softmax(group->logits + (size_t)t * E, E, probs + (size_t)t * E, lse + t);
        counts[t] = sample_token(group, t, kmin, kmax, stage_experts(group, t), stage_weights(group, t));
    }
    if (lanes == 0) return;
    subset_lanes dp;
    lanes_forward(group, lane_token, lanes, kmin, kmax, group_tables(group, kmax), &dp);
    /* the DP's weights exp(θ − max θ) are the softmax's exponentials */
    float *token_probs[DP_LANES], *token_lse[DP_LANES];
    for (int l = 0; l < lanes; l++) {
        token_probs[l] = probs + (size_t)lane_token[l] * E;
        token_lse[l] = lse + lane_token[l];
    }
    route_softmax_lanes(dp.w, E, dp.top, lanes, token_probs, token_lse);
    /* each token's uniforms from its own substream, as sample_token draws them */
    uint32_t substream[DP_LANES];
    for (int l = 0; l < DP_LANES; l++)
        substream[l] = group->router->first_token + (uint32_t)lane_token[l < lanes ? l : 0];
    double *uniforms = lanes_u(group, kmax) + 2 * (size_t)E * DP_LANES;
    const int draws = subset_lanes_uniforms(kmin, kmax);
    rng_uniform_lanes(group->rng, substream, draws, uniforms);
    int sizes[DP_LANES], *picks = (int *)(uniforms + (size_t)draws * DP_LANES); /* (kmax, LANES) */
    subset_lanes_sample_all(&dp, uniforms, sizes, picks);
    for (int l = 0; l < lanes; l++) {
        const int t = lane_token[l];
        int *token_experts = stage_experts(group, t);
        float *token_weights = stage_weights(group, t);
        counts[t] = sizes[l];
        for (int p = 0; p < sizes[l]; p++) {
            token_experts[p] = picks[(size_t)p * DP_LANES + l];
            token_weights[p] = group->probs[(size_t)t * E + token_experts[p]];
        }
    }
}

void route_backward_marginal(const group_ctx *group, const pm_routing *routing, const float *c,
                             double *rows) {
    if (group->router->circuit) {
        circuit_backward_marginal(group, routing, c, rows);
        return;
    }
    const int E = group->router->cfg.num_experts;
    int kmin, kmax, lane_token[DP_LANES], scalar_token[DP_LANES], scalar_count;
    size_range(group, &kmin, &kmax);
    const double *split = group->state->tables_kept ? kept_split(group, kmax) : NULL;
    const unsigned linear = split ? (unsigned)*split : linear_tokens(group, kmax);
    const int lanes = split_group(group, linear, lane_token, scalar_token, &scalar_count);
    for (int s = 0; s < scalar_count; s++) {
        const int t = scalar_token[s];
        marginal_token(group, t, kmin, kmax, routing->experts + routing->offsets[t],
                       routing->offsets[t + 1] - routing->offsets[t], c + routing->c_offsets[t],
                       rows + (size_t)(t - group->first) * E);
    }
    if (lanes == 0) return;
    subset_lanes dp;
    /* the forward pass's tables when this batch kept them (the same numbers a recomputation
     * would give: the same code on the same logits), else a recomputation */
    if (group->state->tables_kept && group->count == DP_LANES)
        subset_lanes_attach(&dp, E, kmin, kmax, group_tables(group, kmax), lanes_scratch(group, kmax));
    else
        lanes_forward(group, lane_token, lanes, kmin, kmax, lanes_workspace(group, kmax), &dp);
    double *u = lanes_u(group, kmax);
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
    /* + softmax-VJP of z ⊙ c, which is c at the selected experts and 0 elsewhere: its mean
     * over π has only the selected terms */
    double mean[DP_LANES];
    for (int l = 0; l < lanes; l++) {
        const int t = lane_token[l];
        mean[l] = 0.0;
        for (int p = routing->offsets[t]; p < routing->offsets[t + 1]; p++)
            mean[l] += (double)group->probs[(size_t)t * E + routing->experts[p]] * c[p];
    }
    /* Cov·u is (E, LANES): eight experts of all lanes at a time, transposed to each lane's row */
    int j = 0;
    for (; j + DP_LANES <= E; j += DP_LANES) {
        lanes_block block;
        memcpy(block, cov_u + (size_t)j * DP_LANES, sizeof block);
        transpose_block(block);
        for (int l = 0; l < lanes; l++) {
            const int t = lane_token[l];
            const float *probs = group->probs + (size_t)t * E + j;
            double *dtheta = rows + (size_t)(t - group->first) * E + j;
            for (int e = 0; e < DP_LANES; e++) dtheta[e] = block[l][e] - probs[e] * mean[l];
        }
    }
    for (int l = 0; l < lanes; l++) {
        const int t = lane_token[l];
        const float *probs = group->probs + (size_t)t * E;
        double *dtheta = rows + (size_t)(t - group->first) * E;
        for (int tail = j; tail < E; tail++) dtheta[tail] = cov_u[(size_t)tail * DP_LANES + l] - probs[tail] * mean[l];
        for (int p = routing->offsets[t]; p < routing->offsets[t + 1]; p++)
            dtheta[routing->experts[p]] += (double)probs[routing->experts[p]] * c[p];
    }
}
