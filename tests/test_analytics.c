/* Routing analytics: every metric against values worked out by hand on synthetic routing,
 * the frequency buckets, the CSV/JSON files, and a tiny model end to end. */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */

#include <cjson/cJSON.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "eval/analytics.h"

#define TOL 1e-6

/*
 * Layer 0, E = 4, k = 2, four tokens (ids 5, 5, 5, 7):
 *   t0 π = (1, 0, 0, 0)          H = 0;        cover 1; top-2 1;    routed {0}
 *   t1 π = (.25, .25, .25, .25)  H/log4 = 1;   cover 4; top-2 .5;   routed {0, 1}
 *   t2 π = (.5, .3, .15, .05)    cover: .5, .8, .95, 1 -> 4; top-2 .8; routed {0, 1}
 *   t3 π = (.9, .09, .01, 0)     cover: .9, .99 -> 2; top-2 .99;    routed {0, 1, 2}
 * load = (4, 3, 1, 0) of 8 pairs; f = (.5, .375, .125, 0); one dead expert; max/mean =
 * 4 / 2 = 2; mean active 8/4 = 2.
 */
static const float probs[16] = {1, 0, 0, 0, .25f, .25f, .25f, .25f, .5f, .3f, .15f, .05f,
                                .9f, .09f, .01f, 0};
static const int offsets[5] = {0, 1, 3, 5, 8};
static const int experts[8] = {0, 0, 1, 0, 1, 0, 1, 2};
static const int32_t tokens[4] = {5, 5, 5, 7};

static double entropy_of(const double *p, int n) {
    double h = 0;
    for (int i = 0; i < n; i++)
        if (p[i] > 0) h -= p[i] * log(p[i]);
    return h;
}

static analytics *synthetic(void) {
    analytics *a = analytics_create_raw(1, 4, 2, 10);
    assert_non_null(a);
    assert_int_equal(analytics_add_routing(a, 0, probs, offsets, experts, tokens, 4), PM_OK);
    assert_int_equal(analytics_finish(a), PM_OK);
    return a;
}

/* Groups a token's experts span, worked by hand: 8 experts in 4 groups of 2. */
static void groups_touched(void **state) {
    (void)state;
    static const float flat[4 * 8] = {0};
    const int group_offsets[5] = {0, 2, 4, 7, 7}, group_experts[7] = {0, 1, 0, 2, 1, 6, 7};
    const int32_t ids[4] = {1, 2, 3, 4};
    analytics *a = analytics_create_raw(1, 8, 2, 10);
    assert_int_equal(analytics_groups(a), 1);
    assert_int_equal(analytics_set_groups(a, 3), PM_ERR_ARG);
    assert_non_null(strstr(pm_last_error(), "groups = 3; need a divisor of the 8 experts"));
    assert_int_equal(analytics_set_groups(a, 4), PM_OK);
    assert_int_equal(analytics_add_routing(a, 0, flat, group_offsets, group_experts, ids, 4), PM_OK);
    assert_int_equal(analytics_finish(a), PM_OK);
    /* {0,1}: 1 group; {0,2}: 2; {1,6,7}: 2; {}: 0 */
    assert_close(analytics_get_layer(a, 0)->mean_groups, 5.0 / 4.0, 0, TOL, "groups touched", 0);
    assert_int_equal(analytics_get_layer(a, 0)->max_groups, 2);
    analytics_free(a);
    a = analytics_create_raw(1, 8, 2, 10); /* one group: any expert touches it */
    assert_int_equal(analytics_add_routing(a, 0, flat, group_offsets, group_experts, ids, 4), PM_OK);
    assert_int_equal(analytics_finish(a), PM_OK);
    assert_close(analytics_get_layer(a, 0)->mean_groups, 3.0 / 4.0, 0, TOL, "one group", 0);
    assert_int_equal(analytics_get_layer(a, 0)->max_groups, 1);
    analytics_free(a);
}

