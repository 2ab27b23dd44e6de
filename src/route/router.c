/* The batch loop shared by every router: validation, per-token work over OpenMP threads,
 * CSR assembly, statistics and the auxiliary terms. Per-token math lives in router_*.c. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fast_exp.h"
#include "route/lapsum.h"
#include "route/router_internal.h"
#include "route/subset_dp.h"
#include "route/subset_lanes.h"

/* ------------------------------------------------------------ router object */

size_t router_scratch_doubles(const pm_router_config *cfg) {
    const int E = cfg->num_experts;
    size_t kind = 0;
    if (cfg->kind == PM_ROUTER_PROBMOE || cfg->kind == PM_ROUTER_PROBMOE_DYN)
        kind = probmoe_scratch_doubles(cfg);
    if (cfg->kind == PM_ROUTER_SOFTMOE) kind = lapsum_scratch_size(E);
    return kind + 4 * (size_t)E + 8;
}

pm_router *pm_router_create(const pm_router_config *cfg) {
    if (pm_router_config_check(cfg) < 0) return NULL;
    pm_router *router = calloc(1, sizeof *router);
    if (!router) {
        pm_fail(PM_ERR_NOMEM, "pm_router_create: out of memory");
        return NULL;
    }
    router->cfg = *cfg;
    router->soft_k = cfg->soft_k;
    router->alpha = cfg->alpha;
    router->tau = cfg->tau;
    router->bias = calloc(cfg->num_experts, sizeof(float));
    router->bias_load = calloc(cfg->num_experts, sizeof(int64_t));
    router->scratch_per_thread = router_scratch_doubles(cfg);
    if (!router->bias || !router->bias_load) {
        pm_router_free(router);
        pm_fail(PM_ERR_NOMEM, "pm_router_create: out of memory");
        return NULL;
    }
    return router;
}

void pm_router_free(pm_router *router) {
    if (!router) return;
    free(router->bias);
    free(router->bias_load);
    free(router->scratch);
    free(router);
}

const pm_router_config *pm_router_get_config(const pm_router *router) { return &router->cfg; }

/* Makes room for one scratch area per thread of the coming parallel region. */
static int ensure_scratch(pm_router *router, int threads) {
    if (router->scratch_threads >= threads) return PM_OK;
    double *grown = realloc(router->scratch, sizeof(double) * router->scratch_per_thread * threads);
    if (!grown) return pm_fail(PM_ERR_NOMEM, "router: out of memory for %d threads' scratch", threads);
    router->scratch = grown;
    router->scratch_threads = threads;
    return PM_OK;
}

static double *thread_scratch(const pm_router *router) {
    return router->scratch + router->scratch_per_thread * (size_t)omp_get_thread_num();
}

int pm_router_set_soft_params(pm_router *router, float soft_k, float alpha) {
    pm_router_config probe = router->cfg;
    probe.soft_k = soft_k;
    probe.alpha = alpha;
    int status = pm_router_config_check(&probe);
    if (status < 0) return status;
    router->soft_k = soft_k;
    router->alpha = alpha;
    return PM_OK;
}

void pm_router_soft_grads(const pm_router *router, double *d_soft_k, double *d_alpha) {
    *d_soft_k = router->d_soft_k;
    *d_alpha = router->d_alpha;
}

void pm_router_zero_soft_grads(pm_router *router) { router->d_soft_k = router->d_alpha = 0.0; }

float pm_router_tau(const pm_router *router) { return router->tau; }
void pm_router_set_tau(pm_router *router, float tau) { router->tau = tau; }

const float *pm_router_bias(const pm_router *router) { return router->bias; }

void pm_router_set_bias(pm_router *router, const float *bias) {
    memcpy(router->bias, bias, sizeof(float) * router->cfg.num_experts);
}

