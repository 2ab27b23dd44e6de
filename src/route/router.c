/* The batch loop shared by every router: validation, softmax, the router's rule over groups
 * of tokens on OpenMP threads, CSR assembly, statistics and the auxiliary terms. The rules
 * live in the routers' files (router_<name>.c) and the blocks they use. */
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/memory.h"
#include "route/router_internal.h"
#include "route/router_memory.h"
#include "route/subset_lanes.h"

/* ------------------------------------------------------------ router object */

static size_t scratch_doubles_of(const router_ops *ops, const pm_router_config *cfg) {
    const size_t own = ops->scratch_doubles ? ops->scratch_doubles(cfg) : 0;
    return own + 4 * (size_t)cfg->num_experts + 8;
}

static size_t router_scratch_doubles(const pm_router *router) { return scratch_doubles_of(router->ops, &router->cfg); }

/* Total floats of a list of values. */
static int value_floats(const router_value *values, int count, const pm_router_config *cfg) {
    int total = 0;
    for (int i = 0; i < count; i++) total += values[i].size(cfg);
    return total;
}

static void fill_values(float *out, const router_value *values, int count, const pm_router_config *cfg) {
    for (int i = 0; i < count; i++) {
        const int size = values[i].size(cfg);
        const float initial = values[i].initial(cfg);
        for (int j = 0; j < size; j++) *out++ = initial;
    }
}

pm_router *pm_router_create(const pm_router_config *cfg) {
    if (pm_router_config_check(cfg) < 0) return NULL;
    pm_router *router = calloc(1, sizeof *router);
    if (!router) {
        pm_fail(PM_ERR_NOMEM, "pm_router_create: out of memory");
        return NULL;
    }
    const router_ops *ops = router_ops_of(cfg->kind);
    router->cfg = *cfg;
    router->ops = ops;
    router->state_floats = value_floats(ops->state, ops->state_count, cfg);
    router->param_floats = value_floats(ops->params, ops->param_count, cfg);
    router->state = calloc((size_t)router->state_floats + 1, sizeof(float));
    router->params = calloc((size_t)router->param_floats + 1, sizeof(float));
    router->param_grads = calloc((size_t)router->param_floats + 1, sizeof(double));
    router->step_load = calloc(cfg->num_experts, sizeof(int64_t));
    router->scratch_per_thread = router_scratch_doubles(router);
    if (!router->state || !router->params || !router->param_grads || !router->step_load) {
        pm_router_free(router);
        pm_fail(PM_ERR_NOMEM, "pm_router_create: out of memory");
        return NULL;
    }
    fill_values(router->state, ops->state, ops->state_count, cfg);
    fill_values(router->params, ops->params, ops->param_count, cfg);
    if (router_uses_circuit(cfg) && !(router->circuit = router_compile_circuit(cfg))) {
        pm_router_free(router);
        return NULL;
    }
    return router;
}

void pm_router_free(pm_router *router) {
    if (!router) return;
    free(router->state);
    free(router->params);
    free(router->param_grads);
    free(router->step_load);
    free(router->scratch);
    circuit_free(router->circuit);
    free(router);
}

const pm_router_config *pm_router_get_config(const pm_router *router) { return &router->cfg; }

const route_rule *router_rule(const pm_router *router, bool training) {
    return training ? &router->ops->train : &router->ops->infer;
}

bool pm_router_samples(const pm_router_config *cfg) {
    const router_ops *ops = router_ops_of(cfg->kind);
    return ops && ops->train.samples;
}

bool pm_router_is_ablation(pm_router_kind kind) {
    const router_ops *ops = router_ops_of(kind);
    return ops && ops->ablation;
}

bool pm_router_is_opt_in(pm_router_kind kind) {
    const router_ops *ops = router_ops_of(kind);
    return ops && (ops->ablation || ops->opt_in);
}

bool pm_router_learns_budget(pm_router_kind kind) {
    const router_ops *ops = router_ops_of(kind);
    return ops && ops->learned_budget;
}

bool pm_router_uses_hf_aux_loss(pm_router_kind kind) {
    const router_ops *ops = router_ops_of(kind);
    return ops && ops->hf_aux_loss;
}

bool pm_router_subset_range(const pm_router_config *cfg, int *kmin, int *kmax) {
    const router_ops *ops = router_ops_of(cfg->kind);
    if (!ops || !ops->subset_range) return false;
    ops->subset_range(cfg, kmin, kmax);
    return true;
}

