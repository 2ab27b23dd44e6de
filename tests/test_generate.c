/* Generation: the key/value-cache path gives the full forward pass's logits at every
 * position (inference routing), for every router; a batch of rows decodes exactly as each
 * row alone; sampling rules. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tiny_model.h"

/* The shared tiny model, with larger weights (varied routing) and a fixed softmoe tau. */
static pm_model_config tiny_config(pm_router_kind kind) {
    pm_model_config cfg = tiny_model_config(kind);
    cfg.initializer_range = 0.3f;
    cfg.router.tau = 0.2f;
    return cfg;
}

/* Every family (its biases, shared expert, tied embeddings, sliding window shorter than the
 * sequence, qwen2_moe's dense layers) and every router. */
static void test_cache_matches_full_forward(void **state) {
    (void)state;
    enum { S = 13 };
    int32_t tokens[S];
    pm_rng rng;
    pm_rng_init(&rng, 3, 0);
    for (int i = 0; i < S; i++) tokens[i] = (int32_t)(pm_rng_u32(&rng) % 50);
    for (int case_ = 0; case_ < 4 * pm_router_kind_count(); case_++) { /* the fourth: qwen2_moe's dense layers */
        const int kind = case_ % pm_router_kind_count();
        const pm_arch arch = (pm_arch)(case_ / pm_router_kind_count() % 3);
        pm_model_config cfg = case_ < 3 * pm_router_kind_count() ? tiny_family_config(arch, (pm_router_kind)kind)
                                                                : tiny_dense_config((pm_router_kind)kind);
        cfg.initializer_range = 0.3f;
        cfg.router.tau = 0.2f;
        pm_model *model = pm_model_create(&cfg, 1, S);
        assert_non_null(model);
        pm_model_init_weights(model, 11);
        tiny_model_set_biases(model);
        assert_int_equal(pm_model_forward(model, tokens, NULL, 1, S, false, 0, 0, NULL), 0);
        const float *full = pm_model_logits(model);
        pm_generator *gen = pm_generator_create(model, NULL, S);
        assert_non_null(gen);
        float logits[50];
        for (int t = 0; t < S; t++) {
            assert_int_equal(pm_generator_feed(gen, tokens[t], logits), 0);
            for (int v = 0; v < 50; v++)
                assert_close(logits[v], full[t * 50 + v], 1e-4, 1e-4, pm_arch_name(arch), t * 100 + kind);
        }
        assert_true(pm_generator_feed(gen, 1, logits) < 0); /* the context is full */
        assert_non_null(strstr(pm_last_error(), "context is full"));
        pm_generator_free(gen);
        pm_model_free(model);
    }
}

/* Switching a probmoe model to dynamic-k MAP routing changes the number of experts per token. */
static void test_router_override(void **state) {
    (void)state;
    pm_model_config cfg = tiny_config(PM_ROUTER_PROBMOE);
    pm_model *model = pm_model_create(&cfg, 1, 16);
    pm_model_init_weights(model, 12);
    pm_router_config dyn = pm_router_config_default(PM_ROUTER_PROBMOE_DYN, 6, 2);
    dyn.k_min = 1;
    dyn.k_max = 5;
    pm_generator *exact = pm_generator_create(model, NULL, 16), *dynamic = pm_generator_create(model, &dyn, 16);
    for (int t = 0; t < 16; t++) {
        assert_int_equal(pm_generator_feed(exact, t, NULL), 0);
        assert_int_equal(pm_generator_feed(dynamic, t, NULL), 0);
    }
    assert_close(pm_generator_mean_active(exact, 0), 2.0, 0, 1e-12, "exact-k active", 0);
    double active = pm_generator_mean_active(dynamic, 0);
    assert_true(active >= 1.0 && active <= 5.0 && fabs(active - 2.0) > 1e-9);
    dyn.num_experts = 7;
    assert_null(pm_generator_create(model, &dyn, 16));
    pm_generator_free(exact);
    pm_generator_free(dynamic);
    pm_model_free(model);
}

/* A saved model directory loads back with the same config, weights, per-layer softmoe tau
 * and logits. */
