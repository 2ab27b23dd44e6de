/* The whole model against the PyTorch reference of dev/ (fixtures in tests/fixtures): logits,
 * loss and every parameter gradient for each family (olmoe, qwen2_moe, mixtral) and router,
 * then ten AdamW steps. probmoe and probmoe-dyn replay the reference's samples through
 * pm_model_set_routing_source. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "io/safetensors.h"
#include "train/optim.h"

#ifndef FIXTURE_DIR
#error "FIXTURE_DIR must name tests/fixtures"
#endif

/* Replays "samples.step{s}.layer{m}.*" of the fixture (m: the MoE layer) for the current step. */
typedef struct {
    const st_file *file;
    int step;
    int32_t *offsets, *experts;
} replay;

static bool replay_source(void *user, int layer, int T, const int **offsets, const int **experts) {
    replay *r = user;
    char name[96];
    snprintf(name, sizeof name, "samples.step%d.layer%d.offsets", r->step, layer);
    const st_tensor *offsets_tensor = st_find(r->file, name);
    if (!offsets_tensor) return false;
    snprintf(name, sizeof name, "samples.step%d.layer%d.experts", r->step, layer);
    const st_tensor *experts_tensor = st_find(r->file, name);
    assert_non_null(experts_tensor);
    assert_int_equal(offsets_tensor->num_elements, T + 1);
    int64_t count = (int64_t)offsets_tensor->num_elements, pairs = (int64_t)experts_tensor->num_elements;
    free(r->offsets);
    free(r->experts);
    r->offsets = malloc(sizeof(int32_t) * count);
    r->experts = malloc(sizeof(int32_t) * (pairs ? pairs : 1));
    assert_int_equal(st_read_i32(r->file, offsets_tensor->name, &count, 1, r->offsets), 0);
    assert_int_equal(st_read_i32(r->file, experts_tensor->name, &pairs, 1, r->experts), 0);
    *offsets = r->offsets;
    *experts = r->experts;
    return true;
}

/* max |got − want| / max |want| over a tensor. */
static double relative_error(const float *got, const float *want, size_t count) {
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < count; i++) {
        diff = fmax(diff, fabs((double)got[i] - want[i]));
        scale = fmax(scale, fabs((double)want[i]));
    }
    return scale > 0.0 ? diff / scale : diff;
}

static float *read_tensor(const st_file *file, const char *name, size_t *count) {
    const st_tensor *tensor = st_find(file, name);
    if (!tensor) fail_msg("fixture lacks %s", name);
    float *data = malloc(sizeof(float) * (tensor->num_elements ? tensor->num_elements : 1));
    assert_int_equal(st_read_f32(file, name, tensor->shape, tensor->rank, data), 0);
    *count = tensor->num_elements;
    return data;
}

static double json_number(const cJSON *object, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    assert_non_null(item);
    return item->valuedouble;
}

/* The fixture's parameters (every tensor but the batch, expectations, gradients and samples). */
static int fixture_params(const st_file *file) {
    int count = 0;
    const char *others[] = {"batch.", "expected.", "grad.", "samples."};
    for (int i = 0; i < st_count(file); i++) {
        const char *name = st_tensor_at(file, i)->name;
        bool other = false;
        for (size_t j = 0; j < sizeof others / sizeof others[0]; j++) other |= strncmp(name, others[j], strlen(others[j])) == 0;
        count += !other;
    }
    return count;
}

