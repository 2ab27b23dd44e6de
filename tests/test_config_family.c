/* The families of config.json (model_type): each round trips through the writer with its own
 * field names; Hugging Face configs of each load with the family's own routing; every field the
 * model does not implement is refused with a message naming it, and the harmless forms of those
 * fields are accepted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/error.h"
#include "tiny_model.h"

/* Tiny Hugging Face configs of each family, without a "probmoe" object; a case appends fields. */
static const char *const base_json[] = {
    [PM_ARCH_OLMOE] = "{\"model_type\": \"olmoe\", \"vocab_size\": 50, \"hidden_size\": 32, \"intermediate_size\": 24, "
                      "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
                      "\"num_experts\": 6, \"num_experts_per_tok\": 2, \"norm_topk_prob\": true",
    [PM_ARCH_QWEN2_MOE] = "{\"model_type\": \"qwen2_moe\", \"vocab_size\": 50, \"hidden_size\": 32, "
                          "\"intermediate_size\": 40, \"moe_intermediate_size\": 24, "
                          "\"shared_expert_intermediate_size\": 20, \"num_hidden_layers\": 2, "
                          "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"num_experts\": 6, "
                          "\"num_experts_per_tok\": 2, \"tie_word_embeddings\": true",
    [PM_ARCH_MIXTRAL] = "{\"model_type\": \"mixtral\", \"vocab_size\": 50, \"hidden_size\": 32, \"intermediate_size\": 24, "
                        "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
                        "\"num_local_experts\": 6, \"num_experts_per_tok\": 2, \"sliding_window\": 5",
};

/* base_json[arch] with extra (", \"key\": value" or "") first, where it overrides the base's key
 * of the same name (cJSON takes a key's first value). */
static int parse(pm_model_config *cfg, pm_arch arch, const char *extra) {
    char json[2048];
    if (extra[0]) snprintf(json, sizeof json, "{%s, %s}", extra + 2, base_json[arch] + 1);
    else snprintf(json, sizeof json, "%s}", base_json[arch]);
    pm_clear_error();
    return pm_model_config_from_json(cfg, json, "dir/config.json");
}

static void test_families_round_trip(void **state) {
    (void)state;
    const char *names[][3] = {{"OlmoeForCausalLM", "\"intermediate_size\"", "\"num_experts\""},
                              {"Qwen2MoeForCausalLM", "\"shared_expert_intermediate_size\"", "\"qkv_bias\""},
                              {"MixtralForCausalLM", "\"num_local_experts\"", "\"sliding_window\":\t5"}};
    for (pm_arch arch = PM_ARCH_OLMOE; arch <= PM_ARCH_MIXTRAL; arch++)
        for (int kind = 0; kind < pm_router_kind_count(); kind++) {
            pm_model_config cfg = tiny_family_config(arch, (pm_router_kind)kind);
            assert_int_equal(pm_model_config_check(&cfg), PM_OK);
            char *json = pm_model_config_to_json(&cfg);
            assert_non_null(json);
            for (int i = 0; i < 3; i++)
                if (!strstr(json, names[arch][i])) fail_msg("%s lacks %s:\n%s", pm_arch_name(arch), names[arch][i], json);
            pm_model_config back;
            if (pm_model_config_from_json(&back, json, "config.json") != PM_OK) fail_msg("%s", pm_last_error());
            assert_int_equal(back.arch, arch);
            assert_int_equal(back.intermediate_size, cfg.intermediate_size);
            assert_int_equal(back.num_experts, cfg.num_experts);
            assert_int_equal(back.qkv_bias, cfg.qkv_bias);
            assert_int_equal(back.tie_word_embeddings, cfg.tie_word_embeddings);
            assert_int_equal(back.shared_expert_size, cfg.shared_expert_size);
            assert_int_equal(back.dense_intermediate_size, cfg.dense_intermediate_size);
            assert_int_equal(back.sliding_window, cfg.sliding_window);
            char *again = pm_model_config_to_json(&back); /* every field, the router's included */
            assert_string_equal(again, json);
            free(again);
            free(json);
        }
}

