/* The model's memory estimate (pm_model_memory_estimate) against what pm_model_create and the
 * optimizer really allocate, for every router: never below, and within 10% (it is within 1% here). Heap bytes come
 * from AddressSanitizer's count of requested bytes in the sanitizer build, else from glibc's
 * mallinfo2 with every allocation kept in the heap (no mmap rounding). Then the refusals: a
 * model too large for this machine is refused before anything is allocated, with the estimate
 * part by part, and so is a generator's key/value cache; sizes that would overflow saturate
 * instead of wrapping; a routing holds no more (token, expert) pairs than its int offsets can
 * count. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model/model_internal.h"
#include "tiny_model.h"
#include "train/optim.h"

#if defined(__SANITIZE_ADDRESS__)
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_in_use(void) { return __sanitizer_get_current_allocated_bytes(); }
#else
static size_t heap_in_use(void) {
    struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
}
#endif

static int keep_allocations_in_heap(void **state) {
    (void)state;
#if !defined(__SANITIZE_ADDRESS__)
    /* glibc serves large requests with mmap, rounded to pages; from the heap they cost what
     * they ask for plus a header, as the estimate assumes */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
#endif
    /* OpenMP and BLAS set themselves up on first use; do that before measuring */
    pm_model_config cfg = tiny_model_config(PM_ROUTER_PROBMOE);
    pm_model *warm = pm_model_create(&cfg, 1, 4);
    assert_non_null(warm);
    pm_model_init_weights(warm, 1);
    const int32_t tokens[4] = {1, 2, 3, 4};
    float loss;
    assert_int_equal(pm_model_forward(warm, tokens, tokens, 1, 4, true, 1, 0, &loss), PM_OK);
    assert_int_equal(pm_model_backward(warm), PM_OK);
    pm_model_free(warm);
    return 0;
}

/* A model whose activations are about half its memory, so that the estimate of each part
 * matters; every allocation stays below 32 MiB. */
static pm_model_config measured_config(pm_router_kind kind) {
    pm_model_config cfg = tiny_model_config(kind);
    cfg.hidden_size = 64;
    cfg.intermediate_size = 96;
    cfg.num_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.num_experts = 8;
    cfg.experts_per_token = 2;
    cfg.vocab_size = 300;
    cfg.max_position_embeddings = 128;
    cfg.router = pm_router_config_default(kind, cfg.num_experts, cfg.experts_per_token);
    return cfg;
}

static void expect_close_above(uint64_t estimate, size_t measured, const char *what, const char *router) {
    if (estimate < measured)
        fail_msg("%s, %s: the estimate %llu is below the %zu bytes allocated", router, what,
                 (unsigned long long)estimate, measured);
    if ((double)estimate > 1.1 * (double)measured)
        fail_msg("%s, %s: the estimate %llu is more than 10%% above the %zu bytes allocated", router, what,
                 (unsigned long long)estimate, measured);
}

/* The activation arena is what the estimate planned, to the byte; it holds every layer's
 * buffers, in order and apart; under AddressSanitizer the byte after a buffer is poisoned. */
static void expect_arena_holds_activations(const pm_model *model, const pm_memory_estimate *estimate,
                                           const char *router) {
    const pm_arena *arena = &model->arena;
    if (arena->planned != estimate->activation_arena || arena->used != arena->planned)
        fail_msg("%s: the arena holds %llu bytes (laid out %llu) but the estimate planned %llu", router,
                 (unsigned long long)arena->planned, (unsigned long long)arena->used,
                 (unsigned long long)estimate->activation_arena);
    if (estimate->activation_arena < estimate->activations / 2)
        fail_msg("%s: the arena is only %llu of %llu activation bytes", router,
                 (unsigned long long)estimate->activation_arena, (unsigned long long)estimate->activations);
    const size_t T = (size_t)model->max_batch * model->max_seq, H = (size_t)model->cfg.hidden_size;
    const char *previous_end = arena->base;
    for (int l = 0; l < model->cfg.num_layers; l++) {
        const layer_state *layer = &model->layers[l];
        const float *buffers[] = {layer->x_in, layer->ln1, layer->q_raw, layer->x_mid, layer->ln2};
        for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) {
            const char *start = (const char *)buffers[i], *end = start + sizeof(float) * T * H;
            if (start < previous_end || end > arena->base + arena->planned || (uintptr_t)start % ARENA_ALIGN)
                fail_msg("%s: layer %d's buffer %zu [%p, %p) is not in order inside the arena [%p, %p) or not "
                         "aligned", router, l, i, (const void *)start, (const void *)end, (const void *)arena->base,
                         (const void *)(arena->base + arena->planned));
#if defined(__SANITIZE_ADDRESS__)
            if (!__asan_address_is_poisoned(end)) fail_msg("%s: the byte after layer %d's buffer %zu is not poisoned", router, l, i);
#endif
            previous_end = end;
        }
        if (layer->moe_index >= 0 && (const char *)layer->moe.x < previous_end) /* a dense layer has none */
            fail_msg("%s: layer %d's expert rows overlap", router, l);
    }
}

