/* The architecture table (arch.h). Facts from the families' published Hugging Face modeling
 * code: OLMoE normalises the whole q and k projections; Qwen2-MoE puts biases
 * on q, k and v only, adds a shared expert scaled by sigmoid(shared_expert_gate(x)) and
 * renormalises the top-k weights only with norm_topk_prob; Mixtral names its block
 * block_sparse_moe and its experts w1 (gate), w3 (up) and w2 (down), always renormalises the
 * top-k weights, and may restrict attention to a sliding window. Every family may tie lm_head
 * to the embedding (tie_word_embeddings). */
#include <string.h>

#include "model/arch.h"

static const model_arch table[] = {
    {PM_ARCH_OLMOE, "olmoe", "OlmoeForCausalLM", "num_experts", "intermediate_size", "mlp",
     {"gate_proj", "up_proj", "down_proj"}, true, false, false, false, false},
    {PM_ARCH_QWEN2_MOE, "qwen2_moe", "Qwen2MoeForCausalLM", "num_experts", "moe_intermediate_size", "mlp",
     {"gate_proj", "up_proj", "down_proj"}, false, true, true, false, false},
    {PM_ARCH_MIXTRAL, "mixtral", "MixtralForCausalLM", "num_local_experts", "intermediate_size", "block_sparse_moe",
     {"w1", "w3", "w2"}, false, false, false, true, true},
};
enum { ARCH_COUNT = sizeof table / sizeof table[0] };

const model_arch *arch_get(pm_arch arch) {
    for (int i = 0; i < ARCH_COUNT; i++)
        if (table[i].arch == arch) return &table[i];
    return &table[0];
}

const model_arch *arch_find(const char *model_type) {
    for (int i = 0; i < ARCH_COUNT; i++)
        if (strcmp(table[i].model_type, model_type) == 0) return &table[i];
    return NULL;
}

const char *arch_list(void) { return "olmoe, qwen2_moe, mixtral"; }

const char *pm_arch_name(pm_arch arch) {
    for (int i = 0; i < ARCH_COUNT; i++)
        if (table[i].arch == arch) return table[i].model_type;
    return NULL;
}
