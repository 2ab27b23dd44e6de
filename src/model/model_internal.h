/* Internals of the model (every family): the parameter table and per-layer activations. */
#ifndef PM_MODEL_INTERNAL_H
#define PM_MODEL_INTERNAL_H

#include "core/batch_comm.h"
#include "moe/moe.h"
#include "nn/nn.h"
#include "probmoe.h"

/* Indices into the parameter table for one decoder layer; expert e's gate, up and down
 * projections are at expert0 + 3e + 0, 1, 2. A part the family (or a dense layer) lacks is -1. */
typedef struct {
    int input_norm, q, k, v, o, q_norm, k_norm, post_norm, router, expert0;
    int dense0;            /* a dense layer's MLP (qwen2_moe): gate, up and down at dense0 + 0, 1, 2 */
    int q_bias, k_bias, v_bias; /* qwen2_moe */
    int shared0;           /* the shared expert's gate, up and down at shared0 + 0, 1, 2 (qwen2_moe) */
    int shared_gate;       /* its sigmoid gate (1, H) */
    int log_alpha;         /* the learned budget's log alpha of this layer, or -1 */
} layer_params;

/* One layer's activations for the current batch, kept for the backward pass. */
typedef struct {
    float *x_in;          /* (T, H) the layer's input (residual stream) */
    float *ln1, *rstd1;   /* (T, H), (T) */
    float *q_raw, *q_rstd, *q_rot;   /* (T, H), (T), (T, H) projection, its norm, after rope */
    float *k_raw, *k_rstd, *k_rot;   /* (T, KV), (T), (T, KV) */
    float *v;             /* (T, KV) */
    float *att;           /* (B, heads, S, S) attention probabilities */
    float *attn_out;      /* (T, H) before o_proj */
    float *x_mid;         /* (T, H) after the attention residual */
    float *ln2, *rstd2;   /* (T, H), (T) */
    float *router_logits; /* (T, E) */
    /* the shared expert (qwen2_moe), or a dense layer's MLP (of width D), or NULL: (T, 2S) gate |
     * up, (T, S) SwiGLU, (T, H) output, (T) sigmoid of its gate (NULL for the MLP) */
    float *shared_gate_up, *shared_act, *shared_out, *shared_scale;
    /* a MoE layer's index among the MoE layers, its router, routing and experts; a dense layer
     * has -1 and NULL */
    int moe_index;
    pm_router *router;
    pm_routing *routing;
    moe_state moe;
    moe_owner owner;      /* expert parallelism: the rows this rank's experts receive */
    moe_expert *experts;  /* (E) weight and gradient pointers */
} layer_state;

