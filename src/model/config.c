/* The model configuration: a Hugging Face MoE family's config.json (model_type picks the family,
 * config_family.c reads its own fields) plus a "probmoe" object for the router. */
#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/arch.h"
#include "model/config_internal.h"
#include "route/router_fields.h"
#include "probmoe.h"

pm_model_config pm_model_config_default(void) {
    pm_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.vocab_size = 256;
    cfg.hidden_size = 256;
    cfg.intermediate_size = 512;
    cfg.num_layers = 4;
    cfg.num_heads = 8;
    cfg.num_kv_heads = 8;
    cfg.num_experts = 8;
    cfg.experts_per_token = 2;
    cfg.max_position_embeddings = 1024;
    cfg.rope_theta = 10000.0f;
    cfg.rms_norm_eps = 1e-5f;
    cfg.initializer_range = 0.02f;
    cfg.decoder_sparse_step = 1;
    cfg.router = pm_router_config_default(PM_ROUTER_PROBMOE, cfg.num_experts, cfg.experts_per_token);
    return cfg;
}

/* Qwen2MoeDecoderLayer's rule: a MoE block unless listed in mlp_only_layers or off the step. */
bool pm_model_layer_is_moe(const pm_model_config *cfg, int layer) {
    if (layer < 0 || layer >= cfg->num_layers || layer >= PM_MAX_LAYERS || cfg->mlp_only_layers[layer]) return false;
    return cfg->decoder_sparse_step <= 1 || (layer + 1) % cfg->decoder_sparse_step == 0;
}

int pm_model_moe_layers(const pm_model_config *cfg) {
    int count = 0;
    for (int l = 0; l < cfg->num_layers && l < PM_MAX_LAYERS; l++) count += pm_model_layer_is_moe(cfg, l);
    return count;
}

int pm_model_moe_layer_number(const pm_model_config *cfg, int m) {
    for (int l = 0; m >= 0 && l < cfg->num_layers && l < PM_MAX_LAYERS; l++)
        if (pm_model_layer_is_moe(cfg, l) && m-- == 0) return l;
    return -1;
}

static int positive(int value, const char *field) {
    if (value < 1) return pm_fail(PM_ERR_ARG, "model config: %s = %d; it must be at least 1", field, value);
    return PM_OK;
}

/* The family's own constraints: its block's parts exist only where the family has them. */
static int check_family(const pm_model_config *cfg) {
    const char *name = pm_arch_name(cfg->arch);
    if (!name)
        return pm_fail(PM_ERR_ARG, "model config: arch = %d is not a model family; give one of %s", (int)cfg->arch,
                       arch_list());
    const model_arch *arch = arch_get(cfg->arch);
    if (cfg->qkv_bias && !arch->qkv_bias_allowed)
        return pm_fail(PM_ERR_ARG, "model config: %s has no q/k/v biases; qkv_bias is for qwen2_moe", name);
    if (arch->shared_expert && (cfg->shared_expert_size < 1 || cfg->shared_expert_size > (1 << 18)))
        return pm_fail(PM_ERR_ARG, "model config: shared_expert_intermediate_size = %d; %s needs a shared expert of "
                       "1 to %d", cfg->shared_expert_size, name, 1 << 18);
    if (!arch->shared_expert && cfg->shared_expert_size != 0)
        return pm_fail(PM_ERR_ARG, "model config: %s has no shared expert; shared_expert_intermediate_size is for "
                       "qwen2_moe", name);
    if (cfg->dense_intermediate_size < 0 || cfg->dense_intermediate_size > (1 << 18) ||
        (cfg->dense_intermediate_size != 0 && cfg->arch != PM_ARCH_QWEN2_MOE))
        return pm_fail(PM_ERR_ARG, "model config: intermediate_size = %d of the dense MLPs must be 0 to %d (and 0 "
                       "outside qwen2_moe)", cfg->dense_intermediate_size, 1 << 18);
    if (cfg->sliding_window < 0 || (cfg->sliding_window != 0 && !arch->sliding_window_allowed))
        return pm_fail(PM_ERR_ARG, "model config: sliding_window = %d; give 0 (attention over every position)%s",
                       cfg->sliding_window, arch->sliding_window_allowed ? " or a positive window" : "");
    bool listed = false;
    for (int l = 0; l < PM_MAX_LAYERS; l++) listed |= cfg->mlp_only_layers[l];
    if (cfg->arch != PM_ARCH_QWEN2_MOE && (cfg->decoder_sparse_step > 1 || listed))
        return pm_fail(PM_ERR_ARG, "model config: %s has no dense MLP layers; decoder_sparse_step and "
                       "mlp_only_layers are for qwen2_moe", name);
    if (cfg->decoder_sparse_step < 0 || cfg->decoder_sparse_step > PM_MAX_LAYERS)
        return pm_fail(PM_ERR_ARG, "model config: decoder_sparse_step = %d; it must be 0 to %d (0 and 1: every "
                       "layer is a MoE layer)", cfg->decoder_sparse_step, PM_MAX_LAYERS);
    if (arch->always_norm_topk && !cfg->router.norm_topk_prob)
        return pm_fail(PM_ERR_ARG, "model config: %s renormalises the top-k weights; norm_topk_prob must be true",
                       name);
    return PM_OK;
}