int pm_router_max_pairs(const pm_router_config *cfg, bool training) {
    const router_ops *ops = router_ops_of(cfg->kind);
    if (!ops) return 0;
    const route_rule *rule = training ? &ops->train : &ops->infer;
    return rule->compute_all ? cfg->num_experts : ops->max_pairs(cfg);
}

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

/* ---------------------------------------------------------- routing buffers */

/* Doubles of kept forward tables for max_tokens tokens: one block per full group of the
 * training rule's, or 0 when it keeps none or they would pass ROUTE_KEPT_MAX_BYTES. */
static uint64_t kept_doubles_of(const router_ops *ops, const pm_router_config *cfg, uint64_t max_tokens) {
    if (!ops->train.kept_doubles) return 0;
    const uint64_t doubles = sat_mul(max_tokens / DP_LANES, ops->train.kept_doubles(cfg));
    return doubles <= ROUTE_KEPT_MAX_BYTES / sizeof(double) ? doubles : 0;
}

pm_routing *pm_routing_create(const pm_router *router, int max_tokens) {
    if (!router || max_tokens < 1) {
        pm_fail(PM_ERR_ARG, "pm_routing_create: need a router and max_tokens >= 1 (got %d)", max_tokens);
        return NULL;
    }
    const pm_router_config *cfg = &router->cfg;
    const router_ops *ops = router->ops;
    const size_t T = (size_t)max_tokens, E = (size_t)cfg->num_experts;
    const size_t S = (size_t)ops->max_pairs(cfg);
    size_t compute = S;
    for (int training = 0; training <= 1; training++)
        if ((size_t)pm_router_max_pairs(cfg, training) > compute) compute = (size_t)pm_router_max_pairs(cfg, training);
    /* the CSR offsets are ints */
    if (T * (compute > S ? compute : S) > (size_t)INT_MAX) {
        pm_fail(PM_ERR_ARG, "pm_routing_create: %d tokens of up to %zu (token, expert) pairs each are more than the %d "
                "pairs a routing holds; route fewer tokens at a time", max_tokens, compute > S ? compute : S, INT_MAX);
        return NULL;
    }
    const size_t token_floats = ops->token_floats ? ops->token_floats(cfg) : 0;
    const size_t token_doubles = ops->token_doubles ? ops->token_doubles(cfg) : 0;
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
        state->batch_params = calloc((size_t)router->param_floats + 1, sizeof(float));
        state->token_float_stride = token_floats;
        state->token_double_stride = token_doubles;
        state->token_floats = malloc(sizeof(float) * (T * token_floats + 1));
        state->token_doubles = malloc(sizeof(double) * (T * token_doubles + 1));
        const uint64_t kept = kept_doubles_of(ops, cfg, T);
        if (kept > 0) {
            state->kept_group_stride = ops->train.kept_doubles(cfg);
            state->kept_tables = malloc(sizeof(double) * kept);
        }
    }
    bool complete = routing && state && routing->offsets && routing->experts && routing->weights &&
                    routing->c_offsets && routing->c_experts && routing->load && state->probs &&
                    state->lse && state->stage_experts && state->stage_weights &&
                    state->stage_counts && state->lb_dprob && state->batch_params && state->token_floats &&
                    state->token_doubles && (state->kept_tables || kept_doubles_of(ops, cfg, T) == 0);
    if (!complete) {
        pm_routing_free(routing);
        if (!routing) free(state);
        pm_fail(PM_ERR_NOMEM, "pm_routing_create: out of memory for %d tokens", max_tokens);
        return NULL;
    }
    return routing;
}

/* Keep these two in step with pm_router_create and pm_routing_create above. */
uint64_t router_memory_bytes(const pm_router_config *cfg) {
    const router_ops *ops = router_ops_of(cfg->kind);
    if (!ops) return 0;
    const uint64_t state = (uint64_t)value_floats(ops->state, ops->state_count, cfg) + 1;
    const uint64_t params = (uint64_t)value_floats(ops->params, ops->param_count, cfg) + 1;
    const uint64_t threads = (uint64_t)omp_get_max_threads();
    uint64_t bytes = sizeof(pm_router) + sizeof(float) * state + (sizeof(float) + sizeof(double)) * params;
    bytes = sat_add(bytes, sizeof(int64_t) * (uint64_t)cfg->num_experts);
    if (router_uses_circuit(cfg)) bytes = sat_add(bytes, router_circuit_bytes(cfg));
    return sat_add(bytes, sat_mul3(sizeof(double), scratch_doubles_of(ops, cfg), threads));
}