struct pm_model {
    pm_model_config cfg;
    int max_batch, max_seq;
    int num_params;
    pm_param *params;
    char *names;           /* storage of the parameter names */
    size_t size;           /* floats in weights / grads */
    float *weights, *grads;
    layer_params *layer_params;
    int num_moe;           /* MoE layers (M) */
    int *moe_layers;       /* (M) their decoder layer numbers */
    int embed, final_norm, lm_head; /* lm_head == embed when tied */
    size_t head_end;       /* the end of the final norm and lm_head in floats: the learned budget follows */
    int budget_eta;        /* the learned budget's eta (M values), or -1 (soft_budget.c) */
    float *budget_k, *budget_dk; /* (M) k_m of the last forward, dL/dk_m of the backward */
    layer_state *layers;
    /* batch */
    int batch, seq;
    int32_t *positions;    /* (T) */
    const int32_t *tokens, *targets;
    float *x_final, *lnf, *rstdf, *logits; /* (T, H), (T, H), (T), (T, V) */
    float ce_loss, aux_loss;
    /* data parallelism (model_set_batch_origin): training batches are rows of a global batch
     * over comm's ranks; ce_share is this rank's tokens over the global batch's, the factor of
     * its cross-entropy gradient */
    const batch_comm *comm;
    float ce_share;
    /* called by the backward pass with each range of gradients it has finished (a bucket):
     * lm_head and the final norm, each layer, the embedding and the budget; under expert
     * parallelism each layer's experts of this rank apart (experts true) */
    void (*grads_ready)(void *user, size_t offset, size_t count, bool experts);
    void *grads_ready_user;
    /* expert parallelism (model_set_expert_parallel): comm's expert groups share the experts;
     * training forwards run this rank's only (expert_forward says the last one did) */
    const batch_comm *expert_comm;
    moe_owner_scratch owner_scratch;
    bool expert_forward;
    bool has_targets;
    /* bf16 matrix products (pm_model_set_precision): the context, the weights' bf16 copy, and
     * whether the weights changed since it was made; the context also runs fp32 products
     * through oneDNN where fp32_matmul says so, and is NULL when neither needs it */
    matmul_bf16 *bf16;
    uint16_t *weights16;
    bool weights16_stale;
    /* the activations of every layer and the backward scratch below, in one allocation
     * planned at creation (model.c, activation_layout) */
    pm_arena arena;
    pm_fp32_matmul fp32_matmul; /* who runs fp32 products (pm_model_set_fp32_matmul; in bf16 as well) */
    /* backward scratch */
    float *d_logits, *d_resid, *d_ln, *d_q, *d_k, *d_v, *d_q_raw, *d_k_raw, *d_attn, *d_router, *c;
    /* the shared expert's and dense MLPs': (T, 2W), (T, W), (T, H), (T) for the wider W */
    float *d_shared_gate_up, *d_shared_act, *d_shared_out, *d_shared_scale;
    moe_scratch moe_scratch;
    float *attention_scratch; /* attention_backward_in's, for attention_threads threads */
    int attention_threads;
    pm_routing_source routing_source;
    void *routing_user;
};

/* The elements of the largest product input bf16 products convert for `tokens` tokens:
 * lm_head's (T, V), the expert rows' (pairs, 2I) or the shared expert's (T, 2S) (precision.c). */
uint64_t model_bf16_scratch_elements(const pm_model_config *cfg, uint64_t tokens);
/* The same for the experts' products on `rows` rows an owner receives under expert parallelism:
 * (rows, 2I) or (rows, H) inputs. */
uint64_t model_bf16_owner_elements(const pm_model_config *cfg, uint64_t rows);
/* The widest unrouted MLP of cfg: the shared expert's width, or the dense layers' if there are
 * any and they are wider (0 for neither); the buffers they share are sized for it (params.c). */
int model_mlp_width(const pm_model_config *cfg);
/* Most (token, expert) pairs the router may ask to compute per token, in either mode. */
int model_pairs_per_token(const pm_router_config *router);

/* The bytes pm_generator_create_rows allocates for a generator of the model (generate.c): its
 * arena, struct, routers and routings; not a bf16 copy, made later if asked. */
uint64_t model_generator_bytes(const pm_model *model, const pm_router_config *router, int max_len, int rows);

/* Builds the parameter table (names, shapes, offsets) for cfg. 0 or PM_ERR_NOMEM. */
int model_build_params(pm_model *model);
/* The table's entries, and the floats it lays out, for cfg (params.c; the memory estimate). */
int model_param_entries(const pm_model_config *cfg);
uint64_t model_param_floats(const pm_model_config *cfg);

/* pm_model_memory_check against `limit` bytes of memory named `source` ("physical memory"),
 * rather than this machine's; a test sets them. */
pm_status model_memory_check_limit(const pm_model_config *cfg, int max_batch, int max_seq, bool training,
                                   uint64_t limit, const char *source);

/* The learned budget (soft_budget.c), when the router learns one: its tensors' initial values
 * (eta 0, so k_m = K/M, and log alpha of the router config); before a forward pass, each MoE
 * layer's router gets its k_m and alpha; after MoE layer m's router backward, dL/dk_m and
 * dL/dalpha are taken from the router; after the whole backward, dL/deta. */
