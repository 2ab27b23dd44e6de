/* Token-by-token inference with a key/value cache: each new token costs one row through every
 * layer instead of a pass over the whole context. Routers use their inference rules; a
 * different router (say, dynamic-k MAP routing for a probmoe-trained model) can be swapped in. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/memory.h"
#include "model/model_internal.h"
#include "nn/nn.h"
#include "route/router_memory.h"

struct pm_generator {
    pm_model *model;
    int max_len, length;
    float *k_cache, *v_cache;           /* (L, max_len, KV) keys after norm and rope; values */
    float *x, *ln, *q, *k, *v, *attn, *tmp, *scores, *logits_row; /* one token's buffers */
    float *router_logits, *expert_gate, *expert_up, *expert_act, *expert_out;
    pm_router **routers;
    pm_routing **routings;
    double *active_sum;                 /* (L) experts used, summed over tokens */
    long tokens_seen;
};

void pm_generator_free(pm_generator *gen) {
    if (!gen) return;
    const int L = gen->model->cfg.num_layers;
    for (int l = 0; gen->routers && l < L; l++) {
        pm_routing_free(gen->routings ? gen->routings[l] : NULL);
        pm_router_free(gen->routers[l]);
    }
    float *buffers[] = {gen->k_cache, gen->v_cache, gen->x, gen->ln, gen->q, gen->k, gen->v, gen->attn, gen->tmp,
                        gen->scores, gen->logits_row, gen->router_logits, gen->expert_gate, gen->expert_up,
                        gen->expert_act, gen->expert_out};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) free(buffers[i]);
    free(gen->routers);
    free(gen->routings);
    free(gen->active_sum);
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

/* The generator's buffers (keep in step with pm_generator_create below) on top of the model's:
 * refused before anything is allocated if they do not fit this machine's memory. */
static int generator_memory_check(const pm_model *model, const pm_router_config *router, int max_len) {
    const pm_model_config *cfg = &model->cfg;
    const uint64_t L = (uint64_t)cfg->num_layers, H = (uint64_t)cfg->hidden_size, n = (uint64_t)max_len;
    const uint64_t KV = H / (uint64_t)cfg->num_heads * (uint64_t)cfg->num_kv_heads;
    /* the key and value caches; one token's x, ln, q, attn, tmp, expert_out (H), k and v, the
     * scores, logits, router logits and the expert's gate, up and act; per layer a router and
     * its routing of one token and the mean of active experts */
    uint64_t bytes = sat_mul3(2 * sizeof(float), L * n, KV);
    const uint64_t row = 6 * H + 2 * KV + n + (uint64_t)cfg->vocab_size + (uint64_t)cfg->num_experts +
                         3 * (uint64_t)cfg->intermediate_size;
    bytes = sat_add(bytes, sizeof(float) * row);
    bytes = sat_add(bytes, sat_mul(L, router_memory_bytes(router) + routing_memory_bytes(router, 1) +
                                          2 * sizeof(void *) + sizeof(double)));
    pm_memory_estimate own;
    int status = pm_model_memory_estimate(cfg, model->max_batch, model->max_seq, false, &own);
    if (status < 0) return status;
    const char *source = NULL;
    const uint64_t limit = machine_memory_bytes(&source), total = sat_add(own.total, bytes);
    if (limit == 0 || total <= limit) return PM_OK;
    char cache[32], of_model[32], machine[32];
    return pm_fail(PM_ERR_NOMEM, "generator: a context of %d tokens needs about %s (mostly the key/value cache) on top "
                   "of the model's %s, but this machine has %s (%s); use a shorter context", max_len,
                   memory_format(bytes, cache, sizeof cache), memory_format(own.total, of_model, sizeof of_model),
                   memory_format(limit, machine, sizeof machine), source);
}