static void hand_computed_layer(void **state) {
    (void)state;
    analytics *a = synthetic();
    const analytics_layer *r = analytics_get_layer(a, 0);
    assert_int_equal(r->tokens, 4);
    assert_int_equal(r->pairs, 8);
    const double f[4] = {.5, .375, .125, 0};
    for (int e = 0; e < 4; e++) assert_close(r->load[e], f[e], 0, TOL, "load", e);
    assert_close(r->load_entropy, entropy_of(f, 4) / log(4), 0, TOL, "load entropy", 0);
    assert_close(r->max_over_mean, 2.0, 0, TOL, "max/mean", 0);
    assert_int_equal(r->dead_experts, 1);
    assert_close(r->mean_active, 2.0, 0, TOL, "mean active", 0);

    const double p2[4] = {.5, .3, .15, .05}, p3[4] = {.9, .09, .01, 0};
    const double h = (0 + log(4) + entropy_of(p2, 4) + entropy_of(p3, 4)) / log(4) / 4;
    assert_close(r->routing_entropy, h, 0, 1e-6, "routing entropy", 0);
    assert_close(r->cover99, (1 + 4 + 4 + 2) / 4.0, 0, TOL, "cover99", 0);
    assert_close(r->topk_mass, (1 + .5 + .8 + .99) / 4, 0, 1e-6, "top-k mass", 0);
    analytics_free(a);
}

/* Ids 5 (3 times) and 7 (once): ranks 1 and 2, buckets {1} and {2..3}. */
static void frequency_buckets(void **state) {
    (void)state;
    analytics *a = synthetic();
    int count;
    const analytics_bucket *b = analytics_get_buckets(a, &count);
    assert_int_equal(count, 2);
    assert_int_equal(b[0].rank_lo, 1);
    assert_int_equal(b[0].rank_hi, 1);
    assert_int_equal(b[0].occurrences, 3);
    assert_int_equal(b[0].token_ids, 1);
    assert_close(b[0].mean_active[0], 5.0 / 3, 0, TOL, "bucket 0 active", 0);
    assert_int_equal(b[1].rank_lo, 2);
    assert_int_equal(b[1].rank_hi, 2); /* only two ids were seen */
    assert_int_equal(b[1].occurrences, 1);
    assert_close(b[1].mean_active[0], 3.0, 0, TOL, "bucket 1 active", 0);
    assert_close(b[1].mean_active_all, 3.0, 0, TOL, "bucket 1 mean", 0);
    analytics_free(a);
}

/* 10 ids with counts 10, 9, ..., 1 (id v occurs 10 - v times) and v % 3 + 1 active experts
 * per token in layer 0, 1 in layer 1: buckets of ranks 1, 2-3, 4-7, 8-10. */
