/*
 * Internals of the batched routers. router.c owns the batch loop (validation, the
 * OpenMP loops over tokens, CSR assembly, statistics, auxiliary terms); each router kind
 * provides two per-token functions, one for the forward and one for the backward pass.
 * Tokens are independent, so per-token work never depends on which thread runs it.
 */
#ifndef PM_ROUTE_ROUTER_INTERNAL_H
#define PM_ROUTE_ROUTER_INTERNAL_H

#include <stddef.h>

#include "probmoe.h"

struct pm_router {
    pm_router_config cfg;
    float soft_k, alpha;            /* softmoe parameters (learnable) */
    double d_soft_k, d_alpha;       /* their accumulated gradients */
    float tau;                      /* softmoe truncation threshold; < 0 until calibrated */
    float *bias;                    /* (E) topk selection bias */
    int64_t *bias_load;             /* (E) load accumulated since the last bias update */
    /* per-thread scratch, grown on demand */
    double *scratch;
    size_t scratch_per_thread;
    int scratch_threads;
};

/* Per batch, filled by the forward pass and read by the backward pass. */
struct pm_routing_state {
    int max_pairs;                  /* staging stride: most combine pairs one token can have */
    float *probs;                   /* (T, E) π = softmax(θ) */
    float *lse;                     /* (T) logsumexp θ_t */
    float *soft_probs;              /* (T, E) softmoe: LapSum p */
    double *soft_t;                 /* (T) softmoe: LapSum threshold */
    float used_soft_k, used_alpha;  /* softmoe parameters of this batch */
    int *stage_experts;             /* (T, max_pairs) */
    float *stage_weights;           /* (T, max_pairs) */
    int *stage_counts;              /* (T) */
    double *token_d_soft_k, *token_d_alpha; /* (T) softmoe per-token gradients */
    float *lb_dprob;                /* (E) d lb_loss / d π_{t,i}, the same for every token */
};

/* What a per-token function gets: token t's logits, π and its output slots. */
typedef struct {
    const pm_router *router;
    const float *logits;            /* (E) θ_t */
    const float *probs;             /* (E) π_t */
    int token;
    bool training;
    const pm_rng *rng;              /* base generator (training samplers) */
    double *scratch;                /* this thread's scratch */
} token_ctx;

/* A group of up to DP_LANES consecutive tokens (probmoe routes them through SIMD lanes). */
typedef struct {
    const pm_router *router;
    const float *logits;            /* (T, E) the whole batch */
    const float *probs;             /* (T, E) */
    int first, count;
    bool training;
    const pm_rng *rng;
    double *scratch;
} group_ctx;

token_ctx group_token_ctx(const group_ctx *group, int t);
/* probmoe in training for a group: stages token t's pairs at experts/weights + t·stride. */
void probmoe_forward_group(const group_ctx *group, int stride, int *experts, float *weights,
                           int *counts);
/* dθ of the group's tokens into rows ((count, E), row t − first), c as in pm_router_backward. */
void probmoe_backward_group(const group_ctx *group, const pm_routing *routing, const float *c,
                            double *rows);
size_t probmoe_scratch_doubles(const pm_router_config *cfg);

/* Forward: writes the token's combine pairs (experts increasing) and returns their count.
 * Backward: given c for the token's compute pairs, writes dθ (E values, overwritten). */
int deterministic_forward(const token_ctx *ctx, int *experts, float *weights);
void deterministic_backward(const token_ctx *ctx, const int *experts, int count, const float *c,
                            double *dtheta);
int probmoe_forward(const token_ctx *ctx, int *experts, float *weights);
void probmoe_backward(const token_ctx *ctx, const int *experts, int count, const float *c,
                      double *dtheta);
void densemixer_backward(const token_ctx *ctx, const int *selected, int count, const float *c,
                         double *dtheta);
int softmoe_forward(const token_ctx *ctx, const float *soft_probs, float tau, int *experts,
                    float *weights);
void softmoe_backward(const token_ctx *ctx, double soft_t, float alpha, const int *experts,
                      int count, const float *c, double *dtheta, double *d_soft_k,
                      double *d_alpha);

/* dθ_i = π_i (g_i − Σ_j π_j g_j): the vector-Jacobian product of softmax, dtheta += . */
void softmax_vjp_add(const float *probs, const double *g, int n, double *dtheta);
/* Gradient of (optionally renormalised) selected weights w_j = π_j [/ Σ_S π] given
 * c_j = dL/dw_j on S: writes dL/dπ (E values; zero outside S). */
void selected_weights_vjp(const float *probs, const int *selected, int count, const float *c,
                          bool renormalize, int num_experts, double *g);
/* Sorts count ints ascending, carrying the paired floats along. */
void sort_pairs(int *experts, float *weights, int count);

/* softmoe: tau so that on average about soft_k of the (T, E) values exceed it. */
float softmoe_calibrate_tau(const float *soft_probs, int T, int E, float soft_k);
/* softmoe: most experts a token may keep, ceil(cap · soft_k) capped at E. */
int softmoe_max_kept(const pm_router_config *cfg, float soft_k);
/* Doubles of per-thread scratch each kind needs. */
size_t router_scratch_doubles(const pm_router_config *cfg);

#endif
