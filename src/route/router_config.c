/* Router kinds, default configurations and their validation. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "probmoe.h"

static const char *const kind_names[PM_ROUTER_KIND_COUNT] = {
    "topk", "probmoe", "probmoe-dyn", "densemixer", "softmoe",
};

int pm_router_kind_count(void) { return PM_ROUTER_KIND_COUNT; }

const char *pm_router_kind_name(pm_router_kind kind) {
    return kind >= 0 && kind < PM_ROUTER_KIND_COUNT ? kind_names[kind] : NULL;
}

int pm_router_kind_parse(const char *name, pm_router_kind *kind) {
    for (int i = 0; name && i < PM_ROUTER_KIND_COUNT; i++)
        if (strcmp(name, kind_names[i]) == 0) {
            *kind = (pm_router_kind)i;
            return PM_OK;
        }
    return pm_fail(PM_ERR_ARG,
                   "unknown router '%s'; choose one of topk, probmoe, probmoe-dyn, densemixer, softmoe",
                   name ? name : "(null)");
}

pm_router_config pm_router_config_default(pm_router_kind kind, int num_experts, int k) {
    pm_router_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kind = kind;
    cfg.num_experts = num_experts;
    cfg.k = k;
    /* dynamic-k: a range around k, [ceil(k/2), max(k+1, k + k/2)], so that the average
     * budget stays near exact-k's */
    cfg.k_min = k > 1 ? (k + 1) / 2 : 1;
    cfg.k_max = k + k / 2 > k + 1 ? k + k / 2 : k + 1;
    if (cfg.k_max > num_experts) cfg.k_max = num_experts;
    cfg.soft_k = (float)k;
    cfg.alpha = 1.0f;
    cfg.tau = -1.0f;
    cfg.cap = 2.0f;
    return cfg;
}

static int check_nonnegative(float value, const char *field) {
    if (!(value >= 0.0f) || !isfinite(value))
        return pm_fail(PM_ERR_ARG, "router config: %s = %g; need a finite value >= 0 (0 turns it off)",
                       field, (double)value);
    return PM_OK;
}

int pm_router_config_check(const pm_router_config *cfg) {
    if (!cfg) return pm_fail(PM_ERR_ARG, "router config is NULL");
    const char *name = pm_router_kind_name(cfg->kind);
    if (!name) return pm_fail(PM_ERR_ARG, "router config: kind = %d is not a router kind", (int)cfg->kind);
    const int E = cfg->num_experts;
    if (E < 1) return pm_fail(PM_ERR_ARG, "router config: num_experts = %d; need at least 1", E);
    switch (cfg->kind) {
    case PM_ROUTER_TOPK:
    case PM_ROUTER_PROBMOE:
    case PM_ROUTER_DENSEMIXER:
        if (cfg->k < 1 || cfg->k > E)
            return pm_fail(PM_ERR_ARG, "router config (%s): k = %d; need 1 <= k <= num_experts = %d",
                           name, cfg->k, E);
        break;
    case PM_ROUTER_PROBMOE_DYN:
        if (cfg->k_min < 0 || cfg->k_max < 1 || cfg->k_min > cfg->k_max || cfg->k_max > E)
            return pm_fail(PM_ERR_ARG,
                           "router config (probmoe-dyn): k_min = %d, k_max = %d; need "
                           "0 <= k_min <= k_max <= num_experts = %d and k_max >= 1",
                           cfg->k_min, cfg->k_max, E);
        break;
    case PM_ROUTER_SOFTMOE:
        if (!(cfg->soft_k > 0.0f && cfg->soft_k < (float)E))
            return pm_fail(PM_ERR_ARG, "router config (softmoe): soft_k = %g; need 0 < soft_k < num_experts = %d",
                           (double)cfg->soft_k, E);
        if (!(cfg->alpha > 0.0f) || !isfinite(cfg->alpha))
            return pm_fail(PM_ERR_ARG, "router config (softmoe): alpha = %g; need a finite alpha > 0",
                           (double)cfg->alpha);
        if (!(cfg->cap >= 1.0f) || !isfinite(cfg->cap))
            return pm_fail(PM_ERR_ARG, "router config (softmoe): cap = %g; need a finite cap >= 1",
                           (double)cfg->cap);
        if (!isfinite(cfg->tau) || cfg->tau >= 1.0f)
            return pm_fail(PM_ERR_ARG, "router config (softmoe): tau = %g; need tau < 1 (negative: calibrate "
                           "on the first batch)", (double)cfg->tau);
        break;
    default:
        break;
    }
    int status = check_nonnegative(cfg->lb_coef, "lb_coef");
    if (status == 0) status = check_nonnegative(cfg->z_coef, "z_coef");
    if (status == 0) status = check_nonnegative(cfg->bias_rate, "bias_rate");
    if (status == 0 && cfg->bias_rate > 0.0f && cfg->kind != PM_ROUTER_TOPK)
        return pm_fail(PM_ERR_ARG, "router config (%s): bias_rate = %g; the selection bias is for topk only",
                       name, (double)cfg->bias_rate);
    return status;
}
