/*
 * bf16 matrix products (nn/linear.c, pm_model_set_precision, train's --precision bf16).
 *  - Each of the three products equals, to fp32 accumulation error, the exact (double)
 *    product of the bf16-rounded inputs: both inputs are rounded, nothing else is; and it
 *    differs from the fp32 product by bf16 rounding (so the bf16 path really ran).
 *  - One training step of the tiny model in bf16 (sampling routers replaying the fp32 step's
 *    subsets) gives fp32's loss to 1% and every tensor's
 *    gradient to 5% of its norm (bf16 keeps 8 bits: 0.4% per rounding, which sums of
 *    hundreds of terms average but the backward pass compounds over the layers; measured
 *    below 0.9%), softmoe's to 10%: its truncation at tau is a threshold, and the rounding of
 *    the layers below moves router logits that sit on it, which flips a pair in or out
 *    (measured 6%).
 *  - A 200-step bf16 run ends with a validation loss within 2% of the fp32 run's.
 *  - With the experts side by side on the context's workers (reserved by
 *    pm_model_set_precision), a step gives one at a time's loss and gradient to 1e-5.
 *  - Switching back to fp32 gives fp32's results bit for bit.
 * Without oneDNN in the build, asking for bf16 is refused with what to install.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/bf16.h"
#include "model/model_internal.h"
#include "moe/moe_internal.h"
#include "nn/nn.h"
#include "tiny_model.h"
#include "train/trainer.h"
#include "word_corpus.h"

static double uniform(uint64_t *state) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*state >> 11) / 9007199254740992.0 - 0.5;
}

static void fill(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) x[i] = (float)uniform(&seed);
}

static double rounded(float x) { return bf16_to_float(bf16_from_float(x)); }

enum { T = 37, K = 48, N = 29 };

/* |got − want| within fp32 accumulation of K terms of size |a||b| (bound: K·2^-23·Σ|ab|);
 * returns the largest difference to the fp32 product, which bf16 rounding must show. */
static double check_against(const float *got, const double *want, const double *magnitude, const float *fp32, int n,
                            const char *what) {
    double from_fp32 = 0.0;
    for (int i = 0; i < n; i++) {
        const double bound = 64.0 * 1.2e-7 * magnitude[i] + 1e-12;
        if (fabs(got[i] - want[i]) > bound)
            fail_msg("%s[%d] = %.9g; the exact product of the rounded inputs is %.9g (bound %.3g)", what, i, got[i],
                     want[i], bound);
        if (fabs(got[i] - fp32[i]) > from_fp32) from_fp32 = fabs(got[i] - fp32[i]);
    }
    return from_fp32;
}