uint64_t routing_memory_bytes(const pm_router_config *cfg, uint64_t max_tokens) {
    const router_ops *ops = router_ops_of(cfg->kind);
    if (!ops) return 0;
    const uint64_t T = max_tokens, E = (uint64_t)cfg->num_experts, S = (uint64_t)ops->max_pairs(cfg);
    uint64_t compute = S;
    for (int training = 0; training <= 1; training++)
        if ((uint64_t)pm_router_max_pairs(cfg, training) > compute)
            compute = (uint64_t)pm_router_max_pairs(cfg, training);
    const uint64_t token_floats = ops->token_floats ? ops->token_floats(cfg) : 0;
    const uint64_t token_doubles = ops->token_doubles ? ops->token_doubles(cfg) : 0;
    const uint64_t params = (uint64_t)value_floats(ops->params, ops->param_count, cfg) + 1;
    /* per token: offsets and c_offsets, lse, stage_counts; experts, weights and their staging
     * per pair; the compute list; probs */
    const uint64_t per_token = sizeof(int) * 2 + sizeof(float) + sizeof(int) + 4 * 4 * S + sizeof(int) * compute +
                               sizeof(float) * E + sizeof(float) * token_floats + sizeof(double) * token_doubles;
    uint64_t bytes = sizeof(pm_routing) + sizeof(struct pm_routing_state) + 2 * sizeof(int) +
                     (sizeof(int64_t) + sizeof(float)) * E + sizeof(float) * params + sizeof(float) +
                     sizeof(double);
    bytes = sat_add(bytes, sat_mul(sizeof(double), kept_doubles_of(ops, cfg, T)));
    return sat_add(bytes, sat_mul(T, per_token));
}