static void test_save_load_round_trip(void **state) {
    (void)state;
    char dir[] = "/tmp/probmoe_save_XXXXXX";
    assert_non_null(mkdtemp(dir));
    pm_model_config cfg = tiny_config(PM_ROUTER_SOFTMOE);
    cfg.router.tau = -1.0f; /* calibrated per layer on the first batch */
    pm_model *model = pm_model_create(&cfg, 2, 8);
    pm_model_init_weights(model, 13);
    int32_t tokens[16];
    for (int i = 0; i < 16; i++) tokens[i] = (i * 7) % 50;
    assert_int_equal(pm_model_forward(model, tokens, NULL, 2, 8, true, 1, 0, NULL), 0);
    assert_int_equal(pm_model_forward(model, tokens, NULL, 2, 8, false, 1, 0, NULL), 0);
    assert_int_equal(pm_model_save(model, dir), 0);
    pm_model *loaded = pm_model_load(dir, 2, 8);
    if (!loaded) fail_msg("%s", pm_last_error());
    assert_int_equal(pm_model_size(loaded), pm_model_size(model));
    assert_memory_equal(pm_model_weights(loaded), pm_model_weights(model), sizeof(float) * pm_model_size(model));
    for (int l = 0; l < pm_model_moe_layers(&cfg); l++) {
        assert_true(*pm_router_find_value(pm_model_router(model, l), "tau", NULL) > 0.0f);
        assert_true(*pm_router_find_value(pm_model_router(loaded, l), "tau", NULL) == *pm_router_find_value(pm_model_router(model, l), "tau", NULL));
    }
    assert_int_equal(pm_model_get_config(loaded)->router.kind, PM_ROUTER_SOFTMOE);
    assert_int_equal(pm_model_forward(loaded, tokens, NULL, 2, 8, false, 1, 0, NULL), 0);
    assert_memory_equal(pm_model_logits(loaded), pm_model_logits(model), sizeof(float) * 16 * 50);
    pm_model_free(loaded);
    pm_model_free(model);
    char command[96];
    snprintf(command, sizeof command, "rm -rf %s", dir);
    assert_int_equal(system(command), 0);
}

/* Every router, trained a few steps (topk with its selection bias on, where a router takes
 * it): after pm_model_save and pm_model_load, its values and the routing of a batch in both
 * modes are bit for bit the trained model's, and so is generation through the cache. */