static void test_estimate_matches_allocation(void **state) {
    (void)state;
    const int B = 4, S = 96;
    for (int c = 0; c < 4 * pm_router_kind_count(); c++) { /* every family and router; qwen2_moe's dense layers */
        const int kind = c % pm_router_kind_count();
        const bool dense = c >= 3 * pm_router_kind_count();
        const pm_arch arch = dense ? PM_ARCH_QWEN2_MOE : (pm_arch)(c / pm_router_kind_count());
        pm_model_config cfg = measured_config(kind);
        const pm_model_config family = tiny_family_config(arch, kind);
        cfg.arch = arch;
        cfg.qkv_bias = family.qkv_bias;
        cfg.tie_word_embeddings = family.tie_word_embeddings;
        cfg.shared_expert_size = family.shared_expert_size ? 80 : 0;
        cfg.dense_intermediate_size = family.dense_intermediate_size;
        cfg.sliding_window = family.sliding_window;
        cfg.router.norm_topk_prob = family.router.norm_topk_prob;
        if (dense) cfg.decoder_sparse_step = 2, cfg.dense_intermediate_size = 200; /* wider than the shared 80 */
        char name[64];
        snprintf(name, sizeof name, "%s%s %s", pm_arch_name(arch), dense ? " dense" : "", pm_router_kind_name(kind));
        pm_memory_estimate inference, training;
        if (pm_model_memory_estimate(&cfg, B, S, false, &inference) != PM_OK ||
            pm_model_memory_estimate(&cfg, B, S, true, &training) != PM_OK)
            fail_msg("%s: %s", name, pm_last_error());
        const size_t before = heap_in_use();
        pm_model *model = pm_model_create(&cfg, B, S);
        if (!model) fail_msg("%s: %s", name, pm_last_error());
        const size_t created = heap_in_use() - before;
        /* the parameters and gradients exactly (inference never touches the zeroed gradient
         * buffer, so it is not counted); the activations about half the total */
        const uint64_t params = sizeof(float) * (uint64_t)pm_model_size(model);
        assert_true(inference.parameters == params && inference.gradients == 0 && training.gradients == params);
        assert_true(inference.optimizer == 0 && training.optimizer == 2 * params);
        if (inference.activations < inference.total / 3)
            fail_msg("%s: activations are only %llu of %llu bytes; the test would not see them", name,
                     (unsigned long long)inference.activations, (unsigned long long)inference.total);
        expect_close_above(inference.total, created - (size_t)params, "a model for inference", name);
        expect_close_above(inference.activations, created - 2 * (size_t)params, "its activations", name);
        expect_arena_holds_activations(model, &inference, name);
        /* training: the model and AdamW's moments */
        adamw optimizer;
        assert_int_equal(adamw_init(&optimizer, model, (adamw_config){0.9f, 0.95f, 1e-8f, 0.1f, false}), PM_OK);
        const size_t trained = heap_in_use() - before;
        expect_close_above(training.total, trained, "a model with its optimizer", name);
        adamw_free(&optimizer);
        pm_model_free(model);
    }
}

/* A model larger than the memory given is refused with the estimate part by part. */
static void test_refusal_message(void **state) {
    (void)state;
    const pm_model_config cfg = measured_config(PM_ROUTER_PROBMOE);
    pm_memory_estimate need;
    assert_int_equal(pm_model_memory_estimate(&cfg, 4, 96, true, &need), PM_OK);
    assert_int_equal(model_memory_check_limit(&cfg, 4, 96, true, need.total, "physical memory"), PM_OK);
    assert_int_equal(model_memory_check_limit(&cfg, 4, 96, true, need.total - 1, "physical memory"), PM_ERR_NOMEM);
    const char *fragments[] = {"training this model needs about ", " MiB of memory (parameters ", ", gradients ",
                               ", optimizer ", ", activations ",
                               " for a batch of 4 × 96 tokens) but this machine has ",
                               "(physical memory); use a smaller model"};
    for (size_t i = 0; i < sizeof fragments / sizeof fragments[0]; i++)
        if (!strstr(pm_last_error(), fragments[i])) fail_msg("'%s' lacks '%s'", pm_last_error(), fragments[i]);
    /* inference needs less: no optimizer */
    assert_int_equal(model_memory_check_limit(&cfg, 4, 96, false, need.total - 1, "physical memory"), PM_OK);
}