static void test_products_round_inputs_only(void **state) {
    (void)state;
    if (!matmul_bf16_available()) skip();
    matmul_bf16 *ctx = matmul_bf16_create();
    assert_non_null(ctx);
    float *in = malloc(sizeof(float) * T * K), *w = malloc(sizeof(float) * N * K), *dout = malloc(sizeof(float) * T * N);
    uint16_t *w16 = malloc(sizeof(uint16_t) * N * K);
    fill(in, T * K, 1);
    fill(w, N * K, 2);
    fill(dout, T * N, 3);
    float_to_bf16(w16, w, N * K);
    float *out = malloc(sizeof(float) * T * N), *ref32 = malloc(sizeof(float) * T * N);
    double *want = malloc(sizeof(double) * T * K * 2), *mag = malloc(sizeof(double) * T * K * 2);
    /* forward: out = in · wᵀ */
    linear_forward(ctx, out, in, w, w16, T, K, N);
    matmul_forward(ref32, in, w, T, K, N);
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++) {
            double sum = 0.0, abs_sum = 0.0;
            for (int k = 0; k < K; k++) {
                const double p = rounded(in[t * K + k]) * rounded(w[n * K + k]);
                sum += p;
                abs_sum += fabs(p);
            }
            want[t * N + n] = sum;
            mag[t * N + n] = abs_sum;
        }
    assert_true(check_against(out, want, mag, ref32, T * N, "forward") > 1e-5);
    /* backward: din += dout · w, dw += doutᵀ · in, onto non-zero buffers */
    float *din = malloc(sizeof(float) * T * K), *dw = malloc(sizeof(float) * N * K);
    float *din32 = malloc(sizeof(float) * T * K), *dw32 = malloc(sizeof(float) * N * K);
    fill(din, T * K, 4);
    fill(dw, N * K, 5);
    memcpy(din32, din, sizeof(float) * T * K);
    memcpy(dw32, dw, sizeof(float) * N * K);
    double *want_w = malloc(sizeof(double) * N * K), *mag_w = malloc(sizeof(double) * N * K);
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) {
            double sum = din[t * K + k], abs_sum = fabs(din[t * K + k]);
            for (int n = 0; n < N; n++) {
                const double p = rounded(dout[t * N + n]) * rounded(w[n * K + k]);
                sum += p;
                abs_sum += fabs(p);
            }
            want[t * K + k] = sum;
            mag[t * K + k] = abs_sum;
        }
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            double sum = dw[n * K + k], abs_sum = fabs(dw[n * K + k]);
            for (int t = 0; t < T; t++) {
                const double p = rounded(dout[t * N + n]) * rounded(in[t * K + k]);
                sum += p;
                abs_sum += fabs(p);
            }
            want_w[n * K + k] = sum;
            mag_w[n * K + k] = abs_sum;
        }
    linear_backward(ctx, din, dw, dout, in, w, w16, T, K, N);
    matmul_backward(din32, dw32, dout, in, w, T, K, N);
    assert_true(check_against(din, want, mag, din32, T * K, "din") > 1e-5);
    assert_true(check_against(dw, want_w, mag_w, dw32, N * K, "dweight") > 1e-5);
    /* a second call with other rows reuses nothing stale (primitives are per shape) */
    linear_forward(ctx, out, in, w, w16, T - 5, K, N);
    matmul_forward(ref32, in, w, T - 5, K, N);
    for (int i = 0; i < (T - 5) * N; i++) assert_true(fabs(out[i] - ref32[i]) < 0.05);
    free(in), free(w), free(dout), free(w16), free(out), free(ref32), free(want), free(mag);
    free(din), free(dw), free(din32), free(dw32), free(want_w), free(mag_w);
    matmul_bf16_free(ctx);
}

enum { B = 3, S = 16 };

/* One forward and backward: the loss and a copy of the gradient. */
static float step(pm_model *model, const int32_t *tokens, const int32_t *targets, float *grads) {
    pm_model_zero_grads(model);
    float loss;
    assert_int_equal(pm_model_forward(model, tokens, targets, B, S, true, 9, 0, &loss), PM_OK);
    assert_int_equal(pm_model_backward(model), PM_OK);
    memcpy(grads, pm_model_grads(model), sizeof(float) * pm_model_size(model));
    return loss;
}

/* The subsets a step sampled, per MoE layer, to replay in the next steps: a sampling router
 * would otherwise draw other subsets from bf16's slightly different logits, and the comparison
 * would depend on whether a draw sits near a boundary. */
typedef struct {
    int layers;
    int *offsets[8], *experts[8];
} recorded_samples;

static void record_samples(recorded_samples *r, const pm_model *model) {
    r->layers = pm_model_moe_layers(pm_model_get_config(model));
    assert_true(r->layers <= 8);
    for (int m = 0; m < r->layers; m++) {
        const pm_routing *routing = pm_model_routing(model, m);
        const int tokens = routing->num_tokens, pairs = routing->offsets[tokens];
        r->offsets[m] = malloc(sizeof(int) * (size_t)(tokens + 1));
        r->experts[m] = malloc(sizeof(int) * (size_t)(pairs > 0 ? pairs : 1));
        memcpy(r->offsets[m], routing->offsets, sizeof(int) * (size_t)(tokens + 1));
        memcpy(r->experts[m], routing->experts, sizeof(int) * (size_t)pairs);
    }
}

static bool replay_samples(void *user, int m, int tokens, const int **offsets, const int **experts) {
    (void)tokens;
    const recorded_samples *r = user;
    *offsets = r->offsets[m];
    *experts = r->experts[m];
    return true;
}

static void free_samples(recorded_samples *r) {
    for (int m = 0; m < r->layers; m++) free(r->offsets[m]), free(r->experts[m]);
}

