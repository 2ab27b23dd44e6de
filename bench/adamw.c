/* The optimizer's passes over a model's parameters (L = 4, H = 256 by default, E = 8,
 * I = 2H: about 14 million): AdamW alone, the former scalar loop in double against the fp32
 * kernel (and with its bf16 copy), and everything from the accumulated gradient to the next
 * step's cleared one: the former five passes (1/accum, norm, clip, AdamW, zeroing) against the
 * two of now (norm; AdamW with the scale folded in and the zeroing). Prints ns per parameter,
 * GB/s of the memory the passes move (every float read and written, per pass) and the ratios,
 * median of the repeats, on all threads. Usage: adamw [hidden] [repeats] */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model_internal.h"
#include "train/optim.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* The baseline: AdamW as it was, each value's update in double, one parallel loop a tensor. */
static void old_adamw_step(adamw *opt, pm_model *model, float lr) {
    const adamw_config *cfg = &opt->cfg;
    opt->step++;
    const double correction1 = 1.0 - pow(cfg->beta1, (double)opt->step);
    const double correction2 = 1.0 - pow(cfg->beta2, (double)opt->step);
    float *weights = pm_model_weights(model);
    const float *grads = pm_model_grads(model);
    for (int i = 0; i < pm_model_num_params(model); i++) {
        const pm_param *param = pm_model_param(model, i);
        if (param->router && cfg->freeze_router) continue;
        if (!model_param_local(model, i)) continue;
        const float decay = param->decay ? cfg->weight_decay : 0.0f;
        const size_t begin = param->offset, end = param->offset + param->count;
#pragma omp parallel for schedule(static)
        for (size_t j = begin; j < end; j++) {
            const float g = grads[j];
            opt->m[j] = cfg->beta1 * opt->m[j] + (1.0f - cfg->beta1) * g;
            opt->v[j] = cfg->beta2 * opt->v[j] + (1.0f - cfg->beta2) * g * g;
            const double m_hat = opt->m[j] / correction1, v_hat = opt->v[j] / correction2;
            weights[j] -= (float)(lr * (m_hat / (sqrt(v_hat) + cfg->eps) + decay * weights[j]));
        }
    }
}

/* The baseline's gradient passes: the norm summed one value at a time in fixed blocks, and the
 * scaling pass. */
static double old_gradient_norm(const float *grads, size_t size) {
    enum { BLOCK = 1 << 16 };
    const size_t blocks = (size + BLOCK - 1) / BLOCK;
    double *partial = malloc(sizeof(double) * (blocks ? blocks : 1)), total = 0.0;
    if (!partial) return NAN;
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < blocks; b++) {
        const size_t end = (b + 1) * BLOCK < size ? (b + 1) * BLOCK : size;
        double sum = 0.0;
        for (size_t i = b * BLOCK; i < end; i++) sum += (double)grads[i] * grads[i];
        partial[b] = sum;
    }
    for (size_t b = 0; b < blocks; b++) total += partial[b];
    free(partial);
    return sqrt(total);
}

static void old_scale(float *grads, size_t size, float factor) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < size; i++) grads[i] *= factor;
}

enum { ACCUM = 2 };
static const float LR = 1e-4f, CLIP = 1e-3f; /* a limit the random gradient exceeds: it clips */

typedef enum { OLD_ADAMW, NEW_ADAMW, NEW_ADAMW_BF16, OLD_PASSES, NEW_PASSES, CASES } bench_case;

static const struct {
    const char *name;
    int bytes; /* per parameter: floats read and written by the case's passes, 2 per bf16 */
} CASE_INFO[CASES] = {
    {"AdamW, scalar double (before)", 28},
    {"AdamW, fp32 kernel", 28},
    {"AdamW, fp32 kernel + bf16 copy", 30},
    {"1/accum, norm, clip, AdamW, zero (before)", 8 + 4 + 8 + 28 + 4},
    {"norm; AdamW with scale and zeroing", 4 + 28 + 4},
};