/* fixture: "topk" (OLMoE) or "qwen2_moe_topk", ...; family: the model_type it must give. */
static void compare_router(const char *router, pm_arch family) {
    char path[512];
    snprintf(path, sizeof path, "%s/reference_%s.safetensors", FIXTURE_DIR, router);
    st_file *file = NULL;
    if (st_open(&file, path) < 0) fail_msg("%s", pm_last_error());
    pm_model_config cfg;
    if (pm_model_config_from_json(&cfg, st_metadata(file, "config"), path) < 0) fail_msg("%s", pm_last_error());
    const st_tensor *inputs_tensor = st_find(file, "batch.input_ids");
    assert_non_null(inputs_tensor);
    const int B = (int)inputs_tensor->shape[0], S = (int)inputs_tensor->shape[1];
    assert_int_equal(cfg.arch, family);
    pm_model *model = pm_model_create(&cfg, B, S);
    if (!model) fail_msg("%s", pm_last_error());
    /* the same tensors on both sides: each model tensor is read below, and none is left over */
    assert_int_equal(pm_model_num_params(model), fixture_params(file));
    for (int i = 0; i < pm_model_num_params(model); i++) {
        const pm_param *param = pm_model_param(model, i);
        if (st_read_f32(file, param->name, param->shape, param->rank, pm_model_weights(model) + param->offset) < 0)
            fail_msg("%s", pm_last_error());
    }
    int32_t *tokens = malloc(sizeof(int32_t) * B * S), *targets = malloc(sizeof(int32_t) * B * S);
    const int64_t batch_shape[2] = {B, S};
    assert_int_equal(st_read_i32(file, "batch.input_ids", batch_shape, 2, tokens), 0);
    assert_int_equal(st_read_i32(file, "batch.targets", batch_shape, 2, targets), 0);
    replay source = {file, 0, NULL, NULL};
    pm_model_set_routing_source(model, replay_source, &source);

    /* one forward and backward at the initial weights */
    float loss;
    assert_int_equal(pm_model_forward(model, tokens, targets, B, S, true, 1, 0, &loss), 0);
    size_t count;
    float *want = read_tensor(file, "expected.logits", &count);
    assert_int_equal(count, (size_t)B * S * cfg.vocab_size);
    double logits_error = relative_error(pm_model_logits(model), want, count);
    free(want);
    want = read_tensor(file, "expected.loss", &count);
    const double want_loss = want[0];
    free(want);
    if (!(logits_error <= 1e-4)) fail_msg("%s: logits relative error %.3g", router, logits_error);
    if (!(fabs(loss - want_loss) <= 1e-4 * fabs(want_loss)))
        fail_msg("%s: loss %.7f, reference %.7f", router, loss, want_loss);
    pm_model_zero_grads(model);
    assert_int_equal(pm_model_backward(model), 0);
    double worst = 0.0;
    const char *worst_name = "";
    for (int i = 0; i < pm_model_num_params(model); i++) {
        const pm_param *param = pm_model_param(model, i);
        char name[128];
        snprintf(name, sizeof name, "grad.%s", param->name);
        float *reference = read_tensor(file, name, &count);
        assert_int_equal(count, param->count);
        double error = relative_error(pm_model_grads(model) + param->offset, reference, count);
        if (error > worst) worst = error, worst_name = param->name;
        free(reference);
    }
    if (!(worst <= 1e-3)) fail_msg("%s: gradient of %s has relative error %.3g", router, worst_name, worst);

    /* ten AdamW steps from the initial weights, replaying each step's samples */
    cJSON *adamw_json = cJSON_Parse(st_metadata(file, "adamw"));
    assert_non_null(adamw_json);
    adamw optimizer;
    adamw_config adamw_cfg = {(float)json_number(adamw_json, "beta1"), (float)json_number(adamw_json, "beta2"),
                              (float)json_number(adamw_json, "eps"), (float)json_number(adamw_json, "weight_decay"), false};
    const float lr = (float)json_number(adamw_json, "lr");
    const int steps = (int)json_number(adamw_json, "steps");
    cJSON_Delete(adamw_json);
    assert_int_equal(adamw_init(&optimizer, model, adamw_cfg), 0);
    float *step_losses = read_tensor(file, "expected.step_losses", &count);
    assert_int_equal(count, (size_t)steps);
    for (int step = 0; step < steps; step++) {
        source.step = step;
        pm_model_zero_grads(model);
        assert_int_equal(pm_model_forward(model, tokens, targets, B, S, true, 1, (uint64_t)step, &loss), 0);
        if (!(fabs(loss - step_losses[step]) <= 1e-4 * fabs(step_losses[step])))
            fail_msg("%s: step %d loss %.7f, reference %.7f", router, step, loss, step_losses[step]);
        assert_int_equal(pm_model_backward(model), 0);
        adamw_step(&optimizer, model, lr, NULL);
    }
    print_message("%s: logits %.2g, worst gradient %.2g (%s), %d steps match\n", router, logits_error, worst,
                  worst_name, steps);
    free(step_losses);
    adamw_free(&optimizer);
    free(source.offsets);
    free(source.experts);
    free(tokens);
    free(targets);
    pm_model_free(model);
    st_close(file);
}

#define FAMILY_TESTS(prefix, family)                                                             \
    static void test_##prefix##topk(void **state) { (void)state; compare_router(#prefix "topk", family); }   \
    static void test_##prefix##probmoe(void **state) { (void)state; compare_router(#prefix "probmoe", family); } \
    static void test_##prefix##probmoe_dyn(void **state) {                                        \
        (void)state;                                                                              \
        compare_router(#prefix "probmoe-dyn", family);                                            \
    }                                                                                             \
    static void test_##prefix##densemixer(void **state) {                                         \
        (void)state;                                                                              \
        compare_router(#prefix "densemixer", family);                                             \
    }                                                                                             \
    static void test_##prefix##softmoe(void **state) { (void)state; compare_router(#prefix "softmoe", family); }

FAMILY_TESTS(, PM_ARCH_OLMOE)
FAMILY_TESTS(qwen2_moe_, PM_ARCH_QWEN2_MOE)
FAMILY_TESTS(mixtral_, PM_ARCH_MIXTRAL)

/* Qwen2-MoE with dense MLP layers: 6 layers, MoE layers 1 and 5 only (dev/README.md). */
static void test_qwen2_moe_dense_topk(void **state) {
    (void)state;
    compare_router("qwen2_moe_dense_topk", PM_ARCH_QWEN2_MOE);
}
static void test_qwen2_moe_dense_probmoe(void **state) {
    (void)state;
    compare_router("qwen2_moe_dense_probmoe", PM_ARCH_QWEN2_MOE);
}
static void test_qwen2_moe_dense_softmoe(void **state) {
    (void)state;
    compare_router("qwen2_moe_dense_softmoe", PM_ARCH_QWEN2_MOE);
}

#define FAMILY_CASES(prefix)                                                                      \
    cmocka_unit_test(test_##prefix##topk), cmocka_unit_test(test_##prefix##probmoe),               \
        cmocka_unit_test(test_##prefix##probmoe_dyn), cmocka_unit_test(test_##prefix##densemixer), \
        cmocka_unit_test(test_##prefix##softmoe)

int main(void) {
    const struct CMUnitTest tests[] = {FAMILY_CASES(), FAMILY_CASES(qwen2_moe_), FAMILY_CASES(mixtral_),
                                       cmocka_unit_test(test_qwen2_moe_dense_topk),
                                       cmocka_unit_test(test_qwen2_moe_dense_probmoe),
                                       cmocka_unit_test(test_qwen2_moe_dense_softmoe)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