static void check_step_of(pm_model_config cfg, const char *name) {
    const pm_router_kind kind = cfg.router.kind;
    pm_model *model = pm_model_create(&cfg, B, S);
    assert_non_null(model);
    pm_model_init_weights(model, 11);
    tiny_model_set_biases(model);
    int32_t tokens[B * S], targets[B * S];
    for (int i = 0; i < B * S; i++) {
        tokens[i] = (i * 13 + 5) % cfg.vocab_size;
        targets[i] = (i * 7 + 2) % cfg.vocab_size;
    }
    const size_t size = pm_model_size(model);
    float *g32 = malloc(sizeof(float) * size), *g16 = malloc(sizeof(float) * size), *again = malloc(sizeof(float) * size);
    const float loss32 = step(model, tokens, targets, g32);
    recorded_samples samples = {0};
    if (pm_router_samples(&cfg.router)) {
        record_samples(&samples, model);
        pm_model_set_routing_source(model, replay_samples, &samples);
    }
    assert_int_equal(pm_model_set_precision(model, PM_PRECISION_BF16), PM_OK);
    assert_int_equal(pm_model_get_precision(model), PM_PRECISION_BF16);
    const float loss16 = step(model, tokens, targets, g16);
    if (fabsf(loss16 - loss32) > 0.01f * fabsf(loss32))
        fail_msg("%s: bf16 loss %.6f, fp32 %.6f", name, loss16, loss32);
    assert_true(loss16 != loss32); /* the bf16 products ran */
    double worst = 0.0, all_diff = 0.0, all_norm = 0.0;
    const bool threshold = kind == PM_ROUTER_SOFTMOE;
    for (int p = 0; p < pm_model_num_params(model); p++) {
        const pm_param *param = pm_model_param(model, p);
        double diff = 0.0, norm = 0.0;
        for (size_t i = param->offset; i < param->offset + param->count; i++) {
            diff += ((double)g16[i] - g32[i]) * ((double)g16[i] - g32[i]);
            norm += (double)g32[i] * g32[i];
        }
        all_diff += diff;
        all_norm += norm;
        if (norm < 1e-20) continue; /* an expert no token chose */
        const double relative = sqrt(diff / norm);
        if (relative > worst) worst = relative;
        if (!threshold && relative > 0.05)
            fail_msg("%s: %s's bf16 gradient differs by %.3g of its norm", name, param->name,
                     relative);
    }
    const double whole = sqrt(all_diff / all_norm);
    print_message("%s: bf16 loss %.6f vs fp32 %.6f; tensors' gradients within %.3g of their norms, the whole "
                  "gradient within %.3g\n", name, loss16, loss32, worst, whole);
    if (whole > 0.05) fail_msg("%s: the bf16 gradient differs by %.3g of its norm", name, whole);
    /* the experts side by side, on the context's workers (one per thread, with room for the
     * largest expert side by side takes: reserved with the precision), against one at a time */
    size_t room = 0;
    assert_true(matmul_bf16_workers(model->bf16, &room) >= omp_get_max_threads());
    assert_true(room >= moe_side_by_side_elements(cfg.hidden_size, cfg.intermediate_size));
    float *g_side = malloc(sizeof(float) * size);
    moe_set_expert_schedule(MOE_EXPERTS_ONE_AT_A_TIME);
    const float loss_one = step(model, tokens, targets, again);
    assert_false(moe_experts_ran_side_by_side());
    moe_set_expert_schedule(MOE_EXPERTS_SIDE_BY_SIDE);
    const float loss_side = step(model, tokens, targets, g_side);
    assert_true(moe_experts_ran_side_by_side());
    moe_set_expert_schedule(MOE_EXPERTS_AUTO);
    double side_diff = 0.0, side_norm = 0.0;
    for (size_t i = 0; i < size; i++) {
        side_diff += ((double)g_side[i] - again[i]) * ((double)g_side[i] - again[i]);
        side_norm += (double)again[i] * again[i];
    }
    if (fabsf(loss_side - loss_one) > 1e-6f * fabsf(loss_one) || sqrt(side_diff / side_norm) > 1e-5)
        fail_msg("%s: bf16 with the experts side by side: loss %.7f (one at a time %.7f), gradient within %.3g of its "
                 "norm", name, loss_side, loss_one, sqrt(side_diff / side_norm));
    free(g_side);
    pm_model_set_routing_source(model, NULL, NULL); /* fp32 again draws as it did: bit for bit */
    free_samples(&samples);
    assert_int_equal(pm_model_set_precision(model, PM_PRECISION_FP32), PM_OK);
    const float loss_back = step(model, tokens, targets, again);
    assert_true(loss_back == loss32);
    assert_memory_equal(again, g32, sizeof(float) * size);
    free(g32), free(g16), free(again);
    pm_model_free(model);
}

