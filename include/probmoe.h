/*
 * probmoe: sparse Mixture-of-Experts routing with differentiable probabilistic routers.
 *
 * One public header. Every symbol is prefixed pm_. Functions that can fail return a
 * pm_status (PM_OK on success, negative on error) or a count (>= 0, or a negative pm_status)
 * and, on failure, set a thread-local message readable with pm_last_error() that names the
 * bad argument and says what to do; functions returning a pointer return NULL and set it.
 * The math is documented in docs/ROUTING.md and summarised in README.md.
 */
#ifndef PROBMOE_H
#define PROBMOE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* PM_API marks the public functions: the library is built with hidden visibility, so nothing
 * else is exported. */
#if defined(_WIN32)
#define PM_API
#elif defined(__GNUC__)
#define PM_API __attribute__((visibility("default")))
#else
#define PM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors */

typedef enum {
    PM_OK = 0,
    PM_ERR_ARG = -1,      /* an argument is out of its valid range */
    PM_ERR_NONFINITE = -2, /* NaN or infinite input */
    PM_ERR_NOMEM = -3,    /* an allocation failed */
    PM_ERR_STATE = -4,    /* an object was used in a state that does not allow it */
} pm_status;

/* A short name for a status: "ok", "invalid argument", ... */
PM_API const char *pm_status_string(pm_status status);
/* The message of the last error on this thread ("" if none). */
PM_API const char *pm_last_error(void);

/* ------------------------------------------------------ random numbers */

/*
 * Counter-based generator (Philox4x32-10). A generator is fully described by
 * (seed, stream, substream, counter), so any token's random numbers can be produced
 * independently of which thread handles it: results never depend on thread count.
 */
typedef struct {
    uint64_t seed;
    uint64_t stream;
    uint32_t substream;
    uint32_t counter;   /* index of the next 128-bit block */
    uint32_t block[4];  /* the current block */
    int used;           /* words of block already handed out (4 = empty) */
} pm_rng;

PM_API void pm_rng_init(pm_rng *rng, uint64_t seed, uint64_t stream);
/* A generator for item `index` of the same (seed, stream): independent of rng's state. */
PM_API void pm_rng_substream(const pm_rng *base, uint32_t index, pm_rng *out);
PM_API uint32_t pm_rng_u32(pm_rng *rng);
/* Uniform double in [0, 1) with 53 random bits. */
PM_API double pm_rng_uniform(pm_rng *rng);

/* --------------------------------------------- the k-subset distribution */

/*
 * p(S) ∝ ∏_{i∈S} exp(theta_i) over subsets S of {0..n-1} with kmin <= |S| <= kmax
 * (kmin == kmax == k: exact-k). Valid input: n >= 1, 0 <= kmin <= kmax <= n, finite theta.
 */

/* log Σ_S ∏_{i∈S} exp(theta_i); NaN (and pm_last_error set) on bad input. */
PM_API double pm_subset_logz(const float *theta, int n, int kmin, int kmax);
/* m_i = P(i ∈ S). Returns 0 or a negative pm_status. */
PM_API pm_status pm_subset_marginals(const float *theta, int n, int kmin, int kmax, float *m);
/* out = Cov(z)·u (z the 0/1 indicator of S), the Jacobian of the marginals applied to u. */
PM_API pm_status pm_subset_cov_mv(const float *theta, int n, int kmin, int kmax, const float *u, float *out);
/* One exact sample. Returns |S| (or a negative pm_status); idx gets the indices, increasing. */
PM_API int pm_subset_sample(const float *theta, int n, int kmin, int kmax, pm_rng *rng, int *idx);
/* The most probable subset (ties to the smaller set, then to lower indices); returns |S|. */
PM_API int pm_subset_map(const float *theta, int n, int kmin, int kmax, int *idx);

/* ------------------------------------------------- LapSum soft top-k */

/*
 * p_i = F((r_i - t)/alpha), F the Laplace CDF, with t such that Σ p_i = k.
 * Valid input: n >= 1, 0 < k < n, alpha > 0, all finite. Returns t (NaN on bad input).
 */
