/*
 * The optimizer's passes (train/optim.h, train/adamw_kernel.h):
 * - AdamW in fp32 against a double-precision AdamW over a small model's parameters (tensors
 *   with and without decay, sizes that are not multiples of the vector width or of a thread's
 *   chunk), six steps of gradients from 1e-6 to 2 in scale, within a bound that follows each
 *   value's float rounding step by step;
 * - the gradient scale folded into the update against scaling the gradients first in two
 *   passes (1/accum, then the clip factor), as the trainer did;
 * - the bf16 copy is bf16_from_float of the new weights bit for bit, for every tensor (frozen
 *   routing tensors too), and the gradients are zeroed only on request;
 * - the AVX-512 kernel against the portable one bit for bit, and the step with 1, 2 and 3
 *   threads bit for bit;
 * - the sum of squares against long double, across block and group boundaries, and the same
 *   with 1 and 2 threads.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tiny_model.h"
#include "core/bf16.h"
#include "train/adamw_kernel.h"
#include "train/optim.h"

enum { STEPS = 6 };
static const float LR = 1e-2f;
/* each step's gradient scale: eps dominates at 1e-6 */
static const double GRAD_SCALES[STEPS] = {1.0, 1e-3, 0.3, 1e-6, 2.0, 0.05};

/* Vocabulary 1000 × hidden 40: an embedding of 40000 floats (2 chunks and a part); hidden 40
 * gives norm weights of 40 floats (2 vectors and a part). */
static pm_model *make_model(void) {
    pm_model_config cfg = tiny_model_config(PM_ROUTER_TOPK);
    cfg.vocab_size = 1000;
    cfg.hidden_size = 40;
    cfg.max_position_embeddings = 16;
    pm_model *model = pm_model_create(&cfg, 1, 4);
    if (!model) fail_msg("%s", pm_last_error());
    pm_rng rng;
    pm_rng_init(&rng, 3, 0);
    random_normal(&rng, pm_model_weights(model), (int)pm_model_size(model), 0.5);
    return model;
}

static adamw_config test_config(bool freeze_router) { return (adamw_config){0.9f, 0.95f, 1e-8f, 0.1f, freeze_router}; }

/* Step `step`'s raw gradients (the same for every model of a test), a few exactly 0. */
static void fill_grads(float *grads, size_t size, int step) {
    pm_rng rng;
    pm_rng_init(&rng, 5, (uint64_t)step);
    random_normal(&rng, grads, (int)size, GRAD_SCALES[step]);
    for (size_t j = 0; j < size; j += 97) grads[j] = 0.0f;
}

/* AdamW in double as the old optimizer wrote it, p ← p − lr (m̂ / (sqrt(v̂) + eps) + wd p),
 * with each value's allowed error: per step, a few float roundings of the terms that make it
 * (|m|'s bound follows the moment of |g|, since m's terms may cancel). */
typedef struct {
    double *w, *m, *v, *abs_m, *w_error;
} reference;

static reference reference_of(const pm_model *model, const float *weights) {
    const size_t size = pm_model_size(model);
    reference r = {malloc(sizeof(double) * size), calloc(size, sizeof(double)), calloc(size, sizeof(double)),
                   calloc(size, sizeof(double)), calloc(size, sizeof(double))};
    for (size_t j = 0; j < size; j++) r.w[j] = weights[j];
    return r;
}

static void reference_free(reference *r) {
    free(r->w);
    free(r->m);
    free(r->v);
    free(r->abs_m);
    free(r->w_error);
}

static void reference_step(reference *r, const pm_model *model, const adamw_config *cfg, long step, double lr,
                           double grad_scale, const float *grads) {
    const double beta1 = cfg->beta1, beta2 = cfg->beta2;
    const double correction1 = 1.0 - pow(beta1, (double)step), correction2 = 1.0 - pow(beta2, (double)step);
    for (int i = 0; i < pm_model_num_params(model); i++) {
        const pm_param *param = pm_model_param(model, i);
        if (param->router && cfg->freeze_router) continue;
        const double decay = param->decay ? cfg->weight_decay : 0.0;
        for (size_t j = param->offset; j < param->offset + param->count; j++) {
            const double g = grads[j] * grad_scale;
            r->m[j] = beta1 * r->m[j] + (1.0 - beta1) * g;
            r->v[j] = beta2 * r->v[j] + (1.0 - beta2) * g * g;
            r->abs_m[j] = beta1 * r->abs_m[j] + (1.0 - beta1) * fabs(g);
            const double denominator = sqrt(r->v[j] / correction2) + cfg->eps;
            r->w[j] -= lr * (r->m[j] / correction1 / denominator + decay * r->w[j]);
            /* the update's float rounding (m to 2e-6 of |m|'s bound, sqrt(v) to 1e-6, the
             * products and quotient) and the weight's own (decay factor, product, difference) */
            r->w_error[j] += 5e-6 * lr * r->abs_m[j] / correction1 / denominator + 2e-7 * fabs(r->w[j]);
        }
    }
}