void pm_routing_free(pm_routing *routing) {
    if (!routing) return;
    struct pm_routing_state *state = routing->state;
    if (state) {
        free(state->probs);
        free(state->lse);
        free(state->stage_experts);
        free(state->stage_weights);
        free(state->stage_counts);
        free(state->token_floats);
        free(state->token_doubles);
        free(state->kept_tables);
        free(state->batch_params);
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
    if (routing->num_experts != E || routing->state->max_pairs != router->ops->max_pairs(&router->cfg) ||
        routing->state->token_float_stride !=
            (router->ops->token_floats ? router->ops->token_floats(&router->cfg) : 0))
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

/* Offsets, compaction of the staged pairs, the compute list and the statistics. */
static void assemble(const pm_router *router, pm_routing *out, int T) {
    const pm_router_config *cfg = &router->cfg;
    const struct pm_routing_state *state = out->state;
    const int E = cfg->num_experts, S = state->max_pairs;
    out->offsets[0] = 0;
    memset(out->load, 0, sizeof(int64_t) * E);
    bool full = true; /* every token staged S pairs: the staging is the CSR layout already */
    for (int t = 0; t < T; t++) full = full && state->stage_counts[t] == S;
    if (full) {
        memcpy(out->experts, state->stage_experts, sizeof(int) * (size_t)T * S);
        memcpy(out->weights, state->stage_weights, sizeof(float) * (size_t)T * S);
        for (int t = 0; t < T; t++) out->offsets[t + 1] = (t + 1) * S;
        for (size_t p = 0; p < (size_t)T * S; p++) out->load[out->experts[p]]++;
    }
    for (int t = 0; !full && t < T; t++) {
        const int count = state->stage_counts[t], base = out->offsets[t];
        memcpy(out->experts + base, state->stage_experts + (size_t)t * S, sizeof(int) * count);
        memcpy(out->weights + base, state->stage_weights + (size_t)t * S, sizeof(float) * count);
        for (int p = 0; p < count; p++) out->load[out->experts[base + p]]++;
        out->offsets[t + 1] = base + count;
    }
    out->mean_active = (double)out->offsets[T] / T;
    if (state->rule->compute_all) {
        for (int t = 0; t <= T; t++) out->c_offsets[t] = t * E;
        for (int t = 0; t < T; t++)
            for (int e = 0; e < E; e++) out->c_experts[(size_t)t * E + e] = e;
    } else {
        memcpy(out->c_offsets, out->offsets, sizeof(int) * (T + 1));
        memcpy(out->c_experts, out->experts, sizeof(int) * out->offsets[T]);
    }
}

/* Switch load balancing (coef·E·Σ f_i P_i, no gradient through f) and the z-loss. Sums run
 * over tokens in order, so the values do not depend on the thread count. In a data-parallel
 * training batch the sums are summed over the ranks first: every rank gets the global batch's
 * values (and each rank's tokens their share of the gradient). */
static int auxiliary_terms(const pm_router *router, pm_routing *out, int T) {
    const pm_router_config *cfg = &router->cfg;
    struct pm_routing_state *state = out->state;
    const int E = cfg->num_experts;
    const batch_comm *comm = out->training ? router->comm : NULL;
    out->lb_loss = 0.0f;
    out->z_loss = 0.0f;
    state->aux_tokens = T;
    if (!(cfg->lb_coef > 0.0f) && !(cfg->z_coef > 0.0f)) return PM_OK;
    /* [Σ_t π_{t,i} (E), load_i (E), pairs, tokens, Σ_t lse_t²] */
    double *sums = calloc((size_t)2 * E + 3, sizeof(double));
    if (!sums) return pm_fail(PM_ERR_NOMEM, "router: out of memory for the auxiliary losses");
    for (int i = 0; cfg->lb_coef > 0.0f && i < E; i++) {
        for (int t = 0; t < T; t++) sums[i] += state->probs[(size_t)t * E + i];
        sums[E + i] = (double)out->load[i];
    }
    sums[2 * E] = (double)out->offsets[T];
    sums[2 * E + 1] = T;
    for (int t = 0; cfg->z_coef > 0.0f && t < T; t++) sums[2 * E + 2] += (double)state->lse[t] * state->lse[t];
    if (comm) comm->sum_doubles(comm, sums, 2 * E + 3);
    const double pairs = sums[2 * E], tokens = sums[2 * E + 1];
    state->aux_tokens = tokens;
    if (cfg->lb_coef > 0.0f) {
        double loss = 0.0;
        for (int i = 0; i < E; i++) {
            const double mean_prob = sums[i] / tokens, fraction = pairs > 0 ? sums[E + i] / pairs : 0.0;
            loss += fraction * mean_prob;
            state->lb_dprob[i] = (float)(cfg->lb_coef * E * fraction / tokens);
        }
        out->lb_loss = (float)(cfg->lb_coef * E * loss);
    }
    if (cfg->z_coef > 0.0f) out->z_loss = (float)(cfg->z_coef * sums[2 * E + 2] / tokens);
    free(sums);
    return PM_OK;
}

/* The rule of this batch and the settings every group of it shares. */
static void begin_batch(pm_router *router, pm_routing *out, int T, bool training) {
    struct pm_routing_state *state = out->state;
    state->rule = router_rule(router, training);
    state->renormalize = router->cfg.norm_topk_prob && state->rule->softmax_weights && !state->rule->unnormalized;
    memcpy(state->batch_params, router->params, sizeof(float) * (size_t)router->param_floats);
    out->num_tokens = T;
    out->training = training;
    state->tables_kept = false; /* until a forward pass that keeps them has run */
}

static group_ctx make_group(const pm_router *router, const pm_routing *routing, const float *logits, int g,
                            int T, const pm_rng *rng) {
    const int first = g * DP_LANES;
    group_ctx group = {router, routing->state, logits, routing->state->probs, first,
                       T - first < DP_LANES ? T - first : DP_LANES, routing->training,
                       routing->state->renormalize, rng, thread_scratch(router)};
    return group;
}

static int after_forward(pm_router *router, pm_routing *out, int T) {
    assemble(router, out, T);
    return auxiliary_terms(router, out, T);
}

pm_status pm_router_forward(pm_router *router, pm_routing *out, const float *logits, int T, bool training,
                            const pm_rng *rng) {
    int status = check_batch(router, out, logits, T, "pm_router_forward");
    if (status < 0) return status;
    const route_rule *rule = router_rule(router, training);
    if (rule->samples && !rng)
        return pm_fail(PM_ERR_ARG, "pm_router_forward: %s samples in training; pass a generator (rng)",
                       router->ops->name);
    status = ensure_scratch(router, omp_get_max_threads());
    if (status < 0) return status;
    struct pm_routing_state *state = out->state;
    const int E = router->cfg.num_experts;
    begin_batch(router, out, T, training);

    if (!rule->own_softmax) {
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++)
            route_softmax(logits + (size_t)t * E, E, state->probs + (size_t)t * E, state->lse + t);
    }
    /* (no rule with its own softmax has a prepare step, which may read π) */
    if (router->ops->prepare) {
        status = router->ops->prepare(router, out, logits, T);
        if (status < 0) return status;
    }
    const int groups = (T + DP_LANES - 1) / DP_LANES;
#pragma omp parallel for schedule(static)
    for (int g = 0; g < groups; g++) {
        group_ctx group = make_group(router, out, logits, g, T, rng);
        rule->forward(&group);
    }
    state->tables_kept = state->kept_tables && rule->kept_doubles;
    status = after_forward(router, out, T);
    if (status < 0) return status;
    /* the training load the router's per-step hook sees (not that of replayed selections) */
    if (training)
        for (int i = 0; i < E; i++) router->step_load[i] += out->load[i];
    return PM_OK;
}

pm_status pm_router_forward_given(pm_router *router, pm_routing *out, const float *logits, int T,
                                  bool training, const int *offsets, const int *experts) {
    int status = check_batch(router, out, logits, T, "pm_router_forward_given");
    if (status < 0) return status;
    const pm_router_config *cfg = &router->cfg;
    if (!router_rule(router, training)->softmax_weights)
        return pm_fail(PM_ERR_ARG, "pm_router_forward_given: %s weights are not π of the selected experts, so "
                       "a given selection cannot be replayed", router->ops->name);
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
    begin_batch(router, out, T, training);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const size_t at = (size_t)t * E;
        route_softmax(logits + at, E, state->probs + at, state->lse + t);
        const int count = offsets[t + 1] - offsets[t];
        memcpy(state->stage_experts + (size_t)t * S, experts + offsets[t], sizeof(int) * count);
        softmax_weights(state->probs + at, experts + offsets[t], count, state->renormalize,
                        state->stage_weights + (size_t)t * S);
        state->stage_counts[t] = count;
    }
    return after_forward(router, out, T);
}

