/* Router configurations: the shared defaults and checks, then each router's own (its table
 * entry's defaults and check). */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "route/router_internal.h"

pm_router_config pm_router_config_default(pm_router_kind kind, int num_experts, int k) {
    pm_router_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kind = kind;
    cfg.num_experts = num_experts;
    cfg.k = k;
    /* every router's fields get a value, so that switching kinds keeps a valid config */
    cfg.k_min = cfg.k_max = k;
    cfg.soft_k = (float)k;
    cfg.alpha = 1.0f;
    cfg.tau = -1.0f;
    cfg.cap = 2.0f;
    cfg.impl = PM_IMPL_DP;
    cfg.groups = cfg.max_groups = 1;
    const router_ops *ops = router_ops_of(kind);
    if (ops && ops->defaults && num_experts >= 1) ops->defaults(&cfg);
    return cfg;
}

static int check_nonnegative(float value, const char *field) {
    if (!(value >= 0.0f) || !isfinite(value))
        return pm_fail(PM_ERR_ARG, "router config: %s = %g; need a finite value >= 0 (0 turns it off)",
                       field, (double)value);
    return PM_OK;
}

pm_status pm_router_config_check(const pm_router_config *cfg) {
    if (!cfg) return pm_fail(PM_ERR_ARG, "router config is NULL");
    const router_ops *ops = router_ops_of(cfg->kind);
    if (!ops)
        return pm_fail(PM_ERR_ARG, "router config: kind = %d is not a router; choose one of %s", (int)cfg->kind,
                       pm_router_kind_list());
    const int E = cfg->num_experts;
    if (E < 1) return pm_fail(PM_ERR_ARG, "router config: num_experts = %d; need at least 1", E);
    if (cfg->impl != PM_IMPL_DP && cfg->impl != PM_IMPL_CIRCUIT)
        return pm_fail(PM_ERR_ARG, "router config (%s): impl = %d; choose dp (%d) or circuit (%d)", ops->name,
                       cfg->impl, PM_IMPL_DP, PM_IMPL_CIRCUIT);
    if (cfg->impl == PM_IMPL_CIRCUIT && !ops->subset_range)
        return pm_fail(PM_ERR_ARG, "router config (%s): impl = circuit, but %s has no subset distribution to "
                       "compute; --impl applies to the routers that sample or differentiate p(S) (probmoe, "
                       "probmoe-dyn, probmoe-group and the ablations)", ops->name, ops->name);
    int status = ops->check ? ops->check(cfg) : PM_OK;
    if (status == 0 && router_uses_circuit(cfg)) {
        status = router_check_circuit(cfg);
        if (status < 0) pm_fail(status, "router config (%s): %s", ops->name, pm_last_error());
    }
    if (status == 0) status = check_nonnegative(cfg->lb_coef, "lb_coef");
    if (status == 0) status = check_nonnegative(cfg->z_coef, "z_coef");
    if (status == 0) status = check_nonnegative(cfg->bias_rate, "bias_rate");
    bool has_bias = false;
    for (int i = 0; i < ops->state_count; i++) has_bias |= strcmp(ops->state[i].name, "selection_bias") == 0;
    if (status == 0 && cfg->bias_rate > 0.0f && !has_bias)
        return pm_fail(PM_ERR_ARG, "router config (%s): bias_rate = %g; the selection bias is for topk only: "
                       "set it to 0 or use the topk router",
                       ops->name, (double)cfg->bias_rate);
    return status;
}
