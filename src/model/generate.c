/* Token-by-token inference with a key/value cache: each new token costs one row through every
 * layer instead of a pass over the whole context. Routers use their inference rules; a
 * different router (say, dynamic-k MAP routing for a probmoe-trained model) can be swapped in.
 *
 * A generator holds `rows` sequences, each with its own cache and length, and a step feeds a
 * token to any set of them at once: the weights are then read once for the whole set. Every
 * product goes through matmul_rows_forward and the MoE layer through moe_forward_rows, and
 * attention reads each row's own cache, so a row's logits are bit for bit those it would get
 * fed alone: batching cannot change a greedy decode.
 *
 * One row at a time is a chain of matrix-vector products, bounded by reading the weights that
 * token uses (attention, the router, its experts, lm_head): the products are GEMV kernels over
 * only the chosen experts, every buffer is made at creation on one arena, whose planned size the
 * memory check uses (a step allocates nothing), and pm_generator_set_precision can keep a bf16
 * copy of the products' weights, half the bytes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/bf16.h"
#include "core/error.h"
#include "core/memory.h"
#include "model/model_internal.h"
#include "moe/moe.h"
#include "nn/nn.h"
#include "route/router_memory.h"

struct pm_generator {
    pm_model *model;
    int max_len, rows;
    int *lengths;                       /* (rows) tokens in each row's cache */
    float *k_cache, *v_cache;           /* (rows, L, max_len, KV) keys after norm and rope; values */
    /* the fed tokens' buffers, one line per fed row: (rows, H), k and v (rows, KV) */
    float *x, *ln, *q, *k, *v, *attn, *tmp, *moe_out, *rstd;
    float *scores;                      /* (rows, heads, max_len) attention weights */
    float *router_logits;               /* (rows, E) */
    /* the shared expert's or a dense layer's MLP (qwen2_moe): (rows, 2W), (rows, W), (rows), W the
     * wider of their widths */
    float *shared_gate_up, *shared_act, *shared_scale;
    int32_t *positions;                 /* (rows) each fed token's position */
    unsigned char *feeding;             /* (rows) rows fed in the current step (repeats refused) */
    moe_state moe;                      /* the fed tokens' expert rows, reused layer after layer */
    pm_router **routers;                /* (M) one per MoE layer, as the routings */
    pm_routing **routings;
    double *active_sum;                 /* (M) experts used, summed over tokens */
    moe_expert *experts;                /* (M, E) the weights the experts' products read */
    uint16_t *weights16;                /* bf16 copy of the model's weights, or NULL: fp32 */
    pm_arena arena;                     /* every buffer above but the routers' own and weights16 */
    long tokens_seen;
    bool routed;                        /* the routers have routed a token */
};

void pm_generator_free(pm_generator *gen) {
    if (!gen) return;
    for (int m = 0; gen->routers && m < gen->model->num_moe; m++) {
        pm_routing_free(gen->routings[m]);
        pm_router_free(gen->routers[m]);
    }
    arena_free(&gen->arena);
    free(gen->weights16);
    free(gen);
}

/* The values inference depends on (softmoe's tau and learned soft_k and alpha, the selection
 * bias) come from the model's own router. A router given by the caller keeps those it sets
 * itself (a value whose start differs from the model config's start, say --tau 0.2). */
static int take_trained_values(pm_router *target, const pm_router *trained, const pm_router_config *use,
                               const pm_router_config *model_router) {
    if (use == model_router) return pm_router_copy_values(target, trained);
    if (use->kind != model_router->kind) return PM_OK;
    pm_router *fresh_model = pm_router_create(model_router), *fresh_use = pm_router_create(use);
    int status = fresh_model && fresh_use ? PM_OK : PM_ERR_NOMEM;
    for (int v = 0; status == 0 && v < pm_router_value_count(target); v++) {
        pm_router_value wanted, as_configured, start, learned;
        pm_router_value_get(target, v, &wanted);
        pm_router_value_get(fresh_model, v, &as_configured);
        pm_router_value_get(fresh_use, v, &start);
        pm_router_value_get(trained, v, &learned);
        const size_t bytes = sizeof(float) * (size_t)wanted.size;
        if (start.size == as_configured.size && learned.size == wanted.size &&
            memcmp(start.values, as_configured.values, bytes) == 0)
            memcpy(wanted.values, learned.values, bytes);
    }
    pm_router_free(fresh_model);
    pm_router_free(fresh_use);
    return status;
}

