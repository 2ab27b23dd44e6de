/* The precision of the model's matrix products (pm_model_set_precision): the bf16 context, the
 * weights' bf16 copy, and the experts' pointers into it. */
#include <stdint.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/memory.h"
#include "model/model_internal.h"

/* Points every layer's experts (weights16 NULL: fp32) and MoE state at the copy. */
static void point_experts(pm_model *model) {
    for (int l = 0; l < model->cfg.num_layers; l++) {
        layer_state *layer = &model->layers[l];
        layer->moe.bf16 = model->bf16;
        for (int e = 0; e < model->cfg.num_experts; e++) {
            const int first = model->layer_params[l].expert0 + 3 * e;
            layer->experts[e].gate16 = param_weights16(model, first);
            layer->experts[e].up16 = param_weights16(model, first + 1);
            layer->experts[e].down16 = param_weights16(model, first + 2);
        }
    }
}

uint64_t model_bf16_scratch_elements(const pm_model_config *cfg, uint64_t tokens) {
    const uint64_t H = (uint64_t)cfg->hidden_size, I = (uint64_t)cfg->intermediate_size;
    const uint64_t V = (uint64_t)cfg->vocab_size;
    const uint64_t pairs = sat_mul(tokens, (uint64_t)model_pairs_per_token(&cfg->router));
    const uint64_t expert = sat_mul(pairs, 2 * I > H ? 2 * I : H), widest = sat_mul(tokens, V > H ? V : H);
    return expert > widest ? expert : widest;
}

pm_status pm_model_set_precision(pm_model *model, pm_precision precision) {
    if (precision != PM_PRECISION_FP32 && precision != PM_PRECISION_BF16)
        return pm_fail(PM_ERR_ARG, "pm_model_set_precision: unknown precision %d", (int)precision);
    if ((precision == PM_PRECISION_BF16) == (model->bf16 != NULL)) return PM_OK;
    if (precision == PM_PRECISION_FP32) {
        matmul_bf16_free(model->bf16);
        free(model->weights16);
        model->bf16 = NULL;
        model->weights16 = NULL;
        point_experts(model);
        return PM_OK;
    }
    matmul_bf16 *ctx = matmul_bf16_create();
    if (!ctx) return pm_fail(PM_ERR_ARG, "%s", pm_last_error());
    /* the inputs' bf16 copies for the largest product of a full batch, up front: a run that
     * cannot have them is refused now rather than slowed to fp32 later */
    const uint64_t scratch = model_bf16_scratch_elements(&model->cfg, (uint64_t)model->max_batch * model->max_seq);
    if (scratch > SIZE_MAX / 2 || !matmul_bf16_reserve(ctx, (size_t)scratch)) {
        matmul_bf16_free(ctx);
        return pm_fail(PM_ERR_NOMEM, "pm_model_set_precision: out of memory for the bf16 copies of %llu product "
                       "inputs; use a smaller batch or sequence", (unsigned long long)scratch);
    }
    /* malloc: under expert parallelism the pages of other ranks' experts are never written */
    uint16_t *copy = malloc(sizeof(uint16_t) * (model->size ? model->size : 1));
    if (!copy) {
        matmul_bf16_free(ctx);
        return pm_fail(PM_ERR_NOMEM, "pm_model_set_precision: out of memory for the bf16 copy of %zu weights",
                       model->size);
    }
    model->bf16 = ctx;
    model->weights16 = copy;
    model->weights16_stale = true;
    point_experts(model);
    return PM_OK;
}

pm_precision pm_model_get_precision(const pm_model *model) {
    return model->bf16 ? PM_PRECISION_BF16 : PM_PRECISION_FP32;
}

/* Every value this rank keeps (model_param_kept): rank 0 evaluates with other ranks' experts
 * too, once collected. */
void model_refresh_weights16(pm_model *model) {
    if (!model->weights16 || !model->weights16_stale) return;
    for (int i = 0; i < model->num_params; i++) {
        const pm_param *param = &model->params[i];
        if (model_param_kept(model, i))
            float_to_bf16(model->weights16 + param->offset, model->weights + param->offset, param->count);
    }
    model->weights16_stale = false;
}

/* AdamW wrote the copy of what it updated: what this rank trains. Other ranks' experts that
 * rank 0 keeps change only when collected, which marks the copy stale again. */
void model_weights16_written(pm_model *model) { model->weights16_stale = false; }