static void check_against_reference(const reference *r, pm_model *model, const adamw *opt, int step) {
    const float *w = pm_model_weights(model);
    for (size_t j = 0; j < pm_model_size(model); j++) {
        if (!(fabs(w[j] - r->w[j]) <= r->w_error[j] + 1e-30))
            fail_msg("step %d, weight %zu: %.9g, reference %.9g (allowed %.3g)", step, j, (double)w[j], r->w[j],
                     r->w_error[j]);
        if (!(fabs(opt->m[j] - r->m[j]) <= 2e-6 * r->abs_m[j] + 1e-30))
            fail_msg("step %d, m %zu: %.9g, reference %.9g", step, j, (double)opt->m[j], r->m[j]);
        if (!(fabs(opt->v[j] - r->v[j]) <= 2e-6 * r->v[j] + 1e-37))
            fail_msg("step %d, v %zu: %.9g, reference %.9g", step, j, (double)opt->v[j], r->v[j]);
    }
}

static void test_against_double_reference(void **state) {
    (void)state;
    pm_model *model = make_model();
    bool decayed = false, not_decayed = false;
    for (int i = 0; i < pm_model_num_params(model); i++) {
        decayed |= pm_model_param(model, i)->decay;
        not_decayed |= !pm_model_param(model, i)->decay;
    }
    assert_true(decayed && not_decayed);
    const adamw_config cfg = test_config(false);
    adamw opt;
    assert_int_equal(adamw_init(&opt, model, cfg), PM_OK);
    reference r = reference_of(model, pm_model_weights(model));
    float *raw = malloc(sizeof(float) * pm_model_size(model));
    for (int step = 0; step < STEPS; step++) {
        fill_grads(raw, pm_model_size(model), step);
        memcpy(pm_model_grads(model), raw, sizeof(float) * pm_model_size(model));
        adamw_step_options options = adamw_step_defaults();
        options.grad_scale = 0.37f; /* a gradient scale that is not 1, applied in the update */
        adamw_step(&opt, model, LR, &options);
        reference_step(&r, model, &cfg, step + 1, LR, 0.37f, raw);
        check_against_reference(&r, model, &opt, step + 1);
    }
    free(raw);
    reference_free(&r);
    adamw_free(&opt);
    pm_model_free(model);
}

/* The trainer's former passes: the gradients scaled by 1/accum, then by the clip factor, then
 * AdamW; now one factor in the update. The same weights to the float rounding of the two. */
static void test_fused_scale(void **state) {
    (void)state;
    pm_model *first = make_model(), *fused = make_model();
    const adamw_config cfg = test_config(false);
    adamw opt_first, opt_fused;
    assert_int_equal(adamw_init(&opt_first, first, cfg), PM_OK);
    assert_int_equal(adamw_init(&opt_fused, fused, cfg), PM_OK);
    const size_t size = pm_model_size(first);
    reference r = reference_of(first, pm_model_weights(first));
    const int accum = 3;
    for (int step = 0; step < STEPS; step++) {
        const double clip = step % 2 ? 0.6180339887 : 1.0; /* clipped every other step */
        float *grads = pm_model_grads(first);
        fill_grads(grads, size, step);
        memcpy(pm_model_grads(fused), grads, sizeof(float) * size);
        reference_step(&r, first, &cfg, step + 1, LR, clip / accum, grads);
        for (size_t j = 0; j < size; j++) grads[j] *= 1.0f / accum;
        for (size_t j = 0; j < size; j++) grads[j] *= (float)clip;
        adamw_step(&opt_first, first, LR, NULL);
        adamw_step_options options = adamw_step_defaults();
        options.grad_scale = (float)(clip / accum);
        adamw_step(&opt_fused, fused, LR, &options);
        const float *a = pm_model_weights(first), *b = pm_model_weights(fused);
        for (size_t j = 0; j < size; j++)
            if (!(fabs(a[j] - b[j]) <= r.w_error[j]))
                fail_msg("step %d, weight %zu: scaled first %.9g, fused %.9g", step + 1, j, (double)a[j], (double)b[j]);
        check_against_reference(&r, fused, &opt_fused, step + 1);
    }
    reference_free(&r);
    adamw_free(&opt_first);
    adamw_free(&opt_fused);
    pm_model_free(first);
    pm_model_free(fused);
}

