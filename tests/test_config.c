/* The model configuration: config.json round trips for every router of the table (every
 * router field survives), error messages whose text is checked (a message that wraps an
 * earlier one must not be garbled), and the status names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tiny_model.h"

static void test_every_router_round_trips(void **state) {
    (void)state;
    for (int kind = 0; kind < pm_router_kind_count(); kind++) {
        pm_model_config cfg = tiny_model_config(kind);
        /* values away from every default, each still valid */
        cfg.router.norm_topk_prob = true;
        cfg.router.k_min = 1;
        cfg.router.k_max = 3;
        cfg.router.soft_k = 2.25f;
        cfg.router.alpha = 0.75f;
        cfg.router.tau = 0.125f;
        cfg.router.cap = 1.5f;
        cfg.router.soft_renormalize = true;
        cfg.router.lb_coef = 0.02f;
        cfg.router.z_coef = 0.001f;
        cfg.router.bias_rate = 0.01f;
        if (pm_router_config_check(&cfg.router) < 0) cfg.router.bias_rate = 0.0f; /* topk only */
        cfg.router.groups = 2; /* probmoe-group: 2 from at most 2 of 2 groups of 3 */
        cfg.router.max_groups = 2;
        cfg.router.impl = cfg.router.impl == PM_IMPL_DP ? PM_IMPL_CIRCUIT : PM_IMPL_DP;
        if (pm_router_config_check(&cfg.router) < 0) cfg.router.impl ^= 1; /* the only one it has */
        assert_int_equal(pm_model_config_check(&cfg), PM_OK);
        char *json = pm_model_config_to_json(&cfg);
        assert_non_null(json);
        pm_model_config back;
        if (pm_model_config_from_json(&back, json, "config.json") != PM_OK) fail_msg("%s", pm_last_error());
        assert_memory_equal(&back.router, &cfg.router, sizeof cfg.router);
        assert_non_null(strstr(json, pm_router_kind_name(kind)));
        free(json);
    }
}

static void test_wrapped_messages_are_whole(void **state) {
    (void)state;
    pm_model_config cfg;
    const char *json = "{\"vocab_size\": 50, \"hidden_size\": 32, \"intermediate_size\": 24, "
                       "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_experts\": 6, "
                       "\"num_experts_per_tok\": 2, \"probmoe\": {\"router\": \"top3\"}}";
    assert_int_equal(pm_model_config_from_json(&cfg, json, "run/config.json"), PM_ERR_ARG);
    char want[512];
    snprintf(want, sizeof want, "run/config.json: probmoe.router: unknown router 'top3'; choose one of %s",
             pm_router_kind_list());
    assert_string_equal(pm_last_error(), want);
    const char *typed = "{\"vocab_size\": 50, \"hidden_size\": 32, \"intermediate_size\": 24, "
                        "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_experts\": 6, "
                        "\"num_experts_per_tok\": 2, \"probmoe\": {\"router\": \"probmoe-dyn\", \"k_max\": 2.5}}";
    assert_int_equal(pm_model_config_from_json(&cfg, typed, "c.json"), PM_ERR_ARG);
    assert_string_equal(pm_last_error(), "c.json: probmoe.k_max must be a whole number");
    const char *impl = "{\"vocab_size\": 50, \"hidden_size\": 32, \"intermediate_size\": 24, "
                       "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_experts\": 6, "
                       "\"num_experts_per_tok\": 2, \"probmoe\": {\"router\": \"probmoe\", \"impl\": \"sdd\"}}";
    assert_int_equal(pm_model_config_from_json(&cfg, impl, "c.json"), PM_ERR_ARG);
    assert_string_equal(pm_last_error(), "c.json: probmoe.impl must be one of dp, circuit");
    const char *groups = "{\"vocab_size\": 50, \"hidden_size\": 32, \"intermediate_size\": 24, "
                         "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_experts\": 6, "
                         "\"num_experts_per_tok\": 2, \"probmoe\": {\"router\": \"probmoe-group\", \"groups\": 4}}";
    assert_int_equal(pm_model_config_from_json(&cfg, groups, "c.json"), PM_ERR_ARG);
    assert_non_null(strstr(pm_last_error(), "c.json: router config (probmoe-group): groups = 4 does not divide "
                                            "num_experts = 6"));
    /* the group router's fields load from the probmoe object */
    const char *good = "{\"vocab_size\": 50, \"hidden_size\": 32, \"intermediate_size\": 24, "
                       "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_experts\": 6, "
                       "\"num_experts_per_tok\": 2, \"probmoe\": {\"router\": \"probmoe-group\", \"groups\": 2, "
                       "\"max_groups\": 1}}";
    assert_int_equal(pm_model_config_from_json(&cfg, good, "c.json"), PM_OK);
    assert_int_equal(cfg.router.groups, 2);
    assert_int_equal(cfg.router.max_groups, 1);
    assert_int_equal(cfg.router.impl, PM_IMPL_CIRCUIT);
}

