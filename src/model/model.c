/* The MoE decoder of every family of the architecture table (arch.c): buffers, forward pass and
 * backward pass. */
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/error.h"
#include "core/memory.h"
#include "model/arch.h"
#include "model/model_internal.h"
#include "moe/shared_expert.h"
#include "nn/nn.h"
#include "route/router_internal.h"
#include "route/router_memory.h"

int model_pairs_per_token(const pm_router_config *router) {
    const int training = pm_router_max_pairs(router, true), inference = pm_router_max_pairs(router, false);
    return training > inference ? training : inference;
}

/* ------------------------------------------------------------- lifecycle */

/*
 * The activation arena: every buffer a forward and backward pass needs for max_batch ×
 * max_seq tokens, laid out by this one function on the model's single allocation (and, on an
 * empty arena, for the memory estimate). A layer's buffers are consecutive; `layers` may be
 * NULL, then one stand-in receives every layer's pointers.
 */
static void activation_layout(pm_arena *arena, const pm_model_config *cfg, int max_batch, int max_seq,
                              pm_model *model) {
    const uint64_t B = (uint64_t)max_batch, S = (uint64_t)max_seq, T = B * S, H = (uint64_t)cfg->hidden_size;
    const uint64_t KV = H / (uint64_t)cfg->num_heads * (uint64_t)cfg->num_kv_heads, E = (uint64_t)cfg->num_experts;
    const uint64_t V = (uint64_t)cfg->vocab_size, pairs = sat_mul(T, (uint64_t)model_pairs_per_token(&cfg->router));
    const int tokens = T > INT_MAX ? INT_MAX : (int)T;
    const uint64_t shared = (uint64_t)cfg->shared_expert_size, dense = (uint64_t)cfg->dense_intermediate_size;
    const uint64_t widest = (uint64_t)model_mlp_width(cfg); /* the backward scratch serves both */
    layer_state stand_in;
    for (int l = 0; l < cfg->num_layers; l++) {
        layer_state *layer = model->layers ? &model->layers[l] : &stand_in;
        layer->x_in = arena_floats(arena, sat_mul(T, H));
        layer->ln1 = arena_floats(arena, sat_mul(T, H));
        layer->rstd1 = arena_floats(arena, T);
        layer->q_raw = arena_floats(arena, sat_mul(T, H));
        layer->q_rstd = arena_floats(arena, T);
        layer->q_rot = arena_floats(arena, sat_mul(T, H));
        layer->k_raw = arena_floats(arena, sat_mul(T, KV));
        layer->k_rstd = arena_floats(arena, T);
        layer->k_rot = arena_floats(arena, sat_mul(T, KV));
        layer->v = arena_floats(arena, sat_mul(T, KV));
        layer->att = arena_floats(arena, sat_mul3(B * (uint64_t)cfg->num_heads, S, S));
        layer->attn_out = arena_floats(arena, sat_mul(T, H));
        layer->x_mid = arena_floats(arena, sat_mul(T, H));
        layer->ln2 = arena_floats(arena, sat_mul(T, H));
        layer->rstd2 = arena_floats(arena, T);
        layer->router_logits = layer->shared_gate_up = layer->shared_act = layer->shared_out = NULL;
        layer->shared_scale = NULL;
        if (!pm_model_layer_is_moe(cfg, l)) { /* the dense MLP's activations, as a shared expert's */
            layer->shared_gate_up = arena_floats(arena, sat_mul(T, 2 * dense));
            layer->shared_act = arena_floats(arena, sat_mul(T, dense));
            layer->shared_out = arena_floats(arena, sat_mul(T, H));
            continue;
        }
        layer->router_logits = arena_floats(arena, sat_mul(T, E));
        if (shared > 0) {
            layer->shared_gate_up = arena_floats(arena, sat_mul(T, 2 * shared));
            layer->shared_act = arena_floats(arena, sat_mul(T, shared));
            layer->shared_out = arena_floats(arena, sat_mul(T, H));
            layer->shared_scale = arena_floats(arena, T);
        }
        moe_state_layout(&layer->moe, arena, (int)H, cfg->intermediate_size, (int)E, tokens, pairs);
    }
    model->positions = arena_take(arena, T, sizeof(int32_t));
    model->x_final = arena_floats(arena, sat_mul(T, H));
    model->lnf = arena_floats(arena, sat_mul(T, H));
    model->rstdf = arena_floats(arena, T);
    model->logits = arena_floats(arena, sat_mul(T, V));
    model->d_logits = arena_floats(arena, sat_mul(T, V));
    model->d_resid = arena_floats(arena, sat_mul(T, H));
    model->d_ln = arena_floats(arena, sat_mul(T, H));
    model->d_q = arena_floats(arena, sat_mul(T, H));
    model->d_q_raw = arena_floats(arena, sat_mul(T, H));
    model->d_k = arena_floats(arena, sat_mul(T, KV));
    model->d_k_raw = arena_floats(arena, sat_mul(T, KV));
    model->d_v = arena_floats(arena, sat_mul(T, KV));
    model->d_attn = arena_floats(arena, sat_mul(T, H));
    model->d_router = arena_floats(arena, sat_mul(T, E));
    model->c = arena_floats(arena, pairs);
    model->d_shared_gate_up = model->d_shared_act = model->d_shared_out = model->d_shared_scale = NULL;
    if (widest > 0) {
        model->d_shared_gate_up = arena_floats(arena, sat_mul(T, 2 * widest));
        model->d_shared_act = arena_floats(arena, sat_mul(T, widest));
        model->d_shared_out = arena_floats(arena, sat_mul(T, H));
        model->d_shared_scale = arena_floats(arena, T);
    }
    /* the attention backward's scratch for the threads there are now (more later are capped) */
    model->attention_threads = omp_get_max_threads();
    model->attention_scratch = arena_take(arena, attention_backward_scratch_bytes(max_seq, model->attention_threads), 1);
    moe_scratch_layout(&model->moe_scratch, arena, (int)H, cfg->intermediate_size, pairs);
}

