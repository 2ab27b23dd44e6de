/*
 * Internals of the batched routers.
 *
 * A router is one entry of the router table (router_table.c): a router_ops value defined in
 * the router's own file. It names the router, sets and checks its config fields, and gives
 * one rule for training and one for inference. A rule is a forward and a backward function
 * over a group of up to DP_LANES consecutive tokens, built from the blocks declared below
 * (router_blocks.c, router_sample.c, router_softmoe.c) or from the router's own functions.
 * router.c owns the batch loop (validation, softmax, the OpenMP loop over groups, CSR
 * assembly, statistics, auxiliary terms) and never asks which router it runs.
 *
 * Tokens are independent, so per-token work never depends on which thread runs it.
 */
#ifndef PM_ROUTE_ROUTER_INTERNAL_H
#define PM_ROUTE_ROUTER_INTERNAL_H

#include <stddef.h>

#include "core/batch_comm.h"
#include "probmoe.h"
#include "route/circuit.h"
#include "route/subset_lanes.h"

typedef struct router_ops router_ops;
typedef struct route_rule route_rule;

/* A named array of floats a router keeps: persistent state (saved with the model) or a
 * learnable parameter. size() is its length for a config; initial() the value it starts at. */
typedef struct {
    const char *name;
    const char *help;
    int (*size)(const pm_router_config *cfg);
    float (*initial)(const pm_router_config *cfg);
} router_value;

struct pm_router {
    pm_router_config cfg;
    const router_ops *ops;
    float *state;                   /* the ops' state arrays, one after another */
    float *params;                  /* the ops' learnable parameters, one after another */
    double *param_grads;            /* their accumulated gradients, same layout */
    int state_floats, param_floats;
    circuit *circuit;               /* the compiled subset distribution (router_uses_circuit), or NULL */
    int64_t *step_load;             /* (E) training combine pairs per expert since pm_router_step */
    /* data parallelism (router_set_batch_origin): the ranks sharing a training batch, and the
     * index of this rank's first token in it (NULL, 0: the batch is all here) */
    const batch_comm *comm;
    uint32_t first_token;
    /* per-thread scratch, grown on demand */
    double *scratch;
    size_t scratch_per_thread;
    int scratch_threads;
};

/* Per batch, filled by the forward pass and read by the backward pass. */
struct pm_routing_state {
    int max_pairs;                  /* staging stride: most combine pairs one token can have */
    const route_rule *rule;         /* the rule of this batch (training or inference) */
    bool renormalize;               /* combine weights were divided by their sum */
    float *probs;                   /* (T, E) π = softmax(θ) */
    float *lse;                     /* (T) logsumexp θ_t */
    float *batch_params;            /* the learnable parameters the forward pass used */
    float *token_floats;            /* (T, token_float_stride) the router's per-token values */
    double *token_doubles;          /* (T, token_double_stride) */
    size_t token_float_stride, token_double_stride;
    /* the rule's forward tables kept for its backward pass (route_rule.kept_doubles): one block
     * of kept_group_stride doubles per full group of DP_LANES tokens; NULL when the rule keeps
     * none or they would not fit in ROUTE_KEPT_MAX_BYTES */
    double *kept_tables;
    size_t kept_group_stride;
    bool tables_kept;               /* this batch's forward pass filled them */
    int *stage_experts;             /* (T, max_pairs) */
    float *stage_weights;           /* (T, max_pairs) */
    int *stage_counts;              /* (T) */
    float *lb_dprob;                /* (E) d lb_loss / d π_{t,i}, the same for every token */
    double aux_tokens;              /* the tokens the aux losses average over (all ranks') */
};

/* What a rule's functions get: a group of tokens of the batch and this thread's scratch. */
typedef struct {
    const pm_router *router;
    struct pm_routing_state *state;
    const float *logits;            /* (T, E) the whole batch */
    const float *probs;             /* (T, E) */
    int first, count;               /* tokens first .. first + count − 1 */
    bool training;
    bool renormalize;               /* divide selected softmax weights by their sum */
    const pm_rng *rng;              /* base generator (samplers; token t uses substream t) */
    double *scratch;                /* this thread's scratch */
} group_ctx;

/* Forward: stages each token's combine pairs (experts increasing) in state->stage_*.
 * Backward: writes dθ (overwriting) of token t into rows + (t − first)·E, given c for the
 * token's compute pairs (aligned with routing->c_experts). */
typedef void (*route_forward_fn)(const group_ctx *group);
typedef void (*route_backward_fn)(const group_ctx *group, const pm_routing *routing, const float *c,
                                  double *rows);

