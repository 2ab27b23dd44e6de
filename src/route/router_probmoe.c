/* ProbMoE (exact-k and dynamic-k) in training: exact samples forward, the straight-through
 * gate g = z + m − stop(m) backward (ROUTING.md section 2). At inference both fall back to
 * the deterministic rules of router_select.c. */
#include <string.h>

#include "route/router_internal.h"
#include "route/subset_dp.h"

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
