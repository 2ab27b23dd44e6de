/*
 * SoftMoE's learned budget (src/model/soft_budget.c, ROUTING.md section 3, "The learned budget"):
 *  - the whole model's gradients with respect to eta and log alpha equal central differences
 *    of its loss (the routing decisions held fixed: a step that changes them is refused);
 *  - a short training run moves the k_l away from uniform, keeps their sum at K, and keeps
 *    the measured active experts within the budget;
 *  - a resumed run continues bit for bit, the budget included;
 *  - --freeze-router leaves the gate weights and the budget as they were;
 *  - a model trained with one router loads with another (the fine-tuning protocol);
 *  - budgets outside (L, L·E) are refused with a message.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "word_corpus.h"
#include "io/checkpoint.h"
#include "train/trainer.h"

static char work[64];

static int make_corpus(void **state) {
    (void)state;
    static const char *const words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat. ", "dog ", "ran\n", "and ", "then "};
    snprintf(work, sizeof work, "/tmp/probmoe_budget_XXXXXX");
    return word_corpus_make(work, words, 10, 8000, 3);
}

static int remove_work(void **state) {
    (void)state;
    return word_corpus_remove(work);
}

static pm_model_config softmoe_model(int L, int E, int k) {
    pm_model_config cfg = pm_model_config_default();
    cfg.hidden_size = 32;
    cfg.intermediate_size = 32;
    cfg.num_layers = L;
    cfg.num_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.num_experts = E;
    cfg.experts_per_token = k;
    cfg.max_position_embeddings = 64;
    cfg.router = pm_router_config_default(PM_ROUTER_SOFTMOE, E, k);
    return cfg;
}

static train_options small_run(const char *name, char *out, size_t size) {
    static char data[128];
    snprintf(data, sizeof data, "%s/corpus.txt", work);
    snprintf(out, size, "%s/%s", work, name);
    train_options opt = train_options_default();
    opt.data_path = data;
    opt.out_dir = out;
    opt.batch = 4;
    opt.seq = 32;
    opt.steps = 8;
    opt.warmup = 2;
    opt.eval_interval = 0;
    opt.eval_batches = 2;
    return opt;
}

static float *param_values(pm_model *model, const char *name) {
    const pm_param *param = pm_model_find_param(model, name);
    if (!param) fail_msg("the model has no tensor %s", name);
    return pm_model_weights(model) + param->offset;
}

static float *param_gradient(pm_model *model, const char *name) {
    return pm_model_grads(model) + pm_model_find_param(model, name)->offset;
}

/* Whether two routings keep the same experts for every token of every layer. */
static bool same_selection(pm_model *model, int **saved, int L, int T, bool save) {
    for (int l = 0; l < L; l++) {
        const pm_routing *r = pm_model_routing(model, l);
        const int pairs = r->offsets[T];
        if (save) {
            saved[l] = malloc(sizeof(int) * (size_t)(T + 1 + pairs));
            memcpy(saved[l], r->offsets, sizeof(int) * (size_t)(T + 1));
            memcpy(saved[l] + T + 1, r->experts, sizeof(int) * (size_t)pairs);
            continue;
        }
        if (memcmp(saved[l], r->offsets, sizeof(int) * (size_t)(T + 1)) != 0 ||
            memcmp(saved[l] + T + 1, r->experts, sizeof(int) * (size_t)pairs) != 0)
            return false;
    }
    return true;
}

/* Central differences of the loss in float32 with the routing held fixed: h shrinks until
 * neither side changes which experts a token keeps. */
