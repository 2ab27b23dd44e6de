/* The MoE layer's steps, shared by the single-process layer (moe.c) and the expert-parallel
 * one (moe_parallel.c). */
#ifndef PM_MOE_INTERNAL_H
#define PM_MOE_INTERNAL_H

#include "moe/moe.h"
#include "nn/nn.h"

/* Expert rows: inputs x (rows, H), the gate and up projections side by side (rows, 2I: each
 * row gate's I values then up's), the SwiGLU activation (rows, I), outputs (rows, H). */
typedef struct {
    float *x, *gate_up, *act, *out;
    matmul_bf16 *bf16; /* the experts' products in bf16 with this context, or NULL: fp32 */
} moe_rows;

/* The routing's pairs sorted by expert (state's offsets, pair and combine rows). */
void moe_prepare(moe_state *state, const pm_routing *routing);
/* state->x's rows := the tokens of their pairs. */
void moe_gather_rows(moe_state *state, const float *x);
/* Experts 0 .. count-1 (rows [offsets[e], offsets[e+1]) each) on their rows. */
void moe_experts_forward(const moe_rows *rows, const int *offsets, int count, const moe_expert *experts, int H,
                         int I);
/* y (T, H) := Σ_combine pairs w · state->out's row. */
void moe_combine(const moe_state *state, float *y, const pm_routing *routing);
/* c (compute pairs) := <dy_t, f_e>; scratch->d_out's weighted rows := w · dy_t. */
void moe_output_grads(const moe_state *state, moe_scratch *scratch, float *c, const float *dy,
                      const pm_routing *routing);
/* The backward pass of experts 0 .. count-1 over the first selected[e] rows of each from
 * scratch->d_out: scratch->d_x's rows :=, expert gradients +=. */
void moe_experts_backward(const moe_rows *rows, const moe_scratch *scratch, const int *offsets,
                          const int *selected, int count, const moe_expert *experts, int H, int I);
/* How the layer runs the experts (moe.c): by their rows (auto), or, for the tests, always one
 * at a time or always side by side (one expert per thread; with a oneDNN context only if it
 * has a worker per thread with room for the largest expert). Process-wide. */
typedef enum { MOE_EXPERTS_AUTO, MOE_EXPERTS_ONE_AT_A_TIME, MOE_EXPERTS_SIDE_BY_SIDE } moe_expert_schedule;
void moe_set_expert_schedule(moe_expert_schedule schedule);
/* Whether this thread's last pass over the experts (forward or backward) ran them side by side. */
bool moe_experts_ran_side_by_side(void);
/* dx (T, H) += Σ_combine pairs scratch->d_x's row. */
void moe_input_grads(const moe_state *state, const moe_scratch *scratch, float *dx, const pm_routing *routing);

#endif
