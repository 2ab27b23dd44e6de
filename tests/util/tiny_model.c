#include "tiny_model.h"

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
