/*
 * fp32 matrix products through oneDNN (nn/matmul_onednn.c) and the choice between OpenBLAS and
 * oneDNN (nn/matmul_choice.c, pm_model_set_fp32_matmul, train's --fp32-matmul).
 *  - Each of the three products through oneDNN equals OpenBLAS's to fp32 rounding (1e-5 of the
 *    result's norm) for several shapes, empty and single rows and odd sizes among them; the
 *    forward product overwrites its output (NaN before), the backward ones add to theirs.
 *  - linear_forward / linear_backward without a bf16 weight run what the context chose, bit for
 *    bit; auto times each product and shape once and keeps its choice.
 *  - Training the tiny model with oneDNN everywhere gives OpenBLAS's losses to 1e-4 over a few
 *    AdamW steps; going back to OpenBLAS gives a fresh model's results bit for bit.
 * Without oneDNN in the build, onednn and auto are refused with what to install.
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model/model_internal.h"
#include "nn/nn.h"
#include "tiny_model.h"
#include "train/optim.h"

static void fill(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(seed >> 11) / 9007199254740992.0 - 0.5);
    }
}

/* ‖got − want‖ / ‖want‖ (0 when both are empty). */
static double relative_difference(const float *got, const float *want, size_t n) {
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < n; i++) {
        diff += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        norm += (double)want[i] * want[i];
    }
    return norm > 0.0 ? sqrt(diff / norm) : sqrt(diff);
}

static void check_product(matmul_bf16 *ctx, matmul_product kind, int T, int K, int N) {
    const size_t a_count = kind == MATMUL_FORWARD ? (size_t)T * K : (size_t)T * N;
    const size_t b_count = kind == MATMUL_WEIGHTS ? (size_t)T * K : (size_t)N * K;
    const size_t count = matmul_product_count(kind, T, K, N);
    float *a = malloc(sizeof(float) * (a_count + 1)), *b = malloc(sizeof(float) * (b_count + 1));
    float *blas = malloc(sizeof(float) * (count + 1)), *dnnl = malloc(sizeof(float) * (count + 1));
    float *before = malloc(sizeof(float) * (count + 1));
    fill(a, a_count, 1 + (uint64_t)T);
    fill(b, b_count, 2 + (uint64_t)K);
    if (kind == MATMUL_FORWARD)
        for (size_t i = 0; i < count; i++) before[i] = NAN; /* overwritten, never read */
    else
        fill(before, count, 3 + (uint64_t)N); /* added to */
    memcpy(blas, before, sizeof(float) * count);
    memcpy(dnnl, before, sizeof(float) * count);
    matmul_blas_product(kind, blas, a, b, T, K, N);
    if (!matmul_dnnl_product(ctx, kind, dnnl, a, b, T, K, N))
        fail_msg("%s T=%d K=%d N=%d: oneDNN could not run it", matmul_product_name(kind), T, K, N);
    const double relative = relative_difference(dnnl, blas, count);
    if (!(relative <= 1e-5))
        fail_msg("%s T=%d K=%d N=%d: oneDNN differs from OpenBLAS by %.3g of the norm", matmul_product_name(kind), T, K,
                 N, relative);
    /* the product itself (without what was there) agrees too, so += really added it */
    if (kind != MATMUL_FORWARD && count > 0 && T > 0 && K > 0) {
        double diff = 0.0, norm = 0.0;
        for (size_t i = 0; i < count; i++) {
            const double got = (double)dnnl[i] - before[i], want = (double)blas[i] - before[i];
            diff += (got - want) * (got - want);
            norm += want * want;
        }
        if (!(norm > 0.0 && sqrt(diff / norm) <= 1e-5))
            fail_msg("%s T=%d K=%d N=%d: oneDNN's increment differs from OpenBLAS's (%.3g of its norm %.3g)",
                     matmul_product_name(kind), T, K, N, sqrt(diff / (norm > 0.0 ? norm : 1.0)), sqrt(norm));
    }
    free(a), free(b), free(blas), free(dnnl), free(before);
}

static void test_products_match_openblas(void **state) {
    (void)state;
    if (!matmul_bf16_available()) skip();
    omp_set_num_threads(2);
    matmul_bf16 *ctx = matmul_bf16_create();
    assert_non_null(ctx);
    /* rows, in, out: empty and single rows, odd sizes, one wider than a cache block, and
     * row counts that change between calls of one primitive */
    static const int shapes[][3] = {{0, 8, 5},   {1, 16, 7},  {1, 1, 1},     {37, 48, 29}, {64, 33, 65},
                                    {130, 64, 17}, {7, 64, 17}, {3, 0, 4},   {257, 96, 160}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int kind = 0; kind < MATMUL_PRODUCTS; kind++)
            check_product(ctx, (matmul_product)kind, shapes[s][0], shapes[s][1], shapes[s][2]);
    matmul_bf16_free(ctx);
}