static void test_gradients_match_finite_differences(void **state) {
    (void)state;
    enum { L = 3, E = 6, B = 2, S = 9, T = B * S };
    pm_model_config cfg = softmoe_model(L, E, 2);
    cfg.vocab_size = 40;
    cfg.router.tau = 0.2f;
    cfg.initializer_range = 0.3f; /* large weights: the experts' output, and so the budget, matter */
    pm_model *model = pm_model_create(&cfg, B, S);
    assert_non_null(model);
    pm_model_init_weights(model, 11);
    /* a budget away from uniform and alphas away from 1 */
    for (int l = 0; l < L; l++) {
        char name[96];
        snprintf(name, sizeof name, "model.layers.%d.mlp.gate.log_alpha", l);
        *param_values(model, name) = 0.3f * (float)(l - 1);
    }
    float *eta = param_values(model, "model.soft_budget.eta");
    eta[0] = 0.4f, eta[1] = -0.3f, eta[2] = 0.1f;
    int32_t tokens[T], targets[T];
    pm_rng rng;
    pm_rng_init(&rng, 5, 0);
    for (int t = 0; t < T; t++) tokens[t] = (int32_t)(pm_rng_u32(&rng) % 40), targets[t] = (int32_t)(pm_rng_u32(&rng) % 40);
    float loss;
    pm_model_zero_grads(model);
    assert_int_equal(pm_model_forward(model, tokens, targets, B, S, true, 1, 0, &loss), 0);
    assert_int_equal(pm_model_backward(model), 0);
    int *selection[L];
    same_selection(model, selection, L, T, true);
    const char *names[L + 1] = {"model.soft_budget.eta", "model.layers.0.mlp.gate.log_alpha",
                                "model.layers.1.mlp.gate.log_alpha", "model.layers.2.mlp.gate.log_alpha"};
    double worst = 0.0, largest = 0.0;
    for (int n = 0; n < L + 1; n++) {
        const pm_param *param = pm_model_find_param(model, names[n]);
        for (size_t i = 0; i < param->count; i++) {
            float *value = pm_model_weights(model) + param->offset + i;
            const float analytic = param_gradient(model, names[n])[i], old = *value;
            double numeric = NAN;
            for (float h = 2e-2f; h > 1e-4f && isnan(numeric); h /= 2) {
                float plus, minus;
                *value = old + h;
                assert_int_equal(pm_model_forward(model, tokens, targets, B, S, true, 1, 0, &plus), 0);
                bool fixed = same_selection(model, selection, L, T, false);
                *value = old - h;
                assert_int_equal(pm_model_forward(model, tokens, targets, B, S, true, 1, 0, &minus), 0);
                fixed = fixed && same_selection(model, selection, L, T, false);
                if (fixed) numeric = ((double)plus - minus) / (2.0 * h);
            }
            *value = old;
            if (isnan(numeric)) fail_msg("%s[%zu]: every step changes the routing", names[n], i);
            const double error = fabs(numeric - analytic) / fmax(fabs(numeric), 1e-3);
            print_message("%s[%zu]: analytic %+.6f, central difference %+.6f\n", names[n], i, analytic, numeric);
            worst = fmax(worst, error);
            largest = fmax(largest, fabs(numeric));
        }
    }
    for (int l = 0; l < L; l++) free(selection[l]);
    pm_model_free(model);
    assert_true(largest > 1e-3); /* the check is not vacuous */
    if (!(worst < 3e-2)) fail_msg("worst relative error %.3g", worst);
}

/* The k_l and alpha of the last line of out/metrics.jsonl, and the mean over the second half
 * of the lines of the active experts summed over layers. */
static void read_budget(const char *out, int L, double *k, double *alpha, double *mean_active_total) {
    char path[160];
    static char line[1 << 14];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    FILE *file = fopen(path, "r");
    assert_non_null(file);
    double totals[4096];
    int lines = 0;
    while (lines < 4096 && fgets(line, sizeof line, file)) {
        const char *at = line;
        totals[lines] = 0.0;
        for (int l = 0; l < L; l++) {
            at = strstr(at, "\"mean_active\": ");
            assert_non_null(at);
            totals[lines] += strtod(at + 15, NULL);
            const char *soft_k = strstr(at, "\"soft_k\": "), *a = strstr(at, "\"alpha\": ");
            assert_non_null(soft_k);
            assert_non_null(a);
            k[l] = strtod(soft_k + 10, NULL);
            alpha[l] = strtod(a + 9, NULL);
            at = a;
        }
        lines++;
    }
    fclose(file);
    double sum = 0.0;
    for (int i = lines / 2; i < lines; i++) sum += totals[i];
    *mean_active_total = sum / (lines - lines / 2);
}

static void test_budget_moves_and_stays_within_budget(void **state) {
    (void)state;
    enum { L = 3 };
    char out[128];
    pm_model_config cfg = softmoe_model(L, 6, 2);
    train_options opt = small_run("moves", out, sizeof out);
    opt.steps = 300;
    opt.lr = 2e-2f;
    train_result result;
    if (train_run(&cfg, &opt, NULL, &result) < 0) fail_msg("%s", pm_last_error());
    assert_true(result.has_budget);
    double k[L], alpha[L], active;
    read_budget(out, L, k, alpha, &active);
    const double K = pm_model_soft_budget(&cfg);
    double sum = 0.0, spread = 0.0;
    for (int l = 0; l < L; l++) {
        sum += k[l];
        spread = fmax(spread, fabs(k[l] - K / L));
        assert_float_equal(k[l], result.budget_k[l], 1e-5);
        assert_true(alpha[l] != 1.0); /* alpha is trained too */
    }
    print_message("k_l = %.3f %.3f %.3f (K = %g), alpha %.3f %.3f %.3f, mean active total %.3f\n", k[0], k[1],
                  k[2], K, alpha[0], alpha[1], alpha[2], active);
    assert_float_equal(sum, K, 1e-4);
    assert_true(spread > 0.05);        /* moved away from uniform */
    /* tau is calibrated on the first batch and then frozen, so the active total drifts as the
     * router learns; over the second half of the run it stays within 15% of the budget */
    assert_true(fabs(active - K) <= 0.15 * K);
}