static void test_every_router_routes_alike_after_reload(void **state) {
    (void)state;
    enum { B = 2, S = 8, T = B * S };
    int32_t tokens[T], targets[T];
    for (int i = 0; i < T; i++) tokens[i] = (i * 7) % 50, targets[i] = (i * 11 + 3) % 50;
    for (int kind = 0; kind < pm_router_kind_count(); kind++) {
        char dir[] = "/tmp/probmoe_reload_XXXXXX";
        assert_non_null(mkdtemp(dir));
        pm_model_config cfg = tiny_config(kind);
        cfg.router.tau = -1.0f;
        cfg.router.bias_rate = 0.05f;
        if (pm_router_config_check(&cfg.router) < 0) cfg.router.bias_rate = 0.0f;
        pm_model *model = pm_model_create(&cfg, B, S);
        pm_model_init_weights(model, 17);
        for (int step = 0; step < 3; step++) {
            float loss;
            assert_int_equal(pm_model_forward(model, tokens, targets, B, S, true, 5, (uint64_t)step, &loss), 0);
            assert_int_equal(pm_model_backward(model), 0);
            for (int l = 0; l < pm_model_moe_layers(&cfg); l++) pm_router_step(pm_model_router(model, l));
        }
        if (cfg.router.bias_rate > 0.0f) {
            const float *bias = pm_router_find_value(pm_model_router(model, 0), "selection_bias", NULL);
            float moved = 0.0f;
            for (int e = 0; e < cfg.num_experts; e++) moved += fabsf(bias[e]);
            assert_true(moved > 0.0f);
        }
        assert_int_equal(pm_model_save(model, dir), 0);
        pm_model *loaded = pm_model_load(dir, B, S);
        if (!loaded) fail_msg("%s", pm_last_error());
        for (int l = 0; l < pm_model_moe_layers(&cfg); l++) {
            const pm_router *a = pm_model_router(model, l), *b = pm_model_router(loaded, l);
            assert_int_equal(pm_router_value_count(a), pm_router_value_count(b));
            for (int v = 0; v < pm_router_value_count(a); v++) {
                pm_router_value va, vb;
                assert_int_equal(pm_router_value_get(a, v, &va), 0);
                assert_int_equal(pm_router_value_get(b, v, &vb), 0);
                assert_string_equal(va.name, vb.name);
                assert_memory_equal(va.values, vb.values, sizeof(float) * (size_t)va.size);
            }
        }
        for (int training = 0; training <= 1; training++) {
            assert_int_equal(pm_model_forward(model, tokens, NULL, B, S, training, 9, 4, NULL), 0);
            assert_int_equal(pm_model_forward(loaded, tokens, NULL, B, S, training, 9, 4, NULL), 0);
            for (int l = 0; l < pm_model_moe_layers(&cfg); l++) {
                const pm_routing *a = pm_model_routing(model, l), *b = pm_model_routing(loaded, l);
                assert_memory_equal(a->offsets, b->offsets, sizeof(int) * (T + 1));
                assert_memory_equal(a->experts, b->experts, sizeof(int) * (size_t)a->offsets[T]);
                assert_memory_equal(a->weights, b->weights, sizeof(float) * (size_t)a->offsets[T]);
            }
            assert_memory_equal(pm_model_logits(loaded), pm_model_logits(model), sizeof(float) * T * 50);
        }
        pm_generator *from_trained = pm_generator_create(model, NULL, S), *from_loaded = pm_generator_create(loaded, NULL, S);
        assert_non_null(from_trained);
        assert_non_null(from_loaded);
        float logits_a[50], logits_b[50];
        for (int t = 0; t < S; t++) {
            assert_int_equal(pm_generator_feed(from_trained, tokens[t], logits_a), 0);
            assert_int_equal(pm_generator_feed(from_loaded, tokens[t], logits_b), 0);
            assert_memory_equal(logits_a, logits_b, sizeof logits_a);
        }
        pm_generator_free(from_trained);
        pm_generator_free(from_loaded);
        pm_model_free(loaded);
        pm_model_free(model);
        char command[96];
        snprintf(command, sizeof command, "rm -rf %s", dir);
        assert_int_equal(system(command), 0);
    }
}

/* Greedy decoding of prompts of different lengths, one after another through a one-row
 * generator (reset between prompts, as evaluation does) and all together through a generator
 * of `rows` rows, refilled as rows finish: every logit of every step is bit for bit the same,
 * so is every token. A row stops at the stop token or after max_new tokens. */
enum { PROMPTS = 6, MAX_NEW = 9, MOST_TOKENS = 24 };
static const int prompt_lengths[PROMPTS] = {1, 5, 11, 3, 8, 2};

typedef struct {
    int generated[PROMPTS][MAX_NEW], count[PROMPTS];
    float logits[PROMPTS][MAX_NEW][50];  /* the logits each chosen token came from */
} decode_trace;

static void prompt_tokens(int p, int32_t *tokens) {
    for (int j = 0; j < prompt_lengths[p]; j++) tokens[j] = (int32_t)((p * 13 + j * 7 + 1) % 50);
}

static void decode_alone(pm_model *model, pm_precision precision, int stop, decode_trace *trace) {
    pm_generator *gen = pm_generator_create(model, NULL, MOST_TOKENS);
    assert_non_null(gen);
    assert_int_equal(pm_generator_set_precision(gen, precision), 0);
    for (int p = 0; p < PROMPTS; p++) {
        pm_generator_reset(gen);
        int32_t tokens[MOST_TOKENS];
        prompt_tokens(p, tokens);
        float *logits = trace->logits[p][0];
        for (int j = 0; j < prompt_lengths[p]; j++) assert_int_equal(pm_generator_feed(gen, tokens[j], logits), 0);
        trace->count[p] = 0;
        for (int g = 0; g < MAX_NEW; g++) {
            const int32_t next = pm_sample_token(trace->logits[p][g], 50, 0.0f, 1.0f, NULL);
            trace->generated[p][trace->count[p]++] = next;
            if (next == stop || g + 1 == MAX_NEW) break;
            assert_int_equal(pm_generator_feed(gen, next, trace->logits[p][g + 1]), 0);
        }
    }
    pm_generator_free(gen);
}

