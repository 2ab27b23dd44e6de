/* The parameter table: Hugging Face tensor names, shapes and offsets into one allocation,
 * expert tensors contiguous per layer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/memory.h"
#include "model/arch.h"
#include "model/model_internal.h"

enum { NAME_LENGTH = 96 };

/* Appends a parameter; returns its index. */
static int add_param(pm_model *model, const char *name, int64_t rows, int64_t cols) {
    const int index = model->num_params++;
    pm_param *param = &model->params[index];
    char *slot = model->names + (size_t)index * NAME_LENGTH;
    snprintf(slot, NAME_LENGTH, "%s", name);
    param->name = slot;
    param->rank = cols > 0 ? 2 : 1;
    param->shape[0] = rows;
    param->shape[1] = cols > 0 ? cols : 0;
    param->count = (size_t)rows * (size_t)(cols > 0 ? cols : 1);
    param->offset = model->size;
    param->decay = param->rank == 2;
    model->size += param->count;
    return index;
}

/* At most, per layer: 8 attention and norm tensors (OLMoE's q and k norms included), the router
 * and its log alpha, q/k/v biases, the shared expert's four and the experts' 3E; then the
 * embedding, final norm, lm_head and the budget's eta. */
int model_param_entries(const pm_model_config *cfg) {
    return 4 + cfg->num_layers * (10 + 3 + 4 + 3 * cfg->num_experts);
}

int model_mlp_width(const pm_model_config *cfg) {
    const int dense = pm_model_moe_layers(cfg) < cfg->num_layers ? cfg->dense_intermediate_size : 0;
    return dense > cfg->shared_expert_size ? dense : cfg->shared_expert_size;
}

/* Keep in step with the table model_build_params lays out below. */
uint64_t model_param_floats(const pm_model_config *cfg) {
    const model_arch *arch = arch_get(cfg->arch);
    const uint64_t H = (uint64_t)cfg->hidden_size, I = (uint64_t)cfg->intermediate_size;
    const uint64_t E = (uint64_t)cfg->num_experts, V = (uint64_t)cfg->vocab_size, L = (uint64_t)cfg->num_layers;
    const uint64_t KV = H / (uint64_t)cfg->num_heads * (uint64_t)cfg->num_kv_heads;
    const uint64_t S = (uint64_t)cfg->shared_expert_size;
    /* norms (input, post, OLMoE's q and k), q, k, v and o, their biases, the gate, the shared
     * expert and its gate, the experts' gate, up and down */
    uint64_t attention = 2 * H + 2 * H * H + 2 * KV * H;
    if (arch->qk_norm) attention += H + KV;
    if (cfg->qkv_bias) attention += H + 2 * KV;
    const uint64_t shared = S ? sat_mul(3 * H, S) + H : 0, M = (uint64_t)pm_model_moe_layers(cfg);
    const uint64_t moe = sat_add(sat_add(shared, E * H), sat_mul3(E, 3 * H, I));
    const uint64_t dense = sat_mul(3 * H, (uint64_t)cfg->dense_intermediate_size); /* a dense layer's MLP */
    const uint64_t layers = sat_add(sat_add(sat_mul(L, attention), sat_mul(M, moe)), sat_mul(L - M, dense));
    const uint64_t budget = pm_router_learns_budget(cfg->router.kind) ? 2 * M : 0;
    const uint64_t tables = sat_mul(cfg->tie_word_embeddings ? V : 2 * V, H);
    return sat_add(sat_add(tables + H, layers), budget);
}