/* The planned size of the arena for cfg and max_batch × max_seq tokens. */
static uint64_t activation_arena_bytes(const pm_model_config *cfg, int max_batch, int max_seq) {
    pm_arena plan = {0};
    pm_model stand_in;
    memset(&stand_in, 0, sizeof stand_in);
    activation_layout(&plan, cfg, max_batch, max_seq, &stand_in);
    return plan.used;
}

/* A MoE layer's router, its routing and its experts' weight views (the activations are the
 * arena's); a dense layer has none. */
static bool layer_create(pm_model *model, layer_state *layer, int l) {
    const pm_model_config *cfg = &model->cfg;
    const int T = model->max_batch * model->max_seq, E = cfg->num_experts;
    layer->moe_index = -1;
    for (int m = 0; m < model->num_moe; m++)
        if (model->moe_layers[m] == l) layer->moe_index = m;
    if (layer->moe_index < 0) return true;
    layer->router = pm_router_create(&cfg->router);
    layer->routing = layer->router ? pm_routing_create(layer->router, T) : NULL;
    layer->experts = calloc((size_t)E, sizeof(moe_expert));
    if (!layer->router || !layer->routing || !layer->experts) return false;
    const layer_params *lp = &model->layer_params[l];
    for (int e = 0; e < E; e++) {
        const int first = lp->expert0 + 3 * e;
        layer->experts[e] = (moe_expert){param_weights(model, first), param_weights(model, first + 1),
                                         param_weights(model, first + 2), param_grads(model, first),
                                         param_grads(model, first + 1), param_grads(model, first + 2), NULL, NULL,
                                         NULL};
    }
    /* the products read each expert's gate and up as one matrix, which the parameter table
     * lays out so: anything else is a bug of that table */
    if (moe_experts_check(layer->experts, E, cfg->hidden_size, cfg->intermediate_size) < 0) {
        fprintf(stderr, "probmoe: %s; this is a bug in probmoe, please report it\n", pm_last_error());
        abort();
    }
    return true;
}

static void layer_free(layer_state *layer) {
    pm_routing_free(layer->routing);
    pm_router_free(layer->router);
    moe_owner_free(&layer->owner);
    free(layer->experts);
}

/* ---------------------------------------------------------------- memory */

/* Keep in step with the allocations of layer_alloc and pm_model_create above; a test
 * (test_memory) compares the estimate with what pm_model_create allocates. */