/*
 * The generator's buffers, laid out on its arena by this one function: planned on an empty
 * arena (gen a stand-in) for the memory check, then on the block. Per row: its key and value
 * caches; a fed token's x, ln, q, attn, tmp, moe_out (H), k and v (KV), rstd, the scores of
 * every head, the router logits, the shared expert's (or dense MLP's) gate | up, activation
 * and scale, its length, position and flag. The fed tokens' expert rows; per MoE layer its
 * router's and routing's pointers, the mean of active experts, and the experts' weight views.
 */
static void generator_layout(pm_arena *arena, pm_generator *gen, const pm_model *model, int max_pairs) {
    const pm_model_config *cfg = &model->cfg;
    const uint64_t L = (uint64_t)cfg->num_layers, H = (uint64_t)cfg->hidden_size, n = (uint64_t)gen->max_len;
    const uint64_t KV = H / (uint64_t)cfg->num_heads * (uint64_t)cfg->num_kv_heads, R = (uint64_t)gen->rows;
    const uint64_t M = (uint64_t)model->num_moe, E = (uint64_t)cfg->num_experts, W = (uint64_t)model_mlp_width(cfg);
    gen->k_cache = arena_floats(arena, sat_mul3(R, L * n, KV));
    gen->v_cache = arena_floats(arena, sat_mul3(R, L * n, KV));
    float **row_buffers[] = {&gen->x, &gen->ln, &gen->q, &gen->attn, &gen->tmp, &gen->moe_out};
    for (size_t i = 0; i < sizeof row_buffers / sizeof row_buffers[0]; i++) *row_buffers[i] = arena_floats(arena, R * H);
    gen->k = arena_floats(arena, R * KV);
    gen->v = arena_floats(arena, R * KV);
    gen->rstd = arena_floats(arena, R);
    gen->scores = arena_floats(arena, sat_mul3(R, (uint64_t)cfg->num_heads, n));
    gen->router_logits = arena_floats(arena, R * E);
    gen->shared_gate_up = arena_floats(arena, R * 2 * W);
    gen->shared_act = arena_floats(arena, R * W);
    gen->shared_scale = arena_floats(arena, R);
    gen->lengths = arena_ints(arena, R);
    gen->positions = arena_take(arena, R, sizeof(int32_t));
    gen->feeding = arena_take(arena, R, 1);
    moe_state_layout(&gen->moe, arena, cfg->hidden_size, cfg->intermediate_size, cfg->num_experts, gen->rows,
                     (uint64_t)max_pairs);
    gen->routers = arena_take(arena, M, sizeof(pm_router *));
    gen->routings = arena_take(arena, M, sizeof(pm_routing *));
    gen->active_sum = arena_take(arena, M, sizeof(double));
    gen->experts = arena_take(arena, M * E, sizeof(moe_expert));
}

uint64_t model_generator_bytes(const pm_model *model, const pm_router_config *router, int max_len, int rows) {
    pm_generator stand_in = {.max_len = max_len, .rows = rows};
    pm_arena plan = {0};
    generator_layout(&plan, &stand_in, model, rows * pm_router_max_pairs(router, false));
    /* the struct, and the routers and their routings of `rows` tokens, one per MoE layer, with
     * malloc's bookkeeping: up to 32 bytes for each of the about 25 allocations of a router and
     * its routing, and of the struct and arena */
    const uint64_t M = (uint64_t)model->num_moe;
    const uint64_t routers = sat_mul(M, router_memory_bytes(router) + routing_memory_bytes(router, rows) + 32 * 25);
    return sat_add(plan.used + sizeof(pm_generator) + 64, routers);
}

/* The generator's buffers on top of the model's, and its routers': refused before anything
 * is allocated if they do not fit this machine's memory. */
static int generator_memory_check(const pm_model *model, const pm_router_config *router, int max_len, int rows) {
    const pm_model_config *cfg = &model->cfg;
    const uint64_t bytes = model_generator_bytes(model, router, max_len, rows);
    pm_memory_estimate own;
    int status = pm_model_memory_estimate(cfg, model->max_batch, model->max_seq, false, &own);
    if (status < 0) return status;
    const char *source = NULL;
    const uint64_t limit = machine_memory_bytes(&source), total = sat_add(own.total, bytes);
    if (limit == 0 || total <= limit) return PM_OK;
    char cache[32], of_model[32], machine[32], in_rows[48] = "";
    if (rows > 1) snprintf(in_rows, sizeof in_rows, " in each of %d rows", rows);
    return pm_fail(PM_ERR_NOMEM, "generator: a context of %d tokens%s needs about %s (mostly the key/value cache) on "
                   "top of the model's %s, but this machine has %s (%s); use a shorter context%s", max_len, in_rows,
                   memory_format(bytes, cache, sizeof cache), memory_format(own.total, of_model, sizeof of_model),
                   memory_format(limit, machine, sizeof machine), source, rows > 1 ? " or fewer rows" : "");
}

