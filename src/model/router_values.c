/* Every MoE layer's router values (state and learnable parameters, as the router table lists
 * them) as JSON, so that the model directory and checkpoints carry them with the weights. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model_internal.h"

char *pm_model_router_values_json(const pm_model *model) {
    const int M = model->num_moe;
    cJSON *root = cJSON_CreateObject();
    bool ok = root != NULL;
    const pm_router *first = moe_layer(model, 0)->router;
    for (int v = 0; ok && v < pm_router_value_count(first); v++) {
        pm_router_value value;
        pm_router_value_get(first, v, &value);
        cJSON *layers = cJSON_AddArrayToObject(root, value.name);
        ok = layers != NULL;
        for (int m = 0; ok && m < M; m++) {
            pm_router_value_get(moe_layer(model, m)->router, v, &value);
            /* cJSON prints doubles with enough digits to read back the same float */
            cJSON *numbers = cJSON_CreateArray();
            ok = numbers && cJSON_AddItemToArray(layers, numbers);
            for (int i = 0; ok && i < value.size; i++)
                ok = cJSON_AddItemToArray(numbers, cJSON_CreateNumber(value.values[i]));
        }
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text) pm_fail(PM_ERR_NOMEM, "out of memory writing the router values");
    return text;
}

pm_status pm_model_set_router_values_json(pm_model *model, const char *json, const char *source) {
    const int M = model->num_moe;
    cJSON *root = cJSON_Parse(json);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return pm_fail(PM_ERR_ARG, "%s: the router values are not a JSON object; the file is damaged", source);
    }
    int status = PM_OK;
    const cJSON *item;
    /* check everything first, so that a bad file changes nothing */
    for (int pass = 0; pass < 2 && status == 0; pass++)
        cJSON_ArrayForEach(item, root) {
            if (status < 0) break;
            if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != M) {
                status = pm_fail(PM_ERR_ARG, "%s: router value '%s' must list %d MoE layers", source, item->string,
                                 M);
                break;
            }
            for (int m = 0; status == 0 && m < M; m++) {
                const int l = model->moe_layers[m];
                int size = 0;
                float *values = pm_router_find_value(moe_layer(model, m)->router, item->string, &size);
                const cJSON *numbers = cJSON_GetArrayItem(item, m);
                if (!values)
                    status = pm_fail(PM_ERR_ARG, "%s: the %s router has no value '%s'; was this saved by a model "
                                     "with another router?", source, pm_router_kind_name(model->cfg.router.kind),
                                     item->string);
                else if (!cJSON_IsArray(numbers) || cJSON_GetArraySize(numbers) != size)
                    status = pm_fail(PM_ERR_ARG, "%s: router value '%s' of layer %d must hold %d numbers", source,
                                     item->string, l, size);
                for (int i = 0; status == 0 && i < size; i++) {
                    const cJSON *number = cJSON_GetArrayItem(numbers, i);
                    if (!cJSON_IsNumber(number))
                        status = pm_fail(PM_ERR_ARG, "%s: router value '%s' of layer %d: entry %d is not a number",
                                         source, item->string, l, i);
                    else if (pass == 1)
                        values[i] = (float)number->valuedouble;
                }
            }
        }
    cJSON_Delete(root);
    return status;
}
