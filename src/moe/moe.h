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

#include "core/arena.h"
#include "core/batch_comm.h"
#include "probmoe.h"

/* One expert's weights, Hugging Face layout: gate and up (I, H), down (H, I). The products
 * read gate and up as one (2I, H) matrix, so up must follow gate in memory (up == gate + I·H),
 * and likewise d_up and up16 when given (moe_experts_check). */
typedef struct {
    const float *gate, *up, *down;
    float *d_gate, *d_up, *d_down; /* their gradients (backward accumulates) */
    const uint16_t *gate16, *up16, *down16; /* bf16 copies for bf16 products, or NULL (fp32) */
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
    int *row_pair;         /* (pairs) compute pair of each row */
    int *row_combine;      /* (pairs) combine pair of each weighted row (others': unset) */
    unsigned char *weighted; /* (pairs) dispatch scratch: pair carries a combine weight */
    float *x, *gate_up, *act, *out; /* (rows, H), (rows, 2I) gate | up per row, (rows, I), (rows, H) */
    struct matmul_bf16 *bf16; /* the products' bf16 context, or NULL: fp32 (nn.h) */
    void *block; /* the buffers' allocation when moe_state_init made it, else NULL (an arena's) */
} moe_state;

/* Backward scratch shared by all layers. */
typedef struct {
    float *d_out, *d_act, *d_gate_up, *d_x; /* (rows, H), (rows, I), (rows, 2I) as gate_up, (rows, H) */
    void *block; /* as in moe_state */
} moe_scratch;

/* Lays the buffers out on an arena (core/arena.h): planning, or handing out its memory. The
 * model lays out every layer's state and the shared scratch on its one activation arena. */
void moe_state_layout(moe_state *state, pm_arena *arena, int hidden, int intermediate, int num_experts,
                      int max_tokens, uint64_t max_pairs);
void moe_scratch_layout(moe_scratch *scratch, pm_arena *arena, int hidden, int intermediate, uint64_t max_pairs);
/* The same on an allocation of their own (the generator, the expert-parallel staging, tests).
 * Capacity: max_tokens tokens and at most max_pairs compute pairs. 0 or PM_ERR_NOMEM. */
int moe_state_init(moe_state *state, int hidden, int intermediate, int num_experts,
                   int max_tokens, int max_pairs);
void moe_state_free(moe_state *state);
int moe_scratch_init(moe_scratch *scratch, int hidden, int intermediate, int max_pairs);
void moe_scratch_free(moe_scratch *scratch);
/* The bytes moe_state_init and moe_scratch_init allocate, as planned by the layouts
 * (saturating at UINT64_MAX), for the memory estimates. */
uint64_t moe_state_bytes(int hidden, int intermediate, int num_experts, uint64_t max_pairs);
uint64_t moe_scratch_bytes(int hidden, int intermediate, uint64_t max_pairs);

/* The bf16 input values a worker of the products' context (nn.h) needs for any expert that the
 * layer runs side by side by itself (auto): the model reserves that many per thread up front. */
uint64_t moe_side_by_side_elements(int hidden, int intermediate);

/* PM_OK if every expert's up_proj (weights, gradients, bf16 copies) follows its gate_proj in
 * memory, as the layer needs; else PM_ERR_ARG with which expert and what to do. */
int moe_experts_check(const moe_expert *experts, int count, int hidden, int intermediate);

/* y (T, H) = Σ_pairs w · expert_e(x_t) for the routing's combine list; x is (T, H). */
void moe_forward(moe_state *state, float *y, const float *x, const pm_routing *routing,
                 const moe_expert *experts);

/* As moe_forward, but token t's output depends on token t alone, bit for bit, whatever the
 * other tokens and their number (matmul_rows_forward for the experts, or
 * matmul_rows_forward_bf16 for an expert whose bf16 pointers are set; gathering and combining
 * are per token already): batched decoding. */
void moe_forward_rows(moe_state *state, float *y, const float *x, const pm_routing *routing,
                      const moe_expert *experts);

/* dx (T, H) += dL/dx through the experts; expert gradients +=; c (compute pairs) = <dy_t, f_e>. */
void moe_backward(moe_state *state, moe_scratch *scratch, float *dx, float *c, const float *dy,
                  const pm_routing *routing, const moe_expert *experts);