/* The experts' weights in the precision of the generator's products (bf16 copy or fp32); the
 * model's own table may point at the copy its training products use, which the decoder does
 * not read. */
static void point_experts(pm_generator *gen) {
    pm_model *model = gen->model;
    const int E = model->cfg.num_experts;
    for (int m = 0; m < model->num_moe; m++)
        for (int e = 0; e < E; e++) {
            const int first = model->layer_params[model->moe_layers[m]].expert0 + 3 * e;
            moe_expert *ex = &gen->experts[(size_t)m * E + e];
            *ex = (moe_expert){param_weights(model, first), param_weights(model, first + 1),
                               param_weights(model, first + 2), NULL, NULL, NULL, NULL, NULL, NULL};
            if (gen->weights16) {
                ex->gate16 = gen->weights16 + model->params[first].offset;
                ex->up16 = gen->weights16 + model->params[first + 1].offset;
                ex->down16 = gen->weights16 + model->params[first + 2].offset;
            }
        }
}

pm_generator *pm_generator_create_rows(pm_model *model, const pm_router_config *router, int max_len, int rows) {
    const pm_model_config *cfg = &model->cfg;
    const pm_router_config *use = router ? router : &cfg->router;
    if (pm_router_config_check(use) < 0) return NULL;
    if (use->num_experts != cfg->num_experts) {
        pm_fail(PM_ERR_ARG, "generator: the router has %d experts, the model %d", use->num_experts, cfg->num_experts);
        return NULL;
    }
    if (max_len < 1 || max_len > cfg->max_position_embeddings) {
        pm_fail(PM_ERR_ARG, "generator: a context of %d tokens; the model allows 1 to %d (max_position_embeddings)",
                max_len, cfg->max_position_embeddings);
        return NULL;
    }
    /* the bound keeps every buffer's int index (rows·heads·max_len scores, pairs) in range */
    const int most_rows = 65536;
    if (rows < 1 || rows > most_rows) {
        pm_fail(PM_ERR_ARG, "generator: %d rows; give 1 to %d sequences to decode together", rows, most_rows);
        return NULL;
    }
    if (generator_memory_check(model, use, max_len, rows) < 0) return NULL;
    pm_generator *gen = calloc(1, sizeof *gen);
    if (!gen) {
        pm_fail(PM_ERR_NOMEM, "generator: out of memory");
        return NULL;
    }
    gen->model = model;
    gen->max_len = max_len;
    gen->rows = rows;
    const int M = model->num_moe, max_pairs = rows * pm_router_max_pairs(use, false);
    generator_layout(&gen->arena, gen, model, max_pairs); /* plan */
    bool ok = arena_allocate(&gen->arena);
    if (ok) {
        generator_layout(&gen->arena, gen, model, max_pairs);
        /* what the code reads before it writes: no row is fed or filled, no router made yet */
        memset(gen->lengths, 0, sizeof(int) * (size_t)rows);
        memset(gen->feeding, 0, (size_t)rows);
        memset(gen->routers, 0, sizeof(pm_router *) * (size_t)M);
        memset(gen->routings, 0, sizeof(pm_routing *) * (size_t)M);
        memset(gen->active_sum, 0, sizeof(double) * (size_t)M);
        point_experts(gen);
    }
    /* the learned budget's current k_l and alpha into the model's routers, to copy below */
    if (ok && model_budget_apply(model) < 0) {
        pm_generator_free(gen);
        return NULL;
    }
    for (int m = 0; ok && m < M; m++) {
        gen->routers[m] = pm_router_create(use);
        if (gen->routers[m] && take_trained_values(gen->routers[m], moe_layer(model, m)->router, use, &cfg->router) < 0) {
            pm_generator_free(gen);
            return NULL;
        }
        gen->routings[m] = gen->routers[m] ? pm_routing_create(gen->routers[m], rows) : NULL;
        ok = gen->routers[m] && gen->routings[m];
    }
    if (!ok) {
        pm_generator_free(gen);
        pm_fail(PM_ERR_NOMEM, "generator: out of memory for %d rows of a context of %d tokens", rows, max_len);
        return NULL;
    }
    return gen;
}

