#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model_internal.h"

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

void adamw_step(adamw *opt, pm_model *model, float lr) {
    const adamw_config *cfg = &opt->cfg;
    opt->step++;
    const double correction1 = 1.0 - pow(cfg->beta1, (double)opt->step);
    const double correction2 = 1.0 - pow(cfg->beta2, (double)opt->step);
    float *weights = pm_model_weights(model);
    const float *grads = pm_model_grads(model);
    const int count = pm_model_num_params(model);
    for (int i = 0; i < count; i++) {
        const pm_param *param = pm_model_param(model, i);
        if (param->router && cfg->freeze_router) continue;
        if (!model_param_local(model, i)) continue; /* another rank's expert: its owner updates it */
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

float schedule_lr(lr_schedule schedule, float lr, float min_ratio, long step, long warmup, long total) {
    if (step < warmup) return lr * (float)(step + 1) / (float)warmup;
    if (schedule == SCHEDULE_CONSTANT || total <= warmup) return lr;
    double progress = (double)(step - warmup) / (double)(total - warmup);
    if (progress > 1.0) progress = 1.0;
    const double min_lr = lr * min_ratio;
    if (schedule == SCHEDULE_LINEAR) return (float)(lr - (lr - min_lr) * progress);
    return (float)(min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(3.141592653589793 * progress)));
}

enum { NORM_BLOCK = 1 << 16 };

double gradient_norm(const float *grads, size_t size) {
    const size_t blocks = (size + NORM_BLOCK - 1) / NORM_BLOCK;
    double *partial = malloc(sizeof(double) * (blocks ? blocks : 1));
    double total = 0.0;
    if (!partial) { /* fall back to one serial pass: same result, slower */
        for (size_t i = 0; i < size; i++) total += (double)grads[i] * grads[i];
        return sqrt(total);
    }
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < blocks; b++) {
        const size_t end = (b + 1) * NORM_BLOCK < size ? (b + 1) * NORM_BLOCK : size;
        double sum = 0.0;
        for (size_t i = b * NORM_BLOCK; i < end; i++) sum += (double)grads[i] * grads[i];
        partial[b] = sum;
    }
    for (size_t b = 0; b < blocks; b++) total += partial[b];
    free(partial);
    return sqrt(total);
}

void scale_gradients(float *grads, size_t size, float factor) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < size; i++) grads[i] *= factor;
}
