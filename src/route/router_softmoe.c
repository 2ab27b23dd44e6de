/* softmoe, SoftMoE (arXiv 2606.17952): LapSum soft top-k weights, truncated to the experts
 * above a calibrated threshold tau (docs/ROUTING.md sections 2 and 3), and the learned
 * per-layer budget. */
#include <math.h>
#include <stdlib.h>
#include <omp.h>
#include <string.h>

#include "core/error.h"
#include "route/lapsum.h"
#include "route/route_args.h"
#include "route/router_internal.h"
#include "route/subset_dp.h"

/* The per-token buffers: LapSum p (E floats); threshold t, d soft_k and d alpha (doubles). */
enum { TOKEN_T = 0, TOKEN_D_SOFT_K = 1, TOKEN_D_ALPHA = 2, TOKEN_DOUBLES = 3 };
enum { PARAM_SOFT_K = 0, PARAM_ALPHA = 1 };

/* Most experts a token may keep: ceil(cap · soft_k), capped at E. */
static int max_kept(const pm_router_config *cfg, float soft_k) {
    double most = ceil((double)cfg->cap * soft_k);
    return most >= cfg->num_experts ? cfg->num_experts : most < 1.0 ? 1 : (int)most;
}

static int descending(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* tau so that on average about soft_k of the (T, E) values exceed it; < 0 on OOM. */
static float calibrate_tau(const float *soft_probs, int T, int E, float soft_k) {
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

/* LapSum p and threshold of every token with this batch's soft_k and alpha; tau from the
 * first batch, then frozen so that routing stays causal. */
static int softmoe_prepare(pm_router *router, pm_routing *out, const float *logits, int T) {
    struct pm_routing_state *state = out->state;
    const int E = router->cfg.num_experts;
    const float soft_k = state->batch_params[PARAM_SOFT_K], alpha = state->batch_params[PARAM_ALPHA];
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *theta = logits + (size_t)t * E;
        double *scratch = router->scratch + router->scratch_per_thread * (size_t)omp_get_thread_num();
        double *token = state->token_doubles + (size_t)t * state->token_double_stride;
        token[TOKEN_T] = lapsum_threshold(theta, E, soft_k, alpha, scratch);
        lapsum_probs(theta, E, alpha, token[TOKEN_T], state->token_floats + (size_t)t * state->token_float_stride);
    }
    float *tau = router_state_find(router, "tau");
    if (*tau < 0.0f) {
        /* data parallelism: the quantile of the global batch, every rank's values in order */
        const batch_comm *comm = out->training ? router->comm : NULL;
        float *all = NULL;
        int total = T * E;
        if (comm && comm->gather_floats(comm, state->token_floats, T * E, &all, &total) < 0)
            return pm_fail(PM_ERR_NOMEM, "softmoe: out of memory gathering the batch to calibrate tau");
        const float calibrated = calibrate_tau(all ? all : state->token_floats, total / E, E, soft_k);
        free(all);
        if (calibrated < 0.0f) return pm_fail(PM_ERR_NOMEM, "softmoe: out of memory calibrating tau");
        *tau = calibrated;
    }
    return PM_OK;
}

void route_forward_lapsum(const group_ctx *group) {
    const pm_router_config *cfg = &group->router->cfg;
    const struct pm_routing_state *state = group->state;
    const float tau = *router_state_find(group->router, "tau");
    const int most = max_kept(cfg, state->batch_params[PARAM_SOFT_K]);
    int *largest = (int *)group->scratch;
    for (int t = group->first; t < group->first + group->count; t++) {
        const float *soft_probs = state->token_floats + (size_t)t * state->token_float_stride;
        int *experts = stage_experts(group, t);
        float *weights = stage_weights(group, t);
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
        group->state->stage_counts[t] = count;
    }
}

/* LapSum VJP with v_j = dL/dp_j on kept experts (through the renormalisation if on), 0 on
 * dropped ones; gradients reach the logits, soft_k and alpha (per token, summed afterwards so
 * that the result does not depend on the thread count). */
void route_backward_lapsum(const group_ctx *group, const pm_routing *routing, const float *c,
                           double *rows) {
    const pm_router_config *cfg = &group->router->cfg;
    const struct pm_routing_state *state = group->state;
    const int E = cfg->num_experts;
    const float alpha = state->batch_params[PARAM_ALPHA];
    float *v = (float *)group->scratch, *dr = v + E, *p = dr + E;
    for (int t = group->first; t < group->first + group->count; t++) {
        const int *experts = routing->experts + routing->offsets[t];
        const int count = routing->offsets[t + 1] - routing->offsets[t];
        const float *token_c = c + routing->c_offsets[t], *theta = group->logits + (size_t)t * E;
        double *token = state->token_doubles + (size_t)t * state->token_double_stride;
        double *dtheta = rows + (size_t)(t - group->first) * E;
        memset(v, 0, sizeof(float) * E);
        if (cfg->soft_renormalize && count > 0) {
            lapsum_probs(theta, E, alpha, token[TOKEN_T], p);
            double sum = 0.0, weighted = 0.0;
            for (int q = 0; q < count; q++) sum += p[experts[q]];
            for (int q = 0; q < count; q++) weighted += token_c[q] * p[experts[q]] / sum;
            for (int q = 0; q < count; q++) v[experts[q]] = (float)((token_c[q] - weighted) / sum);
        } else {
            for (int q = 0; q < count; q++) v[experts[q]] = token_c[q];
        }
        token[TOKEN_D_SOFT_K] = token[TOKEN_D_ALPHA] = 0.0;
        lapsum_vjp(theta, E, alpha, token[TOKEN_T], v, dr, &token[TOKEN_D_SOFT_K], &token[TOKEN_D_ALPHA]);
        for (int j = 0; j < E; j++) dtheta[j] = dr[j];
    }
}

static void softmoe_finish_backward(pm_router *router, const pm_routing *routing) {
    const struct pm_routing_state *state = routing->state;
    for (int t = 0; t < routing->num_tokens; t++) {
        const double *token = state->token_doubles + (size_t)t * state->token_double_stride;
        router->param_grads[PARAM_SOFT_K] += token[TOKEN_D_SOFT_K];
        router->param_grads[PARAM_ALPHA] += token[TOKEN_D_ALPHA];
    }
}

static void softmoe_defaults(pm_router_config *cfg) {
    cfg->soft_k = (float)cfg->k;
    cfg->alpha = 1.0f;
    cfg->tau = -1.0f;
    cfg->cap = 2.0f;
}

static int softmoe_check(const pm_router_config *cfg) {
    const int E = cfg->num_experts;
    if (!(cfg->soft_k > 0.0f && cfg->soft_k < (float)E))
        return pm_fail(PM_ERR_ARG, "router config (softmoe): soft_k = %g; need 0 < soft_k < num_experts = %d",
                       (double)cfg->soft_k, E);
    if (!(cfg->alpha > 0.0f) || !isfinite(cfg->alpha))
        return pm_fail(PM_ERR_ARG, "router config (softmoe): alpha = %g; need a finite alpha > 0",
                       (double)cfg->alpha);
    if (!(cfg->cap >= 1.0f) || !isfinite(cfg->cap))
        return pm_fail(PM_ERR_ARG, "router config (softmoe): cap = %g; need a finite cap >= 1",
                       (double)cfg->cap);
    if (!isfinite(cfg->tau) || cfg->tau >= 1.0f)
        return pm_fail(PM_ERR_ARG, "router config (softmoe): tau = %g; need tau < 1 (negative: calibrate "
                       "on the first batch)", (double)cfg->tau);
    return PM_OK;
}

/* soft_k may be learned upwards, so a token may keep up to all E experts. */
static int all_experts(const pm_router_config *cfg) { return cfg->num_experts; }
static size_t scratch(const pm_router_config *cfg) { return lapsum_scratch_size(cfg->num_experts); }
static size_t token_floats(const pm_router_config *cfg) { return (size_t)cfg->num_experts; }
static size_t token_doubles(const pm_router_config *cfg) { (void)cfg; return TOKEN_DOUBLES; }
static int one(const pm_router_config *cfg) { (void)cfg; return 1; }
static float initial_tau(const pm_router_config *cfg) { return cfg->tau; }
static float initial_soft_k(const pm_router_config *cfg) { return cfg->soft_k; }
static float initial_alpha(const pm_router_config *cfg) { return cfg->alpha; }

static const router_value softmoe_state[] = {
    {"tau", "truncation threshold, calibrated on the first batch and then frozen", one, initial_tau},
};
static const router_value softmoe_params[] = {
    {"soft_k", "mean number of experts per token (LapSum k)", one, initial_soft_k},
    {"alpha", "LapSum scale", one, initial_alpha},
};

#define SOFTMOE_RULE {.forward = route_forward_lapsum, .backward = route_backward_lapsum}
const router_ops router_softmoe = {
    .name = "softmoe",
    .help = "SoftMoE: LapSum soft top-k weights truncated at a calibrated tau (arXiv 2606.17952)",
    .defaults = softmoe_defaults,
    .check = softmoe_check,
    .train = SOFTMOE_RULE,
    .infer = SOFTMOE_RULE,
    .max_pairs = all_experts,
    .scratch_doubles = scratch,
    .token_floats = token_floats,
    .token_doubles = token_doubles,
    .prepare = softmoe_prepare,
    .finish_backward = softmoe_finish_backward,
    .learned_budget = true,
    .state = softmoe_state,
    .state_count = 1,
    .params = softmoe_params,
    .param_count = 2,
};

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

pm_status pm_softmoe_budget_forward(float *k_out, const float *eta, int L, float K) {
    double *shares = malloc(sizeof(double) * (L > 0 ? L : 1));
    if (!shares) return pm_fail(PM_ERR_NOMEM, "pm_softmoe_budget_forward: out of memory");
    int status = budget_shares(eta, L, K, "pm_softmoe_budget_forward", shares);
    for (int l = 0; status == 0 && l < L; l++) k_out[l] = (float)(1.0 + (K - L) * shares[l]);
    free(shares);
    return status;
}

/* k_l = 1 + (K − L) s_l, s = softmax(η): d_eta_l += (K − L) s_l (d_k_l − Σ_m s_m d_k_m). */
pm_status pm_softmoe_budget_backward(float *d_eta, const float *eta, const float *d_k, int L, float K) {
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