/* ---------------------------------------------------------------- backward */

pm_status pm_router_backward(pm_router *router, float *dlogits, const pm_routing *routing, const float *logits,
                             const float *c, float aux_scale) {
    if (!routing || routing->num_tokens < 1)
        return pm_fail(PM_ERR_STATE, "pm_router_backward: no forward pass to differentiate; call "
                       "pm_router_forward first");
    const int T = routing->num_tokens;
    int status = check_batch(router, routing, logits, T, "pm_router_backward");
    if (status < 0) return status;
    if (!dlogits || (!c && routing->c_offsets[T] > 0))
        return pm_fail(PM_ERR_ARG, "pm_router_backward: dlogits or c is NULL");
    static const float no_pairs[1] = {0.0f};
    if (!c) c = no_pairs; /* no compute pairs: the blocks offset c by 0 and read nothing */
    status = ensure_scratch(router, omp_get_max_threads());
    if (status < 0) return status;
    const pm_router_config *cfg = &router->cfg;
    const struct pm_routing_state *state = routing->state;
    const int E = cfg->num_experts;
    const double z_scale = 2.0 * aux_scale * cfg->z_coef / state->aux_tokens;
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
        group_ctx group = make_group(router, routing, logits, g, T, NULL);
        state->rule->backward(&group, routing, c, group_rows);
        for (int t = first; t < first + count; t++) {
            double *dtheta = group_rows + (size_t)(t - first) * E;
            const float *probs = state->probs + (size_t)t * E;
            if (cfg->lb_coef > 0.0f || cfg->z_coef > 0.0f) {
                /* dL/dπ from the load-balancing loss, dL/dθ = 2·coef·lse·π / T from the z-loss */
                for (int i = 0; i < E; i++) aux[i] = aux_scale * state->lb_dprob[i];
                if (cfg->lb_coef > 0.0f) softmax_vjp_add(probs, aux, E, dtheta);
                for (int i = 0; i < E; i++) dtheta[i] += z_scale * state->lse[t] * probs[i];
            }
            float *row = dlogits + (size_t)t * E;
            for (int i = 0; i < E; i++) row[i] += (float)dtheta[i];
        }
    }
    free(rows);
    if (router->ops->finish_backward) router->ops->finish_backward(router, routing);
    return PM_OK;
}

const float *pm_routing_probs(const pm_routing *routing) {
    return routing && routing->state ? routing->state->probs : NULL;
}