/* Hugging Face's own configs: the family's fields and its top-k routing (Mixtral renormalises). */
static void test_hugging_face_configs(void **state) {
    (void)state;
    pm_model_config cfg;
    for (pm_arch arch = PM_ARCH_OLMOE; arch <= PM_ARCH_MIXTRAL; arch++) {
        if (parse(&cfg, arch, "") < 0) fail_msg("%s", pm_last_error());
        assert_int_equal(cfg.arch, arch);
        assert_int_equal(cfg.router.kind, PM_ROUTER_TOPK);
        assert_int_equal(cfg.intermediate_size, 24);
        assert_int_equal(cfg.num_experts, 6);
        assert_int_equal(cfg.router.norm_topk_prob, arch != PM_ARCH_QWEN2_MOE);
    }
    assert_int_equal(parse(&cfg, PM_ARCH_QWEN2_MOE, ""), 0);
    assert_true(cfg.qkv_bias && cfg.tie_word_embeddings);
    assert_int_equal(cfg.shared_expert_size, 20);
    assert_int_equal(cfg.dense_intermediate_size, 40);
    assert_int_equal(parse(&cfg, PM_ARCH_QWEN2_MOE, ", \"qkv_bias\": false"), 0);
    assert_false(cfg.qkv_bias);
    assert_int_equal(parse(&cfg, PM_ARCH_MIXTRAL, ""), 0);
    assert_int_equal(cfg.sliding_window, 5);
    /* the harmless forms of fields whose other values are refused */
    const struct { pm_arch arch; const char *extra; } accepted[] = {
        {PM_ARCH_OLMOE, ", \"rope_scaling\": null, \"clip_qkv\": null, \"attention_bias\": false"},
        {PM_ARCH_OLMOE, ", \"rope_scaling\": {\"type\": \"default\"}, \"head_dim\": 8, \"attention_dropout\": 0.0"},
        {PM_ARCH_QWEN2_MOE, ", \"mlp_only_layers\": [], \"decoder_sparse_step\": 1, \"use_sliding_window\": false"},
        {PM_ARCH_QWEN2_MOE, ", \"mlp_only_layers\": [7], \"layer_types\": [\"full_attention\", \"full_attention\"]"},
        {PM_ARCH_MIXTRAL, ", \"sliding_window\": null, \"router_jitter_noise\": 0.0, \"head_dim\": null"},
    };
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++)
        if (parse(&cfg, accepted[i].arch, accepted[i].extra) < 0) fail_msg("%s: %s", accepted[i].extra, pm_last_error());
    assert_int_equal(cfg.sliding_window, 0);
    assert_int_equal(parse(&cfg, PM_ARCH_MIXTRAL, ", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 5e5}"), 0);
    assert_true(cfg.rope_theta == 5e5f);
}

