#include "route/router_fields.h"

#include <string.h>

static const router_field fields[] = {
    {"k_min", "--kmin", ROUTER_FIELD_INT, offsetof(pm_router_config, k_min),
     "fewest experts per token (probmoe-dyn)", 0, 4096, false, false},
    {"k_max", "--kmax", ROUTER_FIELD_INT, offsetof(pm_router_config, k_max),
     "most experts per token (probmoe-dyn)", 1, 4096, false, false},
    {"soft_k", "--soft-k", ROUTER_FIELD_FLOAT, offsetof(pm_router_config, soft_k),
     "mean experts per token, 0 < X < E (softmoe)", 0, 4096, true, true},
    {"alpha", "--alpha", ROUTER_FIELD_FLOAT, offsetof(pm_router_config, alpha), "LapSum scale > 0 (softmoe)", 0,
     INFINITY, true, false},
    {"tau", "--tau", ROUTER_FIELD_FLOAT, offsetof(pm_router_config, tau),
     "keep experts with p > X; < 0: calibrate on the first batch (softmoe)", -INFINITY, 1, false, true},
    {"cap", "--cap", ROUTER_FIELD_FLOAT, offsetof(pm_router_config, cap),
     "keep at most ceil(X·soft_k) experts, X >= 1 (softmoe)", 1, INFINITY, false, false},
    {"soft_renormalize", "--soft-renormalize", ROUTER_FIELD_BOOL, offsetof(pm_router_config, soft_renormalize),
     "divide the kept weights by their sum (softmoe)", 0, 1, false, false},
    {"lb_coef", "--lb-coef", ROUTER_FIELD_FLOAT, offsetof(pm_router_config, lb_coef),
     "Switch load-balancing loss coefficient (0: off)", 0, INFINITY, false, false},
    {"z_coef", "--z-coef", ROUTER_FIELD_FLOAT, offsetof(pm_router_config, z_coef),
     "router z-loss coefficient (0: off)", 0, INFINITY, false, false},
    {"bias_rate", "--bias-rate", ROUTER_FIELD_FLOAT, offsetof(pm_router_config, bias_rate),
     "DeepSeek-V3 selection-bias step (topk; 0: off)", 0, INFINITY, false, false},
};

int router_field_count(void) { return (int)(sizeof fields / sizeof fields[0]); }

const router_field *router_field_at(int index) {
    return index >= 0 && index < router_field_count() ? &fields[index] : NULL;
}

const router_field *router_field_by_flag(const char *flag) {
    for (int i = 0; flag && i < router_field_count(); i++)
        if (strcmp(fields[i].flag, flag) == 0) return &fields[i];
    return NULL;
}