/* With freeze_router: the routing tensors keep weights and moments, yet get their bf16 copy and
 * zeroed gradients; every value's copy is the conversion of its fp32 weight, bit for bit. */
static void test_bf16_copy_and_zeroing(void **state) {
    (void)state;
    pm_model *model = make_model();
    adamw opt;
    assert_int_equal(adamw_init(&opt, model, test_config(true)), PM_OK);
    const size_t size = pm_model_size(model);
    uint16_t *copy = malloc(sizeof(uint16_t) * size);
    float *before = malloc(sizeof(float) * size), *grads = malloc(sizeof(float) * size);
    for (int step = 0; step < 3; step++) {
        for (size_t j = 0; j < size; j++) copy[j] = 0xAAAAu; /* whatever is not written stays this */
        memcpy(before, pm_model_weights(model), sizeof(float) * size);
        fill_grads(pm_model_grads(model), size, step);
        memcpy(grads, pm_model_grads(model), sizeof(float) * size);
        adamw_step_options options = adamw_step_defaults();
        options.bf16_weights = copy;
        options.zero_grads = step != 1; /* the middle step keeps them */
        adamw_step(&opt, model, LR, &options);
        const float *w = pm_model_weights(model), *g = pm_model_grads(model);
        for (size_t j = 0; j < size; j++) {
            if (copy[j] != bf16_from_float(w[j]))
                fail_msg("step %d, [%zu]: bf16 0x%04x for %.9g (0x%04x)", step, j, copy[j], (double)w[j],
                         bf16_from_float(w[j]));
            if (options.zero_grads ? g[j] != 0.0f : g[j] != grads[j])
                fail_msg("step %d, gradient %zu is %g (zeroing %s)", step, j, (double)g[j],
                         options.zero_grads ? "on" : "off");
        }
        int routers = 0;
        for (int i = 0; i < pm_model_num_params(model); i++) {
            const pm_param *param = pm_model_param(model, i);
            if (!param->router) continue;
            routers++;
            assert_memory_equal(w + param->offset, before + param->offset, sizeof(float) * param->count);
            for (size_t j = param->offset; j < param->offset + param->count; j++)
                assert_true(opt.m[j] == 0.0f && opt.v[j] == 0.0f);
        }
        assert_true(routers > 0);
    }
    free(copy);
    free(before);
    free(grads);
    adamw_free(&opt);
    pm_model_free(model);
}

static float *random_floats(pm_rng *rng, size_t count, double scale) {
    float *x = malloc(sizeof(float) * (count ? count : 1));
    random_normal(rng, x, (int)count, scale);
    return x;
}

/* The AVX-512 kernel (where built) and the portable loop on the same inputs, lengths 0 to 40
 * and larger, each option: every output bit for bit. */
static void test_kernel_paths_agree(void **state) {
    (void)state;
    pm_rng rng;
    pm_rng_init(&rng, 9, 0);
    enum { MAX = 1000 };
    for (size_t count = 0; count <= MAX; count += count < 40 ? 1 : 480)
        for (int variant = 0; variant < 4; variant++) {
            const bool decay = variant & 1, with_copy = variant & 2;
            const adamw_config cfg = test_config(false);
            const adamw_coefficients c = adamw_coefficients_of(&cfg, 1 + variant, 1e-3f, 0.7f, decay);
            float *g = random_floats(&rng, count, variant == 3 ? 1e-20 : 1.0);
            float *w = random_floats(&rng, count, 1.0), *m = random_floats(&rng, count, 0.1);
            float *v = random_floats(&rng, count, 0.1);
            for (size_t j = 0; j < count; j++) v[j] = v[j] * v[j]; /* a second moment is >= 0 */
            float *g2 = malloc(sizeof(float) * (count + 1)), *w2 = malloc(sizeof(float) * (count + 1)),
                  *m2 = malloc(sizeof(float) * (count + 1)), *v2 = malloc(sizeof(float) * (count + 1));
            memcpy(g2, g, sizeof(float) * count);
            memcpy(w2, w, sizeof(float) * count);
            memcpy(m2, m, sizeof(float) * count);
            memcpy(v2, v, sizeof(float) * count);
            uint16_t *copy = calloc(count + 1, sizeof(uint16_t)), *copy2 = calloc(count + 1, sizeof(uint16_t));
            adamw_update(&c, w, g, m, v, with_copy ? copy : NULL, variant == 1, count);
            adamw_update_portable(&c, w2, g2, m2, v2, with_copy ? copy2 : NULL, variant == 1, count);
            if (memcmp(w, w2, sizeof(float) * count) || memcmp(m, m2, sizeof(float) * count) ||
                memcmp(v, v2, sizeof(float) * count) || memcmp(g, g2, sizeof(float) * count) ||
                memcmp(copy, copy2, sizeof(uint16_t) * count))
                fail_msg("length %zu, variant %d: the kernels differ", count, variant);
            float *arrays[] = {g, w, m, v, g2, w2, m2, v2};
            for (int a = 0; a < 8; a++) free(arrays[a]);
            free(copy);
            free(copy2);
        }
}