/* Each unsupported field is refused, naming the file, the field and what is supported. */
static void test_unsupported_fields_refused(void **state) {
    (void)state;
    const struct { pm_arch arch; const char *extra, *named, *says; } cases[] = {
        {PM_ARCH_OLMOE, ", \"model_type\": \"deepseek_v2\"", "deepseek_v2", "Multi-head Latent Attention"},
        {PM_ARCH_OLMOE, ", \"model_type\": \"llama\"", "llama", "olmoe, qwen2_moe, mixtral"},
        {PM_ARCH_OLMOE, ", \"model_type\": 3", "model_type", "one of olmoe"},
        {PM_ARCH_MIXTRAL, ", \"kv_lora_rank\": 512", "kv_lora_rank", "Multi-head Latent Attention"},
        {PM_ARCH_QWEN2_MOE, ", \"q_lora_rank\": 1536", "q_lora_rank", "remove it"},
        {PM_ARCH_OLMOE, ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}", "rope_scaling", "\"linear\""},
        {PM_ARCH_QWEN2_MOE, ", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}", "rope_scaling", "default"},
        {PM_ARCH_MIXTRAL, ", \"rope_parameters\": {\"rope_type\": \"llama3\"}", "rope_parameters", "llama3"},
        {PM_ARCH_OLMOE, ", \"rope_scaling\": 2", "rope_scaling", "give an object"},
        {PM_ARCH_MIXTRAL, ", \"head_dim\": 128", "head_dim", "hidden_size / num_attention_heads = 8"},
        {PM_ARCH_QWEN2_MOE, ", \"head_dim\": 1965443991", "head_dim", "differs"}, /* × heads overflows an int */
        {PM_ARCH_QWEN2_MOE, ", \"partial_rotary_factor\": 0.5", "partial_rotary_factor", "set it to 1"},
        {PM_ARCH_MIXTRAL, ", \"rope_parameters\": {\"rope_type\": \"default\", \"partial_rotary_factor\": 0.25}",
         "partial_rotary_factor", "every dimension"},
        {PM_ARCH_QWEN2_MOE, ", \"attention_dropout\": 0.1", "attention_dropout", "set it to 0"},
        {PM_ARCH_OLMOE, ", \"hidden_act\": \"gelu\"", "hidden_act", "silu"},
        {PM_ARCH_OLMOE, ", \"clip_qkv\": 8", "clip_qkv", "null"},
        {PM_ARCH_OLMOE, ", \"attention_bias\": true", "attention_bias", "false"},
        {PM_ARCH_QWEN2_MOE, ", \"mlp_only_layers\": [0, 1]", "mlp_only_layers", "needs at least one"},
        {PM_ARCH_QWEN2_MOE, ", \"decoder_sparse_step\": 3", "decoder_sparse_step", "all 2 layers dense"},
        {PM_ARCH_QWEN2_MOE, ", \"mlp_only_layers\": 1", "mlp_only_layers", "must be a list"},
        {PM_ARCH_QWEN2_MOE, ", \"mlp_only_layers\": [-1]", "mlp_only_layers", "0 or more"},
        {PM_ARCH_QWEN2_MOE, ", \"mlp_only_layers\": [0.5]", "mlp_only_layers", "fractional"},
        {PM_ARCH_QWEN2_MOE, ", \"decoder_sparse_step\": 0", "decoder_sparse_step", "1 to"},
        {PM_ARCH_QWEN2_MOE, ", \"use_sliding_window\": true", "use_sliding_window", "false"},
        {PM_ARCH_QWEN2_MOE, ", \"layer_types\": [\"sliding_attention\", \"full_attention\"]", "layer_types",
         "full_attention"},
        {PM_ARCH_QWEN2_MOE, ", \"shared_expert_intermediate_size\": 0", "shared_expert_intermediate_size", "1 to"},
        {PM_ARCH_MIXTRAL, ", \"router_jitter_noise\": 0.01", "router_jitter_noise", "set it to 0"},
        {PM_ARCH_MIXTRAL, ", \"norm_topk_prob\": false", "norm_topk_prob", "renormalises"},
        {PM_ARCH_MIXTRAL, ", \"sliding_window\": 0", "sliding_window", "positive"},
        {PM_ARCH_MIXTRAL, ", \"num_local_experts\": 0", "num_local_experts", "at least 1"},
        {PM_ARCH_QWEN2_MOE, ", \"moe_intermediate_size\": -3", "moe_intermediate_size", "at least 1"},
        {PM_ARCH_OLMOE, ", \"router_aux_loss_coef\": -1", "router_aux_loss_coef", "at least 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pm_model_config cfg;
        if (parse(&cfg, cases[i].arch, cases[i].extra) == 0) fail_msg("accepted: %s", cases[i].extra);
        const char *message = pm_last_error();
        if (!strstr(message, "dir/config.json") || !strstr(message, cases[i].named) || !strstr(message, cases[i].says))
            fail_msg("%s: the message should name %s and say %s: %s", cases[i].extra, cases[i].named, cases[i].says,
                     message);
    }
}

/* Qwen2-MoE's dense layers: Hugging Face's rule picks the MoE layers, the config round trips
 * (a listed number past the last layer names none and is dropped), and the parameter table has
 * each dense layer's MLP of intermediate_size where a MoE layer has its router and experts. */