enum { T = 45, K = 40, N = 23 };

/* linear_forward and linear_backward (no bf16 weight) with ctx's choice: out, din and dw
 * from the same starting values each time. */
static void linear_products(matmul_bf16 *ctx, float *out, float *din, float *dw) {
    float in[T * K], w[N * K], dout[T * N];
    fill(in, T * K, 5);
    fill(w, N * K, 6);
    fill(dout, T * N, 7);
    fill(din, T * K, 8);
    fill(dw, N * K, 9);
    linear_forward(ctx, out, in, w, NULL, T, K, N);
    linear_backward(ctx, din, dw, dout, in, w, NULL, T, K, N);
}

static void test_linear_follows_the_choice(void **state) {
    (void)state;
    if (!matmul_bf16_available()) skip();
    omp_set_num_threads(2);
    matmul_bf16 *ctx = matmul_bf16_create();
    assert_non_null(ctx);
    static float out[3][T * N], din[3][T * K], dw[3][N * K], want_out[T * N], want_din[T * K], want_dw[N * K];
    linear_products(NULL, want_out, want_din, want_dw); /* no context: OpenBLAS */
    linear_products(ctx, out[0], din[0], dw[0]);        /* a new context: OpenBLAS */
    assert_memory_equal(out[0], want_out, sizeof want_out);
    assert_memory_equal(din[0], want_din, sizeof want_din);
    assert_memory_equal(dw[0], want_dw, sizeof want_dw);
    matmul_set_fp32(ctx, PM_FP32_MATMUL_ONEDNN);
    linear_products(ctx, out[1], din[1], dw[1]);
    assert_true(relative_difference(out[1], want_out, T * N) <= 1e-5);
    assert_true(relative_difference(din[1], want_din, T * K) <= 1e-5);
    assert_true(relative_difference(dw[1], want_dw, N * K) <= 1e-5);
    /* what oneDNN's products give called directly, from the same starting values */
    static float direct_out[T * N], direct_din[T * K], direct_dw[N * K], in[T * K], w[N * K], dout[T * N];
    fill(in, T * K, 5);
    fill(w, N * K, 6);
    fill(dout, T * N, 7);
    fill(direct_din, T * K, 8);
    fill(direct_dw, N * K, 9);
    assert_true(matmul_dnnl_product(ctx, MATMUL_FORWARD, direct_out, in, w, T, K, N));
    assert_true(matmul_dnnl_product(ctx, MATMUL_DATA, direct_din, dout, w, T, K, N));
    assert_true(matmul_dnnl_product(ctx, MATMUL_WEIGHTS, direct_dw, dout, in, T, K, N));
    assert_memory_equal(out[1], direct_out, sizeof direct_out);
    assert_memory_equal(din[1], direct_din, sizeof direct_din);
    assert_memory_equal(dw[1], direct_dw, sizeof direct_dw);
    /* auto: each product timed once, then run by the faster, bit for bit that library's */
    matmul_set_fp32(ctx, PM_FP32_MATMUL_AUTO);
    linear_products(ctx, out[2], din[2], dw[2]);
    matmul_site sites[4];
    assert_int_equal(matmul_timed_sites(ctx, sites, 4), MATMUL_PRODUCTS);
    const float *results[3] = {out[2], din[2], dw[2]}, *blas[3] = {want_out, want_din, want_dw};
    const float *onednn[3] = {out[1], din[1], dw[1]};
    for (int i = 0; i < MATMUL_PRODUCTS; i++) {
        const matmul_site *site = &sites[i];
        assert_int_equal(site->kind, i);
        assert_int_equal(site->k, K);
        assert_int_equal(site->n, N);
        assert_int_equal(site->rows, T);
        assert_true(site->openblas_gflops > 0.0 && site->onednn_gflops > 0.0);
        assert_int_equal(site->onednn, site->onednn_gflops > (1.0 + MATMUL_ONEDNN_MARGIN) * site->openblas_gflops);
        const size_t bytes = sizeof(float) * matmul_product_count((matmul_product)i, T, K, N);
        assert_memory_equal(results[i], site->onednn ? onednn[i] : blas[i], bytes);
        print_message("auto, %s T=%d K=%d N=%d: OpenBLAS %.2f GFLOP/s, oneDNN %.2f: %s\n",
                      matmul_product_name(site->kind), T, K, N, site->openblas_gflops, site->onednn_gflops,
                      site->onednn ? "oneDNN" : "OpenBLAS");
    }
    linear_products(ctx, out[2], din[2], dw[2]); /* timed once only */
    assert_int_equal(matmul_timed_sites(ctx, sites, 4), MATMUL_PRODUCTS);
    matmul_bf16_free(ctx);
}