PM_API float pm_lapsum_forward(const float *r, int n, float k, float alpha, float *p);
/* Vector-Jacobian product: given dp = dL/dp, writes dr (n values), *dk and *dalpha.
 * t is the value pm_lapsum_forward returned. Returns 0 or a negative pm_status. */
PM_API pm_status pm_lapsum_backward(const float *r, int n, float k, float alpha, float t, const float *dp,
                       float *dr, float *dk, float *dalpha);

/* ---------------------------------------------------- batched routers */

/*
 * Routers are the entries of one table (src/route/router_table.c); a kind is an index into
 * it, 0 .. pm_router_kind_count() − 1. The first five have names below; every router, these
 * and those added later (e.g. the ablation hybrids topk-marginal and sample-softmax), is found
 * by name with pm_router_kind_parse.
 */
typedef int pm_router_kind;
enum {
    PM_ROUTER_TOPK = 0,      /* conventional top-k of softmax */
    PM_ROUTER_PROBMOE,       /* ProbMoE exact-k (arXiv 2606.01509) */
    PM_ROUTER_PROBMOE_DYN,   /* ProbMoE dynamic-k, kmin..kmax experts per token */
    PM_ROUTER_DENSEMIXER,    /* top-k forward, dense router gradient */
    PM_ROUTER_SOFTMOE,       /* SoftMoE: LapSum soft top-k (arXiv 2606.17952) */
};

/* How many routers the table holds. */
PM_API int pm_router_kind_count(void);
/* "topk", "probmoe", ... ; NULL for an invalid kind. */
PM_API const char *pm_router_kind_name(pm_router_kind kind);
/* One line: what the router is and where it comes from; NULL for an invalid kind. */
PM_API const char *pm_router_kind_help(pm_router_kind kind);
/* "topk, probmoe, ..." (this thread's buffer, valid until the next call). */
PM_API const char *pm_router_kind_list(void);
/* Parses a name; PM_ERR_ARG (with a message listing the names) if unknown. */
PM_API pm_status pm_router_kind_parse(const char *name, pm_router_kind *kind);

typedef struct {
    pm_router_kind kind;
    int num_experts;       /* E */
    int k;                 /* experts per token: topk, probmoe, densemixer */
    int k_min, k_max;      /* probmoe-dyn range */
    bool norm_topk_prob;   /* renormalise the selected weights (see README for each router) */
    /* softmoe */
    float soft_k;          /* k_l: real-valued mean number of experts, 0 < soft_k < E */
    float alpha;           /* LapSum scale, > 0 */
    float tau;             /* keep experts with p > tau; < 0: calibrate on the first batch */
    float cap;             /* keep at most ceil(cap * soft_k) experts per token, cap >= 1 */
    bool soft_renormalize; /* divide kept weights by their sum */
    /* auxiliary terms */
    float lb_coef;         /* Switch load balancing: lb_coef * E * Σ_i f_i P_i */
    float z_coef;          /* router z-loss: z_coef * mean_t (logsumexp θ_t)^2 */
    float bias_rate;       /* topk only: DeepSeek-V3 selection-bias step γ; 0 = off */
    /* how the subset distribution is computed (routers with one): PM_IMPL_DP or PM_IMPL_CIRCUIT */
    int impl;
    /* probmoe-group: E is split into `groups` equal, contiguous groups, and a token's k experts
     * come from at most max_groups of them (DeepSeek-V3's n_group, topk_group) */
    int groups, max_groups;
} pm_router_config;

/* The implementations of the subset distribution: the dynamic program (subset_dp) or a
 * compiled circuit (the same distribution; the only one for constraints such as groups). */
enum { PM_IMPL_DP = 0, PM_IMPL_CIRCUIT = 1 };