void pm_router_update_bias(pm_router *router) {
    const int E = router->cfg.num_experts;
    if (router->cfg.bias_rate <= 0.0f) return;
    double mean = 0.0;
    for (int i = 0; i < E; i++) mean += (double)router->bias_load[i] / E;
    for (int i = 0; i < E; i++) {
        double gap = mean - (double)router->bias_load[i];
        router->bias[i] += router->cfg.bias_rate * (float)((gap > 0) - (gap < 0));
        router->bias_load[i] = 0;
    }
}

/* ---------------------------------------------------------- routing buffers */

/* Most combine pairs one token can get. */
static int max_pairs_per_token(const pm_router_config *cfg) {
    switch (cfg->kind) {
    case PM_ROUTER_PROBMOE_DYN: return cfg->k_max;
    case PM_ROUTER_SOFTMOE: return cfg->num_experts; /* soft_k may be learned upwards */
    default: return cfg->k;
    }
}

pm_routing *pm_routing_create(const pm_router *router, int max_tokens) {
    if (!router || max_tokens < 1) {
        pm_fail(PM_ERR_ARG, "pm_routing_create: need a router and max_tokens >= 1 (got %d)", max_tokens);
        return NULL;
    }
    const pm_router_config *cfg = &router->cfg;
    const size_t T = (size_t)max_tokens, E = (size_t)cfg->num_experts;
    const size_t S = (size_t)max_pairs_per_token(cfg);
    const size_t compute = cfg->kind == PM_ROUTER_DENSEMIXER ? E : S;
    pm_routing *routing = calloc(1, sizeof *routing);
    struct pm_routing_state *state = calloc(1, sizeof *state);
    if (routing) routing->state = state;
    if (routing && state) {
        routing->num_experts = cfg->num_experts;
        routing->capacity_tokens = max_tokens;
        routing->offsets = malloc(sizeof(int) * (T + 1));
        routing->experts = malloc(sizeof(int) * T * S);
        routing->weights = malloc(sizeof(float) * T * S);
        routing->c_offsets = malloc(sizeof(int) * (T + 1));
        routing->c_experts = malloc(sizeof(int) * T * compute);
        routing->load = calloc(E, sizeof(int64_t));
        state->max_pairs = (int)S;
        state->probs = malloc(sizeof(float) * T * E);
        state->lse = malloc(sizeof(float) * T);
        state->stage_experts = malloc(sizeof(int) * T * S);
        state->stage_weights = malloc(sizeof(float) * T * S);
        state->stage_counts = malloc(sizeof(int) * T);
        state->lb_dprob = calloc(E, sizeof(float));
        if (cfg->kind == PM_ROUTER_SOFTMOE) {
            state->soft_probs = malloc(sizeof(float) * T * E);
            state->soft_t = malloc(sizeof(double) * T);
            state->token_d_soft_k = malloc(sizeof(double) * T);
            state->token_d_alpha = malloc(sizeof(double) * T);
        }
    }
    bool complete = routing && state && routing->offsets && routing->experts && routing->weights &&
                    routing->c_offsets && routing->c_experts && routing->load && state->probs &&
                    state->lse && state->stage_experts && state->stage_weights &&
                    state->stage_counts && state->lb_dprob &&
                    (cfg->kind != PM_ROUTER_SOFTMOE ||
                     (state->soft_probs && state->soft_t && state->token_d_soft_k && state->token_d_alpha));
    if (!complete) {
        pm_routing_free(routing);
        if (!routing) free(state);
        pm_fail(PM_ERR_NOMEM, "pm_routing_create: out of memory for %d tokens", max_tokens);
        return NULL;
    }
    return routing;
}

void pm_routing_free(pm_routing *routing) {
    if (!routing) return;
    struct pm_routing_state *state = routing->state;
    if (state) {
        free(state->probs);
        free(state->lse);
        free(state->soft_probs);
        free(state->soft_t);
        free(state->stage_experts);
        free(state->stage_weights);
        free(state->stage_counts);
        free(state->token_d_soft_k);
        free(state->token_d_alpha);
        free(state->lb_dprob);
        free(state);
    }
    free(routing->offsets);
    free(routing->experts);
    free(routing->weights);
    free(routing->c_offsets);
    free(routing->c_experts);
    free(routing->load);
    free(routing);
}

