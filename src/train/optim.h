/* AdamW with decoupled weight decay, learning-rate schedules and global-norm clipping. */
#ifndef PM_TRAIN_OPTIM_H
#define PM_TRAIN_OPTIM_H

#include <stdbool.h>
#include <stddef.h>

#include "probmoe.h"

typedef struct {
    float beta1, beta2, eps, weight_decay;
    bool freeze_router;  /* leave the routing parameters (pm_param.router) as they are */
} adamw_config;

typedef struct {
    adamw_config cfg;
    size_t size;
    float *m, *v;  /* first and second moments, the parameters' layout; one allocation each */
    long step;     /* updates done */
} adamw;

/* 0 or PM_ERR_NOMEM. */
int adamw_init(adamw *opt, const pm_model *model, adamw_config cfg);
void adamw_free(adamw *opt);
/*
 * One update with learning rate lr: m = β1 m + (1−β1) g, v = β2 v + (1−β2) g²,
 * p ← p − lr (m̂ / (sqrt(v̂) + eps) + wd p) with bias-corrected m̂, v̂; wd only for
 * parameters whose pm_param.decay is set (matrices, not norm weights). With freeze_router
 * the routing parameters keep their values (their moments stay 0).
 */
void adamw_step(adamw *opt, pm_model *model, float lr);

typedef enum { SCHEDULE_COSINE, SCHEDULE_LINEAR, SCHEDULE_CONSTANT } lr_schedule;

/* Linear warmup from 0 over `warmup` steps, then decay to lr·min_ratio at step `total`. */
float schedule_lr(lr_schedule schedule, float lr, float min_ratio, long step, long warmup, long total);

/* sqrt(Σ g²) over all gradients, summed in fixed blocks so the result does not depend on the
 * thread count. */
double gradient_norm(const float *grads, size_t size);
void scale_gradients(float *grads, size_t size, float factor);

#endif