/* A config with defaults for the kind: the given k; probmoe-dyn range [max(1, k − 2), k]
 * capped at E (the ProbMoE paper's kind of range); softmoe soft_k = k, alpha = 1, tau = -1
 * (calibrate), cap = 2; no aux terms, no renormalisation. */
PM_API pm_router_config pm_router_config_default(pm_router_kind kind, int num_experts, int k);
/* Checks a config; PM_OK or an error with a message naming the field. */
PM_API pm_status pm_router_config_check(const pm_router_config *cfg);
/* Whether the router draws random subsets in training (pm_router_forward then needs a generator). */
PM_API bool pm_router_samples(const pm_router_config *cfg);
/* Whether the kind is an ablation (topk-marginal, sample-softmax: the ProbMoE paper's forward ×
 * backward study) rather than a method; compare leaves them out unless asked. */
PM_API bool pm_router_is_ablation(pm_router_kind kind);
/* Whether compare runs the kind only when --routers names it: the ablations, and variants
 * under an extra constraint (probmoe-group), which are not the methods compare weighs. */
PM_API bool pm_router_is_opt_in(pm_router_kind kind);
/* Whether Hugging Face trains this kind with its router_aux_loss_coef (top-k style routers), so
 * that a config.json without a "probmoe" object gives it that coefficient. */
PM_API bool pm_router_uses_hf_aux_loss(pm_router_kind kind);
/* Whether the kind's soft_k and alpha are set per layer by the model's learned budget
 * (SoftMoE: k_l = 1 + (K − L)·softmax(eta)_l, docs/ROUTING.md section 3, "The learned budget"). */
PM_API bool pm_router_learns_budget(pm_router_kind kind);
/* The range kmin..kmax of the subset distribution p(S) the router samples or differentiates;
 * false if it has none. */
PM_API bool pm_router_subset_range(const pm_router_config *cfg, int *kmin, int *kmax);
/* The group limit of the router's subset distribution (probmoe-group: its groups and
 * max_groups); false if it has none. */
PM_API bool pm_router_group_limit(const pm_router_config *cfg, int *groups, int *max_groups);
/* Most (token, expert) pairs per token the router asks the MoE layer to compute. */
PM_API int pm_router_max_pairs(const pm_router_config *cfg, bool training);

typedef struct pm_router pm_router;

/*
 * The result of routing T tokens. Two lists in CSR form:
 *  - combine: token t's output is Σ weights[p] * f_{experts[p]}(x_t) for p in
 *    offsets[t] .. offsets[t+1]-1 (experts increasing within a token);
 *  - compute: the (token, expert) pairs whose c = <dL/dy_t, f_e(x_t)> the backward pass
 *    needs, c_offsets/c_experts; equal to the combine list except for densemixer in
 *    training, where it holds all E experts of every token.
 */
typedef struct {
    int num_tokens, num_experts;
    int capacity_tokens;
    int *offsets, *experts;       /* (T+1), (pairs) */
    float *weights;               /* (pairs) */
    int *c_offsets, *c_experts;   /* (T+1), (compute pairs) */
    bool training;
    /* per batch */
    float lb_loss, z_loss;        /* values of the auxiliary terms (coefficients included) */
    int64_t *load;                /* (E) combine pairs per expert */
    double mean_active;           /* mean number of combine pairs per token */
    struct pm_routing_state *state; /* what the backward pass needs (internal) */
} pm_routing;

PM_API pm_router *pm_router_create(const pm_router_config *cfg);
PM_API void pm_router_free(pm_router *router);
PM_API const pm_router_config *pm_router_get_config(const pm_router *router);
/* The compiled circuit the router evaluates its subset distribution with (impl = circuit, or
 * probmoe-group): its nodes, edges, bytes and build time. false if it uses none. */
typedef struct {
    int nodes, edges;
    uint64_t bytes;
    double build_seconds;
} pm_circuit_info;
PM_API bool pm_router_circuit_info(const pm_router *router, pm_circuit_info *info);
/* P(i ∈ S) of one token's E logits under the router's subset distribution (its group limit
 * included); PM_ERR_ARG if the router has none. */