pm_status pm_model_config_check(const pm_model_config *cfg) {
    int family = check_family(cfg);
    if (family < 0) return family;
    /* the family's own names of the experts' width and number */
    const char *width = arch_get(cfg->arch)->expert_width_key, *experts = arch_get(cfg->arch)->num_experts_key;
    const struct { int value; const char *field; } sizes[] = {
        {cfg->vocab_size, "vocab_size"}, {cfg->hidden_size, "hidden_size"},
        {cfg->intermediate_size, width}, {cfg->num_layers, "num_hidden_layers"},
        {cfg->num_heads, "num_attention_heads"}, {cfg->num_kv_heads, "num_key_value_heads"},
        {cfg->num_experts, experts}, {cfg->experts_per_token, "num_experts_per_tok"},
        {cfg->max_position_embeddings, "max_position_embeddings"},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int status = positive(sizes[i].value, sizes[i].field);
        if (status < 0) return status;
    }
    /* Upper bounds well above any model this code can run, so that every size computed from
     * them (table entries, tensor elements, buffers) fits its type. */
    const struct { int value, most; const char *field; } bounds[] = {
        {cfg->vocab_size, 1 << 24, "vocab_size"}, {cfg->hidden_size, 1 << 16, "hidden_size"},
        {cfg->intermediate_size, 1 << 18, width}, {cfg->num_layers, 1 << 10, "num_hidden_layers"},
        {cfg->num_heads, 1 << 10, "num_attention_heads"}, {cfg->num_experts, 1 << 12, experts},
        {cfg->max_position_embeddings, 1 << 20, "max_position_embeddings"},
    };
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++)
        if (bounds[i].value > bounds[i].most)
            return pm_fail(PM_ERR_ARG, "model config: %s = %d is above the largest supported, %d; check the config",
                           bounds[i].field, bounds[i].value, bounds[i].most);
    const int M = pm_model_moe_layers(cfg), dense = cfg->num_layers - M;
    if (M == 0)
        return pm_fail(PM_ERR_ARG, "model config: decoder_sparse_step = %d and mlp_only_layers make all %d layers "
                       "dense MLPs; probmoe routes MoE layers and needs at least one", cfg->decoder_sparse_step,
                       cfg->num_layers);
    if (dense > 0 && cfg->dense_intermediate_size < 1)
        return pm_fail(PM_ERR_ARG, "model config: %d layers are dense MLPs but intermediate_size (their width) is "
                       "%d; give it", dense, cfg->dense_intermediate_size);
    /* the parameter count, in double so that it cannot wrap */
    const double H = cfg->hidden_size, I = cfg->intermediate_size, E = cfg->num_experts;
    const double shared = cfg->shared_expert_size * 3.0 * H + H, mlp = 3.0 * H * cfg->dense_intermediate_size;
    const double parameters = 2.0 * cfg->vocab_size * H + cfg->num_layers * 4.0 * H * H +
                              M * (E * (H + 3.0 * H * I) + shared) + dense * mlp;
    if (parameters > 68719476736.0) /* 2^36 floats: 256 GiB of weights alone */
        return pm_fail(PM_ERR_ARG, "model config: %.3g parameters (%.0f GiB of float32 weights, more with gradients "
                       "and optimizer state) is more than this program can hold; use a smaller model",
                       parameters, parameters * 4.0 / 1073741824.0);
    if (cfg->hidden_size % cfg->num_heads != 0)
        return pm_fail(PM_ERR_ARG, "model config: num_attention_heads = %d does not divide hidden_size = %d; it must "
                       "divide it",
                       cfg->num_heads, cfg->hidden_size);
    if ((cfg->hidden_size / cfg->num_heads) % 2 != 0)
        return pm_fail(PM_ERR_ARG, "model config: the head size hidden_size / num_attention_heads = %d must "
                       "be even for rotary embeddings", cfg->hidden_size / cfg->num_heads);
    if (cfg->num_heads % cfg->num_kv_heads != 0)
        return pm_fail(PM_ERR_ARG, "model config: num_key_value_heads = %d does not divide "
                       "num_attention_heads = %d; it must divide it", cfg->num_kv_heads, cfg->num_heads);
    if (cfg->experts_per_token > cfg->num_experts)
        return pm_fail(PM_ERR_ARG, "model config: num_experts_per_tok = %d exceeds %s = %d; it must be at most that",
                       cfg->experts_per_token, experts, cfg->num_experts);
    if (!(cfg->rope_theta > 0.0f) || !isfinite(cfg->rope_theta))
        return pm_fail(PM_ERR_ARG, "model config: rope_theta = %g; it must be positive and finite", (double)cfg->rope_theta);
    if (!(cfg->rms_norm_eps > 0.0f) || !isfinite(cfg->rms_norm_eps))
        return pm_fail(PM_ERR_ARG, "model config: rms_norm_eps = %g; it must be positive and finite", (double)cfg->rms_norm_eps);
    if (cfg->router.num_experts != cfg->num_experts)
        return pm_fail(PM_ERR_ARG, "model config: the router has %d experts but num_experts = %d; they must agree",
                       cfg->router.num_experts, cfg->num_experts);
    if (!(cfg->soft_budget >= 0.0f) || !isfinite(cfg->soft_budget))
        return pm_fail(PM_ERR_ARG, "model config: probmoe.soft_budget = %g; give a finite budget, or 0 for "
                       "the MoE layers × soft_k", (double)cfg->soft_budget);
    if (cfg->soft_budget > 0.0f && !pm_router_learns_budget(cfg->router.kind))
        return pm_fail(PM_ERR_ARG, "model config: probmoe.soft_budget (--soft-budget) is set, but the %s router "
                       "learns no budget; drop it or use softmoe", pm_router_kind_name(cfg->router.kind));
    const float K = pm_model_soft_budget(cfg);
    if (pm_router_learns_budget(cfg->router.kind) && !(K > (float)M && K < (float)M * (float)cfg->num_experts))
        return pm_fail(PM_ERR_ARG, "model config: the %s budget K = %g must lie strictly between the MoE layers "
                       "M = %d and M·E = %d (each MoE layer keeps more than one and fewer than E experts); set "
                       "probmoe.soft_budget (--soft-budget) or k", pm_router_kind_name(cfg->router.kind),
                       (double)K, M, M * cfg->num_experts);
    return pm_router_config_check(&cfg->router);
}