/* ----------------------------------------------------------------- forward */

static int check_batch(const pm_router *router, const pm_routing *routing, const float *logits,
                       int T, const char *function) {
    if (!router || !routing) return pm_fail(PM_ERR_ARG, "%s: router or routing is NULL", function);
    const int E = router->cfg.num_experts;
    if (routing->num_experts != E || routing->state->max_pairs != max_pairs_per_token(&router->cfg))
        return pm_fail(PM_ERR_ARG, "%s: the routing buffers were created for another router; "
                       "create them with pm_routing_create(this router, ...)", function);
    if (T < 1 || T > routing->capacity_tokens)
        return pm_fail(PM_ERR_ARG, "%s: T = %d tokens; the routing buffers hold 1 to %d "
                       "(create larger ones with pm_routing_create)", function, T, routing->capacity_tokens);
    if (!logits) return pm_fail(PM_ERR_ARG, "%s: logits is NULL", function);
    /* count non-finite values branch-free (it vectorises), then find the first */
    const size_t total = (size_t)T * E;
    size_t nonfinite = 0;
#pragma omp simd reduction(+ : nonfinite)
    for (size_t i = 0; i < total; i++) {
        uint32_t bits;
        memcpy(&bits, logits + i, sizeof bits);
        nonfinite += (bits & 0x7f800000u) == 0x7f800000u;
    }
    for (size_t i = 0; nonfinite > 0 && i < total; i++)
        if (!isfinite(logits[i]))
            return pm_fail(PM_ERR_NONFINITE, "%s: logits[token %zu, expert %zu] = %g is not finite; "
                           "the model producing them has diverged (lower the learning rate or "
                           "clip gradients)", function, i / E, i % E, (double)logits[i]);
    return PM_OK;
}

/* π_t = softmax(θ_t) and logsumexp θ_t, in double. */
static void softmax_token(const float *logits, int E, float *probs, float *lse) {
    float top = logits[0];
    for (int i = 1; i < E; i++) top = logits[i] > top ? logits[i] : top;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < E; i++) {
        double e = pm_exp((double)logits[i] - top);
        probs[i] = (float)e;
        sum += e;
    }
    const double scale = 1.0 / sum;
    for (int i = 0; i < E; i++) probs[i] = (float)(probs[i] * scale);
    *lse = (float)(top + log(sum));
}

static int route_token(const token_ctx *ctx, const struct pm_routing_state *state, float tau,
                       int *experts, float *weights) {
    switch (ctx->router->cfg.kind) {
    case PM_ROUTER_PROBMOE:
    case PM_ROUTER_PROBMOE_DYN: return probmoe_forward(ctx, experts, weights);
    case PM_ROUTER_SOFTMOE: {
        const float *soft = state->soft_probs + (size_t)ctx->token * ctx->router->cfg.num_experts;
        return softmoe_forward(ctx, soft, tau, experts, weights);
    }
    default: return deterministic_forward(ctx, experts, weights);
    }
}

/* Offsets, compaction of the staged pairs, the compute list and the statistics. */
static void assemble(const pm_router *router, pm_routing *out, int T) {
    const pm_router_config *cfg = &router->cfg;
    const struct pm_routing_state *state = out->state;
    const int E = cfg->num_experts, S = state->max_pairs;
    out->offsets[0] = 0;
    memset(out->load, 0, sizeof(int64_t) * E);
    for (int t = 0; t < T; t++) {
        const int count = state->stage_counts[t], base = out->offsets[t];
        memcpy(out->experts + base, state->stage_experts + (size_t)t * S, sizeof(int) * count);
        memcpy(out->weights + base, state->stage_weights + (size_t)t * S, sizeof(float) * count);
        for (int p = 0; p < count; p++) out->load[out->experts[base + p]]++;
        out->offsets[t + 1] = base + count;
    }
    out->mean_active = (double)out->offsets[T] / T;
    if (cfg->kind == PM_ROUTER_DENSEMIXER && out->training) {
        for (int t = 0; t <= T; t++) out->c_offsets[t] = t * E;
        for (int t = 0; t < T; t++)
            for (int e = 0; e < E; e++) out->c_experts[(size_t)t * E + e] = e;
    } else {
        memcpy(out->c_offsets, out->offsets, sizeof(int) * (T + 1));
        memcpy(out->c_experts, out->experts, sizeof(int) * out->offsets[T]);
    }
}

