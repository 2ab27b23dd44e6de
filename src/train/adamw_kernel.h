/*
 * AdamW's update of one range of parameters in fp32: one pass that reads each gradient, weight
 * and pair of moments and writes the weight, the moments and, on request, the weight's bf16
 * copy and a zeroed gradient. AVX-512 where the compiler targets it, else the portable loop;
 * both compute adamw_element's operations in its order (a multiply and an add, never a fused
 * multiply-add, and correctly rounded sqrt and division), so they agree bit for bit and a
 * result does not depend on the CPU or on where a thread's share of a range begins.
 */
#ifndef PM_TRAIN_ADAMW_KERNEL_H
#define PM_TRAIN_ADAMW_KERNEL_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "train/optim.h"

/* The step's constants for one tensor, rounded to float once (adamw_coefficients_of). */
typedef struct {
    float grad_scale;           /* the gradient is used times this (1/accum × the clip factor) */
    float beta1, one_minus_beta1, beta2, one_minus_beta2;
    float inv_sqrt_correction2; /* 1 / sqrt(1 − β2^t): sqrt(v̂) = sqrt(v) · this */
    float eps;
    float step_size;            /* lr / (1 − β1^t), applied to m rather than m̂ = m / (1 − β1^t) */
    float decay_factor;         /* 1 − lr·wd, or exactly 1 for a tensor without decay */
} adamw_coefficients;

/* For update number `step` (1, 2, ...) with learning rate lr; decay says whether the tensor
 * takes cfg's weight decay. The powers and quotients are computed in double. */
adamw_coefficients adamw_coefficients_of(const adamw_config *cfg, long step, float lr, float grad_scale, bool decay);

/*
 * One parameter: g = grad · grad_scale, m = β1 m + (1−β1) g, v = β2 v + (1−β2) g²,
 * w = w (1 − lr wd) − step_size · m / (sqrt(v) / sqrt(1 − β2^t) + eps), which is PyTorch's
 * AdamW (decoupled decay, bias-corrected moments); returns the new weight. Each operation is
 * its own statement so that no compiler fuses a multiply and an add into one rounding, which
 * the AVX-512 path would not do (GCC in ISO C mode, as the build uses, never contracts; clang
 * by default only within one expression).
 */
static inline float adamw_element(const adamw_coefficients *c, float grad, float *m, float *v, float weight) {
    const float g = grad * c->grad_scale;
    const float m_kept = c->beta1 * *m, m_added = c->one_minus_beta1 * g;
    *m = m_kept + m_added;
    const float g_squared = g * g;
    const float v_kept = c->beta2 * *v, v_added = c->one_minus_beta2 * g_squared;
    *v = v_kept + v_added;
    const float root = sqrtf(*v);
    const float scaled_root = root * c->inv_sqrt_correction2;
    const float denominator = scaled_root + c->eps;
    const float numerator = c->step_size * *m;
    const float step = numerator / denominator;
    const float decayed = weight * c->decay_factor;
    return decayed - step;
}

/*
 * weights, grads, m, v: count floats each (one tensor's range). bf16 NULL, or count values that
 * get bf16_from_float of each new weight. zero_grads: each gradient is left 0 once read.
 */
void adamw_update(const adamw_coefficients *c, float *weights, float *grads, float *m, float *v, uint16_t *bf16,
                  bool zero_grads, size_t count);

/* The portable loop, whatever the compiler targets (the tests compare the two paths). */
void adamw_update_portable(const adamw_coefficients *c, float *weights, float *grads, float *m, float *v,
                           uint16_t *bf16, bool zero_grads, size_t count);

#endif
