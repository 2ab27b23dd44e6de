/* SoftMoE's learned per-layer budget as model tensors (docs/ROUTING.md section 3, "The learned budget"):
 * k_m = 1 + (K − M)·softmax(eta)_m over the M MoE layers under the global budget K, and alpha_l = exp(log_alpha_l),
 * so that the optimizer can move both freely while the sum of the k_l stays K and alpha stays
 * positive. The routers keep soft_k and alpha as learnable values; the model sets them from
 * these tensors before each forward pass and reads their gradients after each backward. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "model/model_internal.h"

/* LapSum's threshold needs k < E: a layer's k_l is used capped here, its gradient 0 while capped. */
static float usable_k(float k, int E) {
    const float most = (float)E - 0.5f;
    return k < most ? k : most;
}

float pm_model_soft_budget(const pm_model_config *cfg) {
    /* soft_k defaults to k, so the default is M·k; a given --soft-k sets the starting k_m */
    return cfg->soft_budget > 0.0f ? cfg->soft_budget : (float)pm_model_moe_layers(cfg) * cfg->router.soft_k;
}

void model_budget_init(pm_model *model) {
    if (model->budget_eta < 0) return;
    memset(param_weights(model, model->budget_eta), 0, sizeof(float) * (size_t)model->num_moe);
    for (int m = 0; m < model->num_moe; m++)
        *param_weights(model, model->layer_params[model->moe_layers[m]].log_alpha) = logf(model->cfg.router.alpha);
}

int model_budget_apply(pm_model *model) {
    if (model->budget_eta < 0) return PM_OK;
    const pm_model_config *cfg = &model->cfg;
    int status = pm_softmoe_budget_forward(model->budget_k, param_weights(model, model->budget_eta), model->num_moe,
                                           pm_model_soft_budget(cfg));
    for (int m = 0; status == 0 && m < model->num_moe; m++) {
        const int l = model->moe_layers[m];
        const float log_alpha = *param_weights(model, model->layer_params[l].log_alpha);
        if (!isfinite(log_alpha))
            return pm_fail(PM_ERR_NONFINITE, "model: the learned log alpha of layer %d is %g", l, (double)log_alpha);
        pm_router *router = model->layers[l].router;
        *pm_router_find_value(router, "soft_k", NULL) = usable_k(model->budget_k[m], cfg->num_experts);
        *pm_router_find_value(router, "alpha", NULL) = expf(log_alpha);
    }
    return status;
}

/* The router's accumulated gradient of value `name` (one number). */
static double *value_grad(const pm_router *router, const char *name) {
    pm_router_value value;
    for (int i = 0; i < pm_router_value_count(router); i++)
        if (pm_router_value_get(router, i, &value) == PM_OK && strcmp(value.name, name) == 0) return value.grads;
    return NULL;
}

void model_budget_collect(pm_model *model, int m) {
    if (model->budget_eta < 0) return;
    const pm_router *router = moe_layer(model, m)->router;
    const double d_k = *value_grad(router, "soft_k"), d_alpha = *value_grad(router, "alpha");
    const bool capped = model->budget_k[m] != usable_k(model->budget_k[m], model->cfg.num_experts);
    model->budget_dk[m] = capped ? 0.0f : (float)d_k;
    const float alpha = *pm_router_find_value(router, "alpha", NULL);
    *param_grads(model, model->layer_params[model->moe_layers[m]].log_alpha) += (float)(d_alpha * alpha);
}

int model_budget_finish(pm_model *model) {
    if (model->budget_eta < 0) return PM_OK;
    const pm_model_config *cfg = &model->cfg;
    return pm_softmoe_budget_backward(param_grads(model, model->budget_eta), param_weights(model, model->budget_eta),
                                      model->budget_dk, model->num_moe, pm_model_soft_budget(cfg));
}

bool pm_model_budget(pm_model *model, float *k, float *alpha) {
    if (!model || model->budget_eta < 0 || model_budget_apply(model) < 0) return false;
    const int M = model->num_moe;
    if (k && pm_softmoe_budget_forward(k, model->weights + model->params[model->budget_eta].offset, M,
                                       pm_model_soft_budget(&model->cfg)) < 0)
        return false;
    for (int m = 0; k && m < M; m++) k[m] = usable_k(k[m], model->cfg.num_experts);
    for (int m = 0; alpha && m < M; m++)
        alpha[m] = expf(model->weights[model->params[model->layer_params[model->moe_layers[m]].log_alpha].offset]);
    return true;
}