/* ------------------------------------------------------------------ parsing */

static const cJSON *field(json_reader *reader, const char *name) {
    return cJSON_GetObjectItemCaseSensitive(reader->object, name);
}

void config_read_int(json_reader *reader, const char *name, int *out, bool required) {
    if (reader->status < 0) return;
    const cJSON *item = field(reader, name);
    if (!item || cJSON_IsNull(item)) {
        if (required)
            reader->status = pm_fail(PM_ERR_ARG, "%s: the field %s%s is missing; add it (a whole number)",
                                     reader->source, reader->prefix, name);
        return;
    }
    double value = item->valuedouble;
    if (!cJSON_IsNumber(item) || value != floor(value) || fabs(value) > 2147483647.0) {
        reader->status = pm_fail(PM_ERR_ARG, "%s: %s%s must be a whole number", reader->source,
                                 reader->prefix, name);
        return;
    }
    *out = (int)value;
}

void config_read_float(json_reader *reader, const char *name, float *out) {
    if (reader->status < 0) return;
    const cJSON *item = field(reader, name);
    if (!item || cJSON_IsNull(item)) return;
    if (!cJSON_IsNumber(item)) {
        reader->status = pm_fail(PM_ERR_ARG, "%s: %s%s must be a number", reader->source, reader->prefix, name);
        return;
    }
    /* stored as a float: a value beyond its range would silently become infinite */
    if (!(fabs(item->valuedouble) <= FLT_MAX)) {
        reader->status = pm_fail(PM_ERR_ARG, "%s: %s%s = %g must be a finite number of at most %g in magnitude",
                                 reader->source, reader->prefix, name, item->valuedouble, (double)FLT_MAX);
        return;
    }
    *out = (float)item->valuedouble;
}