static void test_dense_layers(void **state) {
    (void)state;
    pm_model_config cfg;
    const char *extra = ", \"num_hidden_layers\": 6, \"decoder_sparse_step\": 2, \"mlp_only_layers\": [3, 9]";
    if (parse(&cfg, PM_ARCH_QWEN2_MOE, extra) != PM_OK) fail_msg("%s", pm_last_error());
    const bool moe[6] = {false, true, false, false, false, true}; /* (l + 1) % 2 == 0, but not 3 */
    for (int l = 0; l < 6; l++) assert_int_equal(pm_model_layer_is_moe(&cfg, l), moe[l]);
    assert_false(pm_model_layer_is_moe(&cfg, 6));
    assert_int_equal(pm_model_moe_layers(&cfg), 2);
    assert_int_equal(pm_model_moe_layer_number(&cfg, 0), 1);
    assert_int_equal(pm_model_moe_layer_number(&cfg, 1), 5);
    assert_int_equal(pm_model_moe_layer_number(&cfg, 2), -1);
    char *json = pm_model_config_to_json(&cfg);
    assert_non_null(json);
    if (!strstr(json, "\"decoder_sparse_step\":\t2") || !strstr(json, "\"mlp_only_layers\":\t[3]"))
        fail_msg("the dense layers are not written back:\n%s", json);
    pm_model_config back;
    if (pm_model_config_from_json(&back, json, "config.json") != PM_OK) fail_msg("%s", pm_last_error());
    free(json);
    for (int l = 0; l < 6; l++) assert_int_equal(pm_model_layer_is_moe(&back, l), moe[l]);
    pm_model *model = pm_model_create(&cfg, 1, 4);
    assert_non_null(model);
    const pm_param *mlp = pm_model_find_param(model, "model.layers.0.mlp.up_proj.weight");
    assert_non_null(mlp);
    assert_int_equal(mlp->shape[0], 40); /* intermediate_size, not the experts' 24 */
    assert_null(pm_model_find_param(model, "model.layers.3.mlp.gate.weight"));
    assert_null(pm_model_find_param(model, "model.layers.3.mlp.shared_expert_gate.weight"));
    assert_non_null(pm_model_find_param(model, "model.layers.5.mlp.experts.5.down_proj.weight"));
    assert_null(pm_model_find_param(model, "model.layers.5.mlp.up_proj.weight"));
    pm_model_free(model);
}

/* The model refuses a family's part in another family (a config built in C). */
static void test_parts_outside_their_family(void **state) {
    (void)state;
    pm_model_config cfg = tiny_model_config(PM_ROUTER_TOPK);
    cfg.qkv_bias = true;
    assert_true(pm_model_config_check(&cfg) < 0);
    assert_non_null(strstr(pm_last_error(), "qkv_bias"));
    cfg = tiny_model_config(PM_ROUTER_TOPK);
    cfg.sliding_window = 4;
    assert_true(pm_model_config_check(&cfg) < 0);
    assert_non_null(strstr(pm_last_error(), "sliding_window"));
    cfg = tiny_family_config(PM_ARCH_MIXTRAL, PM_ROUTER_TOPK);
    cfg.shared_expert_size = 4;
    assert_true(pm_model_config_check(&cfg) < 0);
    assert_non_null(strstr(pm_last_error(), "shared_expert_intermediate_size"));
    cfg = tiny_family_config(PM_ARCH_MIXTRAL, PM_ROUTER_TOPK);
    cfg.router.norm_topk_prob = false;
    assert_true(pm_model_config_check(&cfg) < 0);
    cfg = tiny_family_config(PM_ARCH_MIXTRAL, PM_ROUTER_TOPK);
    cfg.mlp_only_layers[0] = true;
    assert_true(pm_model_config_check(&cfg) < 0);
    assert_non_null(strstr(pm_last_error(), "mlp_only_layers are for qwen2_moe"));
    cfg = tiny_model_config(PM_ROUTER_TOPK);
    cfg.arch = (pm_arch)7;
    assert_true(pm_model_config_check(&cfg) < 0);
    assert_non_null(strstr(pm_last_error(), "olmoe, qwen2_moe, mixtral"));
    assert_null(pm_arch_name((pm_arch)7));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_families_round_trip),
        cmocka_unit_test(test_hugging_face_configs),
        cmocka_unit_test(test_unsupported_fields_refused),
        cmocka_unit_test(test_dense_layers),
        cmocka_unit_test(test_parts_outside_their_family),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