enum { B = 3, S = 16, STEPS = 4 };

/* STEPS AdamW steps of the tiny model from the same weights, with fp32 products by `choice`;
 * the losses, and the final weights in weights (the model's size). */
static void train_steps(pm_fp32_matmul choice, float losses[STEPS], float *weights, bool switch_back) {
    pm_model_config cfg = tiny_model_config(PM_ROUTER_PROBMOE);
    pm_model *model = pm_model_create(&cfg, B, S);
    assert_non_null(model);
    pm_model_init_weights(model, 11);
    assert_int_equal(pm_model_set_fp32_matmul(model, choice), PM_OK);
    assert_int_equal(pm_model_get_fp32_matmul(model), choice);
    if (switch_back) { /* oneDNN, then OpenBLAS again: as if it had never been set */
        assert_non_null(model->bf16);
        assert_int_equal(pm_model_set_fp32_matmul(model, PM_FP32_MATMUL_OPENBLAS), PM_OK);
        assert_null(model->bf16);
    }
    int32_t tokens[B * S], targets[B * S];
    for (int i = 0; i < B * S; i++) {
        tokens[i] = (i * 13 + 5) % cfg.vocab_size;
        targets[i] = (i * 7 + 2) % cfg.vocab_size;
    }
    adamw optimizer;
    assert_int_equal(adamw_init(&optimizer, model, (adamw_config){0.9f, 0.95f, 1e-8f, 0.1f, false}), 0);
    adamw_step_options update = adamw_step_defaults();
    update.zero_grads = true;
    pm_model_zero_grads(model);
    for (int s = 0; s < STEPS; s++) {
        assert_int_equal(pm_model_forward(model, tokens, targets, B, S, true, 9, (uint64_t)s, &losses[s]), PM_OK);
        assert_int_equal(pm_model_backward(model), PM_OK);
        adamw_step(&optimizer, model, 3e-3f, &update);
    }
    memcpy(weights, pm_model_weights(model), sizeof(float) * pm_model_size(model));
    adamw_free(&optimizer);
    pm_model_free(model);
}

static void test_training_matches_openblas(void **state) {
    (void)state;
    if (!matmul_bf16_available()) skip();
    omp_set_num_threads(2);
    pm_model_config cfg = tiny_model_config(PM_ROUTER_PROBMOE);
    pm_model *sizing = pm_model_create(&cfg, B, S);
    assert_non_null(sizing);
    const size_t size = pm_model_size(sizing);
    pm_model_free(sizing);
    float blas[STEPS], dnnl[STEPS], back[STEPS];
    float *w_blas = malloc(sizeof(float) * size), *w_dnnl = malloc(sizeof(float) * size);
    float *w_back = malloc(sizeof(float) * size);
    train_steps(PM_FP32_MATMUL_OPENBLAS, blas, w_blas, false);
    train_steps(PM_FP32_MATMUL_ONEDNN, dnnl, w_dnnl, false);
    train_steps(PM_FP32_MATMUL_ONEDNN, back, w_back, true);
    for (int s = 0; s < STEPS; s++) {
        print_message("step %d: loss OpenBLAS %.7f, oneDNN %.7f\n", s, blas[s], dnnl[s]);
        if (!(fabsf(dnnl[s] - blas[s]) <= 1e-4f * fabsf(blas[s])))
            fail_msg("step %d: loss with oneDNN %.7f, with OpenBLAS %.7f", s, dnnl[s], blas[s]);
    }
    assert_true(relative_difference(w_dnnl, w_blas, size) <= 1e-4);
    assert_memory_equal(back, blas, sizeof blas);
    assert_memory_equal(w_back, w_blas, sizeof(float) * size);
    free(w_blas), free(w_dnnl), free(w_back);
}

/* The measured table sends none of the tiny model's shapes to oneDNN: no context is made
 * (unless OpenBLAS runs its fallback kernels here, when every product goes to oneDNN), and
 * bf16 and back keeps the choice. */