static void run_case(bench_case which, adamw *opt, pm_model *model, uint16_t *copy) {
    float *grads = pm_model_grads(model);
    const size_t size = pm_model_size(model);
    adamw_step_options options = adamw_step_defaults();
    if (which == OLD_ADAMW) old_adamw_step(opt, model, LR);
    if (which == NEW_ADAMW) adamw_step(opt, model, LR, NULL);
    if (which == NEW_ADAMW_BF16) {
        options.bf16_weights = copy;
        adamw_step(opt, model, LR, &options);
    }
    if (which == OLD_PASSES) {
        old_scale(grads, size, 1.0f / ACCUM);
        const double norm = old_gradient_norm(grads, size);
        if (norm > CLIP) old_scale(grads, size, (float)(CLIP / norm));
        old_adamw_step(opt, model, LR);
        pm_model_zero_grads(model);
    }
    if (which == NEW_PASSES) {
        const double norm = gradient_norm(grads, size) / ACCUM;
        options.grad_scale = (float)((norm > CLIP ? CLIP / norm : 1.0) / ACCUM);
        options.zero_grads = true;
        adamw_step(opt, model, LR, &options);
    }
}

static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const int hidden = argc > 1 && atoi(argv[1]) >= 8 ? atoi(argv[1]) : 256;
    const int repeats = argc > 2 && atoi(argv[2]) > 0 ? atoi(argv[2]) : 7;
    pm_model_config cfg = pm_model_config_default();
    cfg.vocab_size = 1000;
    cfg.hidden_size = hidden;
    cfg.intermediate_size = 2 * hidden;
    cfg.num_layers = 4;
    cfg.num_heads = cfg.num_kv_heads = 4;
    cfg.num_experts = 8;
    cfg.experts_per_token = 2;
    cfg.max_position_embeddings = 8;
    cfg.router = pm_router_config_default(PM_ROUTER_TOPK, cfg.num_experts, cfg.experts_per_token);
    pm_model *model = pm_model_create(&cfg, 1, 1);
    adamw opt;
    if (!model || adamw_init(&opt, model, (adamw_config){0.9f, 0.95f, 1e-8f, 0.1f, false}) < 0) {
        fprintf(stderr, "adamw: %s\n", pm_last_error());
        return 1;
    }
    const size_t size = pm_model_size(model);
    pm_model_init_weights(model, 1);
    float *grads = malloc(sizeof(float) * size);
    uint16_t *copy = malloc(sizeof(uint16_t) * size);
    double *times = malloc(sizeof(double) * (size_t)repeats);
    if (!grads || !copy || !times) {
        fprintf(stderr, "adamw: out of memory for %zu parameters\n", size);
        return 1;
    }
    pm_rng rng;
    pm_rng_init(&rng, 7, 0);
    for (size_t i = 0; i < size; i++) grads[i] = (float)(pm_rng_uniform(&rng) - 0.5) * 1e-3f;
    printf("optimizer passes over %zu parameters (H = %d), %d threads, median of %d\n", size, hidden,
           omp_get_max_threads(), repeats);
    printf("%-44s %9s %8s %9s\n", "passes", "ns/param", "GB/s", "vs before");
    double ns[CASES];
    for (int c = 0; c < CASES; c++) {
        for (int r = -1; r < repeats; r++) { /* the first is a warm-up */
            memcpy(pm_model_grads(model), grads, sizeof(float) * size); /* the passes scale and clear them */
            const double start = now_seconds();
            run_case((bench_case)c, &opt, model, copy);
            if (r >= 0) times[r] = now_seconds() - start;
        }
        qsort(times, (size_t)repeats, sizeof(double), by_value);
        ns[c] = times[repeats / 2] * 1e9 / (double)size;
        const int before = c >= OLD_PASSES ? OLD_PASSES : OLD_ADAMW;
        printf("%-44s %9.3f %8.2f %8.2fx\n", CASE_INFO[c].name, ns[c], CASE_INFO[c].bytes / ns[c],
               c == before ? 1.0 : ns[before] / ns[c]);
    }
    printf("\nGB/s counts every float each pass reads and writes (the bf16 copy 2 bytes a value); "
           "'vs before' is the former path's time over this one's\n");
    free(grads);
    free(copy);
    free(times);
    adamw_free(&opt);
    pm_model_free(model);
    return 0;
}