void config_read_bool(json_reader *reader, const char *name, bool *out) {
    if (reader->status < 0) return;
    const cJSON *item = field(reader, name);
    if (!item || cJSON_IsNull(item)) return;
    if (!cJSON_IsBool(item)) {
        reader->status = pm_fail(PM_ERR_ARG, "%s: %s%s must be true or false", reader->source,
                                 reader->prefix, name);
        return;
    }
    *out = cJSON_IsTrue(item);
}

/* A name among a CHOICE field's, stored as its index. */
static void read_choice(json_reader *reader, const router_field *f, int *out) {
    if (reader->status < 0) return;
    const cJSON *item = field(reader, f->key);
    if (!item || cJSON_IsNull(item)) return;
    const int index = cJSON_IsString(item) ? router_field_choice(f, item->valuestring) : -1;
    if (index < 0) {
        reader->status = pm_fail(PM_ERR_ARG, "%s: %s%s must be one of %s", reader->source, reader->prefix, f->key,
                                 router_field_choices(f));
        return;
    }
    *out = index;
}

/* The "probmoe" object; missing fields keep the router's defaults (no object: the family's top-k). */
static int read_router(const cJSON *object, pm_model_config *cfg, float hf_aux_coef, const char *source) {
    /* without a "probmoe" object the model routes as its family does: top-k */
    pm_router_kind kind = object ? PM_ROUTER_PROBMOE : PM_ROUTER_TOPK;
    json_reader reader = {object, source, "probmoe.", PM_OK};
    const cJSON *name = object ? cJSON_GetObjectItemCaseSensitive(object, "router") : NULL;
    if (name && !cJSON_IsString(name))
        return pm_fail(PM_ERR_ARG, "%s: probmoe.router must be a router name", source);
    if (name && pm_router_kind_parse(name->valuestring, &kind) < 0)
        return pm_fail(PM_ERR_ARG, "%s: probmoe.router: %s", source, pm_last_error());
    bool norm = cfg->router.norm_topk_prob;
    cfg->router = pm_router_config_default(kind, cfg->num_experts, cfg->experts_per_token);
    cfg->router.norm_topk_prob = norm;
    /* Hugging Face's coefficient applies to the routers that Hugging Face trains with it (top-k
     * style); ProbMoE and SoftMoE train without it by default. */
    if (pm_router_uses_hf_aux_loss(kind)) cfg->router.lb_coef = hf_aux_coef;
    for (int i = 0; object && i < router_field_count(); i++) {
        const router_field *f = router_field_at(i);
        void *value = router_field_value(&cfg->router, f);
        if (f->type == ROUTER_FIELD_INT) config_read_int(&reader, f->key, value, false);
        else if (f->type == ROUTER_FIELD_FLOAT) config_read_float(&reader, f->key, value);
        else if (f->type == ROUTER_FIELD_CHOICE) read_choice(&reader, f, value);
        else config_read_bool(&reader, f->key, value);
    }
    config_read_float(&reader, "soft_budget", &cfg->soft_budget);
    return reader.status;
}

/* The family named by model_type (absent: olmoe, the format of probmoe's own configs). */
static const model_arch *read_family(const cJSON *root, const char *source, int *status) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!type) return arch_get(PM_ARCH_OLMOE);
    if (!cJSON_IsString(type)) {
        *status = pm_fail(PM_ERR_ARG, "%s: model_type must be a string, one of %s", source, arch_list());
        return NULL;
    }
    const model_arch *arch = arch_find(type->valuestring);
    if (arch) return arch;
    const bool mla = strncmp(type->valuestring, "deepseek", 8) == 0;
    *status = pm_fail(PM_ERR_ARG, "%s: model_type \"%.64s\" is not supported%s; give one of the supported families: %s",
                      source, type->valuestring,
                      mla ? " (its Multi-head Latent Attention, kv_lora_rank, is not implemented)" : "", arch_list());
    return NULL;
}