PM_API pm_status pm_router_subset_marginals(const pm_router *router, const float *theta, float *marginals);

/* Routing buffers for up to max_tokens tokens with this router. NULL on failure. */
PM_API pm_routing *pm_routing_create(const pm_router *router, int max_tokens);
PM_API void pm_routing_free(pm_routing *routing);

/*
 * Routes T tokens. logits is (T, E). Routers that sample in training draw from rng: token t
 * uses pm_rng_substream(rng, t), so results do not depend on thread count. rng may be NULL
 * when no sampling is needed (inference, or a router that does not sample).
 */
PM_API pm_status pm_router_forward(pm_router *router, pm_routing *out, const float *logits, int T,
                                   bool training, const pm_rng *rng);

/*
 * dlogits (T, E) += dL/dlogits given c (one value per compute pair, aligned with
 * c_experts); aux terms enter with weight aux_scale (1 when the aux values are added to
 * the loss as they are). Gradients of the router's learnable values (softmoe's soft_k and
 * alpha) accumulate in their grads (pm_router_value_get).
 */
PM_API pm_status pm_router_backward(pm_router *router, float *dlogits, const pm_routing *routing,
                                    const float *logits, const float *c, float aux_scale);

/* π = softmax(θ) of the last forward pass, (num_tokens, E). */
PM_API const float *pm_routing_probs(const pm_routing *routing);

/*
 * A router's persistent values, as its table entry lists them: its state (topk's
 * "selection_bias", E values; softmoe's "tau", 1) and its learnable parameters (softmoe's
 * "soft_k" and "alpha"). The model saves all of them with its weights and restores them on
 * load, so a reloaded model routes exactly as the saved one did. values (and grads, for
 * learnable ones) point into the router and may be written.
 */
typedef struct {
    const char *name, *help;
    int size;
    bool learnable;
    float *values;
    double *grads; /* accumulated by pm_router_backward; NULL for state */
} pm_router_value;

PM_API int pm_router_value_count(const pm_router *router);
PM_API pm_status pm_router_value_get(const pm_router *router, int index, pm_router_value *out);
/* The values named name (NULL if the router has none); *size gets their count. */
PM_API float *pm_router_find_value(const pm_router *router, const char *name, int *size);
/* Copies every value `to` has from the same-named value of `from` (sizes must agree). */
PM_API pm_status pm_router_copy_values(pm_router *to, const pm_router *from);
PM_API void pm_router_zero_grads(pm_router *router);
/* After an optimizer step: the router's per-step update (topk with bias_rate > 0:
 * b_i += γ·sign(mean load − load_i) over the training load since the last step). */
PM_API void pm_router_step(pm_router *router);

/*
 * softmoe learned budget over L layers: k_l = 1 + (K - L)·softmax(eta)_l.
 * Backward: d_eta += J^T d_k. Returns 0 or a negative pm_status (need K > L).
 */
PM_API pm_status pm_softmoe_budget_forward(float *k_out, const float *eta, int L, float K);
PM_API pm_status pm_softmoe_budget_backward(float *d_eta, const float *eta, const float *d_k, int L, float K);

/* ------------------------------------------------------------- the model */

/*
 * A MoE decoder of one of Hugging Face's families (config.json's model_type), whose MoE blocks
 * use any router above. The configuration mirrors the family's config.json; the router
 * settings live in its "probmoe" object.
 */
typedef enum {
    PM_ARCH_OLMOE = 0, /* OlmoeForCausalLM: q/k norms over the whole projections */
    PM_ARCH_QWEN2_MOE, /* Qwen2MoeForCausalLM: q/k/v biases, a sigmoid-gated shared expert */
    PM_ARCH_MIXTRAL,   /* MixtralForCausalLM: experts w1/w3/w2, renormalised top-k, sliding window */
} pm_arch;
/* config.json's model_type of the family ("olmoe", ...); NULL for an invalid value. */
PM_API const char *pm_arch_name(pm_arch arch);