pm_status pm_model_memory_estimate(const pm_model_config *cfg, int max_batch, int max_seq, bool training,
                                   pm_memory_estimate *out) {
    if (!out) return pm_fail(PM_ERR_ARG, "pm_model_memory_estimate: out is NULL");
    memset(out, 0, sizeof *out);
    int status = pm_model_config_check(cfg);
    if (status < 0) return status;
    if (max_batch < 1 || max_seq < 1)
        return pm_fail(PM_ERR_ARG, "pm_model_memory_estimate: batch %d × sequence %d; need at least 1 × 1", max_batch,
                       max_seq);
    const uint64_t T = (uint64_t)max_batch * (uint64_t)max_seq, L = (uint64_t)cfg->num_layers;
    const uint64_t E = (uint64_t)cfg->num_experts, M = (uint64_t)pm_model_moe_layers(cfg);
    const uint64_t floats = model_param_floats(cfg);
    out->parameters = sat_mul(sizeof(float), floats);
    /* the gradient buffer is allocated zeroed and written only by a backward pass: without
     * training its pages are never touched, so they cost no memory */
    out->gradients = training ? out->parameters : 0;
    out->optimizer = training ? sat_mul(2 * sizeof(float), floats) : 0;
    /* the activation arena, then each MoE layer's router, routing and expert views */
    uint64_t layer = sat_add(router_memory_bytes(&cfg->router), routing_memory_bytes(&cfg->router, T));
    layer = sat_add(layer, sizeof(moe_expert) * E);
    out->activation_arena = activation_arena_bytes(cfg, max_batch, max_seq);
    uint64_t activations = sat_add(out->activation_arena, sat_mul(M, layer));
    /* the struct, its layers and budget values, the parameter table and names */
    activations = sat_add(activations, sizeof(pm_model) + L * (sizeof(layer_state) + sizeof(layer_params)) +
                                           M * (2 * sizeof(float) + sizeof(int)) +
                                           (uint64_t)model_param_entries(cfg) * (sizeof(pm_param) + 96));
    /* malloc's bookkeeping: up to 32 bytes for each of the about 25 allocations of a layer's
     * router and routing, and 16 of the model */
    activations = sat_add(activations, 32 * (32 * M + 16));
    /* training: the trainer's batches of inputs and targets (and the evaluation's) */
    if (training) activations = sat_add(activations, 4 * sizeof(int32_t) * T);
    out->activations = activations;
    out->total = sat_add(sat_add(out->parameters, out->gradients), sat_add(out->optimizer, out->activations));
    return PM_OK;
}

pm_status model_memory_check_limit(const pm_model_config *cfg, int max_batch, int max_seq, bool training,
                                   uint64_t limit, const char *source) {
    pm_memory_estimate need;
    int status = pm_model_memory_estimate(cfg, max_batch, max_seq, training, &need);
    if (status < 0 || limit == 0 || need.total <= limit) return status;
    char total[32], parameters[32], gradients[32], optimizer[32], activations[32], machine[32];
    return pm_fail(PM_ERR_NOMEM, "%s needs about %s of memory (parameters %s, gradients %s, optimizer %s, "
                   "activations %s for a batch of %d × %d tokens) but this machine has %s (%s); use a smaller "
                   "model (fewer layers or experts, smaller hidden or intermediate size, vocabulary) or a smaller "
                   "batch or sequence", training ? "training this model" : "this model",
                   memory_format(need.total, total, sizeof total),
                   memory_format(need.parameters, parameters, sizeof parameters),
                   memory_format(need.gradients, gradients, sizeof gradients),
                   memory_format(need.optimizer, optimizer, sizeof optimizer),
                   memory_format(need.activations, activations, sizeof activations), max_batch, max_seq,
                   memory_format(limit, machine, sizeof machine), source);
}

pm_status pm_model_memory_check(const pm_model_config *cfg, int max_batch, int max_seq, bool training) {
    const char *source = NULL;
    const uint64_t limit = machine_memory_bytes(&source);
    return model_memory_check_limit(cfg, max_batch, max_seq, training, limit, source);
}

/* The buffers' sizes that the kernels index with int: tokens, (token, expert) pairs, and
 * (sequence, head) pairs of the attention. */
static int check_index_range(const pm_model_config *cfg, int max_batch, int max_seq) {
    const int64_t T = (int64_t)max_batch * max_seq;
    const int64_t pairs = T * model_pairs_per_token(&cfg->router), heads = (int64_t)max_batch * cfg->num_heads;
    if (T > INT_MAX || pairs > INT_MAX || heads > INT_MAX)
        return pm_fail(PM_ERR_ARG, "pm_model_create: a batch of %d × %d tokens makes %lld tokens, %lld expert rows "
                       "and %lld (sequence, head) pairs; each must be at most %d: use a smaller batch or sequence",
                       max_batch, max_seq, (long long)T, (long long)pairs, (long long)heads, INT_MAX);
    return PM_OK;
}