pm_generator *pm_generator_create(pm_model *model, const pm_router_config *router, int max_len) {
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
    if (generator_memory_check(model, use, max_len) < 0) return NULL;
    pm_generator *gen = calloc(1, sizeof *gen);
    if (!gen) {
        pm_fail(PM_ERR_NOMEM, "generator: out of memory");
        return NULL;
    }
    gen->model = model;
    gen->max_len = max_len;
    const int L = cfg->num_layers, H = cfg->hidden_size, E = cfg->num_experts, I = cfg->intermediate_size;
    const size_t KV = (size_t)H / cfg->num_heads * cfg->num_kv_heads;
    gen->k_cache = malloc(sizeof(float) * L * max_len * KV);
    gen->v_cache = malloc(sizeof(float) * L * max_len * KV);
    gen->x = malloc(sizeof(float) * H);
    gen->ln = malloc(sizeof(float) * H);
    gen->q = malloc(sizeof(float) * H);
    gen->k = malloc(sizeof(float) * KV);
    gen->v = malloc(sizeof(float) * KV);
    gen->attn = malloc(sizeof(float) * H);
    gen->tmp = malloc(sizeof(float) * H);
    gen->scores = malloc(sizeof(float) * max_len);
    gen->logits_row = malloc(sizeof(float) * cfg->vocab_size);
    gen->router_logits = malloc(sizeof(float) * E);
    gen->expert_gate = malloc(sizeof(float) * I);
    gen->expert_up = malloc(sizeof(float) * I);
    gen->expert_act = malloc(sizeof(float) * I);
    gen->expert_out = malloc(sizeof(float) * H);
    gen->routers = calloc((size_t)L, sizeof(pm_router *));
    gen->routings = calloc((size_t)L, sizeof(pm_routing *));
    gen->active_sum = calloc((size_t)L, sizeof(double));
    bool ok = gen->k_cache && gen->v_cache && gen->x && gen->ln && gen->q && gen->k && gen->v && gen->attn &&
              gen->tmp && gen->scores && gen->logits_row && gen->router_logits && gen->expert_gate &&
              gen->expert_up && gen->expert_act && gen->expert_out && gen->routers && gen->routings &&
              gen->active_sum;
    /* the learned budget's current k_l and alpha into the model's routers, to copy below */
    if (ok && model_budget_apply(model) < 0) {
        pm_generator_free(gen);
        return NULL;
    }
    for (int l = 0; ok && l < L; l++) {
        gen->routers[l] = pm_router_create(use);
        if (gen->routers[l] && take_trained_values(gen->routers[l], model->layers[l].router, use, &cfg->router) < 0) {
            pm_generator_free(gen);
            return NULL;
        }
        gen->routings[l] = gen->routers[l] ? pm_routing_create(gen->routers[l], 1) : NULL;
        ok = gen->routers[l] && gen->routings[l];
    }
    if (!ok) {
        pm_generator_free(gen);
        pm_fail(PM_ERR_NOMEM, "generator: out of memory for a context of %d tokens", max_len);
        return NULL;
    }
    return gen;
}

void pm_generator_reset(pm_generator *gen) {
    gen->length = 0;
    gen->tokens_seen = 0;
    memset(gen->active_sum, 0, sizeof(double) * gen->model->cfg.num_layers);
}

int pm_generator_length(const pm_generator *gen) { return gen->length; }

double pm_generator_mean_active(const pm_generator *gen, int layer) {
    return gen->tokens_seen ? gen->active_sum[layer] / gen->tokens_seen : 0.0;
}

/* Attention of the newest query over the cached keys and values of one layer. */
static void attend(pm_generator *gen, int l) {
    const pm_model_config *cfg = &gen->model->cfg;
    const int H = cfg->hidden_size, D = H / cfg->num_heads, KV = D * cfg->num_kv_heads;
    const int n = gen->length + 1, group = cfg->num_heads / cfg->num_kv_heads;
    const float *keys = gen->k_cache + (size_t)l * gen->max_len * KV;
    const float *values = gen->v_cache + (size_t)l * gen->max_len * KV;
    const float scale = 1.0f / sqrtf((float)D);
    for (int h = 0; h < cfg->num_heads; h++) {
        const float *q = gen->q + (size_t)h * D;
        const int kv_head = h / group;
        float top = -INFINITY;
        for (int j = 0; j < n; j++) {
            const float *k = keys + (size_t)j * KV + (size_t)kv_head * D;
            float dot = 0.0f;
            for (int d = 0; d < D; d++) dot += q[d] * k[d];
            gen->scores[j] = dot * scale;
            top = gen->scores[j] > top ? gen->scores[j] : top;
        }
        double sum = 0.0;
        for (int j = 0; j < n; j++) sum += gen->scores[j] = expf(gen->scores[j] - top);
        float *out = gen->attn + (size_t)h * D;
        memset(out, 0, sizeof(float) * D);
        for (int j = 0; j < n; j++) {
            const float p = (float)(gen->scores[j] / sum), *v = values + (size_t)j * KV + (size_t)kv_head * D;
            for (int d = 0; d < D; d++) out[d] += p * v[d];
        }
    }
}

static int moe_token(pm_generator *gen, int l) {
    pm_model *model = gen->model;
    const pm_model_config *cfg = &model->cfg;
    const layer_params *lp = &model->layer_params[l];
    const int H = cfg->hidden_size, I = cfg->intermediate_size, E = cfg->num_experts;
    matmul_forward(gen->router_logits, gen->ln, param_weights(model, lp->router), 1, H, E);
    int status = pm_router_forward(gen->routers[l], gen->routings[l], gen->router_logits, 1, false, NULL);
    if (status < 0) return status;
    const pm_routing *routing = gen->routings[l];
    gen->active_sum[l] += routing->offsets[1];
    for (int p = 0; p < routing->offsets[1]; p++) {
        const moe_expert *expert = &model->layers[l].experts[routing->experts[p]];
        matmul_forward(gen->expert_gate, gen->ln, expert->gate, 1, H, I);
        matmul_forward(gen->expert_up, gen->ln, expert->up, 1, H, I);
        swiglu_forward(gen->expert_act, gen->expert_gate, gen->expert_up, 1, I);
        matmul_forward(gen->expert_out, gen->expert_act, expert->down, 1, I, H);
        for (int i = 0; i < H; i++) gen->x[i] += routing->weights[p] * gen->expert_out[i];
    }
    return PM_OK;
}