/* The most decoder layers a model may have. */
#define PM_MAX_LAYERS 1024

typedef struct {
    pm_arch arch;
    int vocab_size, hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads;
    int num_experts, experts_per_token, max_position_embeddings;
    float rope_theta, rms_norm_eps, initializer_range;
    /* intermediate_size is the experts' width (qwen2_moe's moe_intermediate_size) */
    bool qkv_bias;            /* q, k and v projections have biases (qwen2_moe) */
    bool tie_word_embeddings; /* lm_head is the embedding (qwen2_moe may; olmoe and mixtral do not) */
    int shared_expert_size;   /* qwen2_moe: the shared expert's width; 0: no shared expert */
    int dense_intermediate_size; /* qwen2_moe: its config's intermediate_size (dense MLPs'), kept
                                    to be written back; 0 elsewhere */
    int sliding_window;       /* mixtral: each query sees the last sliding_window positions; 0: all */
    /* qwen2_moe's dense layers (its decoder_sparse_step and mlp_only_layers): layer l is a dense
     * SwiGLU MLP of width dense_intermediate_size, not a MoE layer, when mlp_only_layers[l] or
     * (l + 1) % decoder_sparse_step != 0. Step 0 or 1 and none listed: every layer is a MoE
     * layer (the only choice of the other families). pm_model_layer_is_moe applies the rule. */
    int decoder_sparse_step;
    bool mlp_only_layers[PM_MAX_LAYERS];
    pm_router_config router; /* num_experts and k mirror the fields above */
    /* The total K of the MoE layers' k_l for a router that learns a budget (softmoe); 0: M·soft_k.
     * Must lie in (M, M·E): every MoE layer keeps more than one and fewer than E experts. */
    float soft_budget;
} pm_model_config;

/* Whether decoder layer `layer` of cfg is a MoE layer (false for a dense MLP layer, or a layer
 * outside 0 .. num_layers-1). */
PM_API bool pm_model_layer_is_moe(const pm_model_config *cfg, int layer);
/* M, the MoE layers of cfg. Everything about routing that is per layer (a model's routings and
 * routers, the learned budget, router values, routing statistics, analytics) is indexed by the
 * MoE layer m in 0 .. M-1; it is the decoder layer when every layer is a MoE layer. */
PM_API int pm_model_moe_layers(const pm_model_config *cfg);
/* The decoder layer number of MoE layer m (-1 if there is none). */
PM_API int pm_model_moe_layer_number(const pm_model_config *cfg, int m);

/* K of cfg: soft_budget, or M·soft_k when it is 0 (soft_k defaults to k: M·k), M the MoE layers. */
PM_API float pm_model_soft_budget(const pm_model_config *cfg);

/* The demo model: 4 layers, hidden 256, 8 heads, 8 experts of width 512, k 2, probmoe. */
PM_API pm_model_config pm_model_config_default(void);
/* 0 or a negative pm_status with a message naming the field. */
PM_API pm_status pm_model_config_check(const pm_model_config *cfg);
/* Parses config.json text (source names it in messages). Unknown keys are ignored. */
PM_API pm_status pm_model_config_from_json(pm_model_config *cfg, const char *json, const char *source);
PM_API pm_status pm_model_config_load(pm_model_config *cfg, const char *path);
/* config.json text for cfg (Hugging Face's fields plus "probmoe"); free() it. NULL on OOM. */
PM_API char *pm_model_config_to_json(const pm_model_config *cfg);

typedef struct {
    const char *name;      /* Hugging Face tensor name */
    int rank;
    int64_t shape[2];
    size_t offset, count;  /* in floats, within the parameter (and gradient) array */
    bool decay;            /* AdamW weight decay applies (matrices, not norm weights) */
    bool router;           /* part of the routing (gate weights, learned budget): --freeze-router */
    bool optional;         /* a file may lack it (added later: the learned budget); it keeps its
                              initial value */
} pm_param;

typedef struct pm_model pm_model;

