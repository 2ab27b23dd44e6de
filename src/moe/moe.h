/*
 * The MoE layer's expert computation for one batch: dispatch of the router's (token, expert)
 * pairs by counting sort so that each expert's rows are contiguous, one BLAS GEMM per expert
 * and projection (SwiGLU experts), the weighted combine, and the backward pass, which also
 * yields c = <dL/dy_t, f_e(x_t)> for every pair the router asked to compute.
 *
 * Within an expert's rows the pairs that carry a combine weight come first; pairs computed
 * only for the router (densemixer in training) follow and skip the backward GEMMs, so expert
 * parameters get gradient only from tokens that selected them.
 */
#ifndef PM_MOE_H
#define PM_MOE_H

#include <stddef.h>
#include <stdint.h>

#include "probmoe.h"

/* One expert's weights, Hugging Face layout: gate and up (I, H), down (H, I). */
typedef struct {
    const float *gate, *up, *down;
    float *d_gate, *d_up, *d_down; /* their gradients (backward accumulates) */
} moe_expert;

/* Activations of one layer for one batch (kept for the backward pass). */
typedef struct {
    int hidden, intermediate, num_experts, capacity_pairs, capacity_tokens;
    int num_tokens, num_pairs;
    int *expert_offsets;   /* (E+1) rows of expert e: [offsets[e], offsets[e+1]) */
    int *expert_selected;  /* (E) rows at the start of each range that carry a weight */
    int *pair_row;         /* (pairs) row of each compute pair */
    int *combine_row;      /* (combine pairs) row of each combine pair */
    int *pair_token;       /* (pairs) token of each compute pair */
    int *sort_counts;      /* (2E) dispatch scratch */
    int *combine_pair;     /* (pairs) dispatch scratch: compute pair of each combine pair */
    unsigned char *weighted; /* (pairs) dispatch scratch: pair carries a combine weight */
    float *x, *gate, *up, *act, *out; /* (rows, H), (rows, I) ×3, (rows, H) */
} moe_state;

/* Backward scratch shared by all layers. */
typedef struct {
    float *d_out, *d_act, *d_gate, *d_up, *d_x; /* (rows, H), (rows, I) ×3, (rows, H) */
} moe_scratch;

/* Capacity: max_tokens tokens and at most max_pairs compute pairs. 0 or PM_ERR_NOMEM. */
int moe_state_init(moe_state *state, int hidden, int intermediate, int num_experts,
                   int max_tokens, int max_pairs);
void moe_state_free(moe_state *state);
int moe_scratch_init(moe_scratch *scratch, int hidden, int intermediate, int max_pairs);
void moe_scratch_free(moe_scratch *scratch);
/* The bytes moe_state_init and moe_scratch_init allocate (saturating at UINT64_MAX), for the
 * model's memory estimate. */
uint64_t moe_state_bytes(int hidden, int intermediate, int num_experts, uint64_t max_pairs);
uint64_t moe_scratch_bytes(int hidden, int intermediate, uint64_t max_pairs);

/* y (T, H) = Σ_pairs w · expert_e(x_t) for the routing's combine list; x is (T, H). */
void moe_forward(moe_state *state, float *y, const float *x, const pm_routing *routing,
                 const moe_expert *experts);

/* dx (T, H) += dL/dx through the experts; expert gradients +=; c (compute pairs) = <dy_t, f_e>. */
void moe_backward(moe_state *state, moe_scratch *scratch, float *dx, float *c, const float *dy,
                  const pm_routing *routing, const moe_expert *experts);

#endif
