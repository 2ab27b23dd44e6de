/*
 * Qwen2-MoE's shared expert: a SwiGLU MLP of its own width S that every token runs, scaled by
 * sigmoid(x · gateᵀ) with a (1, H) gate, and added to the routed experts' output:
 *   y += sigmoid(x · gateᵀ) ⊙ down(silu(x · gate_projᵀ) ⊙ (x · up_projᵀ))
 * It is not routed, so no router sees it and its gradient takes no part in c. Without a gate
 * (gate NULL) it is a plain SwiGLU MLP, y += down(...): qwen2_moe's dense layers.
 */
#ifndef PM_MOE_SHARED_EXPERT_H
#define PM_MOE_SHARED_EXPERT_H

#include <stdint.h>

#include "nn/nn.h"

typedef struct {
    const float *gate_up, *down, *gate; /* (2S, H) gate_proj then up_proj, (H, S), (1, H) */
    const uint16_t *gate_up16, *down16; /* their bf16 copies for bf16 products, or NULL */
    float *d_gate_up, *d_down, *d_gate; /* gradients (+=) */
} shared_expert_weights;

/* Kept from the forward pass for the backward: (T, 2S), (T, S), (T, H), (T) the sigmoid. */
typedef struct {
    float *gate_up, *act, *out, *scale;
} shared_expert_acts;

/* Backward scratch, as the activations. */
typedef struct {
    float *d_gate_up, *d_act, *d_out, *d_scale;
} shared_expert_scratch;

/* y (T, H) += the shared expert of x (T, H). ctx: the products' context (nn.h), or NULL. */
void shared_expert_forward(matmul_bf16 *ctx, const shared_expert_acts *acts, float *y, const float *x,
                           const shared_expert_weights *w, int T, int H, int S);
/* dx (T, H) += dL/dx given dy (T, H); the weights' gradients +=. */
void shared_expert_backward(matmul_bf16 *ctx, const shared_expert_acts *acts, const shared_expert_scratch *scratch,
                            float *dx, const float *dy, const float *x, const shared_expert_weights *w, int T, int H,
                            int S);

#endif