/* The same step with 1, 2 and 3 threads: the same weights, moments and copy, bit for bit. */
static void test_thread_count(void **state) {
    (void)state;
    float *want = NULL, *want_m = NULL;
    uint16_t *want_copy = NULL;
    for (int threads = 1; threads <= 3; threads++) {
        omp_set_num_threads(threads);
        pm_model *model = make_model();
        adamw opt;
        assert_int_equal(adamw_init(&opt, model, test_config(false)), PM_OK);
        const size_t size = pm_model_size(model);
        uint16_t *copy = malloc(sizeof(uint16_t) * size);
        for (int step = 0; step < 2; step++) {
            fill_grads(pm_model_grads(model), size, step);
            adamw_step_options options = {0.5f, copy, true};
            adamw_step(&opt, model, LR, &options);
        }
        if (!want) {
            want = malloc(sizeof(float) * size), want_m = malloc(sizeof(float) * size);
            want_copy = malloc(sizeof(uint16_t) * size);
            memcpy(want, pm_model_weights(model), sizeof(float) * size);
            memcpy(want_m, opt.m, sizeof(float) * size);
            memcpy(want_copy, copy, sizeof(uint16_t) * size);
        } else {
            assert_memory_equal(pm_model_weights(model), want, sizeof(float) * size);
            assert_memory_equal(opt.m, want_m, sizeof(float) * size);
            assert_memory_equal(copy, want_copy, sizeof(uint16_t) * size);
        }
        free(copy);
        adamw_free(&opt);
        pm_model_free(model);
    }
    omp_set_num_threads(2);
    free(want);
    free(want_m);
    free(want_copy);
}

/* Around the vector width, one block (65536), and one group of 256 blocks. */
static void test_sum_of_squares(void **state) {
    (void)state;
    static const size_t sizes[] = {0, 1, 15, 16, 17, 1000, 65535, 65536, 65537, 3 * 65536 + 5, 256 * 65536 + 33};
    pm_rng rng;
    pm_rng_init(&rng, 13, 0);
    const size_t most = sizes[sizeof sizes / sizeof sizes[0] - 1];
    float *values = malloc(sizeof(float) * most);
    for (size_t i = 0; i < most; i++) values[i] = (float)(pm_rng_uniform(&rng) - 0.5);
    for (size_t i = 0; i < most; i += 1001) values[i] *= 1e6f; /* a wide range of squares */
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        long double want = 0.0L;
        for (size_t i = 0; i < sizes[s]; i++) want += (long double)values[i] * values[i];
        omp_set_num_threads(1);
        const double one = sum_of_squares(values, sizes[s]);
        omp_set_num_threads(2);
        const double two = sum_of_squares(values, sizes[s]);
        assert_true(memcmp(&one, &two, sizeof one) == 0);
        assert_close(one, (double)want, 1e-12, 0.0, "sum of squares", (int)s);
        assert_true(gradient_norm(values, sizes[s]) == sqrt(one));
    }
    free(values);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_double_reference), cmocka_unit_test(test_fused_scale),
        cmocka_unit_test(test_bf16_copy_and_zeroing),    cmocka_unit_test(test_kernel_paths_agree),
        cmocka_unit_test(test_thread_count),             cmocka_unit_test(test_sum_of_squares),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