static void test_every_router_is_listed(void **state) {
    (void)state;
    const char *list = pm_router_kind_list();
    for (int kind = 0; kind < pm_router_kind_count(); kind++) {
        pm_router_kind parsed = -1;
        assert_int_equal(pm_router_kind_parse(pm_router_kind_name(kind), &parsed), PM_OK);
        assert_int_equal(parsed, kind);
        assert_non_null(strstr(list, pm_router_kind_name(kind)));
        assert_true(strlen(pm_router_kind_help(kind)) > 10);
    }
    assert_null(pm_router_kind_name(pm_router_kind_count()));
    assert_null(pm_router_kind_name(-1));
}

/* probmoe-dyn's default range ends at k, as the ProbMoE paper's runs do: [max(1, k − 2), k]. */
static void test_dynamic_k_default_range(void **state) {
    (void)state;
    const int cases[][4] = {{64, 8, 6, 8}, {60, 4, 2, 4}, {8, 2, 1, 2}, {8, 1, 1, 1}, {3, 3, 1, 3}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pm_router_config cfg = pm_router_config_default(PM_ROUTER_PROBMOE_DYN, cases[i][0], cases[i][1]);
        assert_int_equal(cfg.k_min, cases[i][2]);
        assert_int_equal(cfg.k_max, cases[i][3]);
        assert_int_equal(pm_router_config_check(&cfg), PM_OK);
    }
}

static void test_status_strings(void **state) {
    (void)state;
    assert_string_equal(pm_status_string(PM_OK), "ok");
    assert_string_equal(pm_status_string(PM_ERR_ARG), "invalid argument");
    assert_string_equal(pm_status_string(PM_ERR_NONFINITE), "non-finite value");
    assert_string_equal(pm_status_string(PM_ERR_NOMEM), "out of memory");
    assert_string_equal(pm_status_string(PM_ERR_STATE), "invalid state");
    assert_string_equal(pm_status_string((pm_status)-99), "unknown status");
}

/* Sizes from a hostile config.json are bounded before any size is computed from them. */
static void test_size_bounds(void **state) {
    (void)state;
    pm_model_config cfg = pm_model_config_default();
    cfg.num_experts = 1431655763;
    cfg.router = pm_router_config_default(cfg.router.kind, 8, 2);
    assert_true(pm_model_config_check(&cfg) < 0);
    assert_non_null(strstr(pm_last_error(), "num_experts = 1431655763 is above the largest supported, 4096"));
    cfg = pm_model_config_default();
    cfg.hidden_size = 1 << 20;
    assert_true(pm_model_config_check(&cfg) < 0);
    assert_non_null(strstr(pm_last_error(), "hidden_size = 1048576 is above the largest supported"));
    cfg = pm_model_config_default();
    cfg.hidden_size = 1 << 16;
    cfg.num_heads = cfg.num_kv_heads = 256;
    cfg.intermediate_size = 1 << 18;
    cfg.num_layers = 64;
    assert_true(pm_model_config_check(&cfg) < 0);
    assert_non_null(strstr(pm_last_error(), "parameters"));
    assert_non_null(strstr(pm_last_error(), "use a smaller model"));
}

/* Found by fuzz_config: a float field beyond float range became infinite, was accepted (the
 * router did not use it) and was written back as null. Values also name the file. */
static void test_float_fields_in_range(void **state) {
    (void)state;
    pm_model_config cfg;
    const char *json = "{\"vocab_size\": 20, \"hidden_size\": 16, \"intermediate_size\": 8, "
                       "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"num_experts\": 4, "
                       "\"num_experts_per_tok\": 2, \"probmoe\": {\"alpha\": 4.4e44}}";
    assert_true(pm_model_config_from_json(&cfg, json, "dir/config.json") < 0);
    assert_non_null(strstr(pm_last_error(), "dir/config.json: probmoe.alpha = 4.4e+44 must be a finite number"));
    const char *bad_value = "{\"vocab_size\": 20, \"hidden_size\": 16, \"intermediate_size\": 8, "
                            "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"num_experts\": 4, "
                            "\"num_experts_per_tok\": 2, \"rope_theta\": -1}";
    assert_true(pm_model_config_from_json(&cfg, bad_value, "dir/config.json") < 0);
    assert_non_null(strstr(pm_last_error(), "dir/config.json: model config: rope_theta = -1"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_bounds),
        cmocka_unit_test(test_float_fields_in_range),
        cmocka_unit_test(test_every_router_round_trips),
        cmocka_unit_test(test_wrapped_messages_are_whole),
        cmocka_unit_test(test_every_router_is_listed),
        cmocka_unit_test(test_dynamic_k_default_range),
        cmocka_unit_test(test_status_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