/*
 * The memory a model takes, in bytes, computed from the config before anything is allocated
 * (64-bit arithmetic; a part that would not fit is UINT64_MAX). pm_model_create allocates the
 * parameters, their gradients and the activations; training adds AdamW's two moments (and a
 * little scratch, counted with the activations). Not counted: the training data and the
 * libraries' own buffers (BLAS, OpenMP).
 */
typedef struct {
    uint64_t parameters;  /* the weights (float32) */
    uint64_t gradients;   /* their gradients: every model has them */
    uint64_t optimizer;   /* AdamW's m and v; 0 unless training */
    uint64_t activations; /* for a batch: the activations the backward pass reads, its scratch,
                             the logits, the routing and the experts' rows */
    uint64_t total;
    uint64_t activation_arena; /* of the activations: the one block pm_model_create lays them
                                  out on, planned from the config (what a model of it holds) */
} pm_memory_estimate;

/* The estimate for cfg with buffers for max_batch × max_seq tokens. 0 or a negative status
 * (a config that pm_model_config_check refuses, a batch or sequence below 1). */
PM_API pm_status pm_model_memory_estimate(const pm_model_config *cfg, int max_batch, int max_seq, bool training,
                                          pm_memory_estimate *out);
/* The memory this process can have: the physical memory (sysconf(_SC_PHYS_PAGES) ×
 * _SC_PAGESIZE), or a container's cgroup limit when that is lower; 0 if unknown. */
PM_API uint64_t pm_machine_memory(void);
/* PM_OK if the estimate fits pm_machine_memory(); else PM_ERR_NOMEM with a message giving the
 * estimate part by part and the machine's memory. pm_model_create checks (training false),
 * and so does training before it allocates (training true). */
PM_API pm_status pm_model_memory_check(const pm_model_config *cfg, int max_batch, int max_seq, bool training);

/* A model with buffers for batches of up to max_batch sequences of max_seq tokens. Refused
 * before any allocation if it does not fit this machine's memory (pm_model_memory_check). */
PM_API pm_model *pm_model_create(const pm_model_config *cfg, int max_batch, int max_seq);
PM_API void pm_model_free(pm_model *model);
PM_API const pm_model_config *pm_model_get_config(const pm_model *model);
/* The buffers' size: batches of up to max_batch sequences of max_seq tokens (pm_model_create). */
PM_API int pm_model_max_batch(const pm_model *model);
PM_API int pm_model_max_seq(const pm_model *model);

PM_API int pm_model_num_params(const pm_model *model);
PM_API const pm_param *pm_model_param(const pm_model *model, int index);
PM_API const pm_param *pm_model_find_param(const pm_model *model, const char *name);
PM_API size_t pm_model_size(const pm_model *model);   /* floats in the parameter array */
PM_API float *pm_model_weights(pm_model *model);      /* all parameters, one allocation (writable) */
PM_API float *pm_model_grads(pm_model *model);        /* their gradients, same layout */
PM_API void pm_model_zero_grads(pm_model *model);
/* Normal(0, initializer_range) matrices, embeddings normal(0, 1)·range, norm weights 1. */
PM_API void pm_model_init_weights(pm_model *model, uint64_t seed);

/*
 * The precision of the model's matrix products. FP32 (the default) is exact single precision
 * through OpenBLAS or oneDNN (pm_model_set_fp32_matmul, below). BF16 rounds the inputs of the
 * attention projections, the experts and lm_head to bf16 and accumulates in fp32 (oneDNN);
 * weights, gradients, the router (its logits and routing), norms, softmax and the loss stay
 * fp32, and the bf16 copy of the weights is made at the first forward pass after they change
 * (after pm_model_weights). PM_ERR_ARG, with what to install, in a build without oneDNN.
 */
typedef enum { PM_PRECISION_FP32, PM_PRECISION_BF16 } pm_precision;
PM_API pm_status pm_model_set_precision(pm_model *model, pm_precision precision);
PM_API pm_precision pm_model_get_precision(const pm_model *model);