int model_build_params(pm_model *model) {
    const pm_model_config *cfg = &model->cfg;
    const model_arch *arch = arch_get(cfg->arch);
    const int H = cfg->hidden_size, I = cfg->intermediate_size, E = cfg->num_experts, S = cfg->shared_expert_size;
    const int KV = H / cfg->num_heads * cfg->num_kv_heads;
    const bool budget = pm_router_learns_budget(cfg->router.kind);
    const int total = model_param_entries(cfg);
    const char *moe = arch->moe_prefix;
    model->params = calloc((size_t)total, sizeof(pm_param));
    model->names = calloc((size_t)total, NAME_LENGTH);
    model->layer_params = calloc((size_t)cfg->num_layers, sizeof(layer_params));
    model->num_moe = pm_model_moe_layers(cfg);
    model->moe_layers = calloc((size_t)model->num_moe, sizeof(int));
    if (!model->params || !model->names || !model->layer_params || !model->moe_layers)
        return pm_fail(PM_ERR_NOMEM, "model: out of memory for the parameter table");
    char name[NAME_LENGTH];
    model->embed = add_param(model, "model.embed_tokens.weight", cfg->vocab_size, H);
    for (int l = 0; l < cfg->num_layers; l++) {
        layer_params *lp = &model->layer_params[l];
        *lp = (layer_params){.q_norm = -1, .k_norm = -1, .router = -1, .expert0 = -1, .dense0 = -1, .q_bias = -1,
                             .k_bias = -1, .v_bias = -1, .shared0 = -1, .shared_gate = -1, .log_alpha = -1};
#define LAYER_PARAM(field, suffix, rows, cols)                                      \
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);                  \
    lp->field = add_param(model, name, rows, cols)
        LAYER_PARAM(input_norm, "input_layernorm.weight", H, 0);
        LAYER_PARAM(q, "self_attn.q_proj.weight", H, H);
        if (cfg->qkv_bias) { LAYER_PARAM(q_bias, "self_attn.q_proj.bias", H, 0); }
        LAYER_PARAM(k, "self_attn.k_proj.weight", KV, H);
        if (cfg->qkv_bias) { LAYER_PARAM(k_bias, "self_attn.k_proj.bias", KV, 0); }
        LAYER_PARAM(v, "self_attn.v_proj.weight", KV, H);
        if (cfg->qkv_bias) { LAYER_PARAM(v_bias, "self_attn.v_proj.bias", KV, 0); }
        LAYER_PARAM(o, "self_attn.o_proj.weight", H, H);
        if (arch->qk_norm) {
            LAYER_PARAM(q_norm, "self_attn.q_norm.weight", H, 0);
            LAYER_PARAM(k_norm, "self_attn.k_norm.weight", KV, 0);
        }
        LAYER_PARAM(post_norm, "post_attention_layernorm.weight", H, 0);
#undef LAYER_PARAM
        const char *projections[3] = {"gate_proj", "up_proj", "down_proj"};
        if (!pm_model_layer_is_moe(cfg, l)) { /* Qwen2MoeMLP: gate and up (D, H), down (H, D) */
            const int D = cfg->dense_intermediate_size;
            for (int j = 0; j < 3; j++) {
                snprintf(name, sizeof name, "model.layers.%d.%s.%s.weight", l, moe, projections[j]);
                const int index = add_param(model, name, j < 2 ? D : H, j < 2 ? H : D);
                if (j == 0) lp->dense0 = index;
            }
            continue;
        }
        snprintf(name, sizeof name, "model.layers.%d.%s.gate.weight", l, moe);
        lp->router = add_param(model, name, E, H);
        model->params[lp->router].router = true;
        if (S > 0) { /* before the experts, which end the layer (expert parallelism's regions) */
            for (int j = 0; j < 3; j++) {
                snprintf(name, sizeof name, "model.layers.%d.%s.shared_expert.%s.weight", l, moe, projections[j]);
                const int index = add_param(model, name, j < 2 ? S : H, j < 2 ? H : S);
                if (j == 0) lp->shared0 = index;
            }
            snprintf(name, sizeof name, "model.layers.%d.%s.shared_expert_gate.weight", l, moe);
            lp->shared_gate = add_param(model, name, 1, H);
        }
        for (int e = 0; e < E; e++) {
            for (int j = 0; j < 3; j++) {
                snprintf(name, sizeof name, "model.layers.%d.%s.experts.%d.%s.weight", l, moe, e,
                         arch->expert_names[j]);
                int index = add_param(model, name, j < 2 ? I : H, j < 2 ? H : I);
                if (e == 0 && j == 0) lp->expert0 = index;
            }
        }
    }
    model->final_norm = add_param(model, "model.norm.weight", H, 0);
    /* tied: the logits read the embedding, and Hugging Face's files hold no lm_head */
    model->lm_head = cfg->tie_word_embeddings ? model->embed : add_param(model, "lm_head.weight", cfg->vocab_size, H);
    model->head_end = model->size;
    /* the learned budget last: the other tensors keep their indices, and so their
     * initialisation streams, whatever the router */
    model->budget_eta = -1;
    for (int l = 0, m = 0; l < cfg->num_layers; l++)
        if (pm_model_layer_is_moe(cfg, l)) model->moe_layers[m++] = l;
    for (int m = 0; budget && m < model->num_moe; m++) {
        const int l = model->moe_layers[m];
        snprintf(name, sizeof name, "model.layers.%d.%s.gate.log_alpha", l, moe);
        const int index = model->layer_params[l].log_alpha = add_param(model, name, 1, 0);
        model->params[index].router = model->params[index].optional = true;
    }
    if (budget) {
        model->budget_eta = add_param(model, "model.soft_budget.eta", model->num_moe, 0);
        model->params[model->budget_eta].router = model->params[model->budget_eta].optional = true;
    }
    return PM_OK;
}