/* About 5·10^10 parameters: below the config's bound (2^36), far above any test machine's
 * memory (about 370 GiB of weights and gradients): refused before a byte is allocated. */
static void test_impossible_model_refused(void **state) {
    (void)state;
    pm_model_config cfg = pm_model_config_default();
    cfg.num_layers = 1;
    cfg.hidden_size = 8192;
    cfg.intermediate_size = 32768;
    cfg.num_heads = 64;
    cfg.num_kv_heads = 64;
    cfg.num_experts = 64;
    cfg.experts_per_token = 2;
    cfg.router = pm_router_config_default(PM_ROUTER_TOPK, 64, 2);
    assert_int_equal(pm_model_config_check(&cfg), PM_OK);
    pm_memory_estimate need;
    assert_int_equal(pm_model_memory_estimate(&cfg, 1, 1, false, &need), PM_OK);
    assert_true(need.parameters > 4 * 5e10 && need.parameters < 4 * 6e10);
    if (pm_machine_memory() >= need.total) {
        print_message("this machine has %llu bytes: enough for the 'impossible' model\n",
                      (unsigned long long)pm_machine_memory());
        skip();
    }
    const size_t before = heap_in_use();
    pm_model *model = pm_model_create(&cfg, 1, 1);
    assert_null(model);
    assert_true(heap_in_use() <= before); /* nothing allocated (and nothing leaked) */
    const char *fragments[] = {"pm_model_create: this model needs about ", "193.0 GiB of memory (parameters 193.0 GiB",
                               ", gradients 0 B", "optimizer 0 B",
                               "for a batch of 1 × 1 tokens) but this machine has "};
    for (size_t i = 0; i < sizeof fragments / sizeof fragments[0]; i++)
        if (!strstr(pm_last_error(), fragments[i])) fail_msg("'%s' lacks '%s'", pm_last_error(), fragments[i]);
    /* 10^11 parameters are above the config's bound: refused with their count and size */
    cfg.num_layers = 2;
    assert_int_equal(pm_model_config_check(&cfg), PM_ERR_ARG);
    assert_non_null(strstr(pm_last_error(), "1.04e+11 parameters (386 GiB of float32 weights"));
    assert_null(pm_model_create(&cfg, 1, 1));
}

/* Sizes far beyond any machine saturate at UINT64_MAX rather than wrap to something small. */
static void test_estimate_saturates(void **state) {
    (void)state;
    pm_model_config cfg = pm_model_config_default();
    cfg.num_heads = 128;
    cfg.num_kv_heads = 128;
    cfg.hidden_size = 256;
    cfg.max_position_embeddings = 1 << 20;
    pm_memory_estimate need;
    /* 2^31 sequences × 128 heads × 2^40 attention probabilities: 2^80 floats */
    assert_int_equal(pm_model_memory_estimate(&cfg, 2147483647, 1 << 20, true, &need), PM_OK);
    assert_true(need.activations == UINT64_MAX && need.total == UINT64_MAX);
    assert_int_equal(model_memory_check_limit(&cfg, 2147483647, 1 << 20, false, 1ull << 40, "physical memory"),
                     PM_ERR_NOMEM);
    assert_non_null(strstr(pm_last_error(), "needs about more than 16 EiB of memory"));
    /* bad arguments are errors, not estimates */
    assert_int_equal(pm_model_memory_estimate(&cfg, 0, 1, false, &need), PM_ERR_ARG);
    assert_true(need.total == 0);
    cfg.hidden_size = 0;
    assert_int_equal(pm_model_memory_estimate(&cfg, 1, 1, false, &need), PM_ERR_ARG);
    assert_true(pm_machine_memory() > 0);
}

/* A generator's key/value cache is checked too, before it is allocated: 4 layers × 2^20
 * positions × 1024 keys and values are 32 GiB, on top of a model of about 140 MB. */