pm_generator *pm_generator_create(pm_model *model, const pm_router_config *router, int max_len) {
    return pm_generator_create_rows(model, router, max_len, 1);
}

void pm_generator_reset(pm_generator *gen) {
    memset(gen->lengths, 0, sizeof(int) * (size_t)gen->rows);
    gen->tokens_seen = 0;
    memset(gen->active_sum, 0, sizeof(double) * (size_t)gen->model->num_moe);
}

pm_status pm_generator_reset_row(pm_generator *gen, int row) {
    if (row < 0 || row >= gen->rows)
        return pm_fail(PM_ERR_ARG, "generator: row %d; this generator has rows 0 to %d", row, gen->rows - 1);
    gen->lengths[row] = 0;
    return PM_OK;
}

pm_status pm_generator_set_precision(pm_generator *gen, pm_precision precision) {
    if (precision != PM_PRECISION_FP32 && precision != PM_PRECISION_BF16)
        return pm_fail(PM_ERR_ARG, "generator: unknown precision %d; give PM_PRECISION_FP32 or PM_PRECISION_BF16",
                       (int)precision);
    free(gen->weights16);
    gen->weights16 = NULL;
    if (precision == PM_PRECISION_BF16) {
        /* the whole parameter array, so that every tensor keeps its offset; only the products'
         * matrices are read from it (the embedding, norms and router stay fp32) */
        const pm_model *model = gen->model;
        gen->weights16 = malloc(sizeof(uint16_t) * (model->size ? model->size : 1));
        if (!gen->weights16) {
            point_experts(gen);
            return pm_fail(PM_ERR_NOMEM, "generator: out of memory for the bf16 copy of %zu weights (%zu MiB); "
                           "decode in fp32", model->size, model->size * sizeof(uint16_t) >> 20);
        }
        bf16_from_floats(gen->weights16, model->weights, model->size);
    }
    point_experts(gen);
    return PM_OK;
}

pm_precision pm_generator_get_precision(const pm_generator *gen) {
    return gen->weights16 ? PM_PRECISION_BF16 : PM_PRECISION_FP32;
}

int pm_generator_rows(const pm_generator *gen) { return gen->rows; }

int pm_generator_length(const pm_generator *gen) { return gen->lengths[0]; }

int pm_generator_row_length(const pm_generator *gen, int row) {
    return row >= 0 && row < gen->rows ? gen->lengths[row] : -1;
}

double pm_generator_mean_active(const pm_generator *gen, int m) {
    if (m < 0 || m >= gen->model->num_moe) return NAN;
    return gen->tokens_seen ? gen->active_sum[m] / gen->tokens_seen : 0.0;
}

/* Layer l's keys or values of one row from position 0 on. */
static float *cache_row(const pm_generator *gen, float *cache, int row, int l) {
    const pm_model_config *cfg = &gen->model->cfg;
    const size_t KV = (size_t)cfg->hidden_size / cfg->num_heads * cfg->num_kv_heads;
    return cache + ((size_t)row * cfg->num_layers + l) * gen->max_len * KV;
}

/* Attention of each fed token's query over its own row's cached keys and values in layer l. */
static void attend(pm_generator *gen, int l, const int *rows, int count) {
    const pm_model_config *cfg = &gen->model->cfg;
    const int H = cfg->hidden_size, heads = cfg->num_heads, D = H / heads, W = cfg->sliding_window;
    const size_t KV = (size_t)D * cfg->num_kv_heads;
#pragma omp parallel for schedule(static) if (count > 1)
    for (int i = 0; i < count; i++) {
        /* a sliding window (Mixtral) sees the last W positions, the token's own included */
        const int n = gen->lengths[rows[i]] + 1, first = W > 0 && n > W ? n - W : 0;
        attention_decode_forward(gen->attn + (size_t)i * H, gen->scores + (size_t)i * heads * gen->max_len,
                                 gen->q + (size_t)i * H, cache_row(gen, gen->k_cache, rows[i], l) + first * KV,
                                 cache_row(gen, gen->v_cache, rows[i], l) + first * KV, n - first, heads,
                                 cfg->num_kv_heads, D);
    }
}

/* out (count, N) = in (count, K) · parameter index (N, K)ᵀ in the generator's precision. */
static void product(pm_generator *gen, float *out, const float *in, int index, int count, int K, int N) {
    if (gen->weights16)
        matmul_rows_forward_bf16(out, in, gen->weights16 + gen->model->params[index].offset, count, K, N);
    else
        matmul_rows_forward(out, in, param_weights(gen->model, index), count, K, N);
}