/*
 * Expert parallelism (moe_parallel.c): a layer's experts split over an expert group of comm
 * (core/batch_comm.h). Each rank routes and sorts its own tokens' pairs as above; since the
 * group ranks own consecutive slices of experts, the rows for each owner are consecutive too.
 * They travel to the owners (one all-to-all of counts, one of rows), which run their experts
 * on the rows of all sources, weighted rows of every source first as in one process, and the
 * outputs travel back; the backward pass sends the weighted rows' output gradients and
 * returns their input gradients. Expert gradients are written on the owner only.
 */
typedef struct {
    int first, count;        /* the experts this rank runs: [first, first + count) */
    int group, slice;        /* the group's size, and the most experts one of its ranks runs */
    int capacity;            /* rows this rank can receive */
    int *counts_out, *counts_in; /* (group · 2·slice) per rank and expert: weighted rows, other rows */
    int *rows_out, *rows_in, *weighted_out, *weighted_in; /* (group) rows sent to / received from each */
    int *offsets, *selected; /* (count + 1), (count) the owned rows of each expert, weighted first */
    int *owned_row;          /* (capacity) the owned row of each received row */
    float *x, *gate_up, *act;   /* (capacity, H), (capacity, 2I), (capacity, I): kept for the backward pass */
    /* Rows of H floats this rank has sent to other ranks and got back, over all passes so far:
     * one per (token, expert) pair, as sent, and one per (token, rank), what a dispatch sending
     * a token once to each rank that holds any of its experts would send (moe_owner_traffic). */
    int64_t pair_rows, rank_rows;
} moe_owner;

/* Staging shared by all layers: rows in transit and the owned rows' backward scratch. */
typedef struct {
    float *send, *recv;      /* (max(capacity, local pairs), H) */
    float *out;              /* (capacity, H) the owned rows' outputs */
    moe_scratch owned;       /* (capacity) */
} moe_owner_scratch;

/* For rank expert_rank of a group of `group` ranks, experts [first, first + count) of E, up to
 * `capacity` received rows. 0 or PM_ERR_NOMEM. */
int moe_owner_init(moe_owner *owner, int hidden, int intermediate, int num_experts, int group, int expert_rank,
                   int capacity);
void moe_owner_free(moe_owner *owner);
int moe_owner_scratch_init(moe_owner_scratch *scratch, int hidden, int intermediate, int capacity, int local_pairs);
void moe_owner_scratch_free(moe_owner_scratch *scratch);
/* The rows a rank can receive: every group rank's tokens (at most max_tokens each, of at most
 * pairs_per_token pairs) paired with its experts only. */
int64_t moe_owner_capacity(int group, int max_tokens, int pairs_per_token, int num_experts);
/* The bytes moe_owner_init (one layer) and moe_owner_scratch_init allocate, for the memory check
 * (saturating). */
uint64_t moe_owner_bytes(int hidden, int intermediate, int num_experts, int group, uint64_t capacity);
uint64_t moe_owner_scratch_bytes(int hidden, int intermediate, uint64_t capacity, uint64_t local_pairs);

/* Adds the rows of one pass out and back (both counted) for the pairs of T tokens in CSR form
 * (offsets, experts) to owner's pair_rows and rank_rows; the forward pass calls it with the
 * compute pairs, the backward pass with the weighted ones. Exposed for tests. */
void moe_owner_traffic(moe_owner *owner, int num_experts, const int *offsets, const int *experts, int T);

/* moe_forward and moe_backward with the experts spread over comm's expert group (collective
 * in the group). state holds this rank's pairs; of experts (E) only this rank's are used. */
void moe_forward_parallel(moe_state *state, moe_owner *owner, moe_owner_scratch *staging, float *y, const float *x,
                          const pm_routing *routing, const moe_expert *experts, const batch_comm *comm);
void moe_backward_parallel(moe_state *state, moe_scratch *scratch, moe_owner *owner, moe_owner_scratch *staging,
                           float *dx, float *c, const float *dy, const pm_routing *routing, const moe_expert *experts,
                           const batch_comm *comm);

#endif