/* The same run, interrupted at a checkpoint and resumed, ends with the same bits. */
static void test_resume_is_exact(void **state) {
    (void)state;
    char whole[128], resumed[128], checkpoint[192], model_dir[200];
    pm_model_config cfg = softmoe_model(2, 4, 2);
    train_options opt = small_run("whole", whole, sizeof whole);
    opt.save_interval = 4;
    opt.lr = 2e-2f;
    train_result result;
    if (train_run(&cfg, &opt, NULL, &result) < 0) fail_msg("%s", pm_last_error());
    train_options resume = small_run("resumed", resumed, sizeof resumed);
    snprintf(checkpoint, sizeof checkpoint, "%s/checkpoint-000004", whole);
    resume.resume_dir = checkpoint;
    resume.steps = 0;
    resume.data_path = NULL;
    if (train_run(&cfg, &resume, NULL, &result) < 0) fail_msg("%s", pm_last_error());
    snprintf(model_dir, sizeof model_dir, "%s/model", whole);
    pm_model *a = pm_model_load(model_dir, 1, 8);
    snprintf(model_dir, sizeof model_dir, "%s/model", resumed);
    pm_model *b = pm_model_load(model_dir, 1, 8);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(pm_model_size(a), pm_model_size(b));
    assert_memory_equal(pm_model_weights(a), pm_model_weights(b), sizeof(float) * pm_model_size(a));
    const float *eta = param_values(a, "model.soft_budget.eta");
    assert_true(eta[0] != 0.0f); /* the budget was trained, so the comparison covers it */
    pm_model_free(a);
    pm_model_free(b);
}

/* --freeze-router from a trained model: the gate weights and the budget keep their values,
 * everything else trains. A topk backbone fine-tuned as softmoe keeps its other weights. */
static void test_freeze_and_reroute(void **state) {
    (void)state;
    char base[128], frozen[128], base_model[160], frozen_model[160];
    pm_model_config topk = softmoe_model(2, 4, 2);
    topk.router = pm_router_config_default(PM_ROUTER_TOPK, 4, 2);
    train_options opt = small_run("base", base, sizeof base);
    train_result result;
    if (train_run(&topk, &opt, NULL, &result) < 0) fail_msg("%s", pm_last_error());
    snprintf(base_model, sizeof base_model, "%s/model", base);

    pm_model_config softmoe = softmoe_model(2, 4, 2);
    opt = small_run("frozen", frozen, sizeof frozen);
    opt.init_dir = base_model;
    opt.init_reroute = true;
    opt.adamw.freeze_router = true;
    if (train_run(&softmoe, &opt, NULL, &result) < 0) fail_msg("%s", pm_last_error());
    snprintf(frozen_model, sizeof frozen_model, "%s/model", frozen);
    pm_model *before = pm_model_load(base_model, 1, 8), *after = pm_model_load(frozen_model, 1, 8);
    assert_non_null(before);
    assert_non_null(after);
    assert_int_equal(pm_model_get_config(after)->router.kind, PM_ROUTER_SOFTMOE);
    int router_params = 0, changed = 0;
    for (int i = 0; i < pm_model_num_params(after); i++) {
        const pm_param *param = pm_model_param(after, i);
        const float *now = pm_model_weights(after) + param->offset;
        const pm_param *old = pm_model_find_param(before, param->name);
        if (param->router) {
            router_params++;
            if (old) assert_memory_equal(now, pm_model_weights(before) + old->offset, sizeof(float) * param->count);
            else /* the budget starts at uniform and stays there */
                for (size_t j = 0; j < param->count; j++) assert_true(now[j] == 0.0f);
        } else {
            assert_non_null(old);
            changed += memcmp(now, pm_model_weights(before) + old->offset, sizeof(float) * param->count) != 0;
        }
    }
    assert_int_equal(router_params, 2 + 2 + 1); /* two gates, two log alphas, eta */
    assert_true(changed > 10);
    pm_model_free(before);
    pm_model_free(after);

    /* and back: the softmoe model rerouted to topk leaves its budget tensors behind */
    pm_model *back = checkpoint_load_rerouted(frozen_model, &topk, 1, 8);
    if (!back) fail_msg("%s", pm_last_error());
    assert_int_equal(pm_model_get_config(back)->router.kind, PM_ROUTER_TOPK);
    assert_null(pm_model_find_param(back, "model.soft_budget.eta"));
    after = pm_model_load(frozen_model, 1, 8);
    for (int i = 0; i < pm_model_num_params(back); i++) {
        const pm_param *param = pm_model_param(back, i), *same = pm_model_find_param(after, param->name);
        assert_non_null(same);
        assert_memory_equal(pm_model_weights(back) + param->offset, pm_model_weights(after) + same->offset,
                            sizeof(float) * param->count);
    }
    pm_model_free(back);
    pm_model_free(after);

    /* another number of experts cannot take the backbone's weights */
    pm_model_config wrong = softmoe_model(2, 6, 2);
    assert_null(checkpoint_load_rerouted(base_model, &wrong, 1, 8));
    assert_non_null(strstr(pm_last_error(), "has 4 experts and k = 2"));
}