static void decode_together(pm_model *model, pm_precision precision, int rows, int stop, decode_trace *trace) {
    pm_generator *gen = pm_generator_create_rows(model, NULL, MOST_TOKENS, rows);
    assert_non_null(gen);
    assert_int_equal(pm_generator_set_precision(gen, precision), 0);
    assert_int_equal(pm_generator_rows(gen), rows);
    int prompt_of[PROMPTS], fed[PROMPTS], next_prompt = 0;  /* per row: its prompt (-1: idle), tokens fed */
    for (int r = 0; r < rows; r++) prompt_of[r] = -1;
    memset(trace->count, 0, sizeof trace->count);
    static float step_logits[PROMPTS * 50];
    for (;;) {
        int step_rows[PROMPTS], count = 0;
        int32_t step_tokens[PROMPTS];
        for (int r = 0; r < rows; r++) {
            if (prompt_of[r] < 0 && next_prompt < PROMPTS) { /* an idle row takes the next prompt */
                prompt_of[r] = next_prompt++;
                fed[r] = 0;
                assert_int_equal(pm_generator_reset_row(gen, r), 0);
            }
            const int p = prompt_of[r];
            if (p < 0) continue;
            int32_t tokens[MOST_TOKENS];
            prompt_tokens(p, tokens);
            step_rows[count] = r;
            const int32_t last = trace->count[p] > 0 ? trace->generated[p][trace->count[p] - 1] : 0;
            step_tokens[count++] = fed[r] < prompt_lengths[p] ? tokens[fed[r]] : last;
        }
        if (count == 0) break;
        assert_int_equal(pm_generator_feed_rows(gen, step_rows, step_tokens, count, step_logits), 0);
        for (int i = 0; i < count; i++) {
            const int r = step_rows[i], p = prompt_of[r];
            assert_int_equal(pm_generator_row_length(gen, r), ++fed[r]);
            if (fed[r] < prompt_lengths[p]) continue; /* still reading its prompt */
            const int g = trace->count[p];
            memcpy(trace->logits[p][g], step_logits + (size_t)i * 50, sizeof(float) * 50);
            const int32_t next = pm_sample_token(trace->logits[p][g], 50, 0.0f, 1.0f, NULL);
            trace->generated[p][trace->count[p]++] = next;
            if (next == stop || trace->count[p] == MAX_NEW) prompt_of[r] = -1; /* done: the row is free */
        }
    }
    pm_generator_free(gen);
}

static void test_batched_decoding_matches_alone(void **state) {
    (void)state;
    const pm_router_kind kinds[] = {PM_ROUTER_TOPK, PM_ROUTER_PROBMOE_DYN, PM_ROUTER_SOFTMOE, PM_ROUTER_SOFTMOE};
    for (size_t c = 0; c < sizeof kinds / sizeof kinds[0]; c++) {
        pm_model_config cfg = tiny_config(kinds[c]);
        if (c == 1) { /* rows whose widths are not multiples of a vector: other alignments */
            cfg.hidden_size = 40;
            cfg.intermediate_size = 20;
            cfg.router.k_min = 1;
            cfg.router.k_max = 4;
        }
        if (c == 3) cfg.router.tau = -1.0f; /* calibrated by the generator's first token */
        pm_model *model = pm_model_create(&cfg, 1, MOST_TOKENS);
        assert_non_null(model);
        pm_model_init_weights(model, 31 + (uint64_t)c);
        /* bf16 weights too: the copy changes the values, never their independence */
        const pm_precision precision = c % 2 ? PM_PRECISION_BF16 : PM_PRECISION_FP32;
        /* the stop token: prompt 1's third choice, so that some rows stop early */
        static decode_trace alone, together;
        decode_alone(model, precision, -1, &alone);
        const int stop = alone.generated[1][2];
        decode_alone(model, precision, stop, &alone);
        int early = 0, full = 0;
        for (int p = 0; p < PROMPTS; p++) early += alone.count[p] < MAX_NEW, full += alone.count[p] == MAX_NEW;
        assert_true(early >= 1 && full >= 1);
        const int row_counts[] = {1, 2, 4, PROMPTS};
        for (size_t k = 0; k < sizeof row_counts / sizeof row_counts[0]; k++) {
            decode_together(model, precision, row_counts[k], stop, &together);
            for (int p = 0; p < PROMPTS; p++) {
                if (together.count[p] != alone.count[p])
                    fail_msg("%s, %d rows: prompt %d gives %d tokens, alone %d", pm_router_kind_name(kinds[c]),
                             row_counts[k], p, together.count[p], alone.count[p]);
                assert_memory_equal(together.generated[p], alone.generated[p], sizeof(int) * (size_t)alone.count[p]);
                assert_memory_equal(together.logits[p], alone.logits[p], sizeof(float) * 50 * (size_t)alone.count[p]);
            }
        }
        pm_model_free(model);
    }
}