pm_status pm_generator_feed(pm_generator *gen, int32_t token, float *logits) {
    pm_model *model = gen->model;
    const pm_model_config *cfg = &model->cfg;
    if (gen->length >= gen->max_len)
        return pm_fail(PM_ERR_ARG, "generator: the context is full (%d tokens); start again or allow a longer "
                       "context", gen->max_len);
    if (token < 0 || token >= cfg->vocab_size)
        return pm_fail(PM_ERR_ARG, "generator: token %d is outside the vocabulary (0..%d)", token,
                       cfg->vocab_size - 1);
    const int H = cfg->hidden_size, D = H / cfg->num_heads, KV = D * cfg->num_kv_heads;
    const int32_t position = gen->length;
    memcpy(gen->x, param_weights(model, model->embed) + (size_t)token * H, sizeof(float) * H);
    for (int l = 0; l < cfg->num_layers; l++) {
        const layer_params *lp = &model->layer_params[l];
        float rstd;
        rmsnorm_forward(gen->ln, &rstd, gen->x, param_weights(model, lp->input_norm), 1, H, cfg->rms_norm_eps);
        matmul_forward(gen->tmp, gen->ln, param_weights(model, lp->q), 1, H, H);
        rmsnorm_forward(gen->q, &rstd, gen->tmp, param_weights(model, lp->q_norm), 1, H, cfg->rms_norm_eps);
        rope_forward(gen->q, gen->q, &position, 1, cfg->num_heads, D, cfg->rope_theta);
        matmul_forward(gen->tmp, gen->ln, param_weights(model, lp->k), 1, H, KV);
        float *key = gen->k_cache + ((size_t)l * gen->max_len + position) * KV;
        rmsnorm_forward(key, &rstd, gen->tmp, param_weights(model, lp->k_norm), 1, KV, cfg->rms_norm_eps);
        rope_forward(key, key, &position, 1, cfg->num_kv_heads, D, cfg->rope_theta);
        matmul_forward(gen->v_cache + ((size_t)l * gen->max_len + position) * KV, gen->ln,
                       param_weights(model, lp->v), 1, H, KV);
        attend(gen, l);
        matmul_forward(gen->tmp, gen->attn, param_weights(model, lp->o), 1, H, H);
        for (int i = 0; i < H; i++) gen->x[i] += gen->tmp[i];
        rmsnorm_forward(gen->ln, &rstd, gen->x, param_weights(model, lp->post_norm), 1, H, cfg->rms_norm_eps);
        int status = moe_token(gen, l);
        if (status < 0) return status;
    }
    float rstd;
    rmsnorm_forward(gen->ln, &rstd, gen->x, param_weights(model, model->final_norm), 1, H, cfg->rms_norm_eps);
    matmul_forward(logits ? logits : gen->logits_row, gen->ln, param_weights(model, model->lm_head), 1, H,
                   cfg->vocab_size);
    gen->length++;
    gen->tokens_seen++;
    return PM_OK;
}

/* Temperature, then the smallest set of tokens whose probability reaches top_p. */
int pm_sample_token(const float *logits, int V, float temperature, float top_p, pm_rng *rng) {
    int best = 0;
    for (int i = 1; i < V; i++) best = logits[i] > logits[best] ? i : best;
    if (temperature <= 0.0f) return best;
    double *probs = malloc(sizeof(double) * V);
    int *order = malloc(sizeof(int) * V);
    if (!probs || !order) {
        free(probs);
        free(order);
        return best;
    }
    double sum = 0.0;
    for (int i = 0; i < V; i++) sum += probs[i] = exp((logits[i] - logits[best]) / temperature);
    for (int i = 0; i < V; i++) order[i] = i;
    /* insertion sort by probability, descending (V is a vocabulary: fine for sampling) */
    for (int i = 1; i < V; i++) {
        int v = order[i], j = i - 1;
        while (j >= 0 && probs[order[j]] < probs[v]) order[j + 1] = order[j], j--;
        order[j + 1] = v;
    }
    int keep = 0;
    double kept = 0.0;
    while (keep < V && (keep == 0 || kept < top_p * sum)) kept += probs[order[keep++]];
    double u = pm_rng_uniform(rng) * kept, acc = 0.0;
    int chosen = keep > 0 ? order[keep - 1] : best;
    for (int i = 0; i < keep; i++) {
        acc += probs[order[i]];
        if (u < acc) {
            chosen = order[i];
            break;
        }
    }
    free(probs);
    free(order);
    return chosen;
}
