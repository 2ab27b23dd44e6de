/* The families' own config.json fields (config_internal.h): what each reads and writes, and
 * every field whose behaviour the model does not implement, refused with its name, since
 * running it otherwise would silently compute another model. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "model/config_internal.h"

static const cJSON *item(const json_reader *reader, const char *name) {
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(reader->object, name);
    return value && !cJSON_IsNull(value) ? value : NULL;
}

static int refuse(json_reader *reader, const char *name, const char *why) {
    if (reader->status == 0)
        reader->status = pm_fail(PM_ERR_ARG, "%s: %s is not supported: %s", reader->source, name, why);
    return reader->status;
}

/* A rope_type (rope_scaling's "rope_type" or older "type", or rope_parameters') other than the
 * plain rotary embedding. */
static void check_rope_type(json_reader *reader, const char *field, const cJSON *object) {
    if (!cJSON_IsObject(object)) {
        refuse(reader, field, "give an object with rope_type \"default\", or null");
        return;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(object, "rope_type");
    if (!type) type = cJSON_GetObjectItemCaseSensitive(object, "type");
    float partial = 1.0f;
    json_reader inner = {object, reader->source, "", reader->status};
    config_read_float(&inner, "partial_rotary_factor", &partial);
    reader->status = inner.status;
    if (partial != 1.0f) refuse(reader, "partial_rotary_factor", "rope rotates every dimension here; set it to 1");
    if (!type || (cJSON_IsString(type) && strcmp(type->valuestring, "default") == 0)) return;
    char why[160];
    snprintf(why, sizeof why, "rope type \"%.40s\"; only the unscaled rotary embedding is implemented: set "
             "rope_type \"default\", or null", cJSON_IsString(type) ? type->valuestring : "?");
    refuse(reader, field, why);
}

/* The fields every family shares whose unsupported values are refused. */
static void read_common(json_reader *reader, pm_model_config *cfg) {
    const cJSON *act = item(reader, "hidden_act");
    if (act && !(cJSON_IsString(act) && strcmp(act->valuestring, "silu") == 0))
        refuse(reader, "hidden_act other than \"silu\"", "the experts are SwiGLU experts; set it to \"silu\"");
    const cJSON *scaling = item(reader, "rope_scaling");
    if (scaling) check_rope_type(reader, "rope_scaling", scaling);
    const cJSON *parameters = item(reader, "rope_parameters");
    if (parameters) {
        check_rope_type(reader, "rope_parameters", parameters);
        json_reader inner = {parameters, reader->source, "rope_parameters.", reader->status};
        config_read_float(&inner, "rope_theta", &cfg->rope_theta);
        reader->status = inner.status;
    }
    float partial = 1.0f;
    config_read_float(reader, "partial_rotary_factor", &partial);
    if (partial != 1.0f) refuse(reader, "partial_rotary_factor", "rope rotates every dimension here; set it to 1");
    int head_dim = 0;
    config_read_int(reader, "head_dim", &head_dim, false);
    /* in 64 bits: both numbers come from the file and may be as large as an int */
    if (reader->status == 0 && head_dim != 0 && cfg->num_heads > 0 &&
        (int64_t)head_dim * cfg->num_heads != cfg->hidden_size) {
        char why[128];
        snprintf(why, sizeof why, "head_dim = %d differs from hidden_size / num_attention_heads = %d; it must "
                 "equal it", head_dim, cfg->hidden_size / cfg->num_heads);
        refuse(reader, "head_dim", why);
    }
    float dropout = 0.0f;
    config_read_float(reader, "attention_dropout", &dropout);
    if (dropout != 0.0f) refuse(reader, "attention_dropout", "there is no dropout; set it to 0");
    const char *mla[] = {"kv_lora_rank", "q_lora_rank"};
    for (size_t i = 0; i < sizeof mla / sizeof mla[0]; i++)
        if (item(reader, mla[i]))
            refuse(reader, mla[i], "Multi-head Latent Attention is not implemented (grouped-query attention is); "
                   "remove it");
}

static void read_olmoe(json_reader *reader, bool *norm) {
    config_read_bool(reader, "norm_topk_prob", norm);
    bool bias = false;
    config_read_bool(reader, "attention_bias", &bias);
    if (bias) refuse(reader, "attention_bias = true", "OLMoE's projections have no biases here; set it to false");
    if (item(reader, "clip_qkv")) refuse(reader, "clip_qkv", "q, k and v are not clipped; set it to null");
}

/* Qwen2-MoE's dense layers: decoder_sparse_step and mlp_only_layers (numbers at or past
 * num_hidden_layers name no layer, as in Hugging Face's code, and are dropped). */
static void read_dense_layers(json_reader *reader, pm_model_config *cfg) {
    config_read_int(reader, "decoder_sparse_step", &cfg->decoder_sparse_step, false);
    if (reader->status == 0 && (cfg->decoder_sparse_step < 1 || cfg->decoder_sparse_step > PM_MAX_LAYERS))
        reader->status = pm_fail(PM_ERR_ARG, "%s: decoder_sparse_step = %d; it must be 1 to %d", reader->source,
                                 cfg->decoder_sparse_step, PM_MAX_LAYERS);
    const cJSON *dense = item(reader, "mlp_only_layers"), *layer;
    if (reader->status == 0 && dense && !cJSON_IsArray(dense))
        reader->status = pm_fail(PM_ERR_ARG, "%s: mlp_only_layers must be a list of layer numbers", reader->source);
    cJSON_ArrayForEach(layer, dense) {
        if (reader->status < 0) break;
        const double number = cJSON_IsNumber(layer) ? layer->valuedouble : -1.0;
        if (number < 0 || number != floor(number))
            reader->status = pm_fail(PM_ERR_ARG, "%s: mlp_only_layers must be a list of layer numbers (0 or more); "
                                     "it holds %s", reader->source, cJSON_IsNumber(layer) ? "a negative or "
                                     "fractional number" : "something else");
        else if (number < cfg->num_layers && number < PM_MAX_LAYERS)
            cfg->mlp_only_layers[(int)number] = true;
    }
}

static void read_qwen2_moe(json_reader *reader, pm_model_config *cfg, bool *norm) {
    config_read_bool(reader, "norm_topk_prob", norm);
    cfg->qkv_bias = true;
    config_read_bool(reader, "qkv_bias", &cfg->qkv_bias);
    config_read_int(reader, "intermediate_size", &cfg->dense_intermediate_size, true);
    config_read_int(reader, "shared_expert_intermediate_size", &cfg->shared_expert_size, true);
    read_dense_layers(reader, cfg);
    bool sliding = false;
    config_read_bool(reader, "use_sliding_window", &sliding);
    if (sliding) refuse(reader, "use_sliding_window = true", "qwen2_moe's per-layer sliding window is not "
                        "implemented; set it to false");
    const cJSON *types = item(reader, "layer_types"), *type;
    cJSON_ArrayForEach(type, types) {
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "full_attention") != 0) {
            refuse(reader, "layer_types other than \"full_attention\"", "every layer must be \"full_attention\"");
            break;
        }
    }
}

