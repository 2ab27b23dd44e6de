/* The sampling and MAP blocks on a compiled circuit (circuit.h): the same rules as
 * router_sample.c's, for impl = circuit and for constraints the DP cannot express (the
 * group limit of probmoe-group). Tokens in the linear system go through the circuit
 * CIRCUIT_LANES at a time; the rest one at a time in logs. Token t draws from substream t. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "route/circuit_compile.h"
#include "route/route_args.h"
#include "route/router_internal.h"

bool router_uses_circuit(const pm_router_config *cfg) {
    const router_ops *ops = router_ops_of(cfg->kind);
    return ops && ops->subset_range && (cfg->impl == PM_IMPL_CIRCUIT || ops->group_limit);
}

bool pm_router_group_limit(const pm_router_config *cfg, int *groups, int *max_groups) {
    const router_ops *ops = router_ops_of(cfg->kind);
    if (!ops || !ops->group_limit) return false;
    ops->group_limit(cfg, groups, max_groups);
    return true;
}

int router_check_circuit(const pm_router_config *cfg) {
    int kmin, kmax, groups, max_groups;
    if (pm_router_group_limit(cfg, &groups, &max_groups))
        return circuit_check_groups_size(cfg->num_experts, cfg->k, groups, max_groups);
    router_ops_of(cfg->kind)->subset_range(cfg, &kmin, &kmax);
    return circuit_check_cardinality_size(cfg->num_experts, kmax);
}

circuit *router_compile_circuit(const pm_router_config *cfg) {
    const router_ops *ops = router_ops_of(cfg->kind);
    int kmin, kmax, groups, max_groups;
    if (pm_router_group_limit(cfg, &groups, &max_groups))
        return circuit_compile_groups(cfg->num_experts, cfg->k, groups, max_groups);
    ops->subset_range(cfg, &kmin, &kmax);
    return circuit_compile_cardinality(cfg->num_experts, kmin, kmax);
}

/* Scratch: the pass's workspace for CIRCUIT_LANES tokens, their u and Cov·u (token-major), one
 * token's z ⊙ c, and the sampler's stack. circuit_map uses the start of the workspace. */
static size_t scratch_of(const circuit *c) {
    const size_t E = (size_t)c->num_items;
    return circuit_workspace(c, CIRCUIT_LANES) + 2 * E * CIRCUIT_LANES + E + (size_t)c->num_nodes / 2 + 1;
}

size_t router_circuit_scratch(const pm_router_config *cfg) {
    circuit *c = router_compile_circuit(cfg);
    const size_t doubles = c ? scratch_of(c) : 0;
    circuit_free(c);
    return doubles;
}

uint64_t router_circuit_bytes(const pm_router_config *cfg) {
    circuit *c = router_compile_circuit(cfg);
    const uint64_t bytes = c ? c->bytes : 0;
    circuit_free(c);
    return bytes;
}

bool pm_router_circuit_info(const pm_router *router, pm_circuit_info *info) {
    if (!router || !router->circuit) return false;
    if (info) {
        info->nodes = router->circuit->num_nodes;
        info->edges = router->circuit->num_edges;
        info->bytes = router->circuit->bytes;
        info->build_seconds = router->circuit->build_seconds;
    }
    return true;
}

pm_status pm_router_subset_marginals(const pm_router *router, const float *theta, float *marginals) {
    if (!router || !marginals) return pm_fail(PM_ERR_ARG, "pm_router_subset_marginals: router or marginals is NULL");
    const pm_router_config *cfg = &router->cfg;
    int kmin, kmax;
    if (!pm_router_subset_range(cfg, &kmin, &kmax))
        return pm_fail(PM_ERR_ARG, "pm_router_subset_marginals: %s has no subset distribution", router->ops->name);
    int status = check_finite(theta, cfg->num_experts, "pm_router_subset_marginals", "theta");
    if (status < 0) return status;
    if (!router->circuit) return pm_subset_marginals(theta, cfg->num_experts, kmin, kmax, marginals);
    const circuit *c = router->circuit;
    double *workspace = malloc(sizeof(double) * (circuit_workspace(c, 1) + (size_t)c->num_items));
    if (!workspace) return pm_fail(PM_ERR_NOMEM, "pm_router_subset_marginals: out of memory");
    circuit_eval ev;
    circuit_forward(&ev, c, &theta, 1, !circuit_is_linear(c, theta), workspace);
    double *m = workspace + circuit_workspace(c, 1);
    circuit_marginals(&ev, m);
    for (int i = 0; i < c->num_items; i++) marginals[i] = (float)m[i];
    free(workspace);
    return PM_OK;
}

/* The group's tokens split by number system: returns how many are linear (tokens[0..]),
 * the log ones follow. */
static int split_tokens(const group_ctx *group, int *tokens) {
    const circuit *c = group->router->circuit;
    const int E = c->num_items;
    int linear = 0, log_at = group->count;
    for (int t = group->first; t < group->first + group->count; t++) {
        if (circuit_is_linear(c, group->logits + (size_t)t * E)) tokens[linear++] = t;
        else tokens[--log_at] = t;
    }
    return linear;
}