/* Switch load balancing (coef·E·Σ f_i P_i, no gradient through f) and the z-loss. Sums run
 * over tokens in order, so the values do not depend on the thread count. */
static void auxiliary_terms(const pm_router *router, pm_routing *out, int T) {
    const pm_router_config *cfg = &router->cfg;
    const struct pm_routing_state *state = out->state;
    const int E = cfg->num_experts;
    const int64_t pairs = out->offsets[T];
    out->lb_loss = 0.0f;
    out->z_loss = 0.0f;
    if (cfg->lb_coef > 0.0f) {
        double loss = 0.0;
        for (int i = 0; i < E; i++) {
            double mean_prob = 0.0;
            for (int t = 0; t < T; t++) mean_prob += state->probs[(size_t)t * E + i];
            mean_prob /= T;
            double fraction = pairs > 0 ? (double)out->load[i] / pairs : 0.0;
            loss += fraction * mean_prob;
            state->lb_dprob[i] = (float)(cfg->lb_coef * E * fraction / T);
        }
        out->lb_loss = (float)(cfg->lb_coef * E * loss);
    }
    if (cfg->z_coef > 0.0f) {
        double sum = 0.0;
        for (int t = 0; t < T; t++) sum += (double)state->lse[t] * state->lse[t];
        out->z_loss = (float)(cfg->z_coef * sum / T);
    }
}

int pm_router_forward(pm_router *router, pm_routing *out, const float *logits, int T,
                      bool training, const pm_rng *rng) {
    int status = check_batch(router, out, logits, T, "pm_router_forward");
    if (status < 0) return status;
    const pm_router_config *cfg = &router->cfg;
    const bool samples = training && (cfg->kind == PM_ROUTER_PROBMOE || cfg->kind == PM_ROUTER_PROBMOE_DYN);
    if (samples && !rng)
        return pm_fail(PM_ERR_ARG, "pm_router_forward: %s samples in training; pass a generator (rng)",
                       pm_router_kind_name(cfg->kind));
    status = ensure_scratch(router, omp_get_max_threads());
    if (status < 0) return status;
    struct pm_routing_state *state = out->state;
    const int E = cfg->num_experts, S = state->max_pairs;
    const bool soft = cfg->kind == PM_ROUTER_SOFTMOE;
    out->num_tokens = T;
    out->training = training;
    state->used_soft_k = router->soft_k;
    state->used_alpha = router->alpha;

#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *theta = logits + (size_t)t * E;
        softmax_token(theta, E, state->probs + (size_t)t * E, state->lse + t);
        if (soft) {
            double *scratch = thread_scratch(router);
            state->soft_t[t] = lapsum_threshold(theta, E, router->soft_k, router->alpha, scratch);
            lapsum_probs(theta, E, router->alpha, state->soft_t[t], state->soft_probs + (size_t)t * E);
        }
    }
    if (soft && router->tau < 0.0f) {
        float tau = softmoe_calibrate_tau(state->soft_probs, T, E, router->soft_k);
        if (tau < 0.0f) return pm_fail(PM_ERR_NOMEM, "pm_router_forward: out of memory calibrating tau");
        router->tau = tau;
    }
    const float tau = router->tau;

    const int groups = (T + DP_LANES - 1) / DP_LANES;