void model_budget_init(pm_model *model);
int model_budget_apply(pm_model *model);
void model_budget_collect(pm_model *model, int m);
int model_budget_finish(pm_model *model);

/* MoE layer m's state. */
static inline layer_state *moe_layer(const pm_model *model, int m) { return &model->layers[model->moe_layers[m]]; }

static inline float *param_weights(pm_model *model, int index) {
    return model->weights + model->params[index].offset;
}
/* Remakes the weights' bf16 copy if they changed since (precision.c; the values this rank keeps
 * under expert parallelism). */
void model_refresh_weights16(pm_model *model);
/* The copy is current: AdamW has just written it with the weights it updated. */
void model_weights16_written(pm_model *model);

/* The bf16 copy of a matrix the products read in bf16, or NULL in fp32. */
static inline const uint16_t *param_weights16(const pm_model *model, int index) {
    return model->weights16 ? model->weights16 + model->params[index].offset : NULL;
}
static inline float *param_grads(pm_model *model, int index) {
    return model->grads + model->params[index].offset;
}

/* Data parallelism: the next training forwards get rows of a global batch shared with comm's
 * ranks, this rank's first token being the batch's first_token-th (comm NULL: whole batches).
 * The loss, the routers' statistics and the samples are then those of the global batch; each
 * rank's gradients are its share, to be summed over the ranks. */
void model_set_batch_origin(pm_model *model, const batch_comm *comm, uint32_t first_token);

/* Sets (or with NULL clears) the hook the backward pass calls with each bucket of finished
 * gradients. */
void model_set_grads_ready(pm_model *model, void (*ready)(void *user, size_t offset, size_t count, bool experts),
                           void *user);

/*
 * Expert parallelism (model_parallel.c). After model_set_expert_parallel, training forwards
 * (under model_set_batch_origin with the same comm) run only this rank's experts, on the rows
 * of every rank of its expert group, each holding at most max_tokens tokens; other ranks'
 * experts get no gradient here. Evaluation forwards still run every expert from this rank's
 * copy, so only rank 0 may run them: model_collect_experts brings its copy up to date, and on
 * the other ranks the other experts' memory is released (it reads as zeros).
 */
int model_set_expert_parallel(pm_model *model, const batch_comm *comm, int max_tokens);
/* Whether parameter `index` is trained on this rank: false for other ranks' experts. */
bool model_param_local(const pm_model *model, int index);
/* Whether this rank keeps parameter `index`'s values: its own experts, every shared tensor, and
 * on rank 0 every expert (it evaluates and saves the whole model). */
bool model_param_kept(const pm_model *model, int index);
/* Calls each with the ranges of floats this rank trains: every shared tensor and its experts
 * (the whole model without expert parallelism). */
void model_for_local_ranges(const pm_model *model, void (*each)(void *user, size_t offset, size_t count), void *user);
/* Gives the memory of values' (laid out as the weights) other ranks' experts back to the
 * system, except on rank 0; model_set_expert_parallel does so for the weights and gradients,
 * the trainer for AdamW's moments once loaded. What was there reads as 0 afterwards. */
void model_release_other_experts(const pm_model *model, float *values);
/* This rank's experts of (MoE) layer l: their gradients' (and weights') range in floats. */
void model_local_experts(const pm_model *model, int l, size_t *offset, size_t *count);
/* values, laid out as the weights (the weights, AdamW's moments): rank 0 gets every expert's
 * from its owner. Collective; without expert parallelism nothing happens. */
void model_collect_experts(pm_model *model, float *values);

/* Expert parallelism's rows of H floats sent to other ranks and back so far, summed over the
 * layers: one per (token, expert) pair as sent, and one per (token, rank) as a dispatch that
 * sends each token once to each rank would (moe_owner_traffic); 0 and 0 without it. */
void model_expert_traffic(const pm_model *model, int64_t *pair_rows, int64_t *rank_rows);

#endif
