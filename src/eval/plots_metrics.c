/* Reading the trainer's metrics.jsonl for the plots, and the arrays they collect into. */
#define _POSIX_C_SOURCE 200809L /* getline */

#include <stdlib.h>

#include "eval/plots_internal.h"

int plots_each_metrics_line(const char *path, plots_metrics_visit visit, void *context) {
    FILE *in = fopen(path, "r");
    if (!in) return pm_fail(PM_ERR_ARG, "plots: cannot read %s", path);
    char *line = NULL;
    size_t capacity = 0;
    int status = PM_OK;
    while (!status && getline(&line, &capacity, in) > 0) {
        cJSON *object = cJSON_Parse(line);
        if (cJSON_IsObject(object)) status = visit(object, context);
        cJSON_Delete(object);
    }
    free(line);
    fclose(in);
    return status;
}

int plots_values_push(plots_values *array, double value) {
    if (array->count == array->capacity) {
        const size_t capacity = array->capacity ? 2 * array->capacity : 256;
        double *grown = realloc(array->values, capacity * sizeof *grown);
        if (!grown) return pm_fail(PM_ERR_NOMEM, "plots: out of memory");
        array->values = grown;
        array->capacity = capacity;
    }
    array->values[array->count++] = value;
    return PM_OK;
}

void plots_values_free(plots_values *array) {
    free(array->values);
    *array = (plots_values){0};
}