#pragma omp parallel for schedule(static)
    for (int g = 0; g < groups; g++) {
        const int first = g * DP_LANES, count = T - first < DP_LANES ? T - first : DP_LANES;
        group_ctx group = {router, logits, state->probs, first, count, training, rng,
                           thread_scratch(router)};
        if (samples) {
            probmoe_forward_group(&group, S, state->stage_experts, state->stage_weights,
                                  state->stage_counts);
            continue;
        }
        for (int t = first; t < first + count; t++) {
            token_ctx ctx = group_token_ctx(&group, t);
            state->stage_counts[t] = route_token(&ctx, state, tau, state->stage_experts + (size_t)t * S,
                                                 state->stage_weights + (size_t)t * S);
        }
    }
    assemble(router, out, T);
    auxiliary_terms(router, out, T);
    if (cfg->bias_rate > 0.0f && training)
        for (int i = 0; i < E; i++) router->bias_load[i] += out->load[i];
    return PM_OK;
}

/* Weights for a given selection: π_j, renormalised where the router's rule does so. */
static void given_weights(const pm_router_config *cfg, bool training, const float *probs,
                          const int *experts, int count, float *weights) {
    const bool sampled = training && (cfg->kind == PM_ROUTER_PROBMOE || cfg->kind == PM_ROUTER_PROBMOE_DYN);
    double sum = 0.0;
    for (int p = 0; p < count; p++) sum += probs[experts[p]];
    for (int p = 0; p < count; p++)
        weights[p] = cfg->norm_topk_prob && !sampled && sum > 0.0 ? (float)(probs[experts[p]] / sum)
                                                                  : probs[experts[p]];
}

int pm_router_forward_given(pm_router *router, pm_routing *out, const float *logits, int T,
                            bool training, const int *offsets, const int *experts) {
    int status = check_batch(router, out, logits, T, "pm_router_forward_given");
    if (status < 0) return status;
    const pm_router_config *cfg = &router->cfg;
    if (cfg->kind == PM_ROUTER_SOFTMOE)
        return pm_fail(PM_ERR_ARG, "pm_router_forward_given: softmoe weights come from LapSum, not from "
                       "a given selection");
    struct pm_routing_state *state = out->state;
    const int E = cfg->num_experts, S = state->max_pairs;
    if (!offsets || !experts || offsets[0] != 0)
        return pm_fail(PM_ERR_ARG, "pm_router_forward_given: offsets must start at 0 and experts be given");
    for (int t = 0; t < T; t++) {
        const int count = offsets[t + 1] - offsets[t];
        if (count < 0 || count > S)
            return pm_fail(PM_ERR_ARG, "pm_router_forward_given: token %d has %d experts; this router "
                           "allows 0 to %d", t, count, S);
        for (int p = offsets[t]; p < offsets[t + 1]; p++)
            if (experts[p] < 0 || experts[p] >= E || (p > offsets[t] && experts[p] <= experts[p - 1]))
                return pm_fail(PM_ERR_ARG, "pm_router_forward_given: token %d: experts must be increasing "
                               "indices below %d", t, E);
    }
    out->num_tokens = T;
    out->training = training;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const size_t at = (size_t)t * E;
        softmax_token(logits + at, E, state->probs + at, state->lse + t);
        const int count = offsets[t + 1] - offsets[t];
        memcpy(state->stage_experts + (size_t)t * S, experts + offsets[t], sizeof(int) * count);
        given_weights(cfg, training, state->probs + at, experts + offsets[t], count,
                      state->stage_weights + (size_t)t * S);
        state->stage_counts[t] = count;
    }
    assemble(router, out, T);
    auxiliary_terms(router, out, T);
    return PM_OK;
}

/* ---------------------------------------------------------------- backward */

/* dθ of one token for every router but probmoe in training (done by groups). */
static void token_backward(const token_ctx *ctx, const pm_routing *routing, const int *experts,
                           int count, const float *c, double *dtheta) {
    struct pm_routing_state *state = routing->state;
    const int t = ctx->token;
    if (ctx->router->cfg.kind == PM_ROUTER_DENSEMIXER && routing->training) {
        densemixer_backward(ctx, experts, count, c, dtheta);
    } else if (ctx->router->cfg.kind == PM_ROUTER_SOFTMOE) {
        state->token_d_soft_k[t] = state->token_d_alpha[t] = 0.0;
        softmoe_backward(ctx, state->soft_t[t], state->used_alpha, experts, count, c, dtheta,
                         &state->token_d_soft_k[t], &state->token_d_alpha[t]);
    } else {
        /* topk, and probmoe / probmoe-dyn / densemixer at inference */
        deterministic_backward(ctx, experts, count, c, dtheta);
    }
}

