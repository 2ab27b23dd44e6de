/* The router table: one line per router, each defined in its own file (router_<name>.c).
 * Everything that needs to know the routers (config, CLI, model, checkpoints, trainer,
 * compare, tests) iterates this table. The first five keep the indices of the
 * PM_ROUTER_* constants of probmoe.h. */
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "route/router_internal.h"

extern const router_ops router_topk, router_probmoe, router_probmoe_dyn, router_densemixer, router_softmoe,
    router_topk_marginal, router_sample_softmax, router_probmoe_group;

static const router_ops *const router_table[] = {
    &router_topk,
    &router_probmoe,
    &router_probmoe_dyn,
    &router_densemixer,
    &router_softmoe,
    &router_topk_marginal,
    &router_sample_softmax,
    &router_probmoe_group,
};

enum { ROUTER_COUNT = sizeof router_table / sizeof router_table[0] };

int pm_router_kind_count(void) { return ROUTER_COUNT; }

const router_ops *router_ops_of(int kind) {
    return kind >= 0 && kind < ROUTER_COUNT ? router_table[kind] : NULL;
}

const char *pm_router_kind_name(pm_router_kind kind) {
    const router_ops *ops = router_ops_of(kind);
    return ops ? ops->name : NULL;
}

const char *pm_router_kind_help(pm_router_kind kind) {
    const router_ops *ops = router_ops_of(kind);
    return ops ? ops->help : NULL;
}

const char *pm_router_kind_list(void) {
    static _Thread_local char list[512];
    list[0] = '\0';
    for (int i = 0; i < ROUTER_COUNT; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", router_table[i]->name);
    }
    return list;
}

pm_status pm_router_kind_parse(const char *name, pm_router_kind *kind) {
    for (int i = 0; name && i < ROUTER_COUNT; i++)
        if (strcmp(name, router_table[i]->name) == 0) {
            *kind = i;
            return PM_OK;
        }
    return pm_fail(PM_ERR_ARG, "unknown router '%s'; choose one of %s", name ? name : "(null)",
                   pm_router_kind_list());
}