/*
 * Which library runs the model's fp32 matrix products (the attention projections, the experts
 * and lm_head; the router's logits always go through OpenBLAS), per product and shape:
 *  - OPENBLAS (a new model's choice): cblas_sgemm everywhere, bit for bit as before;
 *  - MEASURED (probmoe train's default): oneDNN for the products and shapes that
 *    bench/matmul_sites measured faster with it on the development machine, OpenBLAS for the rest;
 *  - ONEDNN: oneDNN's f32 matmul everywhere;
 *  - AUTO: each product and shape is timed with both, a few times, when it first runs, and
 *    keeps oneDNN if it was more than 3% faster. Timings vary, so runs are no longer
 *    reproducible bit for bit from their seed.
 * The results of the two libraries agree to fp32 rounding, not bit for bit. ONEDNN and AUTO
 * are refused (PM_ERR_ARG, with what to install) in a build without oneDNN; MEASURED is then
 * OPENBLAS. bf16 products (pm_model_set_precision) are not affected.
 */
typedef enum {
    PM_FP32_MATMUL_OPENBLAS,
    PM_FP32_MATMUL_MEASURED,
    PM_FP32_MATMUL_ONEDNN,
    PM_FP32_MATMUL_AUTO
} pm_fp32_matmul;
PM_API pm_status pm_model_set_fp32_matmul(pm_model *model, pm_fp32_matmul choice);
PM_API pm_fp32_matmul pm_model_get_fp32_matmul(const pm_model *model);

/*
 * Forward pass over tokens (B, S). With targets (B, S; < 0 ignored) it sets *loss to the
 * mean cross-entropy plus the routers' auxiliary terms summed over MoE layers. Training mode
 * samples routes with generator (seed, stream = step·L + l, l the decoder layer). Logits stay
 * available.
 */
PM_API pm_status pm_model_forward(pm_model *model, const int32_t *tokens, const int32_t *targets, int B,
                     int S, bool training, uint64_t seed, uint64_t step, float *loss);
/* Gradients of the last forward's loss, accumulated (+=) into pm_model_grads. */
PM_API pm_status pm_model_backward(pm_model *model);
PM_API const float *pm_model_logits(const pm_model *model);          /* (B, S, V) */
PM_API void pm_model_last_losses(const pm_model *model, float *ce, float *aux);
/* MoE layer m's routing of the last forward and its router; NULL unless 0 <= m < M
 * (pm_model_moe_layers). */
PM_API const pm_routing *pm_model_routing(const pm_model *model, int m);
PM_API pm_router *pm_model_router(pm_model *model, int m);
/* The learned budget's current per-layer k_l and alpha (each M values; either may be NULL),
 * from the model's tensors: the values the routers use (k_l capped at E − 1/2). false if the
 * model's router learns no budget. Also sets them into the routers, so that a generator or
 * a saved model uses the budget after the last update. */
PM_API bool pm_model_budget(pm_model *model, float *k, float *alpha);

/*
 * Test hook: when set, each training forward asks source(user, m, T, &offsets, &experts)
 * for the subsets to use in MoE layer m (CSR over tokens, experts increasing); returning false
 * lets the router choose. The subsets then get the router's training weights (π_j for
 * probmoe). Used to replay the samples of the PyTorch reference.
 */
typedef bool (*pm_routing_source)(void *user, int layer, int T, const int **offsets,
                                  const int **experts);
PM_API void pm_model_set_routing_source(pm_model *model, pm_routing_source source, void *user);

/* Writes the model directory dir (config.json, model.safetensors with Hugging Face names,
 * F32), replacing an existing one crash-safely: a crash leaves the old or the new directory. */
PM_API pm_status pm_model_save(pm_model *model, const char *dir);
/* Every MoE layer's router values (pm_router_value: state and learnable parameters) as JSON,
 * {"name": [[MoE layer 0 values], [MoE layer 1 values], ...], ...}; free() it; NULL on OOM. The model
 * directory keeps it in the weights' metadata ("probmoe.router_values"). */