static void power_of_two_buckets(void **state) {
    (void)state;
    analytics *a = analytics_create_raw(2, 3, 1, 12);
    int32_t ids[55];
    int offs[56], ex[55 * 3], offs1[56], ex1[55];
    float pi[55 * 3];
    int T = 0, pairs = 0;
    offs[0] = offs1[0] = 0;
    for (int v = 0; v < 10; v++)
        for (int c = 0; c < 10 - v; c++, T++) {
            ids[T] = v;
            for (int e = 0; e < v % 3 + 1; e++) ex[pairs++] = e;
            offs[T + 1] = pairs;
            ex1[T] = 2, offs1[T + 1] = T + 1;
            pi[3 * T] = 1, pi[3 * T + 1] = pi[3 * T + 2] = 0;
        }
    assert_int_equal(T, 55);
    assert_int_equal(analytics_add_routing(a, 0, pi, offs, ex, ids, T), PM_OK);
    assert_int_equal(analytics_add_routing(a, 1, pi, offs1, ex1, ids, T), PM_OK);
    assert_int_equal(analytics_finish(a), PM_OK);
    int count;
    const analytics_bucket *b = analytics_get_buckets(a, &count);
    assert_int_equal(count, 4);
    const int lo[4] = {1, 2, 4, 8}, hi[4] = {1, 3, 7, 10}, occ[4] = {10, 17, 22, 6};
    /* Σ count·active over the bucket's ids, over its occurrences. */
    const double active[4] = {1, (9 * 2 + 8 * 3) / 17.0, (7 * 1 + 6 * 2 + 5 * 3 + 4 * 1) / 22.0,
                              (3 * 2 + 2 * 3 + 1 * 1) / 6.0};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(b[i].rank_lo, lo[i]);
        assert_int_equal(b[i].rank_hi, hi[i]);
        assert_int_equal(b[i].occurrences, occ[i]);
        assert_int_equal(b[i].max_count, 10 - (lo[i] - 1));
        assert_int_equal(b[i].min_count, 10 - (hi[i] - 1));
        assert_close(b[i].mean_active[0], active[i], 0, TOL, "layer 0", i);
        assert_close(b[i].mean_active[1], 1.0, 0, TOL, "layer 1", i);
        assert_close(b[i].mean_active_all, (active[i] + 1) / 2, 0, TOL, "mean", i);
    }
    /* Layer 1 sends everything to expert 2: two dead experts, zero load entropy. */
    const analytics_layer *r = analytics_get_layer(a, 1);
    assert_int_equal(r->dead_experts, 2);
    assert_close(r->load_entropy, 0.0, 0, TOL, "load entropy", 1);
    assert_close(r->max_over_mean, 3.0, 0, TOL, "max/mean", 1);
    assert_close(r->cover99, 1.0, 0, TOL, "cover", 1);
    assert_close(r->routing_entropy, 0.0, 0, TOL, "routing entropy", 1);
    analytics_free(a);
}

static void bad_input_rejected(void **state) {
    (void)state;
    analytics *a = analytics_create_raw(1, 4, 2, 10);
    const int32_t bad_tokens[4] = {5, 5, 10, 7};
    const int bad_experts[8] = {0, 0, 1, 0, 4, 0, 1, 2};
    assert_int_equal(analytics_add_routing(a, 0, probs, offsets, experts, bad_tokens, 4), PM_ERR_ARG);
    assert_int_equal(analytics_add_routing(a, 0, probs, offsets, bad_experts, tokens, 4), PM_ERR_ARG);
    assert_int_equal(analytics_add_routing(a, 1, probs, offsets, experts, tokens, 4), PM_ERR_ARG);
    /* Nothing of the rejected batches was counted. */
    assert_int_equal(analytics_finish(a), PM_OK);
    assert_int_equal(analytics_get_layer(a, 0)->tokens, 0);
    int count;
    analytics_get_buckets(a, &count);
    assert_int_equal(count, 0);
    analytics_free(a);
    assert_null(analytics_create_raw(1, 4, 5, 10));
}

static char scratch_dir[64];

static int remove_entry(const char *path, const struct stat *info, int type, struct FTW *walk) {
    (void)info, (void)type, (void)walk;
    return remove(path);
}

static char *slurp(const char *path) {
    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    fseek(file, 0, SEEK_END);
    const long size = ftell(file);
    rewind(file);
    char *text = calloc((size_t)size + 1, 1);
    assert_int_equal(fread(text, 1, (size_t)size, file), (size_t)size);
    fclose(file);
    return text;
}

