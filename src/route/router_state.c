/* A router's persistent values: its state (saved with the model so that a reloaded model
 * routes as the trained one did) and its learnable parameters, as its table entry lists them. */
#include <string.h>

#include "core/error.h"
#include "route/router_internal.h"

/* Offset of value `index` in the combined list (state first, then parameters). */
static int value_offset(const pm_router *router, int index, bool *learnable) {
    const router_ops *ops = router->ops;
    *learnable = index >= ops->state_count;
    const router_value *list = *learnable ? ops->params : ops->state;
    int offset = 0;
    for (int i = 0; i < (*learnable ? index - ops->state_count : index); i++) offset += list[i].size(&router->cfg);
    return offset;
}

int pm_router_value_count(const pm_router *router) {
    return router ? router->ops->state_count + router->ops->param_count : 0;
}

pm_status pm_router_value_get(const pm_router *router, int index, pm_router_value *out) {
    if (!router || !out || index < 0 || index >= pm_router_value_count(router))
        return pm_fail(PM_ERR_ARG, "pm_router_value_get: value %d does not exist (the router has %d)", index,
                       pm_router_value_count(router));
    bool learnable;
    const int offset = value_offset(router, index, &learnable);
    const router_ops *ops = router->ops;
    const router_value *value = learnable ? &ops->params[index - ops->state_count] : &ops->state[index];
    out->name = value->name;
    out->help = value->help;
    out->size = value->size(&router->cfg);
    out->learnable = learnable;
    out->values = (learnable ? router->params : router->state) + offset;
    out->grads = learnable ? router->param_grads + offset : NULL;
    return PM_OK;
}

float *pm_router_find_value(const pm_router *router, const char *name, int *size) {
    pm_router_value value;
    for (int i = 0; name && i < pm_router_value_count(router); i++)
        if (pm_router_value_get(router, i, &value) == PM_OK && strcmp(value.name, name) == 0) {
            if (size) *size = value.size;
            return value.values;
        }
    return NULL;
}

float *router_state_find(const pm_router *router, const char *name) {
    for (int i = 0; i < router->ops->state_count; i++)
        if (strcmp(router->ops->state[i].name, name) == 0) return pm_router_find_value(router, name, NULL);
    return NULL;
}

float *router_param_find(const pm_router *router, const char *name, double **grad) {
    for (int i = 0; i < router->ops->param_count; i++)
        if (strcmp(router->ops->params[i].name, name) == 0) {
            pm_router_value value;
            pm_router_value_get(router, router->ops->state_count + i, &value);
            if (grad) *grad = value.grads;
            return value.values;
        }
    return NULL;
}

void pm_router_zero_grads(pm_router *router) {
    memset(router->param_grads, 0, sizeof(double) * (size_t)router->param_floats);
}

void router_set_batch_origin(pm_router *router, const batch_comm *comm, uint32_t first_token) {
    router->comm = comm;
    router->first_token = first_token;
}

int64_t *router_step_load(pm_router *router) { return router->step_load; }

void pm_router_step(pm_router *router) {
    if (router->ops->step) router->ops->step(router);
    memset(router->step_load, 0, sizeof(int64_t) * router->cfg.num_experts);
}

pm_status pm_router_copy_values(pm_router *to, const pm_router *from) {
    pm_router_value source, target;
    for (int i = 0; i < pm_router_value_count(to); i++) {
        pm_router_value_get(to, i, &target);
        const float *values = NULL;
        int size = 0;
        for (int j = 0; !values && j < pm_router_value_count(from); j++) {
            pm_router_value_get(from, j, &source);
            if (strcmp(source.name, target.name) == 0) values = source.values, size = source.size;
        }
        if (!values) continue;
        if (size != target.size)
            return pm_fail(PM_ERR_ARG, "router value %s has %d numbers here and %d in the source router",
                           target.name, target.size, size);
        memcpy(target.values, values, sizeof(float) * (size_t)size);
    }
    return PM_OK;
}
