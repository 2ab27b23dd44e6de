/* SoftMoE: LapSum soft top-k weights, truncated to the experts above a calibrated
 * threshold tau (ROUTING.md sections 2 and 3), and the learned per-layer budget. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "route/lapsum.h"
#include "route/route_args.h"
#include "route/router_internal.h"
#include "route/subset_dp.h"

int softmoe_max_kept(const pm_router_config *cfg, float soft_k) {
    double most = ceil((double)cfg->cap * soft_k);
    return most >= cfg->num_experts ? cfg->num_experts : most < 1.0 ? 1 : (int)most;
}

static int descending(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

float softmoe_calibrate_tau(const float *soft_probs, int T, int E, float soft_k) {
    size_t total = (size_t)T * E;
    float *sorted = malloc(sizeof(float) * total);
    if (!sorted) return -1.0f;
    memcpy(sorted, soft_probs, sizeof(float) * total);
    qsort(sorted, total, sizeof(float), descending);
    /* About soft_k·T values lie strictly above the (soft_k·T + 1)-th largest. */
    size_t keep = (size_t)llround((double)soft_k * T);
    if (keep < 1) keep = 1;
    if (keep > total - 1) keep = total - 1;
    float tau = sorted[keep];
    free(sorted);
    return tau;
}

int softmoe_forward(const token_ctx *ctx, const float *soft_probs, float tau, int *experts,
                    float *weights) {
    const pm_router_config *cfg = &ctx->router->cfg;
    const int most = softmoe_max_kept(cfg, ctx->router->soft_k);
    int *largest = (int *)ctx->scratch;
    top_k_indices(soft_probs, cfg->num_experts, most, largest);
    int count = 0;
    double sum = 0.0;
    for (int p = 0; p < most && soft_probs[largest[p]] > tau; p++) {
        experts[count] = largest[p];
        weights[count] = soft_probs[largest[p]];
        sum += weights[count++];
    }
    if (cfg->soft_renormalize)
        for (int p = 0; p < count; p++) weights[p] = (float)(weights[p] / sum);
    sort_pairs(experts, weights, count);
    return count;
}

/* LapSum VJP with v_j = dL/dp_j on kept experts (through the renormalisation if on), 0 on
 * dropped ones; gradients reach the logits, soft_k and alpha. */
void softmoe_backward(const token_ctx *ctx, double soft_t, float alpha, const int *experts,
                      int count, const float *c, double *dtheta, double *d_soft_k,
                      double *d_alpha) {
    const pm_router_config *cfg = &ctx->router->cfg;
    const int E = cfg->num_experts;
    float *v = (float *)ctx->scratch, *dr = v + E, *p = dr + E;
    memset(v, 0, sizeof(float) * E);
    if (cfg->soft_renormalize && count > 0) {
        lapsum_probs(ctx->logits, E, alpha, soft_t, p);
        double sum = 0.0, weighted = 0.0;
        for (int q = 0; q < count; q++) sum += p[experts[q]];
        for (int q = 0; q < count; q++) weighted += c[q] * p[experts[q]] / sum;
        for (int q = 0; q < count; q++) v[experts[q]] = (float)((c[q] - weighted) / sum);
    } else {
        for (int q = 0; q < count; q++) v[experts[q]] = c[q];
    }
    lapsum_vjp(ctx->logits, E, alpha, soft_t, v, dr, d_soft_k, d_alpha);
    for (int j = 0; j < E; j++) dtheta[j] = dr[j];
}

/* Validates the budget's arguments and writes s = softmax(eta) in double. */
static int budget_shares(const float *eta, int L, float K, const char *function, double *shares) {
    if (L < 1) return pm_fail(PM_ERR_ARG, "%s: L = %d; need at least one layer", function, L);
    if (!(K > (float)L) || !isfinite(K))
        return pm_fail(PM_ERR_ARG, "%s: K = %g; the total budget must exceed L = %d "
                       "(each layer keeps at least one expert)", function, (double)K, L);
    int status = check_finite(eta, L, function, "eta");
    if (status < 0) return status;
    double top = eta[0], sum = 0.0;
    for (int l = 1; l < L; l++) top = fmax(top, eta[l]);
    for (int l = 0; l < L; l++) sum += shares[l] = exp(eta[l] - top);
    for (int l = 0; l < L; l++) shares[l] /= sum;
    return PM_OK;
}

int pm_softmoe_budget_forward(float *k_out, const float *eta, int L, float K) {
    double *shares = malloc(sizeof(double) * (L > 0 ? L : 1));
    if (!shares) return pm_fail(PM_ERR_NOMEM, "pm_softmoe_budget_forward: out of memory");
    int status = budget_shares(eta, L, K, "pm_softmoe_budget_forward", shares);
    for (int l = 0; status == 0 && l < L; l++) k_out[l] = (float)(1.0 + (K - L) * shares[l]);
    free(shares);
    return status;
}

/* k_l = 1 + (K − L) s_l, s = softmax(η): d_eta_l += (K − L) s_l (d_k_l − Σ_m s_m d_k_m). */
int pm_softmoe_budget_backward(float *d_eta, const float *eta, const float *d_k, int L, float K) {
    double *shares = malloc(sizeof(double) * (L > 0 ? L : 1));
    if (!shares) return pm_fail(PM_ERR_NOMEM, "pm_softmoe_budget_backward: out of memory");
    int status = budget_shares(eta, L, K, "pm_softmoe_budget_backward", shares);
    if (status == 0) status = check_finite(d_k, L, "pm_softmoe_budget_backward", "d_k");
    if (status == 0) {
        double mean = 0.0;
        for (int l = 0; l < L; l++) mean += shares[l] * d_k[l];
        for (int l = 0; l < L; l++) d_eta[l] += (float)((K - L) * shares[l] * (d_k[l] - mean));
    }
    free(shares);
    return status;
}