/* With the same seed a softmoe model starts from the same weights as a topk one: the budget's
 * tensors, last in the table, do not shift the others' initialisation streams. */
static void test_same_initial_weights(void **state) {
    (void)state;
    pm_model_config softmoe = softmoe_model(3, 4, 2), topk = softmoe;
    topk.router = pm_router_config_default(PM_ROUTER_TOPK, 4, 2);
    pm_model *a = pm_model_create(&softmoe, 1, 8), *b = pm_model_create(&topk, 1, 8);
    assert_non_null(a);
    assert_non_null(b);
    pm_model_init_weights(a, 9);
    pm_model_init_weights(b, 9);
    assert_int_equal(pm_model_num_params(a), pm_model_num_params(b) + 3 + 1);
    for (int i = 0; i < pm_model_num_params(b); i++) {
        const pm_param *param = pm_model_param(b, i), *same = pm_model_find_param(a, param->name);
        assert_non_null(same);
        assert_memory_equal(pm_model_weights(b) + param->offset, pm_model_weights(a) + same->offset,
                            sizeof(float) * param->count);
    }
    pm_model_free(a);
    pm_model_free(b);
}

static void test_bad_budgets(void **state) {
    (void)state;
    pm_model_config cfg = softmoe_model(3, 4, 2);
    const float bad[] = {3.0f, 12.0f, 2.0f, 20.0f};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.soft_budget = bad[i];
        assert_true(pm_model_config_check(&cfg) < 0);
        assert_non_null(strstr(pm_last_error(), "must lie strictly between the MoE layers M = 3 and M·E = 12"));
    }
    cfg.soft_budget = NAN;
    assert_true(pm_model_config_check(&cfg) < 0);
    assert_non_null(strstr(pm_last_error(), "probmoe.soft_budget = nan"));
    cfg.soft_budget = 7.5f;
    assert_int_equal(pm_model_config_check(&cfg), 0);
    /* the config file carries the budget */
    char *json = pm_model_config_to_json(&cfg);
    pm_model_config back;
    assert_int_equal(pm_model_config_from_json(&back, json, "test"), 0);
    free(json);
    assert_float_equal(pm_model_soft_budget(&back), 7.5, 0.0);
    /* k = 1 leaves no room: the default budget L·1 = L is refused, a larger one is taken */
    cfg = softmoe_model(3, 4, 1);
    assert_true(pm_model_config_check(&cfg) < 0);
    cfg.soft_budget = 4.0f;
    assert_int_equal(pm_model_config_check(&cfg), 0);
    /* a budget for a router that learns none is a mistake, not something to ignore */
    cfg.router = pm_router_config_default(PM_ROUTER_PROBMOE, 4, 1);
    assert_true(pm_model_config_check(&cfg) < 0);
    assert_non_null(strstr(pm_last_error(), "the probmoe router learns no budget"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients_match_finite_differences),
        cmocka_unit_test(test_budget_moves_and_stays_within_budget),
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_freeze_and_reroute),
        cmocka_unit_test(test_same_initial_weights),
        cmocka_unit_test(test_bad_budgets),
    };
    return cmocka_run_group_tests(tests, make_corpus, remove_work);
}
