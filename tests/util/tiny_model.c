#include "tiny_model.h"

#include <math.h>
#include <string.h>

pm_model_config tiny_model_config(pm_router_kind kind) {
    pm_model_config cfg = pm_model_config_default();
    cfg.vocab_size = 50;
    cfg.hidden_size = 32;
    cfg.intermediate_size = 24;
    cfg.num_layers = 2;
    cfg.num_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.num_experts = 6;
    cfg.experts_per_token = 2;
    cfg.max_position_embeddings = 64;
    cfg.router = pm_router_config_default(kind, cfg.num_experts, cfg.experts_per_token);
    return cfg;
}

pm_model_config tiny_family_config(pm_arch arch, pm_router_kind kind) {
    pm_model_config cfg = tiny_model_config(kind);
    cfg.arch = arch;
    if (arch == PM_ARCH_QWEN2_MOE) {
        cfg.qkv_bias = true;
        cfg.shared_expert_size = 20;
        cfg.dense_intermediate_size = 40;
        cfg.tie_word_embeddings = true;
    } else if (arch == PM_ARCH_MIXTRAL) {
        cfg.sliding_window = 5;
        cfg.router.norm_topk_prob = true;
    }
    return cfg;
}

pm_model_config tiny_dense_config(pm_router_kind kind) {
    pm_model_config cfg = tiny_family_config(PM_ARCH_QWEN2_MOE, kind);
    cfg.num_layers = 4;
    cfg.decoder_sparse_step = 2;
    return cfg;
}

void tiny_model_set_biases(pm_model *model) {
    float *weights = pm_model_weights(model);
    for (int i = 0; i < pm_model_num_params(model); i++) {
        const pm_param *param = pm_model_param(model, i);
        const size_t length = strlen(param->name);
        if (length < 5 || strcmp(param->name + length - 5, ".bias") != 0) continue;
        for (size_t j = 0; j < param->count; j++) weights[param->offset + j] = 0.3f * sinf((float)(j + 7 * i));
    }
}