pm_model *pm_model_create(const pm_model_config *cfg, int max_batch, int max_seq) {
    int status = pm_model_config_check(cfg);
    if (status < 0) return NULL;
    if (max_batch < 1 || max_seq < 1 || max_seq > cfg->max_position_embeddings) {
        pm_fail(PM_ERR_ARG, "pm_model_create: batch %d × sequence %d; need at least 1 × 1 and a sequence "
                "no longer than max_position_embeddings = %d", max_batch, max_seq,
                cfg->max_position_embeddings);
        return NULL;
    }
    if (check_index_range(cfg, max_batch, max_seq) < 0) return NULL;
    /* before anything is allocated: a model that cannot fit is refused with its size */
    if (pm_model_memory_check(cfg, max_batch, max_seq, false) < 0) {
        pm_fail(PM_ERR_NOMEM, "pm_model_create: %s", pm_last_error());
        return NULL;
    }
    pm_model *model = calloc(1, sizeof *model);
    if (!model) {
        pm_fail(PM_ERR_NOMEM, "pm_model_create: out of memory");
        return NULL;
    }
    model->cfg = *cfg;
    model->max_batch = max_batch;
    model->max_seq = max_seq;
    bool ok = model_build_params(model) == PM_OK;
    if (ok) {
        model->weights = malloc(sizeof(float) * (model->size ? model->size : 1));
        model->grads = calloc(model->size ? model->size : 1, sizeof(float));
        model->layers = calloc((size_t)cfg->num_layers, sizeof(layer_state));
        model->budget_k = calloc((size_t)model->num_moe, sizeof(float));
        model->budget_dk = calloc((size_t)model->num_moe, sizeof(float));
        ok = model->weights && model->grads && model->layers && model->budget_k && model->budget_dk;
    }
    if (ok) {
        activation_layout(&model->arena, cfg, max_batch, max_seq, model); /* plan */
        ok = arena_allocate(&model->arena);
        if (ok) activation_layout(&model->arena, cfg, max_batch, max_seq, model);
    }
    for (int l = 0; ok && l < cfg->num_layers; l++) ok = layer_create(model, &model->layers[l], l);
    if (ok) model_budget_init(model); /* a file without the budget's tensors leaves them here */
    if (!ok) {
        pm_model_free(model);
        pm_fail(PM_ERR_NOMEM, "pm_model_create: out of memory for a batch of %d × %d tokens; use a "
                "smaller batch or sequence length", max_batch, max_seq);
        return NULL;
    }
    return model;
}

void pm_model_free(pm_model *model) {
    if (!model) return;
    for (int l = 0; model->layers && l < model->cfg.num_layers; l++) layer_free(&model->layers[l]);
    free(model->weights);
    free(model->grads);
    arena_free(&model->arena);
    moe_owner_scratch_free(&model->owner_scratch);
    matmul_bf16_free(model->bf16);
    free(model->weights16);
    free(model->layers);
    free(model->budget_k);
    free(model->budget_dk);
    free(model->params);
    free(model->names);
    free(model->layer_params);
    free(model->moe_layers);
    free(model);
}

const pm_model_config *pm_model_get_config(const pm_model *model) { return &model->cfg; }
int pm_model_max_batch(const pm_model *model) { return model->max_batch; }
int pm_model_max_seq(const pm_model *model) { return model->max_seq; }
const float *pm_model_logits(const pm_model *model) { return model->logits; }
const pm_routing *pm_model_routing(const pm_model *model, int m) {
    return m >= 0 && m < model->num_moe ? moe_layer(model, m)->routing : NULL;
}
pm_router *pm_model_router(pm_model *model, int m) { return m >= 0 && m < model->num_moe ? moe_layer(model, m)->router : NULL; }

void pm_model_last_losses(const pm_model *model, float *ce, float *aux) {
    if (ce) *ce = model->ce_loss;
    if (aux) *aux = model->aux_loss;
}

void pm_model_set_routing_source(pm_model *model, pm_routing_source source, void *user) {
    model->routing_source = source;
    model->routing_user = user;
}

/* --------------------------------------------------------------- forward */

static int check_batch(const pm_model *model, const int32_t *tokens, const int32_t *targets, int B, int S) {
    if (!tokens) return pm_fail(PM_ERR_ARG, "pm_model_forward: tokens is NULL");
    if (B < 1 || B > model->max_batch || S < 1 || S > model->max_seq)
        return pm_fail(PM_ERR_ARG, "pm_model_forward: batch %d × sequence %d does not fit the model's buffers "
                       "(%d × %d)", B, S, model->max_batch, model->max_seq);
    const int V = model->cfg.vocab_size;
    for (int i = 0; i < B * S; i++) {
        if (tokens[i] < 0 || tokens[i] >= V)
            return pm_fail(PM_ERR_ARG, "pm_model_forward: token %d at position %d is outside the vocabulary "
                           "(0..%d); was the data prepared with another tokenizer?", tokens[i], i, V - 1);
        if (targets && targets[i] >= V)
            return pm_fail(PM_ERR_ARG, "pm_model_forward: target %d at position %d is outside the vocabulary "
                           "(0..%d)", targets[i], i, V - 1);
    }
    return PM_OK;
}