/* A step that cannot be fed is refused whole, and says why. */
static void test_feed_rows_errors(void **state) {
    (void)state;
    pm_model_config cfg = tiny_config(PM_ROUTER_TOPK);
    pm_model *model = pm_model_create(&cfg, 1, 8);
    pm_model_init_weights(model, 43); /* pm_model_create leaves the weights unset: the fed steps need finite ones */
    pm_generator *gen = pm_generator_create_rows(model, NULL, 2, 3);
    assert_non_null(gen);
    const int32_t tokens[4] = {1, 2, 3, 4};
    const int repeated[2] = {1, 1}, outside[2] = {0, 3}, four[4] = {0, 1, 2, 0}, pair[2] = {0, 2};
    assert_true(pm_generator_feed_rows(gen, repeated, tokens, 2, NULL) < 0);
    assert_non_null(strstr(pm_last_error(), "row 1 is fed twice"));
    assert_true(pm_generator_feed_rows(gen, outside, tokens, 2, NULL) < 0);
    assert_non_null(strstr(pm_last_error(), "row 3; this generator has rows 0 to 2"));
    assert_true(pm_generator_feed_rows(gen, four, tokens, 4, NULL) < 0);
    assert_non_null(strstr(pm_last_error(), "feeds 1 to 3"));
    const int32_t bad[2] = {1, 50};
    assert_true(pm_generator_feed_rows(gen, pair, bad, 2, NULL) < 0);
    assert_non_null(strstr(pm_last_error(), "token 50 is outside"));
    for (int r = 0; r < 3; r++) assert_int_equal(pm_generator_row_length(gen, r), 0);
    const int zero = 0;
    assert_int_equal(pm_generator_feed_rows(gen, &zero, tokens, 1, NULL), 0);
    assert_int_equal(pm_generator_feed_rows(gen, &zero, tokens, 1, NULL), 0);
    assert_true(pm_generator_feed_rows(gen, pair, tokens, 2, NULL) < 0); /* row 0 is full: row 2 waits too */
    assert_non_null(strstr(pm_last_error(), "context is full (2 tokens in this row)"));
    assert_int_equal(pm_generator_row_length(gen, 2), 0);
    assert_int_equal(pm_generator_reset_row(gen, 0), 0);
    assert_int_equal(pm_generator_length(gen), 0);
    assert_true(pm_generator_reset_row(gen, 3) < 0);
    assert_int_equal(pm_generator_row_length(gen, 3), -1);
    pm_generator_free(gen);
    assert_null(pm_generator_create_rows(model, NULL, 8, 0));
    assert_non_null(strstr(pm_last_error(), "0 rows"));
    pm_model_free(model);
}

/* bf16 weights for the decoder's products: every logit through the cache within 0.02 + 2% of
 * fp32's (logits up to about 1.4 here). Each weight moves by at most 2^-9 of itself, about
 * 0.1% of a product at random signs; through two layers the largest difference is a quarter
 * of the tolerance. The router stays fp32 but reads activations that bf16 moved, so two
 * experts within that error of each other could swap and change the logits by more: this
 * seed's tokens route alike (a larger initializer_range, 0.32, swaps some). */
