/* The tiny model configuration most model-level tests share: 2 layers, hidden 32, 4 heads
 * over 2 KV heads, 6 experts of width 24, k 2, vocabulary 50, context 64. */
#ifndef PM_TEST_TINY_MODEL_H
#define PM_TEST_TINY_MODEL_H

#include "probmoe.h"

pm_model_config tiny_model_config(pm_router_kind kind);
/* The same model in another family, every part of the family on: qwen2_moe with q/k/v biases, a
 * shared expert of width 20 and tied embeddings; mixtral with a sliding window of 5 positions
 * (and its renormalised top-k). */
pm_model_config tiny_family_config(pm_arch arch, pm_router_kind kind);
/* qwen2_moe's with dense layers: 4 layers, decoder_sparse_step 2, so layers 0 and 2 are dense
 * MLPs (width 40) and 1 and 3 MoE layers. */
pm_model_config tiny_dense_config(pm_router_kind kind);
/* Biases (initialised to 0) set to values of about 0.3, so that a test sees them. */
void tiny_model_set_biases(pm_model *model);

#endif