static int route_layer(pm_model *model, int l, int T, bool training, uint64_t seed, uint64_t step) {
    layer_state *layer = &model->layers[l];
    const int *offsets, *experts;
    if (training && model->routing_source &&
        model->routing_source(model->routing_user, layer->moe_index, T, &offsets, &experts))
        return pm_router_forward_given(layer->router, layer->routing, layer->router_logits, T, training,
                                       offsets, experts);
    pm_rng rng;
    pm_rng_init(&rng, seed, step * (uint64_t)model->cfg.num_layers + (uint64_t)l);
    if (training && model->comm) {
        /* the router refuses non-finite logits before its collectives: the ranks decide together,
         * so that none waits in a sum the others left (a diverged step for all of them) */
        const size_t n = (size_t)T * (size_t)model->cfg.num_experts;
        double bad = 0.0;
        for (size_t i = 0; i < n && bad == 0.0; i++) bad = !isfinite(layer->router_logits[i]);
        model->comm->sum_doubles(model->comm, &bad, 1);
        if (bad > 0.0)
            return pm_fail(PM_ERR_NONFINITE, "layer %d: non-finite router logits in the global batch (the step "
                           "diverged)", l);
    }
    return pm_router_forward(layer->router, layer->routing, layer->router_logits, T, training, &rng);
}