static void files_written(void **state) {
    (void)state;
    snprintf(scratch_dir, sizeof scratch_dir, "/tmp/pm_analytics_XXXXXX");
    assert_non_null(mkdtemp(scratch_dir));
    char dir[128], path[256];
    snprintf(dir, sizeof dir, "%s/out", scratch_dir);
    analytics *a = synthetic();
    assert_int_equal(analytics_write_all(a, dir), PM_OK);

    snprintf(path, sizeof path, "%s/routing_layers.csv", dir);
    char *csv = slurp(path);
    assert_non_null(strstr(csv, "layer,tokens,pairs,mean_active,load_entropy,max_over_mean,"
                                "dead_experts,routing_entropy,cover99,topk_mass,groups,mean_groups,"
                                "max_groups,load_0,load_1,"
                                "load_2,load_3\n"));
    assert_non_null(strstr(csv, "\n0,4,8,2.000000,"));
    assert_non_null(strstr(csv, ",2.750000,0.822500,1,1.000000,1,0.500000,0.375000,0.125000,0.000000\n"));
    free(csv);

    snprintf(path, sizeof path, "%s/routing_frequency.csv", dir);
    csv = slurp(path);
    assert_non_null(strstr(csv, "\n0,1,1,1,3,3,3,1.666667,1.666667\n1,2,2,1,1,1,1,3.000000,3.000000\n"));
    free(csv);

    snprintf(path, sizeof path, "%s/routing.json", dir);
    char *text = slurp(path);
    cJSON *json = cJSON_Parse(text);
    assert_non_null(json);
    const cJSON *layer = cJSON_GetArrayItem(cJSON_GetObjectItem(json, "layers"), 0);
    assert_close(cJSON_GetObjectItem(layer, "cover99")->valuedouble, 2.75, 0, TOL, "json cover", 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(layer, "load")), 4);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(json, "buckets")), 2);
    assert_int_equal(cJSON_GetObjectItem(json, "k")->valueint, 2);
    cJSON_Delete(json);
    free(text);
    analytics_free(a);
    assert_int_equal(nftw(scratch_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

/* A tiny model in inference mode: the model path agrees with the routing it exposes. */
static void tiny_model(void **state) {
    (void)state;
    pm_model_config cfg = pm_model_config_default();
    cfg.vocab_size = 32, cfg.hidden_size = 16, cfg.intermediate_size = 8, cfg.num_layers = 2;
    cfg.num_heads = 2, cfg.num_kv_heads = 2, cfg.num_experts = 4, cfg.experts_per_token = 2;
    cfg.max_position_embeddings = 16;
    cfg.router = pm_router_config_default(PM_ROUTER_TOPK, 4, 2);
    pm_model *model = pm_model_create(&cfg, 2, 8);
    assert_non_null(model);
    pm_model_init_weights(model, 3);
    analytics *a = analytics_create(model);
    assert_non_null(a);
    int32_t batch[16];
    for (int rep = 0; rep < 2; rep++) {
        for (int i = 0; i < 16; i++) batch[i] = (i * 7 + rep) % 5; /* five ids */
        assert_int_equal(pm_model_forward(model, batch, NULL, 2, 8, false, 0, 0, NULL), PM_OK);
        assert_int_equal(analytics_add_batch(a, model, batch, 2, 8), PM_OK);
    }
    assert_int_equal(analytics_finish(a), PM_OK);
    for (int l = 0; l < 2; l++) {
        const analytics_layer *r = analytics_get_layer(a, l);
        assert_int_equal(r->tokens, 32);
        assert_close(r->mean_active, 2.0, 0, TOL, "top-2 active", l);
        assert_true(r->topk_mass > 0.5 - TOL && r->topk_mass <= 1 + TOL);
        assert_true(r->cover99 >= 2 && r->cover99 <= 4);
        assert_true(r->routing_entropy > 0 && r->routing_entropy <= 1 + TOL);
        double sum = 0;
        for (int e = 0; e < 4; e++) sum += r->load[e];
        assert_close(sum, 1.0, 0, TOL, "load sum", l);
    }
    int count;
    const analytics_bucket *b = analytics_get_buckets(a, &count);
    assert_int_equal(count, 3); /* five ids: ranks 1, 2-3, 4-5 */
    assert_int_equal(b[0].occurrences + b[1].occurrences + b[2].occurrences, 32);
    /* A training-mode routing is not an evaluation. */
    float loss;
    assert_int_equal(pm_model_forward(model, batch, batch, 2, 8, true, 1, 0, &loss), PM_OK);
    assert_int_equal(analytics_add_batch(a, model, batch, 2, 8), PM_ERR_STATE);
    analytics_free(a);
    pm_model_free(model);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hand_computed_layer),  cmocka_unit_test(groups_touched), cmocka_unit_test(frequency_buckets),
        cmocka_unit_test(power_of_two_buckets), cmocka_unit_test(bad_input_rejected),
        cmocka_unit_test(files_written),        cmocka_unit_test(tiny_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