int pm_router_backward(pm_router *router, float *dlogits, const pm_routing *routing,
                       const float *logits, const float *c, float aux_scale) {
    if (!routing || routing->num_tokens < 1)
        return pm_fail(PM_ERR_STATE, "pm_router_backward: no forward pass to differentiate; call "
                       "pm_router_forward first");
    const int T = routing->num_tokens;
    int status = check_batch(router, routing, logits, T, "pm_router_backward");
    if (status < 0) return status;
    if (!dlogits || (!c && routing->c_offsets[T] > 0))
        return pm_fail(PM_ERR_ARG, "pm_router_backward: dlogits or c is NULL");
    status = ensure_scratch(router, omp_get_max_threads());
    if (status < 0) return status;
    const pm_router_config *cfg = &router->cfg;
    const struct pm_routing_state *state = routing->state;
    const int E = cfg->num_experts;
    const bool soft = cfg->kind == PM_ROUTER_SOFTMOE;
    const double z_scale = 2.0 * aux_scale * cfg->z_coef / T;
    const bool samples = routing->training &&
                         (cfg->kind == PM_ROUTER_PROBMOE || cfg->kind == PM_ROUTER_PROBMOE_DYN);
    /* per thread: dθ rows for one group of tokens, and one row for the aux gradient */
    const size_t rows_per_thread = (size_t)E * (DP_LANES + 1);
    double *rows = malloc(sizeof(double) * rows_per_thread * (size_t)router->scratch_threads);
    if (!rows) return pm_fail(PM_ERR_NOMEM, "pm_router_backward: out of memory");
    const int groups = (T + DP_LANES - 1) / DP_LANES;

#pragma omp parallel for schedule(static)
    for (int g = 0; g < groups; g++) {
        const int first = g * DP_LANES, count = T - first < DP_LANES ? T - first : DP_LANES;
        double *group_rows = rows + rows_per_thread * omp_get_thread_num();
        double *aux = group_rows + (size_t)E * DP_LANES;
        group_ctx group = {router, logits, state->probs, first, count, routing->training, NULL,
                           thread_scratch(router)};
        if (samples) probmoe_backward_group(&group, routing, c, group_rows);
        for (int t = first; t < first + count; t++) {
            double *dtheta = group_rows + (size_t)(t - first) * E;
            token_ctx ctx = group_token_ctx(&group, t);
            const int *experts = routing->experts + routing->offsets[t];
            const int count_t = routing->offsets[t + 1] - routing->offsets[t];
            const float *token_c = c ? c + routing->c_offsets[t] : NULL;
            if (!samples) token_backward(&ctx, routing, experts, count_t, token_c, dtheta);
            if (cfg->lb_coef > 0.0f || cfg->z_coef > 0.0f) {
                /* dL/dπ from the load-balancing loss, dL/dθ = 2·coef·lse·π / T from the z-loss */
                for (int i = 0; i < E; i++) aux[i] = aux_scale * state->lb_dprob[i];
                if (cfg->lb_coef > 0.0f) softmax_vjp_add(ctx.probs, aux, E, dtheta);
                for (int i = 0; i < E; i++) dtheta[i] += z_scale * state->lse[t] * ctx.probs[i];
            }
            float *row = dlogits + (size_t)t * E;
            for (int i = 0; i < E; i++) row[i] += (float)dtheta[i];
        }
    }
    free(rows);
    if (soft)
        for (int t = 0; t < T; t++) {
            router->d_soft_k += state->token_d_soft_k[t];
            router->d_alpha += state->token_d_alpha[t];
        }
    return PM_OK;
}