/* y += x: the residual connections */
static void add_into(float *y, const float *x, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* The shared expert of layer l (qwen2_moe), or its dense MLP (no gate): its weights and
 * gradients; *width gets its width. */
static shared_expert_weights shared_weights(pm_model *model, int l, int *width) {
    const layer_params *lp = &model->layer_params[l];
    const int first = lp->dense0 >= 0 ? lp->dense0 : lp->shared0, gate = lp->shared_gate;
    *width = lp->dense0 >= 0 ? model->cfg.dense_intermediate_size : model->cfg.shared_expert_size;
    return (shared_expert_weights){param_weights(model, first), param_weights(model, first + 2),
                                   gate >= 0 ? param_weights(model, gate) : NULL, param_weights16(model, first),
                                   param_weights16(model, first + 2), param_grads(model, first),
                                   param_grads(model, first + 2), gate >= 0 ? param_grads(model, gate) : NULL};
}

static shared_expert_acts shared_acts(const layer_state *layer) {
    return (shared_expert_acts){layer->shared_gate_up, layer->shared_act, layer->shared_out, layer->shared_scale};
}

/* q, k and v of ln1 before rope: the projections and their biases (qwen2_moe); with OLMoE's
 * norms over the whole projections, q_rot and k_rot get the normed values rope then rotates. */
static void project_qkv(pm_model *model, layer_state *layer, const layer_params *lp, int T) {
    const pm_model_config *cfg = &model->cfg;
    const int H = cfg->hidden_size, KV = H / cfg->num_heads * cfg->num_kv_heads;
    matmul_bf16 *bf16 = model->bf16;
    linear_forward(bf16, layer->q_raw, layer->ln1, param_weights(model, lp->q), param_weights16(model, lp->q), T, H, H);
    linear_forward(bf16, layer->k_raw, layer->ln1, param_weights(model, lp->k), param_weights16(model, lp->k), T, H, KV);
    linear_forward(bf16, layer->v, layer->ln1, param_weights(model, lp->v), param_weights16(model, lp->v), T, H, KV);
    if (lp->q_bias >= 0) {
        bias_forward(layer->q_raw, param_weights(model, lp->q_bias), T, H);
        bias_forward(layer->k_raw, param_weights(model, lp->k_bias), T, KV);
        bias_forward(layer->v, param_weights(model, lp->v_bias), T, KV);
    }
    if (lp->q_norm >= 0) {
        rmsnorm_forward(layer->q_rot, layer->q_rstd, layer->q_raw, param_weights(model, lp->q_norm), T, H,
                        cfg->rms_norm_eps);
        rmsnorm_forward(layer->k_rot, layer->k_rstd, layer->k_raw, param_weights(model, lp->k_norm), T, KV,
                        cfg->rms_norm_eps);
    }
}

static int layer_forward(pm_model *model, int l, float *x_out, bool training, uint64_t seed, uint64_t step) {
    const pm_model_config *cfg = &model->cfg;
    layer_state *layer = &model->layers[l];
    const layer_params *lp = &model->layer_params[l];
    const int B = model->batch, S = model->seq, T = B * S, H = cfg->hidden_size;
    const int D = H / cfg->num_heads, E = cfg->num_experts;
    rmsnorm_forward(layer->ln1, layer->rstd1, layer->x_in, param_weights(model, lp->input_norm), T, H,
                    cfg->rms_norm_eps);
    matmul_bf16 *bf16 = model->bf16;
    project_qkv(model, layer, lp, T);
    const bool normed = lp->q_norm >= 0;
    rope_forward(layer->q_rot, normed ? layer->q_rot : layer->q_raw, model->positions, T, cfg->num_heads, D,
                 cfg->rope_theta);
    rope_forward(layer->k_rot, normed ? layer->k_rot : layer->k_raw, model->positions, T, cfg->num_kv_heads, D,
                 cfg->rope_theta);
    attention_forward_window(layer->attn_out, layer->att, layer->q_rot, layer->k_rot, layer->v, B, S, cfg->num_heads,
                             cfg->num_kv_heads, D, cfg->sliding_window);
    linear_forward(bf16, layer->x_mid, layer->attn_out, param_weights(model, lp->o), param_weights16(model, lp->o), T,
                   H, H);
    add_into(layer->x_mid, layer->x_in, (size_t)T * H);
    rmsnorm_forward(layer->ln2, layer->rstd2, layer->x_mid, param_weights(model, lp->post_norm), T, H,
                    cfg->rms_norm_eps);
    if (lp->dense0 >= 0) { /* a dense layer: x_out = x_mid + mlp(ln2) */
        int width;
        const shared_expert_weights weights = shared_weights(model, l, &width);
        const shared_expert_acts acts = shared_acts(layer);
        memset(x_out, 0, sizeof(float) * (size_t)T * H);
        shared_expert_forward(bf16, &acts, x_out, layer->ln2, &weights, T, H, width);
        add_into(x_out, layer->x_mid, (size_t)T * H);
        return PM_OK;
    }
    /* the router's logits in fp32 at any precision: they decide the routing */
    matmul_forward(layer->router_logits, layer->ln2, param_weights(model, lp->router), T, H, E);
    int status = route_layer(model, l, T, training, seed, step);
    if (status < 0) return status;
    if (model->expert_forward)
        moe_forward_parallel(&layer->moe, &layer->owner, &model->owner_scratch, x_out, layer->ln2, layer->routing,
                             layer->experts, model->expert_comm);
    else
        moe_forward(&layer->moe, x_out, layer->ln2, layer->routing, layer->experts);
    if (lp->shared0 >= 0) {
        int width;
        const shared_expert_weights weights = shared_weights(model, l, &width);
        const shared_expert_acts acts = shared_acts(layer);
        shared_expert_forward(bf16, &acts, x_out, layer->ln2, &weights, T, H, width);
    }
    add_into(x_out, layer->x_mid, (size_t)T * H);
    return PM_OK;
}

pm_status pm_model_forward(pm_model *model, const int32_t *tokens, const int32_t *targets, int B, int S,
                     bool training, uint64_t seed, uint64_t step, float *loss) {
    int status = check_batch(model, tokens, targets, B, S);
    if (status < 0) return status;
    const pm_model_config *cfg = &model->cfg;
    const int T = B * S, H = cfg->hidden_size, V = cfg->vocab_size, L = cfg->num_layers;
    model->batch = B;
    model->seq = S;
    model->tokens = tokens;
    model->targets = targets;
    model->has_targets = targets != NULL;
    model->expert_forward = training && model->expert_comm;
    for (int t = 0; t < T; t++) model->positions[t] = t % S;
    status = model_budget_apply(model);
    if (status < 0) return status;
    model_refresh_weights16(model);
    embedding_forward(L > 0 ? model->layers[0].x_in : model->x_final, tokens, param_weights(model, model->embed), T, H);
    double aux = 0.0;
    for (int l = 0; l < L; l++) {
        float *x_out = l + 1 < L ? model->layers[l + 1].x_in : model->x_final;
        status = layer_forward(model, l, x_out, training, seed, step);
        if (status < 0) return status;
        if (model->layers[l].routing) aux += model->layers[l].routing->lb_loss + model->layers[l].routing->z_loss;
    }
    rmsnorm_forward(model->lnf, model->rstdf, model->x_final, param_weights(model, model->final_norm), T, H,
                    cfg->rms_norm_eps);
    linear_forward(model->bf16, model->logits, model->lnf, param_weights(model, model->lm_head),
                   param_weights16(model, model->lm_head), T, H, V);
    model->aux_loss = (float)aux;
    model->ce_loss = 0.0f;
    model->ce_share = 1.0f;
    if (targets) {
        int count = 0;
        model->ce_loss = cross_entropy_forward(model->logits, targets, T, V, &count);
        if (training && model->comm) { /* the global batch's mean: Σ loss·count / Σ count */
            double sums[2] = {(double)model->ce_loss * count, count};
            model->comm->sum_doubles(model->comm, sums, 2);
            model->ce_loss = sums[1] > 0 ? (float)(sums[0] / sums[1]) : 0.0f;
            model->ce_share = sums[1] > 0 ? (float)(count / sums[1]) : 0.0f;
        }
    }
    if (loss) *loss = model->ce_loss + model->aux_loss;
    return PM_OK;
}

void model_set_batch_origin(pm_model *model, const batch_comm *comm, uint32_t first_token) {
    model->comm = comm;
    for (int m = 0; m < model->num_moe; m++) router_set_batch_origin(moe_layer(model, m)->router, comm, first_token);
}

/* -------------------------------------------------------------- backward */

/* Given d_ln = dL/d ln2 and d_resid = dL/d x_out: the post-attention norm, the attention block
 * (x_mid = x_in + o_proj(attention(...))) and the input norm; d_resid becomes dL/d x_in. */
static int attention_block_backward(pm_model *model, int l) {
    const pm_model_config *cfg = &model->cfg;
    layer_state *layer = &model->layers[l];
    const layer_params *lp = &model->layer_params[l];
    const int B = model->batch, S = model->seq, T = B * S, H = cfg->hidden_size;
    const int D = H / cfg->num_heads, KV = D * cfg->num_kv_heads;
    float *d_resid = model->d_resid;
    matmul_bf16 *bf16 = model->bf16;
    rmsnorm_backward(d_resid, param_grads(model, lp->post_norm), model->d_ln, layer->x_mid,
                     param_weights(model, lp->post_norm), layer->rstd2, T, H);
    memset(model->d_attn, 0, sizeof(float) * T * H);
    linear_backward(bf16, model->d_attn, param_grads(model, lp->o), d_resid, layer->attn_out, param_weights(model, lp->o),
                    param_weights16(model, lp->o), T, H, H);
    memset(model->d_q, 0, sizeof(float) * T * H);
    memset(model->d_k, 0, sizeof(float) * T * KV);
    memset(model->d_v, 0, sizeof(float) * T * KV);
    attention_backward_in(model->d_q, model->d_k, model->d_v, model->d_attn, layer->att, layer->q_rot, layer->k_rot,
                          layer->v, B, S, cfg->num_heads, cfg->num_kv_heads, D, model->attention_scratch,
                          model->attention_threads);
    /* rope is linear: its backward maps d(rotated) to d(normalised), or straight to d(projected)
     * without OLMoE's norms */
    memset(model->d_q_raw, 0, sizeof(float) * T * H);
    memset(model->d_k_raw, 0, sizeof(float) * T * KV);
    if (lp->q_norm >= 0) {
        memset(model->d_attn, 0, sizeof(float) * T * H); /* reused: d of the normalised q */
        rope_backward(model->d_attn, model->d_q, model->positions, T, cfg->num_heads, D, cfg->rope_theta);
        rmsnorm_backward(model->d_q_raw, param_grads(model, lp->q_norm), model->d_attn, layer->q_raw,
                         param_weights(model, lp->q_norm), layer->q_rstd, T, H);
        memset(model->d_q, 0, sizeof(float) * T * KV); /* reused: d of the normalised k */
        rope_backward(model->d_q, model->d_k, model->positions, T, cfg->num_kv_heads, D, cfg->rope_theta);
        rmsnorm_backward(model->d_k_raw, param_grads(model, lp->k_norm), model->d_q, layer->k_raw,
                         param_weights(model, lp->k_norm), layer->k_rstd, T, KV);
    } else {
        rope_backward(model->d_q_raw, model->d_q, model->positions, T, cfg->num_heads, D, cfg->rope_theta);
        rope_backward(model->d_k_raw, model->d_k, model->positions, T, cfg->num_kv_heads, D, cfg->rope_theta);
    }
    if (lp->q_bias >= 0) {
        bias_backward(param_grads(model, lp->q_bias), model->d_q_raw, T, H);
        bias_backward(param_grads(model, lp->k_bias), model->d_k_raw, T, KV);
        bias_backward(param_grads(model, lp->v_bias), model->d_v, T, KV);
    }
    memset(model->d_ln, 0, sizeof(float) * T * H);
    linear_backward(bf16, model->d_ln, param_grads(model, lp->q), model->d_q_raw, layer->ln1, param_weights(model, lp->q),
                    param_weights16(model, lp->q), T, H, H);
    linear_backward(bf16, model->d_ln, param_grads(model, lp->k), model->d_k_raw, layer->ln1, param_weights(model, lp->k),
                    param_weights16(model, lp->k), T, H, KV);
    linear_backward(bf16, model->d_ln, param_grads(model, lp->v), model->d_v, layer->ln1, param_weights(model, lp->v),
                    param_weights16(model, lp->v), T, H, KV);
    rmsnorm_backward(d_resid, param_grads(model, lp->input_norm), model->d_ln, layer->x_in,
                     param_weights(model, lp->input_norm), layer->rstd1, T, H);
    return PM_OK;
}

static int layer_backward(pm_model *model, int l) {
    const pm_model_config *cfg = &model->cfg;
    layer_state *layer = &model->layers[l];
    const layer_params *lp = &model->layer_params[l];
    const int T = model->batch * model->seq, H = cfg->hidden_size, E = cfg->num_experts;
    float *d_resid = model->d_resid; /* dL/d(layer output) on entry, dL/d(layer input) on exit */
    matmul_bf16 *bf16 = model->bf16;
    const shared_expert_scratch scratch = {model->d_shared_gate_up, model->d_shared_act, model->d_shared_out,
                                           model->d_shared_scale};
    memset(model->d_ln, 0, sizeof(float) * T * H);
    if (lp->dense0 >= 0) { /* a dense layer: x_out = x_mid + mlp(ln2) */
        int width;
        const shared_expert_weights weights = shared_weights(model, l, &width);
        const shared_expert_acts acts = shared_acts(layer);
        shared_expert_backward(bf16, &acts, &scratch, model->d_ln, d_resid, layer->ln2, &weights, T, H, width);
        return attention_block_backward(model, l);
    }
    /* MoE block: x_out = x_mid + moe(ln2) */
    if (model->expert_forward)
        moe_backward_parallel(&layer->moe, &model->moe_scratch, &layer->owner, &model->owner_scratch, model->d_ln,
                              model->c, d_resid, layer->routing, layer->experts, model->expert_comm);
    else
        moe_backward(&layer->moe, &model->moe_scratch, model->d_ln, model->c, d_resid, layer->routing,
                     layer->experts);
    if (lp->shared0 >= 0) {
        int width;
        const shared_expert_weights weights = shared_weights(model, l, &width);
        const shared_expert_acts acts = shared_acts(layer);
        shared_expert_backward(bf16, &acts, &scratch, model->d_ln, d_resid, layer->ln2, &weights, T, H, width);
    }
    memset(model->d_router, 0, sizeof(float) * T * E);
    pm_router_zero_grads(layer->router); /* its soft_k and alpha gradients of this pass only */
    int status = pm_router_backward(layer->router, model->d_router, layer->routing, layer->router_logits, model->c,
                                    1.0f);
    if (status < 0) return status;
    model_budget_collect(model, layer->moe_index);
    matmul_backward(model->d_ln, param_grads(model, lp->router), model->d_router, layer->ln2,
                    param_weights(model, lp->router), T, H, E);
    return attention_block_backward(model, l);
}

pm_status pm_model_backward(pm_model *model) {
    if (!model->has_targets)
        return pm_fail(PM_ERR_STATE, "pm_model_backward: the last forward pass had no targets; pass targets "
                       "to pm_model_forward to get a loss to differentiate");
    const pm_model_config *cfg = &model->cfg;
    const int T = model->batch * model->seq, H = cfg->hidden_size, V = cfg->vocab_size;
    memset(model->d_logits, 0, sizeof(float) * T * V);
    cross_entropy_backward(model->d_logits, model->logits, model->targets, T, V, model->ce_share);
    memset(model->d_ln, 0, sizeof(float) * T * H);
    linear_backward(model->bf16, model->d_ln, param_grads(model, model->lm_head), model->d_logits, model->lnf,
                    param_weights(model, model->lm_head), param_weights16(model, model->lm_head), T, H, V);
    memset(model->d_resid, 0, sizeof(float) * T * H);
    rmsnorm_backward(model->d_resid, param_grads(model, model->final_norm), model->d_ln, model->x_final,
                     param_weights(model, model->final_norm), model->rstdf, T, H);
    /* the parameter table's order: embedding, layer 0 .. L-1, final norm, lm_head, then the
     * learned budget's tensors (params.c) */
    const size_t head = model->params[model->final_norm].offset, budget = model->head_end;
    if (model->grads_ready) model->grads_ready(model->grads_ready_user, head, budget - head, false);
    for (int l = cfg->num_layers - 1; l >= 0; l--) {
        int status = layer_backward(model, l);
        if (status < 0) return status;
        if (!model->grads_ready) continue;
        const size_t first = model->params[model->layer_params[l].input_norm].offset;
        const size_t end = l + 1 < cfg->num_layers ? model->params[model->layer_params[l + 1].input_norm].offset : head;
        if (!model->expert_forward) {
            model->grads_ready(model->grads_ready_user, first, end - first, false);
            continue;
        }
        if (model->layers[l].moe_index < 0) { /* a dense layer: nothing of it is split */
            model->grads_ready(model->grads_ready_user, first, end - first, false);
            continue;
        }
        /* the layer's shared tensors, then this rank's experts (the experts end the layer) */
        size_t experts, count;
        model_local_experts(model, l, &experts, &count);
        const size_t shared = model->params[model->layer_params[l].expert0].offset;
        model->grads_ready(model->grads_ready_user, first, shared - first, false);
        if (count) model->grads_ready(model->grads_ready_user, experts, count, true);
    }
    embedding_backward(param_grads(model, model->embed), model->d_resid, model->tokens, T, H);
    int status = model_budget_finish(model);
    if (model->grads_ready) {
        model->grads_ready(model->grads_ready_user, 0, model->params[model->embed].count, false);
        if (model->size > budget) model->grads_ready(model->grads_ready_user, budget, model->size - budget, false);
    }
    return status;
}

void model_set_grads_ready(pm_model *model, void (*ready)(void *user, size_t offset, size_t count, bool experts),
                           void *user) {
    model->grads_ready = ready;
    model->grads_ready_user = user;
}
