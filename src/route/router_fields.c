#include "route/router_fields.h"

#include <stdio.h>
#include <string.h>

static const char *const impl_names[] = {"dp", "circuit", NULL};

static const router_field fields[] = {
    {"k_min", "--kmin", ROUTER_FIELD_INT, offsetof(pm_router_config, k_min),
     "fewest experts per token (probmoe-dyn)", 0, 4096, false, false, NULL},
    {"k_max", "--kmax", ROUTER_FIELD_INT, offsetof(pm_router_config, k_max),
     "most experts per token (probmoe-dyn)", 1, 4096, false, false, NULL},
    {"soft_k", "--soft-k", ROUTER_FIELD_FLOAT, offsetof(pm_router_config, soft_k),
     "mean experts per token, 0 < X < E (softmoe)", 0, 4096, true, true, NULL},
    {"alpha", "--alpha", ROUTER_FIELD_FLOAT, offsetof(pm_router_config, alpha), "LapSum scale > 0 (softmoe)", 0,
     INFINITY, true, false, NULL},
    {"tau", "--tau", ROUTER_FIELD_FLOAT, offsetof(pm_router_config, tau),
     "keep experts with p > X; < 0: calibrate on the first batch (softmoe)", -INFINITY, 1, false, true, NULL},
    {"cap", "--cap", ROUTER_FIELD_FLOAT, offsetof(pm_router_config, cap),
     "keep at most ceil(X·soft_k) experts, X >= 1 (softmoe)", 1, INFINITY, false, false, NULL},
    {"soft_renormalize", "--soft-renormalize", ROUTER_FIELD_BOOL, offsetof(pm_router_config, soft_renormalize),
     "divide the kept weights by their sum (softmoe)", 0, 1, false, false, NULL},
    {"lb_coef", "--lb-coef", ROUTER_FIELD_FLOAT, offsetof(pm_router_config, lb_coef),
     "Switch load-balancing loss coefficient (0: off)", 0, INFINITY, false, false, NULL},
    {"z_coef", "--z-coef", ROUTER_FIELD_FLOAT, offsetof(pm_router_config, z_coef),
     "router z-loss coefficient (0: off)", 0, INFINITY, false, false, NULL},
    {"bias_rate", "--bias-rate", ROUTER_FIELD_FLOAT, offsetof(pm_router_config, bias_rate),
     "DeepSeek-V3 selection-bias step (topk; 0: off)", 0, INFINITY, false, false, NULL},
    {"impl", "--impl", ROUTER_FIELD_CHOICE, offsetof(pm_router_config, impl),
     "dp or circuit: how p(S) is computed (probmoe, probmoe-dyn, the ablations)", 0, 1, false, false, impl_names},
    {"groups", "--groups", ROUTER_FIELD_INT, offsetof(pm_router_config, groups),
     "G equal, contiguous groups of E/G experts (probmoe-group)", 1, 4096, false, false, NULL},
    {"max_groups", "--max-groups", ROUTER_FIELD_INT, offsetof(pm_router_config, max_groups),
     "a token's experts span at most M groups (probmoe-group)", 1, 4096, false, false, NULL},
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

int router_field_choice(const router_field *field, const char *name) {
    for (int i = 0; name && field->choices && field->choices[i]; i++)
        if (strcmp(field->choices[i], name) == 0) return i;
    return -1;
}

const char *router_field_choices(const router_field *field) {
    static _Thread_local char list[128];
    list[0] = '\0';
    for (int i = 0; field->choices && field->choices[i]; i++) {
        const size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", field->choices[i]);
    }
    return list;
}