/* A SwiGLU MLP of width W on gen->ln, its gate and up at parameter `first`, down after, added
 * into gen->x scaled by sigmoid of `gate`'s logit (fp32, as training's), or by 1 without one
 * (gate < 0): the shared expert or a dense layer's MLP. */
static void mlp_rows(pm_generator *gen, int first, int W, int gate, int count) {
    pm_model *model = gen->model;
    const int H = model->cfg.hidden_size;
    product(gen, gen->shared_gate_up, gen->ln, first, count, H, 2 * W);
    swiglu_forward(gen->shared_act, gen->shared_gate_up, count, W);
    product(gen, gen->moe_out, gen->shared_act, first + 2, count, W, H);
    if (gate >= 0) matmul_rows_forward(gen->shared_scale, gen->ln, param_weights(model, gate), count, H, 1);
    for (int i = 0; i < count; i++) {
        const float scale = gate >= 0 ? (float)(1.0 / (1.0 + exp(-(double)gen->shared_scale[i]))) : 1.0f;
        for (int h = 0; h < H; h++) gen->x[(size_t)i * H + h] += scale * gen->moe_out[(size_t)i * H + h];
    }
}

/* The MoE block of layer l (MoE layer m) on the fed tokens' normed rows gen->ln, added into
 * gen->x. Routing at inference is a function of each token alone, and so are the experts'
 * rows. */
static int moe_rows(pm_generator *gen, int l, int m, int count) {
    pm_model *model = gen->model;
    const pm_model_config *cfg = &model->cfg;
    const int H = cfg->hidden_size;
    /* fp32 in either precision, as in training's bf16: the routing stays that of the weights */
    matmul_rows_forward(gen->router_logits, gen->ln, param_weights(model, model->layer_params[l].router), count, H,
                        cfg->num_experts);
    int status = pm_router_forward(gen->routers[m], gen->routings[m], gen->router_logits, count, false, NULL);
    if (status < 0) return status;
    const pm_routing *routing = gen->routings[m];
    gen->active_sum[m] += routing->offsets[count];
    moe_forward_rows(&gen->moe, gen->moe_out, gen->ln, routing, gen->experts + (size_t)m * cfg->num_experts);
    for (size_t i = 0; i < (size_t)count * H; i++) gen->x[i] += gen->moe_out[i];
    const layer_params *lp = &model->layer_params[l];
    if (lp->shared0 >= 0) mlp_rows(gen, lp->shared0, cfg->shared_expert_size, lp->shared_gate, count);
    return PM_OK;
}

/* One step for count checked rows: their tokens through every layer, their logits (count, V)
 * if wanted, one more token in each row's cache. */