struct route_rule {
    route_forward_fn forward;
    route_backward_fn backward;
    bool samples;                   /* draws random subsets: needs a generator */
    bool softmax_weights;           /* weights are π_j of the selected experts (a given selection
                                       can be replayed: pm_router_forward_given) */
    bool unnormalized;              /* weights stay π_j even with norm_topk_prob (a
                                       straight-through gate multiplies π_j) */
    bool compute_all;               /* the backward needs c for all E experts of every token */
    bool own_softmax;               /* the forward writes its tokens' π and lse itself (from the
                                       exponentials its DP computes anyway), bit for bit as
                                       route_softmax; the batch loop skips its softmax */
    /* Doubles the forward pass keeps per full group of DP_LANES tokens for the backward pass
     * (its DP tables), written when state->kept_tables is set; NULL: it keeps nothing. */
    size_t (*kept_doubles)(const pm_router_config *cfg);
};

/* Most bytes of kept forward tables one routing allocates; beyond this the backward pass
 * recomputes them (the model holds one routing per layer, so unbounded batches would add up). */
#define ROUTE_KEPT_MAX_BYTES ((size_t)64 << 20)

/* Top-k of π forward, the softmax gradient of the chosen experts backward: topk's rule, and the
 * inference rule of most routers. */
#define ROUTE_RULE_TOPK \
    { .forward = route_forward_topk, .backward = route_backward_softmax, .softmax_weights = true }

struct router_ops {
    const char *name;
    const char *help;               /* one line: what it is and where it comes from */
    /* Sets the router's own config fields (cfg holds kind, E, k and the shared defaults);
     * NULL: it has none. */
    void (*defaults)(pm_router_config *cfg);
    /* Checks the router's own config fields: 0 or pm_fail naming the field. */
    int (*check)(const pm_router_config *cfg);
    route_rule train, infer;
    /* An ablation (the ProbMoE paper's forward × backward study), not a method of its own. */
    bool ablation;
    /* compare runs it only when named (a variant under an extra constraint: probmoe-group) */
    bool opt_in;
    /* Hugging Face trains it with the Switch loss (router_aux_loss_coef applies by default). */
    bool hf_aux_loss;
    /* Its learnable soft_k and alpha come from the model's learned budget (softmoe). */
    bool learned_budget;
    /* Most combine pairs one token can get. */
    int (*max_pairs)(const pm_router_config *cfg);
    /* The subset distribution p(S) it samples or differentiates (kmin..kmax); NULL if none. */
    void (*subset_range)(const pm_router_config *cfg, int *kmin, int *kmax);
    /* The group limit of its subset distribution (probmoe-group); NULL: none. A router with one
     * runs on a compiled circuit whatever its impl. */
    void (*group_limit)(const pm_router_config *cfg, int *groups, int *max_groups);
    /* Doubles of per-thread scratch its rules need (beyond the shared 4E + 8). */
    size_t (*scratch_doubles)(const pm_router_config *cfg);
    /* Per-token buffers of a batch (routing state), floats and doubles; NULL: none. */
    size_t (*token_floats)(const pm_router_config *cfg);
    size_t (*token_doubles)(const pm_router_config *cfg);
    /* Batch hooks, each optional: before the groups of a forward pass; after a backward pass;
     * after an optimizer step (pm_router_step). */
    int (*prepare)(pm_router *router, pm_routing *out, const float *logits, int T);
    void (*finish_backward)(pm_router *router, const pm_routing *routing);
    void (*step)(pm_router *router);
    const router_value *state;      /* persistent state, saved with the model */
    int state_count;
    const router_value *params;     /* learnable parameters */
    int param_count;
};

/* The table (router_table.c); kind = index. */
const router_ops *router_ops_of(int kind);

/* The rule a batch runs: ops->train in training, ops->infer otherwise. */
const route_rule *router_rule(const pm_router *router, bool training);
/* State or parameter `name` of the router (NULL if it has none). */
float *router_state_find(const pm_router *router, const char *name);
float *router_param_find(const pm_router *router, const char *name, double **grad);

/* ---------------------------------------------------------------- blocks */

/* Top-k of π (+ the selection bias, when the router keeps one and bias_rate > 0). */
void route_forward_topk(const group_ctx *group);
/* The most probable subset in the router's range (subset_map). */
void route_forward_map(const group_ctx *group);
/* An exact sample of p(S) over the router's range; weights π_j. */
void route_forward_sample(const group_ctx *group);
/* softmax-VJP of the selected weights' gradient (through the renormalisation if on). */
void route_backward_softmax(const group_ctx *group, const pm_routing *routing, const float *c,
                            double *rows);
