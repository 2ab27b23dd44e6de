/* AdamW with decoupled weight decay, learning-rate schedules and global-norm clipping. */
#ifndef PM_TRAIN_OPTIM_H
#define PM_TRAIN_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* What an update does besides updating the weights and moments; adamw_step_defaults() gives
 * a scale of 1, no copy, the gradients kept. */
typedef struct {
    /* Every gradient is used times this: the trainer's 1/accum times its clip factor, applied
     * in the update's pass instead of passes of their own over the gradients. */
    float grad_scale;
    /* NULL, or pm_model_size(model) values in the weights' layout: every parameter this rank
     * trains (model_param_local) gets bf16_from_float (core/bf16.h) of its weights after the
     * update, frozen routing parameters included, in the same pass. Other ranks' experts are
     * not written. For bf16 matrix products; the fp32 weights stay the master copy. */
    uint16_t *bf16_weights;
    /* The gradients of every parameter this rank trains are left 0, as pm_model_zero_grads
     * would leave them, so the next accumulation needs no pass to clear them. */
    bool zero_grads;
} adamw_step_options;

adamw_step_options adamw_step_defaults(void);

/*
 * One update with learning rate lr, in fp32: g = grad · grad_scale, m = β1 m + (1−β1) g,
 * v = β2 v + (1−β2) g², p ← p (1 − lr wd) − lr m̂ / (sqrt(v̂) + eps) with bias-corrected m̂,
 * v̂ (adamw_kernel.h); wd only for parameters whose pm_param.decay is set (matrices, not norm
 * weights). With freeze_router the routing parameters keep their values (their moments stay
 * 0). Other ranks' experts (expert parallelism) are left to their owners. options NULL: the
 * defaults. Each value depends only on its own inputs, never on the thread count.
 */
void adamw_step(adamw *opt, pm_model *model, float lr, const adamw_step_options *options);

typedef enum { SCHEDULE_COSINE, SCHEDULE_LINEAR, SCHEDULE_CONSTANT } lr_schedule;

/* Linear warmup from 0 over `warmup` steps, then decay to lr·min_ratio at step `total`. */
float schedule_lr(lr_schedule schedule, float lr, float min_ratio, long step, long warmup, long total);

/* Σ g² over count values in double (each square exact), summed in fixed blocks of fixed lanes
 * so that the result depends neither on the thread count nor on the CPU's vector width. */
double sum_of_squares(const float *values, size_t count);
/* sqrt(sum_of_squares(grads, size)). */
double gradient_norm(const float *grads, size_t size);

#endif