/* Runs the upward pass for tokens[0..lanes) in one number system. */
static void forward_tokens(const group_ctx *group, const int *tokens, int lanes, bool log_domain,
                           circuit_eval *ev) {
    const circuit *c = group->router->circuit;
    const float *theta[CIRCUIT_LANES];
    for (int l = 0; l < lanes; l++) theta[l] = group->logits + (size_t)tokens[l] * c->num_items;
    circuit_forward(ev, c, theta, lanes, log_domain, group->scratch);
}

static int *sample_stack(const group_ctx *group) {
    const circuit *c = group->router->circuit;
    return (int *)(group->scratch + circuit_workspace(c, CIRCUIT_LANES) + 2 * (size_t)c->num_items * CIRCUIT_LANES +
                   (size_t)c->num_items);
}

void circuit_forward_sample(const group_ctx *group) {
    const circuit *c = group->router->circuit;
    const int E = c->num_items;
    float *probs = group->state->probs, *lse = group->state->lse; /* this rule's own softmax */
    for (int t = group->first; t < group->first + group->count; t++)
        route_softmax(group->logits + (size_t)t * E, E, probs + (size_t)t * E, lse + t);
    int tokens[CIRCUIT_LANES];
    const int linear = split_tokens(group, tokens);
    /* the linear tokens together, then each log one alone */
    for (int start = 0; start < group->count; start += start < linear ? linear : 1) {
        const bool log_domain = start >= linear;
        const int lanes = log_domain ? 1 : linear;
        circuit_eval ev;
        forward_tokens(group, tokens + start, lanes, log_domain, &ev);
        for (int l = 0; l < lanes; l++) {
            const int t = tokens[start + l];
            pm_rng rng;
            pm_rng_substream(group->rng, group->router->first_token + (uint32_t)t, &rng);
            int *experts = stage_experts(group, t);
            float *weights = stage_weights(group, t);
            const int count = circuit_sample(&ev, l, &rng, experts, sample_stack(group));
            /* the forward value of g_j π_j is z_j π_j: no renormalisation */
            for (int p = 0; p < count; p++) weights[p] = probs[(size_t)t * E + experts[p]];
            group->state->stage_counts[t] = count;
        }
    }
}

void circuit_backward_marginal(const group_ctx *group, const pm_routing *routing, const float *c_values,
                               double *rows) {
    const circuit *c = group->router->circuit;
    const int E = c->num_items;
    int tokens[CIRCUIT_LANES];
    const int linear = split_tokens(group, tokens);
    double *u = group->scratch + circuit_workspace(c, CIRCUIT_LANES), *cov_u = u + (size_t)E * CIRCUIT_LANES;
    double *zc = cov_u + (size_t)E * CIRCUIT_LANES;
    for (int start = 0; start < group->count; start += start < linear ? linear : 1) {
        const bool log_domain = start >= linear;
        const int lanes = log_domain ? 1 : linear;
        /* u = z ⊙ c ⊙ π per token */
        memset(u, 0, sizeof(double) * (size_t)E * lanes);
        for (int l = 0; l < lanes; l++) {
            const int t = tokens[start + l];
            for (int p = routing->offsets[t]; p < routing->offsets[t + 1]; p++) {
                const int j = routing->experts[p];
                u[(size_t)l * E + j] = (double)c_values[routing->c_offsets[t] + p - routing->offsets[t]] *
                                       group->probs[(size_t)t * E + j];
            }
        }
        circuit_eval ev;
        forward_tokens(group, tokens + start, lanes, log_domain, &ev);
        circuit_cov_mv(&ev, u, cov_u, NULL);
        for (int l = 0; l < lanes; l++) {
            const int t = tokens[start + l];
            double *dtheta = rows + (size_t)(t - group->first) * E;
            memcpy(dtheta, cov_u + (size_t)l * E, sizeof(double) * E);
            /* + softmax-VJP of z ⊙ c */
            memset(zc, 0, sizeof(double) * E);
            for (int p = routing->offsets[t]; p < routing->offsets[t + 1]; p++)
                zc[routing->experts[p]] = c_values[routing->c_offsets[t] + p - routing->offsets[t]];
            softmax_vjp_add(group->probs + (size_t)t * E, zc, E, dtheta);
        }
    }
}

void circuit_forward_map(const group_ctx *group) {
    const circuit *c = group->router->circuit;
    const int E = c->num_items;
    for (int t = group->first; t < group->first + group->count; t++) {
        int *experts = stage_experts(group, t);
        float *weights = stage_weights(group, t);
        const int count = circuit_map(c, group->logits + (size_t)t * E, experts, group->scratch);
        softmax_weights(group->probs + (size_t)t * E, experts, count, group->renormalize, weights);
        group->state->stage_counts[t] = count;
    }
}