static int feed_checked(pm_generator *gen, const int *rows, const int32_t *tokens, int count, float *logits) {
    pm_model *model = gen->model;
    const pm_model_config *cfg = &model->cfg;
    const int H = cfg->hidden_size, D = H / cfg->num_heads, KV = D * cfg->num_kv_heads;
    const float eps = cfg->rms_norm_eps;
    for (int i = 0; i < count; i++) {
        gen->positions[i] = gen->lengths[rows[i]];
        memcpy(gen->x + (size_t)i * H, param_weights(model, model->embed) + (size_t)tokens[i] * H, sizeof(float) * H);
    }
    for (int l = 0; l < cfg->num_layers; l++) {
        const layer_params *lp = &model->layer_params[l];
        rmsnorm_forward(gen->ln, gen->rstd, gen->x, param_weights(model, lp->input_norm), count, H, eps);
        /* q and k: projection, bias (qwen2_moe), OLMoE's norm, rope */
        product(gen, gen->tmp, gen->ln, lp->q, count, H, H);
        if (lp->q_bias >= 0) bias_forward(gen->tmp, param_weights(model, lp->q_bias), count, H);
        if (lp->q_norm >= 0) rmsnorm_forward(gen->q, gen->rstd, gen->tmp, param_weights(model, lp->q_norm), count, H, eps);
        rope_forward(gen->q, lp->q_norm >= 0 ? gen->q : gen->tmp, gen->positions, count, cfg->num_heads, D,
                     cfg->rope_theta);
        product(gen, gen->tmp, gen->ln, lp->k, count, H, KV);
        if (lp->k_bias >= 0) bias_forward(gen->tmp, param_weights(model, lp->k_bias), count, KV);
        if (lp->k_norm >= 0)
            rmsnorm_forward(gen->k, gen->rstd, gen->tmp, param_weights(model, lp->k_norm), count, KV, eps);
        rope_forward(gen->k, lp->k_norm >= 0 ? gen->k : gen->tmp, gen->positions, count, cfg->num_kv_heads, D,
                     cfg->rope_theta);
        product(gen, gen->v, gen->ln, lp->v, count, H, KV);
        if (lp->v_bias >= 0) bias_forward(gen->v, param_weights(model, lp->v_bias), count, KV);
        for (int i = 0; i < count; i++) {
            const size_t at = (size_t)gen->positions[i] * KV;
            memcpy(cache_row(gen, gen->k_cache, rows[i], l) + at, gen->k + (size_t)i * KV, sizeof(float) * KV);
            memcpy(cache_row(gen, gen->v_cache, rows[i], l) + at, gen->v + (size_t)i * KV, sizeof(float) * KV);
        }
        attend(gen, l, rows, count);
        product(gen, gen->tmp, gen->attn, lp->o, count, H, H);
        for (size_t i = 0; i < (size_t)count * H; i++) gen->x[i] += gen->tmp[i];
        rmsnorm_forward(gen->ln, gen->rstd, gen->x, param_weights(model, lp->post_norm), count, H, eps);
        const int m = model->layers[l].moe_index;
        if (m < 0) {
            mlp_rows(gen, lp->dense0, cfg->dense_intermediate_size, -1, count);
            continue;
        }
        int status = moe_rows(gen, l, m, count);
        if (status < 0) return status;
    }
    gen->routed = true;
    if (logits) { /* nobody reads the logits of a prompt's inner tokens: skip the largest product */
        rmsnorm_forward(gen->ln, gen->rstd, gen->x, param_weights(model, model->final_norm), count, H, eps);
        product(gen, logits, gen->ln, model->lm_head, count, H, cfg->vocab_size);
    }
    for (int i = 0; i < count; i++) gen->lengths[rows[i]]++;
    gen->tokens_seen += count;
    return PM_OK;
}

pm_status pm_generator_feed_rows(pm_generator *gen, const int *rows, const int32_t *tokens, int count,
                                 float *logits) {
    const pm_model_config *cfg = &gen->model->cfg;
    if (count < 1 || count > gen->rows)
        return pm_fail(PM_ERR_ARG, "generator: %d tokens in one step; this generator feeds 1 to %d (its rows)", count,
                       gen->rows);
    /* every check before any change: a refused step leaves every row as it was */
    int status = PM_OK;
    for (int i = 0; status == 0 && i < count; i++) {
        const int row = rows[i];
        if (row < 0 || row >= gen->rows)
            status = pm_fail(PM_ERR_ARG, "generator: row %d; this generator has rows 0 to %d", row, gen->rows - 1);
        else if (gen->feeding[row])
            status = pm_fail(PM_ERR_ARG, "generator: row %d is fed twice in one step; feed it again in the next",
                             row);
        else if (gen->lengths[row] >= gen->max_len)
            status = pm_fail(PM_ERR_ARG, "generator: the context is full (%d tokens%s); start again or allow a "
                             "longer context", gen->max_len, gen->rows > 1 ? " in this row" : "");
        else if (tokens[i] < 0 || tokens[i] >= cfg->vocab_size)
            status = pm_fail(PM_ERR_ARG, "generator: token %d is outside the vocabulary (0..%d)", tokens[i],
                             cfg->vocab_size - 1);
        else
            gen->feeding[row] = 1;
    }
    for (int i = 0; i < count; i++)
        if (rows[i] >= 0 && rows[i] < gen->rows) gen->feeding[rows[i]] = 0;
    if (status < 0) return status;
    /* A router may set its state from the first tokens it routes (softmoe calibrates tau on an
     * untrained model), which would make every row's routing depend on the first step's other
     * rows. The first row of the first step goes alone: the state is then what feeding the
     * rows one after another would set. */
    if (!gen->routed && count > 1) {
        status = feed_checked(gen, rows, tokens, 1, logits);
        if (status < 0) return status;
        return feed_checked(gen, rows + 1, tokens + 1, count - 1, logits ? logits + cfg->vocab_size : NULL);
    }
    return feed_checked(gen, rows, tokens, count, logits);
}

pm_status pm_generator_feed(pm_generator *gen, int32_t token, float *logits) {
    const int row = 0;
    return pm_generator_feed_rows(gen, &row, &token, 1, logits);
}