PM_API char *pm_model_router_values_json(const pm_model *model);
/* Sets the values the JSON lists (names the router lacks, or wrong sizes: an error, and
 * nothing changes); values it does not list keep theirs. */
PM_API pm_status pm_model_set_router_values_json(pm_model *model, const char *json, const char *source);
/* Loads a model directory written by pm_model_save (or another tool with the same names). */
PM_API pm_model *pm_model_load(const char *dir, int max_batch, int max_seq);

/*
 * Generation with a key/value cache. Each fed token returns the logits for the next one.
 * router == NULL keeps the model's router (at its inference rule); another config (same E)
 * switches, e.g., a probmoe-trained model to probmoe-dyn MAP routing with a range.
 *
 * A generator has rows 0 .. rows-1, independent sequences of up to max_len tokens, each with
 * its own cache and length; pm_generator_create makes one row, and the calls without a row
 * use row 0. pm_generator_feed_rows feeds one token to each of several rows in one step (a
 * batch of prompts of different lengths, each at its own position) and reads the weights once
 * for all of them. Rows do not interact: a row's logits are bit for bit those of the same
 * tokens fed to a one-row generator (routers that set state on their first tokens, softmoe's
 * tau on an untrained model, take it from the first step's first row alone).
 */
typedef struct pm_generator pm_generator;
PM_API pm_generator *pm_generator_create(pm_model *model, const pm_router_config *router, int max_len);
/* rows from 1 to 65536; the caches take rows × layers × max_len × 2 × KV floats. */
PM_API pm_generator *pm_generator_create_rows(pm_model *model, const pm_router_config *router, int max_len,
                                              int rows);
PM_API void pm_generator_free(pm_generator *gen);
PM_API void pm_generator_reset(pm_generator *gen);                      /* every row */
PM_API pm_status pm_generator_reset_row(pm_generator *gen, int row);    /* that row only */
PM_API pm_status pm_generator_feed(pm_generator *gen, int32_t token, float *logits); /* logits (V) or NULL */
/* tokens[i] to row rows[i], i < count (distinct rows, count <= rows); logits (count, V), line i
 * for rows[i], or NULL (then the last products are skipped: prompt tokens need none). Checked
 * before anything changes: a full row, a repeated row or a bad token fails the whole step. */
PM_API pm_status pm_generator_feed_rows(pm_generator *gen, const int *rows, const int32_t *tokens, int count,
                                        float *logits);
/* The precision of the generator's matrix products. FP32 (the default) reads the model's
 * weights; BF16 converts them to bf16 once, now (call again after changing the weights), and
 * reads that copy, half the bytes per token: inputs and sums stay fp32, and so do the
 * embedding, the norms and the router (its logits and routing). Needs no oneDNN. */
PM_API pm_status pm_generator_set_precision(pm_generator *gen, pm_precision precision);
PM_API pm_precision pm_generator_get_precision(const pm_generator *gen);
PM_API int pm_generator_rows(const pm_generator *gen);
PM_API int pm_generator_length(const pm_generator *gen);                  /* row 0's tokens */
PM_API int pm_generator_row_length(const pm_generator *gen, int row);     /* -1 for no such row */
/* Experts per token in MoE layer m, over every token fed since the last pm_generator_reset
 * (NaN unless 0 <= m < M). */
PM_API double pm_generator_mean_active(const pm_generator *gen, int m);
/* Greedy when temperature <= 0; otherwise nucleus sampling with top_p in (0, 1]. */
PM_API int pm_sample_token(const float *logits, int V, float temperature, float top_p, pm_rng *rng);

/* Routes with given subsets instead of choosing (the hook above, for one router). */
PM_API pm_status pm_router_forward_given(pm_router *router, pm_routing *out, const float *logits, int T,
                            bool training, const int *offsets, const int *experts);

#ifdef __cplusplus
}
#endif
#endif /* PROBMOE_H */