static void check_step(pm_router_kind kind) { check_step_of(tiny_model_config(kind), pm_router_kind_name(kind)); }

static void test_step_matches_fp32(void **state) {
    (void)state;
    if (!matmul_bf16_available()) skip();
    omp_set_num_threads(2);
    for (int kind = 0; kind < pm_router_kind_count(); kind++) check_step((pm_router_kind)kind);
    /* the other families' parts in bf16: biases, the shared expert's products, tied lm_head, dense
     * layers' MLPs */
    check_step_of(tiny_family_config(PM_ARCH_QWEN2_MOE, PM_ROUTER_PROBMOE), "qwen2_moe");
    check_step_of(tiny_family_config(PM_ARCH_MIXTRAL, PM_ROUTER_PROBMOE), "mixtral");
    check_step_of(tiny_dense_config(PM_ROUTER_PROBMOE), "qwen2_moe with dense layers");
}

static char work[64];

static double train_for(pm_precision precision, const char *name) {
    char data[128], out[160];
    snprintf(data, sizeof data, "%s/corpus.txt", work);
    snprintf(out, sizeof out, "%s/%s", work, name);
    pm_model_config cfg = tiny_model_config(PM_ROUTER_PROBMOE);
    cfg.vocab_size = 256;
    train_options opt = train_options_default();
    opt.data_path = data;
    opt.out_dir = out;
    opt.batch = 4;
    opt.seq = 32;
    opt.steps = 200;
    opt.warmup = 10;
    opt.eval_interval = 0;
    opt.eval_batches = 4;
    opt.precision = precision;
    train_result result;
    if (train_run(&cfg, &opt, NULL, &result) < 0) fail_msg("%s", pm_last_error());
    return result.final_val_loss;
}

static void test_200_steps_match_fp32(void **state) {
    (void)state;
    if (!matmul_bf16_available()) skip();
    static const char *const words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat. ", "dog ", "ran\n"};
    snprintf(work, sizeof work, "/tmp/probmoe_bf16_XXXXXX");
    assert_int_equal(word_corpus_make(work, words, 8, 20000, 5), 0);
    omp_set_num_threads(2);
    const double fp32 = train_for(PM_PRECISION_FP32, "fp32"), bf16 = train_for(PM_PRECISION_BF16, "bf16");
    print_message("200 steps: validation loss fp32 %.5f, bf16 %.5f (%.2f%%)\n", fp32, bf16, 100.0 * (bf16 - fp32) / fp32);
    word_corpus_remove(work);
    assert_true(isfinite(bf16));
    if (fabs(bf16 - fp32) > 0.02 * fp32) fail_msg("bf16 validation loss %.5f is not within 2%% of fp32's %.5f", bf16, fp32);
}

static void test_refused_without_onednn(void **state) {
    (void)state;
    if (matmul_bf16_available()) skip();
    pm_model_config cfg = tiny_model_config(PM_ROUTER_TOPK);
    pm_model *model = pm_model_create(&cfg, 1, 4);
    assert_non_null(model);
    assert_int_equal(pm_model_set_precision(model, PM_PRECISION_BF16), PM_ERR_ARG);
    assert_non_null(strstr(pm_last_error(), "libdnnl-dev"));
    assert_int_equal(pm_model_get_precision(model), PM_PRECISION_FP32);
    pm_model_free(model);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_products_round_inputs_only),
        cmocka_unit_test(test_step_matches_fp32),
        cmocka_unit_test(test_200_steps_match_fp32),
        cmocka_unit_test(test_refused_without_onednn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
