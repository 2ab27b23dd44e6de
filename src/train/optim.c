#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/bf16.h"
#include "core/error.h"
#include "model/model_internal.h"
#include "train/adamw_kernel.h"

int adamw_init(adamw *opt, const pm_model *model, adamw_config cfg) {
    opt->cfg = cfg;
    opt->size = pm_model_size(model);
    opt->step = 0;
    opt->m = calloc(opt->size, sizeof(float));
    opt->v = calloc(opt->size, sizeof(float));
    if (!opt->m || !opt->v) {
        adamw_free(opt);
        return pm_fail(PM_ERR_NOMEM, "AdamW: out of memory for %zu moments", opt->size);
    }
    return PM_OK;
}

void adamw_free(adamw *opt) {
    free(opt->m);
    free(opt->v);
    opt->m = opt->v = NULL;
}

adamw_step_options adamw_step_defaults(void) { return (adamw_step_options){1.0f, NULL, false}; }

/* Floats a thread takes at a time (64 KiB of each array): enough work that taking it costs
 * little, little enough that the threads share out a tensor of a few of them. */
enum { ADAMW_CHUNK = 1 << 14 };

void adamw_step(adamw *opt, pm_model *model, float lr, const adamw_step_options *options) {
    const adamw_step_options o = options ? *options : adamw_step_defaults();
    const adamw_config *cfg = &opt->cfg;
    opt->step++;
    const adamw_coefficients with_decay = adamw_coefficients_of(cfg, opt->step, lr, o.grad_scale, true);
    const adamw_coefficients without_decay = adamw_coefficients_of(cfg, opt->step, lr, o.grad_scale, false);
    float *weights = pm_model_weights(model), *grads = pm_model_grads(model);
    const int count = pm_model_num_params(model);
    /* One parallel region whose threads take each tensor's chunks as they come free, with no
     * barrier between tensors: the many small tensors (norm weights, routers) then cost neither
     * a fork and join each nor a thread idling while the other works. */
#pragma omp parallel
    for (int i = 0; i < count; i++) {
        if (!model_param_local(model, i)) continue; /* another rank's expert: its owner updates it */
        const pm_param *param = pm_model_param(model, i);
        const bool frozen = param->router && cfg->freeze_router;
        const adamw_coefficients *c = param->decay ? &with_decay : &without_decay;
        const size_t end = param->offset + param->count, chunks = (param->count + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
#pragma omp for schedule(dynamic) nowait
        for (size_t k = 0; k < chunks; k++) {
            const size_t at = param->offset + k * ADAMW_CHUNK, n = end - at < ADAMW_CHUNK ? end - at : ADAMW_CHUNK;
            uint16_t *copy = o.bf16_weights ? o.bf16_weights + at : NULL;
            if (!frozen) {
                adamw_update(c, weights + at, grads + at, opt->m + at, opt->v + at, copy, o.zero_grads, n);
                continue;
            }
            /* frozen: the weights stay, but the copy and the cleared gradients are still due */
            if (copy) bf16_from_floats(copy, weights + at, n);
            if (o.zero_grads) memset(grads + at, 0, sizeof(float) * n);
        }
    }
}

float schedule_lr(lr_schedule schedule, float lr, float min_ratio, long step, long warmup, long total) {
    if (step < warmup) return lr * (float)(step + 1) / (float)warmup;
    if (schedule == SCHEDULE_CONSTANT || total <= warmup) return lr;
    double progress = (double)(step - warmup) / (double)(total - warmup);
    if (progress > 1.0) progress = 1.0;
    const double min_lr = lr * min_ratio;
    if (schedule == SCHEDULE_LINEAR) return (float)(lr - (lr - min_lr) * progress);
    return (float)(min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(3.141592653589793 * progress)));
}

/* Floats per block of the sum, and blocks summed per parallel loop (their partial sums on the
 * stack). The blocks are fixed by the range alone, and their sums are added in order. */
enum { NORM_BLOCK = 1 << 16, NORM_GROUP = 256, NORM_LANES = 16 };

/* Lane k sums the squares of the values ≡ k (mod 16); the compiler keeps the lanes in vector
 * registers (2 AVX-512 or 4 AVX2 ones), which it could not do with one running sum without
 * reordering additions. The lanes are then added pairwise. */
static double block_sum_of_squares(const float *values, size_t count) {
    double lanes[NORM_LANES] = {0.0};
    size_t i = 0;
    for (; i + NORM_LANES <= count; i += NORM_LANES)
        for (int k = 0; k < NORM_LANES; k++) lanes[k] += (double)values[i + k] * values[i + k];
    for (size_t k = 0; i + k < count; k++) lanes[k] += (double)values[i + k] * values[i + k];
    for (int width = NORM_LANES / 2; width > 0; width /= 2)
        for (int k = 0; k < width; k++) lanes[k] += lanes[k + width];
    return lanes[0];
}

double sum_of_squares(const float *values, size_t count) {
    const size_t blocks = (count + NORM_BLOCK - 1) / NORM_BLOCK;
    double total = 0.0;
    for (size_t first = 0; first < blocks; first += NORM_GROUP) {
        const size_t group = blocks - first < NORM_GROUP ? blocks - first : NORM_GROUP;
        double partial[NORM_GROUP];
#pragma omp parallel for schedule(static) if (group > 1)
        for (size_t b = 0; b < group; b++) {
            const size_t begin = (first + b) * NORM_BLOCK, end = begin + NORM_BLOCK < count ? begin + NORM_BLOCK : count;
            partial[b] = block_sum_of_squares(values + begin, end - begin);
        }
        for (size_t b = 0; b < group; b++) total += partial[b];
    }
    return total;
}

double gradient_norm(const float *grads, size_t size) { return sqrt(sum_of_squares(grads, size)); }