static void test_bf16_logits_near_fp32(void **state) {
    (void)state;
    enum { S = 16, V = 50 };
    pm_model_config cfg = tiny_config(PM_ROUTER_TOPK);
    cfg.initializer_range = 0.08f;
    pm_model *model = pm_model_create(&cfg, 1, S);
    pm_model_init_weights(model, 41);
    pm_generator *fp32 = pm_generator_create(model, NULL, S), *bf16 = pm_generator_create(model, NULL, S);
    assert_int_equal(pm_generator_get_precision(bf16), PM_PRECISION_FP32);
    assert_int_equal(pm_generator_set_precision(bf16, PM_PRECISION_BF16), 0);
    assert_int_equal(pm_generator_get_precision(bf16), PM_PRECISION_BF16);
    float want[V], got[V];
    double largest = 0.0, differ = 0.0;
    for (int t = 0; t < S; t++) {
        const int32_t token = (int32_t)((t * 17 + 3) % V);
        assert_int_equal(pm_generator_feed(fp32, token, want), 0);
        assert_int_equal(pm_generator_feed(bf16, token, got), 0);
        for (int v = 0; v < V; v++) {
            assert_close(got[v], want[v], 0.02, 0.02, "bf16 logits", t * V + v);
            largest = fabs(want[v]) > largest ? fabs(want[v]) : largest;
            differ = fabs(got[v] - want[v]) > differ ? fabs(got[v] - want[v]) : differ;
        }
    }
    /* the copy is used: the logits are not fp32's bit for bit, and the test is not vacuous */
    assert_true(differ > 0.0 && largest > 0.1);
    /* back to fp32: exactly fp32's logits again */
    assert_int_equal(pm_generator_set_precision(bf16, PM_PRECISION_FP32), 0);
    pm_generator_reset(fp32);
    pm_generator_reset(bf16);
    assert_int_equal(pm_generator_feed(fp32, 7, want), 0);
    assert_int_equal(pm_generator_feed(bf16, 7, got), 0);
    assert_memory_equal(got, want, sizeof want);
    assert_int_equal(pm_generator_set_precision(bf16, (pm_precision)7), PM_ERR_ARG);
    assert_non_null(strstr(pm_last_error(), "unknown precision 7"));
    pm_generator_free(fp32);
    pm_generator_free(bf16);
    pm_model_free(model);
}

/* A generator that cannot be made says why. */
static void test_generator_errors(void **state) {
    (void)state;
    pm_model_config cfg = tiny_config(PM_ROUTER_TOPK);
    pm_model *model = pm_model_create(&cfg, 1, 8);
    pm_model_init_weights(model, 44);
    assert_null(pm_generator_create(model, NULL, 0));
    assert_non_null(strstr(pm_last_error(), "a context of 0 tokens"));
    pm_router_config other = pm_router_config_default(PM_ROUTER_TOPK, 4, 2);
    assert_null(pm_generator_create(model, &other, 8));
    assert_non_null(strstr(pm_last_error(), "the router has 4 experts, the model 6"));
    pm_model_free(model);
}

static void test_sampling(void **state) {
    (void)state;
    const float logits[4] = {1.0f, 3.0f, 2.0f, -1.0f};
    pm_rng rng;
    pm_rng_init(&rng, 5, 0);
    assert_int_equal(pm_sample_token(logits, 4, 0.0f, 1.0f, &rng), 1);
    assert_int_equal(pm_sample_token(logits, 4, 1.0f, 0.01f, &rng), 1); /* nucleus of one token */
    int counts[4] = {0};
    enum { DRAWS = 40000 };
    for (int i = 0; i < DRAWS; i++) counts[pm_sample_token(logits, 4, 1.0f, 1.0f, &rng)]++;
    double z = exp(1.0) + exp(3.0) + exp(2.0) + exp(-1.0);
    const double p[4] = {exp(1.0) / z, exp(3.0) / z, exp(2.0) / z, exp(-1.0) / z};
    for (int v = 0; v < 4; v++)
        assert_close(counts[v] / (double)DRAWS, p[v], 0, 5 * sqrt(p[v] * (1 - p[v]) / DRAWS), "frequency", v);
    /* top_p = 0.8 keeps tokens 1 and 2 (0.665 + 0.245 >= 0.8): token 0 never appears */
    for (int i = 0; i < 2000; i++) assert_true(pm_sample_token(logits, 4, 1.0f, 0.8f, &rng) != 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_matches_full_forward),
        cmocka_unit_test(test_router_override),
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_every_router_routes_alike_after_reload),
        cmocka_unit_test(test_batched_decoding_matches_alone),
        cmocka_unit_test(test_feed_rows_errors),
        cmocka_unit_test(test_generator_errors),
        cmocka_unit_test(test_bf16_logits_near_fp32),
        cmocka_unit_test(test_sampling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