static void test_generator_cache_refused(void **state) {
    (void)state;
    pm_model_config cfg = pm_model_config_default();
    cfg.hidden_size = 1024;
    cfg.num_heads = 8;
    cfg.num_kv_heads = 8;
    cfg.intermediate_size = 2;
    cfg.num_experts = 1;
    cfg.experts_per_token = 1;
    cfg.max_position_embeddings = 1 << 20;
    cfg.router = pm_router_config_default(PM_ROUTER_TOPK, 1, 1);
    if (pm_machine_memory() > (40ull << 30)) {
        print_message("this machine has more than 40 GiB: a 32 GiB cache would fit\n");
        skip();
    }
    pm_model *model = pm_model_create(&cfg, 1, 1);
    if (!model) fail_msg("%s", pm_last_error());
    const size_t before = heap_in_use();
    assert_null(pm_generator_create(model, NULL, 1 << 20));
    assert_true(heap_in_use() <= before);
    const char *fragments[] = {"generator: a context of 1048576 tokens needs about 32.0 GiB (mostly the key/value "
                               "cache) on top of the model's ", "but this machine has ", "use a shorter context"};
    for (size_t i = 0; i < sizeof fragments / sizeof fragments[0]; i++)
        if (!strstr(pm_last_error(), fragments[i])) fail_msg("'%s' lacks '%s'", pm_last_error(), fragments[i]);
    pm_generator *small = pm_generator_create(model, NULL, 64);
    if (!small) fail_msg("%s", pm_last_error());
    pm_generator_free(small);
    pm_model_free(model);
}

/* A generator allocates what its memory check counted (its arena, struct, routers and
 * routings), to 10%, for every family and router, qwen2_moe's dense layers and several rows
 * (the test_generate tests run its buffers, under AddressSanitizer with guards between them). */
static void test_generator_estimate_matches_allocation(void **state) {
    (void)state;
    { /* the OpenMP threads' own allocations happen at their first parallel region: before */
        pm_model_config cfg = tiny_model_config(PM_ROUTER_TOPK);
        pm_model *model = pm_model_create(&cfg, 1, 8);
        if (model) pm_model_init_weights(model, 1);
        pm_generator *gen = model ? pm_generator_create(model, NULL, 8) : NULL;
        assert_non_null(gen);
        assert_int_equal(pm_generator_feed(gen, 1, NULL), PM_OK);
        pm_generator_free(gen);
        pm_model_free(model);
    }
    for (int c = 0; c < 4 * pm_router_kind_count(); c++) {
        const pm_router_kind kind = (pm_router_kind)(c % pm_router_kind_count());
        const int family = c / pm_router_kind_count(), rows = 1 + 3 * (c % 2);
        pm_model_config cfg = family < 3 ? tiny_family_config((pm_arch)family, kind) : tiny_dense_config(kind);
        if (family == 3) cfg.dense_intermediate_size = 60; /* wider than the shared expert */
        cfg.max_position_embeddings = 512; /* the cache then outweighs the routers' upper bounds */
        char name[64];
        snprintf(name, sizeof name, "%s%s %s, %d rows", pm_arch_name(cfg.arch), family == 3 ? " dense" : "",
                 pm_router_kind_name(kind), rows);
        pm_model *model = pm_model_create(&cfg, 1, 8);
        if (!model) fail_msg("%s: %s", name, pm_last_error());
        pm_model_init_weights(model, 1);
        const uint64_t estimate = model_generator_bytes(model, &cfg.router, 512, rows);
        const size_t before = heap_in_use();
        pm_generator *gen = pm_generator_create_rows(model, NULL, 512, rows);
        if (!gen) fail_msg("%s: %s", name, pm_last_error());
        int order[4] = {0, 1, 2, 3};
        const int32_t tokens[4] = {1, 2, 3, 4};
        /* after a step: a router may take its scratch when it first routes */
        if (pm_generator_feed_rows(gen, order, tokens, rows, NULL) != PM_OK) fail_msg("%s: %s", name, pm_last_error());
        expect_close_above(estimate, heap_in_use() - before, "a generator", name);
        pm_generator_free(gen);
        pm_model_free(model);
    }
}

/* A routing's CSR offsets are ints: more (token, expert) pairs than that are refused. */
static void test_routing_pairs_bounded(void **state) {
    (void)state;
    const pm_router_config cfg = pm_router_config_default(PM_ROUTER_DENSEMIXER, 4096, 2);
    pm_router *router = pm_router_create(&cfg);
    assert_non_null(router);
    /* densemixer computes all 4096 experts of a token in training */
    assert_null(pm_routing_create(router, 2147483647 / 4096 + 1));
    assert_non_null(strstr(pm_last_error(), "524288 tokens of up to 4096 (token, expert) pairs each are more than"));
    pm_router_free(router);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_estimate_matches_allocation),
        cmocka_unit_test(test_refusal_message),
        cmocka_unit_test(test_impossible_model_refused),
        cmocka_unit_test(test_estimate_saturates),
        cmocka_unit_test(test_generator_cache_refused),
        cmocka_unit_test(test_generator_estimate_matches_allocation),
        cmocka_unit_test(test_routing_pairs_bounded),
    };
    return cmocka_run_group_tests(tests, keep_allocations_in_heap, NULL);
}