pm_status pm_model_config_from_json(pm_model_config *cfg, const char *json, const char *source) {
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return pm_fail(PM_ERR_ARG, "%s: not a JSON object (check the syntax near '%.20s')", source,
                       cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "");
    }
    *cfg = pm_model_config_default();
    int status = PM_OK;
    const model_arch *arch = read_family(root, source, &status);
    if (!arch) {
        cJSON_Delete(root);
        return status;
    }
    cfg->arch = arch->arch;
    json_reader reader = {root, source, "", PM_OK};
    config_read_int(&reader, "vocab_size", &cfg->vocab_size, true);
    config_read_int(&reader, "hidden_size", &cfg->hidden_size, true);
    config_read_int(&reader, arch->expert_width_key, &cfg->intermediate_size, true);
    config_read_int(&reader, "num_hidden_layers", &cfg->num_layers, true);
    config_read_int(&reader, "num_attention_heads", &cfg->num_heads, true);
    cfg->num_kv_heads = cfg->num_heads;
    config_read_int(&reader, "num_key_value_heads", &cfg->num_kv_heads, false);
    config_read_int(&reader, arch->num_experts_key, &cfg->num_experts, true);
    config_read_int(&reader, "num_experts_per_tok", &cfg->experts_per_token, true);
    config_read_int(&reader, "max_position_embeddings", &cfg->max_position_embeddings, false);
    config_read_float(&reader, "rope_theta", &cfg->rope_theta);
    config_read_float(&reader, "rms_norm_eps", &cfg->rms_norm_eps);
    config_read_float(&reader, "initializer_range", &cfg->initializer_range);
    bool norm = false;
    float hf_aux_coef = 0.0f;
    config_read_bool(&reader, "tie_word_embeddings", &cfg->tie_word_embeddings);
    config_read_float(&reader, "router_aux_loss_coef", &hf_aux_coef);
    if (reader.status == 0 && !(hf_aux_coef >= 0.0f))
        reader.status = pm_fail(PM_ERR_ARG, "%s: router_aux_loss_coef = %g; it must be at least 0 (0 turns the "
                                "load-balancing loss off)", source, (double)hf_aux_coef);
    status = reader.status < 0 ? reader.status : config_family_read(&reader, arch, cfg, &norm);
    if (status == 0) {
        cfg->router.norm_topk_prob = norm;
        status = read_router(cJSON_GetObjectItemCaseSensitive(root, "probmoe"), cfg, hf_aux_coef, source);
    }
    cJSON_Delete(root);
    /* the values are checked here, so that the message names the file */
    if (status == 0 && (status = pm_model_config_check(cfg)) < 0) pm_fail(status, "%s: %s", source, pm_last_error());
    return status;
}

pm_status pm_model_config_load(pm_model_config *cfg, const char *path) {
    FILE *file = fopen(path, "rb");
    if (!file) return pm_fail(PM_ERR_ARG, "cannot open the model config '%s'; check the path", path);
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    if (size < 0 || size > (1L << 24)) {
        fclose(file);
        return pm_fail(PM_ERR_ARG, "%s: a config.json of %ld bytes is not plausible", path, size);
    }
    char *text = malloc((size_t)size + 1);
    if (!text) {
        fclose(file);
        return pm_fail(PM_ERR_NOMEM, "out of memory reading %s", path);
    }
    size_t got = fread(text, 1, (size_t)size, file);
    fclose(file);
    text[got] = '\0';
    int status = strlen(text) == got ? pm_model_config_from_json(cfg, text, path)
                 : pm_fail(PM_ERR_ARG, "%s holds a NUL byte at offset %zu: it is not a JSON text file; give a "
                           "model's config.json", path, strlen(text));
    free(text);
    return status;
}

char *pm_model_config_to_json(const pm_model_config *cfg) {
    cJSON *root = cJSON_CreateObject(), *probmoe = cJSON_CreateObject();
    if (!root || !probmoe || !config_family_write(root, cfg)) {
        cJSON_Delete(root);
        cJSON_Delete(probmoe);
        return NULL;
    }
    cJSON_AddStringToObject(probmoe, "router", pm_router_kind_name(cfg->router.kind));
    for (int i = 0; i < router_field_count(); i++) {
        const router_field *f = router_field_at(i);
        const void *value = router_field_const_value(&cfg->router, f);
        if (f->type == ROUTER_FIELD_INT) cJSON_AddNumberToObject(probmoe, f->key, *(const int *)value);
        else if (f->type == ROUTER_FIELD_FLOAT) cJSON_AddNumberToObject(probmoe, f->key, *(const float *)value);
        else if (f->type == ROUTER_FIELD_CHOICE) {
            const int index = *(const int *)value; /* out of range only in a config that fails its check */
            cJSON_AddStringToObject(probmoe, f->key, index >= 0 && index <= (int)f->max ? f->choices[index] : "?");
        }
        else cJSON_AddBoolToObject(probmoe, f->key, *(const bool *)value);
    }
    if (pm_router_learns_budget(cfg->router.kind))
        cJSON_AddNumberToObject(probmoe, "soft_budget", pm_model_soft_budget(cfg));
    cJSON_AddItemToObject(root, "probmoe", probmoe);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}
