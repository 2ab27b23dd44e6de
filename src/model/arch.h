/* The architecture table: one entry per Hugging Face MoE family, keyed by config.json's
 * model_type. Everything that differs between the families' blocks and tensor names is here,
 * so that one model code path (params.c, model.c, generate.c) serves them all. */
#ifndef PM_MODEL_ARCH_H
#define PM_MODEL_ARCH_H

#include <stdbool.h>

#include "probmoe.h"

typedef struct {
    pm_arch arch;
    const char *model_type;        /* config.json's model_type */
    const char *architecture;      /* config.json's architectures[0] */
    const char *num_experts_key;   /* "num_experts" or Mixtral's "num_local_experts" */
    const char *expert_width_key;  /* the experts' width: "intermediate_size" or "moe_intermediate_size" */
    const char *moe_prefix;        /* the MoE block's module: "mlp" or "block_sparse_moe" */
    const char *expert_names[3];   /* the experts' gate, up and down projections */
    bool qk_norm;                  /* RMSNorm over the whole projected q and k (OLMoE) */
    bool qkv_bias_allowed;         /* the family's config may give q/k/v biases */
    bool shared_expert;            /* a sigmoid-gated shared SwiGLU expert beside the routed ones */
    bool always_norm_topk;         /* the family's router renormalises the top-k weights (Mixtral) */
    bool sliding_window_allowed;   /* sliding_window may be set */
} model_arch;

/* The entry of a family (an invalid value gives OLMoE's: pm_model_config_check refuses it). */
const model_arch *arch_get(pm_arch arch);
/* The entry for a model_type, or NULL. */
const model_arch *arch_find(const char *model_type);
/* "olmoe, qwen2_moe, mixtral", for messages. */
const char *arch_list(void);

#endif