static void read_mixtral(json_reader *reader, pm_model_config *cfg, bool *norm) {
    *norm = true;
    bool given = true;
    config_read_bool(reader, "norm_topk_prob", &given);
    if (!given)
        refuse(reader, "norm_topk_prob = false", "Mixtral always renormalises the top-k weights; remove it or set it "
               "to true");
    config_read_int(reader, "sliding_window", &cfg->sliding_window, false);
    if (reader->status == 0 && cfg->sliding_window < 1 && item(reader, "sliding_window"))
        reader->status = pm_fail(PM_ERR_ARG, "%s: sliding_window = %d; give a positive window, or null for none",
                                 reader->source, cfg->sliding_window);
    float jitter = 0.0f;
    config_read_float(reader, "router_jitter_noise", &jitter);
    if (jitter != 0.0f) refuse(reader, "router_jitter_noise", "the router's input is not jittered; set it to 0");
}

int config_family_read(json_reader *reader, const model_arch *arch, pm_model_config *cfg, bool *norm_topk) {
    read_common(reader, cfg);
    if (arch->arch == PM_ARCH_OLMOE) read_olmoe(reader, norm_topk);
    else if (arch->arch == PM_ARCH_QWEN2_MOE) read_qwen2_moe(reader, cfg, norm_topk);
    else read_mixtral(reader, cfg, norm_topk);
    return reader->status;
}