static void test_measured_and_precision(void **state) {
    (void)state;
    pm_model_config cfg = tiny_model_config(PM_ROUTER_TOPK);
    pm_model *model = pm_model_create(&cfg, 1, 4);
    assert_non_null(model);
    assert_int_equal(pm_model_get_fp32_matmul(model), PM_FP32_MATMUL_OPENBLAS);
    assert_int_equal(pm_model_set_fp32_matmul(model, PM_FP32_MATMUL_MEASURED), PM_OK);
    if (matmul_bf16_available() && openblas_runs_fallback_kernels())
        assert_non_null(model->bf16);
    else
        assert_null(model->bf16);
    assert_int_equal(pm_model_set_fp32_matmul(model, (pm_fp32_matmul)7), PM_ERR_ARG);
    assert_int_equal(pm_model_get_fp32_matmul(model), PM_FP32_MATMUL_MEASURED);
    if (matmul_bf16_available()) {
        assert_int_equal(pm_model_set_fp32_matmul(model, PM_FP32_MATMUL_ONEDNN), PM_OK);
        assert_int_equal(pm_model_set_precision(model, PM_PRECISION_BF16), PM_OK);
        assert_int_equal(pm_model_get_precision(model), PM_PRECISION_BF16);
        assert_int_equal(pm_model_set_precision(model, PM_PRECISION_FP32), PM_OK);
        assert_int_equal(pm_model_get_precision(model), PM_PRECISION_FP32);
        assert_non_null(model->bf16); /* still wanted by the fp32 products */
        assert_int_equal(pm_model_get_fp32_matmul(model), PM_FP32_MATMUL_ONEDNN);
    }
    pm_model_free(model);
}

/* linear_backward_into: din overwritten (NaN before, and 0 for an empty sum), equal to
 * linear_backward's from zero, dw still added to; with OpenBLAS, oneDNN fp32 and bf16. */
static void check_backward_into(matmul_bf16 *ctx, const uint16_t *w16, int n, const char *label) {
    static float in[T * K], w[N * K], dout[T * N], din_sum[T * K], din_into[T * K], dw_sum[N * K], dw_into[N * K];
    fill(in, T * K, 5);
    fill(w, N * K, 6);
    fill(dout, T * N, 7);
    fill(dw_sum, N * K, 9);
    memcpy(dw_into, dw_sum, sizeof dw_into);
    memset(din_sum, 0, sizeof din_sum);
    for (int i = 0; i < T * K; i++) din_into[i] = NAN;
    linear_backward(ctx, din_sum, dw_sum, dout, in, w, w16, T, K, n);
    linear_backward_into(ctx, din_into, dw_into, dout, in, w, w16, T, K, n);
    char name[96];
    snprintf(name, sizeof name, "%s: din :=", label);
    for (int i = 0; i < T * K; i++) assert_close(din_into[i], din_sum[i], 1e-6, 1e-6, name, i);
    snprintf(name, sizeof name, "%s: dw +=", label);
    for (int i = 0; i < N * K; i++) assert_close(dw_into[i], dw_sum[i], 1e-6, 1e-6, name, i);
}

static void test_backward_into_overwrites(void **state) {
    (void)state;
    check_backward_into(NULL, NULL, N, "openblas");
    check_backward_into(NULL, NULL, 0, "openblas N=0");
    if (!matmul_bf16_available()) return;
    matmul_bf16 *ctx = matmul_bf16_create();
    assert_non_null(ctx);
    matmul_set_fp32(ctx, PM_FP32_MATMUL_ONEDNN);
    check_backward_into(ctx, NULL, N, "onednn fp32");
    static float w[N * K];
    static uint16_t w16[N * K];
    fill(w, N * K, 6);
    float_to_bf16(w16, w, N * K);
    check_backward_into(ctx, w16, N, "onednn bf16");
    matmul_bf16_free(ctx);
}

static void test_refused_without_onednn(void **state) {
    (void)state;
    if (matmul_bf16_available()) skip();
    pm_model_config cfg = tiny_model_config(PM_ROUTER_TOPK);
    pm_model *model = pm_model_create(&cfg, 1, 4);
    assert_non_null(model);
    const pm_fp32_matmul refused[] = {PM_FP32_MATMUL_ONEDNN, PM_FP32_MATMUL_AUTO};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pm_model_set_fp32_matmul(model, refused[i]), PM_ERR_ARG);
        assert_non_null(strstr(pm_last_error(), "libdnnl-dev"));
    }
    assert_int_equal(pm_model_get_fp32_matmul(model), PM_FP32_MATMUL_OPENBLAS);
    pm_model_free(model);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_products_match_openblas),   cmocka_unit_test(test_linear_follows_the_choice),
        cmocka_unit_test(test_training_matches_openblas), cmocka_unit_test(test_measured_and_precision),
        cmocka_unit_test(test_refused_without_onednn),    cmocka_unit_test(test_backward_into_overwrites),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