int pm_model_num_params(const pm_model *model) { return model->num_params; }

const pm_param *pm_model_param(const pm_model *model, int index) {
    return index >= 0 && index < model->num_params ? &model->params[index] : NULL;
}

const pm_param *pm_model_find_param(const pm_model *model, const char *name) {
    for (int i = 0; i < model->num_params; i++)
        if (strcmp(model->params[i].name, name) == 0) return &model->params[i];
    return NULL;
}

size_t pm_model_size(const pm_model *model) { return model->size; }
/* Writable: the bf16 copy is remade at the next forward pass. */
float *pm_model_weights(pm_model *model) {
    model->weights16_stale = true;
    return model->weights;
}
float *pm_model_grads(pm_model *model) { return model->grads; }
static void zero_range(void *user, size_t offset, size_t count) {
    memset((float *)user + offset, 0, sizeof(float) * count);
}

/* Under expert parallelism only what this rank trains: other ranks' experts are never written,
 * so their pages stay unallocated. */
void pm_model_zero_grads(pm_model *model) { model_for_local_ranges(model, zero_range, model->grads); }

static bool is_bias(const pm_param *param) {
    const size_t length = strlen(param->name), suffix = strlen(".bias");
    return length > suffix && strcmp(param->name + length - suffix, ".bias") == 0;
}

/* Matrices normal(0, initializer_range), norm weights 1, biases 0; one generator stream per tensor,
 * so initialisation does not depend on the thread count or on the table's order. */
void pm_model_init_weights(pm_model *model, uint64_t seed) {
    const float range = model->cfg.initializer_range;
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < model->num_params; i++) {
        const pm_param *param = &model->params[i];
        float *w = model->weights + param->offset;
        if (!model_param_kept(model, i)) continue; /* its owner draws it from the same stream */
        if (param->rank == 1) {
            const float value = is_bias(param) ? 0.0f : 1.0f;
            for (size_t j = 0; j < param->count; j++) w[j] = value;
            continue;
        }
        pm_rng rng;
        pm_rng_init(&rng, seed, 0x1000000ull + (uint64_t)i);
        for (size_t j = 0; j < param->count; j++) {
            double u1 = pm_rng_uniform(&rng), u2 = pm_rng_uniform(&rng);
            w[j] = (float)(range * sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2));
        }
    }
    model_budget_init(model);
}