bool config_family_write(cJSON *root, const pm_model_config *cfg) {
    const model_arch *arch = arch_get(cfg->arch);
    cJSON *architectures = cJSON_AddArrayToObject(root, "architectures");
    if (!architectures) return false;
    cJSON_AddItemToArray(architectures, cJSON_CreateString(arch->architecture));
    cJSON_AddStringToObject(root, "model_type", arch->model_type);
    cJSON_AddNumberToObject(root, "vocab_size", cfg->vocab_size);
    cJSON_AddNumberToObject(root, "hidden_size", cfg->hidden_size);
    cJSON_AddNumberToObject(root, arch->expert_width_key, cfg->intermediate_size);
    cJSON_AddNumberToObject(root, "num_hidden_layers", cfg->num_layers);
    cJSON_AddNumberToObject(root, "num_attention_heads", cfg->num_heads);
    cJSON_AddNumberToObject(root, "num_key_value_heads", cfg->num_kv_heads);
    cJSON_AddNumberToObject(root, arch->num_experts_key, cfg->num_experts);
    cJSON_AddNumberToObject(root, "num_experts_per_tok", cfg->experts_per_token);
    cJSON_AddNumberToObject(root, "max_position_embeddings", cfg->max_position_embeddings);
    cJSON_AddNumberToObject(root, "rope_theta", cfg->rope_theta);
    cJSON_AddNumberToObject(root, "rms_norm_eps", cfg->rms_norm_eps);
    cJSON_AddNumberToObject(root, "initializer_range", cfg->initializer_range);
    cJSON_AddNumberToObject(root, "router_aux_loss_coef", cfg->router.lb_coef);
    cJSON_AddBoolToObject(root, "tie_word_embeddings", cfg->tie_word_embeddings);
    cJSON_AddStringToObject(root, "hidden_act", "silu");
    cJSON_AddNumberToObject(root, "attention_dropout", 0);
    cJSON_AddBoolToObject(root, "output_router_logits", false);
    if (cfg->arch == PM_ARCH_OLMOE) {
        cJSON_AddBoolToObject(root, "norm_topk_prob", cfg->router.norm_topk_prob);
        cJSON_AddBoolToObject(root, "attention_bias", false);
        cJSON_AddNullToObject(root, "clip_qkv");
    } else if (cfg->arch == PM_ARCH_QWEN2_MOE) {
        /* intermediate_size is the dense MLPs' width (a stand-in when every layer is a MoE layer) */
        const int dense = cfg->dense_intermediate_size > 0 ? cfg->dense_intermediate_size : cfg->shared_expert_size;
        cJSON_AddNumberToObject(root, "intermediate_size", dense);
        cJSON_AddNumberToObject(root, "shared_expert_intermediate_size", cfg->shared_expert_size);
        cJSON_AddBoolToObject(root, "norm_topk_prob", cfg->router.norm_topk_prob);
        cJSON_AddBoolToObject(root, "qkv_bias", cfg->qkv_bias);
        cJSON_AddNumberToObject(root, "decoder_sparse_step", cfg->decoder_sparse_step > 1 ? cfg->decoder_sparse_step : 1);
        cJSON *listed = cJSON_AddArrayToObject(root, "mlp_only_layers");
        for (int l = 0; listed && l < cfg->num_layers && l < PM_MAX_LAYERS; l++)
            if (cfg->mlp_only_layers[l]) cJSON_AddItemToArray(listed, cJSON_CreateNumber(l));
        cJSON_AddBoolToObject(root, "use_sliding_window", false);
        cJSON_AddNullToObject(root, "sliding_window");
        cJSON_AddNumberToObject(root, "max_window_layers", cfg->num_layers);
    } else {
        if (cfg->sliding_window > 0) cJSON_AddNumberToObject(root, "sliding_window", cfg->sliding_window);
        else cJSON_AddNullToObject(root, "sliding_window");
        cJSON_AddNumberToObject(root, "router_jitter_noise", 0);
    }
    return true;
}