/* The straight-through gate g = z + m − stop(m) through the marginals of p(S):
 * dθ = Cov(z)·(z ⊙ c ⊙ π) + softmax-VJP(z ⊙ c). */
void route_backward_marginal(const group_ctx *group, const pm_routing *routing, const float *c,
                             double *rows);
/* The dense router gradient over all E experts (c holds all E of each token). */
void route_backward_dense(const group_ctx *group, const pm_routing *routing, const float *c,
                          double *rows);
/* softmoe: LapSum soft top-k, truncated at tau (router_softmoe.c). */
void route_forward_lapsum(const group_ctx *group);
void route_backward_lapsum(const group_ctx *group, const pm_routing *routing, const float *c,
                           double *rows);

/* Per full group: the lane DP tables route_forward_sample keeps for route_backward_marginal. */
size_t route_sample_kept_doubles(const pm_router_config *cfg);
/* Scratch of route_forward_sample / route_backward_marginal for a range up to kmax. */
size_t route_sample_scratch(const pm_router_config *cfg);
/* Checks 1 <= k <= E. */
int route_check_k(const pm_router_config *cfg);
/* Exact-k range [k, k]. */
void route_range_exact_k(const pm_router_config *cfg, int *kmin, int *kmax);
int route_max_pairs_k(const pm_router_config *cfg);

/* ------------------------------------------------ the circuit implementation */

/* Whether the router evaluates its subset distribution with a compiled circuit (impl =
 * circuit, or a group limit). */
bool router_uses_circuit(const pm_router_config *cfg);
/* Its circuit (router_circuit.c): the cardinality circuit of its range, or the group-limited
 * one. NULL with pm_last_error() set on failure. */
circuit *router_compile_circuit(const pm_router_config *cfg);
/* PM_OK, or an error when its circuit would be too large (for the config check). */
int router_check_circuit(const pm_router_config *cfg);
/* Per-thread scratch of the circuit blocks below, and the bytes of the circuit. */
size_t router_circuit_scratch(const pm_router_config *cfg);
uint64_t router_circuit_bytes(const pm_router_config *cfg);
/* route_forward_sample, route_backward_marginal and route_forward_map on the circuit. */
void circuit_forward_sample(const group_ctx *group);
void circuit_backward_marginal(const group_ctx *group, const pm_routing *routing, const float *c,
                               double *rows);
void circuit_forward_map(const group_ctx *group);

/* ----------------------------------------------------------- shared math */

/* dθ_i = π_i (g_i − Σ_j π_j g_j): the vector-Jacobian product of softmax, dtheta += . */
void softmax_vjp_add(const float *probs, const double *g, int n, double *dtheta);
/* π = softmax(θ) of one token's E logits, and logsumexp θ (router_softmax.c). */
void route_softmax(const float *logits, int E, float *probs, float *lse);
/* The same for `lanes` tokens from w[i * 8 + l] = exp(θ_i − top[l]) of token l, computed as
 * route_softmax computes them (the lane DP's weights). */
void route_softmax_lanes(const double *w, int E, const float *top, int lanes, float *const *probs, float *const *lse);
/* Gradient of (optionally renormalised) selected weights w_j = π_j [/ Σ_S π] given
 * c_j = dL/dw_j on S: writes dL/dπ (E values; zero outside S). */
void selected_weights_vjp(const float *probs, const int *selected, int count, const float *c,
                          bool renormalize, int num_experts, double *g);
/* Weights π_j of the selected experts, divided by their sum when renormalize. */
void softmax_weights(const float *probs, const int *experts, int count, bool renormalize,
                     float *weights);
/* Sorts count ints ascending, carrying the paired floats along. */
void sort_pairs(int *experts, float *weights, int count);

/* Where token t's staged pairs go. */
static inline int *stage_experts(const group_ctx *group, int t) {
    return group->state->stage_experts + (size_t)t * group->state->max_pairs;
}
static inline float *stage_weights(const group_ctx *group, int t) {
    return group->state->stage_weights + (size_t)t * group->state->max_pairs;
}

/* Data parallelism: this router's training batches are rows of a global batch shared with
 * comm's other ranks, and this rank's first token is the batch's first_token-th (comm NULL:
 * a whole batch). Statistics then cover the global batch and samples use global indices. */
void router_set_batch_origin(pm_router *router, const batch_comm *comm, uint32_t first_token);
/* The combine pairs per expert counted since the last pm_router_step (E values): the trainer
 * sums them over the ranks before the step. */
int64_t *router_step_load(pm_router *router);

#endif
