/* The precision of the model's matrix products (pm_model_set_precision) and who runs the fp32
 * ones (pm_model_set_fp32_matmul): the oneDNN context, the weights' bf16 copy, and the experts'
 * pointers into them. */
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/memory.h"
#include "model/model_internal.h"

/* Points every layer's experts (weights16 NULL: fp32) and MoE state at the copy. */
static void point_experts(pm_model *model) {
    for (int m = 0; m < model->num_moe; m++) {
        layer_state *layer = moe_layer(model, m);
        layer->moe.bf16 = model->bf16;
        for (int e = 0; e < model->cfg.num_experts; e++) {
            const int first = model->layer_params[model->moe_layers[m]].expert0 + 3 * e;
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
    /* the (T, 2W) gradient of the shared expert or of a dense layer's MLP */
    const uint64_t shared = sat_mul(tokens, 2 * (uint64_t)model_mlp_width(cfg));
    const uint64_t most = expert > widest ? expert : widest;
    return shared > most ? shared : most;
}

uint64_t model_bf16_owner_elements(const pm_model_config *cfg, uint64_t rows) {
    const uint64_t H = (uint64_t)cfg->hidden_size, I = (uint64_t)cfg->intermediate_size;
    return sat_mul(rows, 2 * I > H ? 2 * I : H);
}

/* Whether the measured table (matmul_measured_onednn) sends any product of the model's linear
 * layers to oneDNN: q and o (H, H), k and v (H, KV), the experts' gate and up as one (H, 2I)
 * and down (I, H), lm_head (H, V). */
static bool measured_takes_onednn(const pm_model *model) {
    const pm_model_config *cfg = &model->cfg;
    const int H = cfg->hidden_size, I = cfg->intermediate_size, V = cfg->vocab_size;
    const int KV = H / cfg->num_heads * cfg->num_kv_heads;
    const int shapes[][2] = {{H, H}, {H, KV}, {H, 2 * I}, {I, H}, {H, V}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int kind = 0; kind < MATMUL_PRODUCTS; kind++)
            if (matmul_measured_onednn((matmul_product)kind, shapes[i][0], shapes[i][1])) return true;
    return false;
}

/* Whether the products need the oneDNN context: bf16 (a bf16 copy), or fp32 products that may
 * go to oneDNN. Without the context every fp32 product is OpenBLAS's, as before. */
static bool needs_context(const pm_model *model, bool bf16, pm_fp32_matmul fp32) {
    if (bf16) return true;
    if (!matmul_bf16_available()) return false;
    return fp32 == PM_FP32_MATMUL_ONEDNN || fp32 == PM_FP32_MATMUL_AUTO ||
           (fp32 == PM_FP32_MATMUL_MEASURED && measured_takes_onednn(model));
}

/* Makes the context if it is needed and missing (false, with the reason, if it cannot). */
static bool make_context(pm_model *model, bool bf16, pm_fp32_matmul fp32) {
    if (model->bf16 || !needs_context(model, bf16, fp32)) return true;
    model->bf16 = matmul_bf16_create();
    if (model->bf16) matmul_set_fp32(model->bf16, model->fp32_matmul);
    return model->bf16 != NULL;
}

/* A worker of the context per thread for the MoE layer's experts run side by side (moe.c), with
 * room for the bf16 copies of the largest such expert's inputs in bf16: made now, so that a run
 * that cannot have them is refused here rather than slowed later. */
static bool reserve_workers(pm_model *model, bool bf16) {
    const pm_model_config *cfg = &model->cfg;
    const uint64_t elements = bf16 ? moe_side_by_side_elements(cfg->hidden_size, cfg->intermediate_size) : 0;
    return elements <= SIZE_MAX / 2 && matmul_bf16_reserve_workers(model->bf16, omp_get_max_threads(), (size_t)elements);
}

/* Frees the context if nothing needs it any more. */
static void drop_context(pm_model *model) {
    if (!model->bf16 || needs_context(model, model->weights16 != NULL, model->fp32_matmul)) return;
    matmul_bf16_free(model->bf16);
    model->bf16 = NULL;
}

pm_status pm_model_set_precision(pm_model *model, pm_precision precision) {
    if (precision != PM_PRECISION_FP32 && precision != PM_PRECISION_BF16)
        return pm_fail(PM_ERR_ARG, "pm_model_set_precision: unknown precision %d", (int)precision);
    if ((precision == PM_PRECISION_BF16) == (model->weights16 != NULL)) return PM_OK;
    if (precision == PM_PRECISION_FP32) {
        free(model->weights16);
        model->weights16 = NULL;
        drop_context(model);
        point_experts(model);
        return PM_OK;
    }
    if (!make_context(model, true, model->fp32_matmul)) return pm_fail(PM_ERR_ARG, "%s", pm_last_error());
    /* the inputs' bf16 copies for the largest product of a full batch, up front: a run that
     * cannot have them is refused now rather than slowed to fp32 later */
    const uint64_t scratch = model_bf16_scratch_elements(&model->cfg, (uint64_t)model->max_batch * model->max_seq);
    if (scratch > SIZE_MAX / 2 || !matmul_bf16_reserve(model->bf16, (size_t)scratch)) {
        drop_context(model);
        return pm_fail(PM_ERR_NOMEM, "pm_model_set_precision: out of memory for the bf16 copies of %llu product "
                       "inputs; use a smaller batch or sequence", (unsigned long long)scratch);
    }
    if (!reserve_workers(model, true)) {
        drop_context(model);
        return pm_fail(PM_ERR_NOMEM, "pm_model_set_precision: out of memory for the bf16 copies of the experts' "
                       "inputs on %d threads; use fewer threads (OMP_NUM_THREADS)", omp_get_max_threads());
    }
    /* malloc: under expert parallelism the pages of other ranks' experts are never written */
    uint16_t *copy = malloc(sizeof(uint16_t) * (model->size ? model->size : 1));
    if (!copy) {
        drop_context(model);
        return pm_fail(PM_ERR_NOMEM, "pm_model_set_precision: out of memory for the bf16 copy of %zu weights",
                       model->size);
    }
    model->weights16 = copy;
    model->weights16_stale = true;
    point_experts(model);
    return PM_OK;
}

pm_precision pm_model_get_precision(const pm_model *model) {
    return model->weights16 ? PM_PRECISION_BF16 : PM_PRECISION_FP32;
}

pm_status pm_model_set_fp32_matmul(pm_model *model, pm_fp32_matmul choice) {
    if (choice < PM_FP32_MATMUL_OPENBLAS || choice > PM_FP32_MATMUL_AUTO)
        return pm_fail(PM_ERR_ARG, "pm_model_set_fp32_matmul: unknown choice %d", (int)choice);
    if ((choice == PM_FP32_MATMUL_ONEDNN || choice == PM_FP32_MATMUL_AUTO) && !matmul_bf16_available())
        return pm_fail(PM_ERR_ARG, "fp32 matrix products through oneDNN need oneDNN, which this probmoe was built "
                       "without: install libdnnl-dev (apt-get install libdnnl-dev, or scripts/setup.sh) and rebuild, "
                       "or use OpenBLAS (--fp32-matmul openblas)");
    const pm_fp32_matmul before = model->fp32_matmul;
    model->fp32_matmul = choice;
    if (!make_context(model, model->weights16 != NULL, choice)) {
        model->fp32_matmul = before;
        return pm_fail(PM_ERR_STATE, "%s", pm_last_error());
    }
    if (model->bf16 && !reserve_workers(model, model->weights16 != NULL)) {
        model->fp32_matmul = before;
        drop_context(model);
        return pm_fail(PM_ERR_NOMEM, "pm_model_set_fp32_matmul: out of memory for the matrix products of %d threads",
                       omp_get_max_threads());
    }
    if (model->bf16) matmul_set_fp32(model->bf16, choice);
    drop_context(model);
    point_experts(model);
    return PM_OK;
}

pm_fp32_matmul pm_model_get_fp32_matmul(const pm_model *model) { return model->fp32_matmul; }

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
