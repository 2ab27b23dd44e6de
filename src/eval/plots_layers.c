/* (f) A per-layer field of metrics.jsonl over training, one line per layer (plots.h). */
#include <math.h>
#include <stdlib.h>

#include "eval/plots_internal.h"

/* The kept lines: their steps, and where each line's per-layer values start in values. */
typedef struct {
    const char *field;
    plots_values steps, starts, values;
    int layers; /* the most layers of a kept line */
    plots_values numbers; /* that line's decoder layer numbers ("layer"), if it gives them */
} layer_series;

static void free_series(layer_series *series) {
    plots_values_free(&series->steps);
    plots_values_free(&series->starts);
    plots_values_free(&series->values);
    plots_values_free(&series->numbers);
}

static int collect_layer_values(const cJSON *line, void *context) {
    layer_series *series = context;
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(line, "step");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(line, "layers");
    if (!cJSON_IsNumber(step) || !cJSON_IsArray(layers)) return PM_OK;
    bool any = false;
    const cJSON *layer;
    cJSON_ArrayForEach(layer, layers) any |= cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(layer, series->field));
    if (!any) return PM_OK;
    int status = plots_values_push(&series->steps, step->valuedouble);
    if (!status) status = plots_values_push(&series->starts, (double)series->values.count);
    int count = 0;
    cJSON_ArrayForEach(layer, layers) {
        if (status) break;
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(layer, series->field);
        status = plots_values_push(&series->values, cJSON_IsNumber(value) ? value->valuedouble : NAN);
        count++;
    }
    if (count > series->layers) {
        series->layers = count;
        series->numbers.count = 0;
        cJSON_ArrayForEach(layer, layers) {
            const cJSON *number = cJSON_GetObjectItemCaseSensitive(layer, "layer");
            if (!status && cJSON_IsNumber(number)) status = plots_values_push(&series->numbers, number->valuedouble);
        }
    }
    return status;
}

static void write_rows(FILE *dat, const layer_series *series) {
    fprintf(dat, "# step, then %s of layer 0, 1, ...\n", series->field);
    for (size_t row = 0; row < series->steps.count; row++) {
        const size_t start = (size_t)series->starts.values[row];
        const size_t end = row + 1 < series->steps.count ? (size_t)series->starts.values[row + 1]
                                                         : series->values.count;
        fprintf(dat, "%.0f", series->steps.values[row]);
        for (int l = 0; l < series->layers; l++)
            fprintf(dat, " %.8g", start + (size_t)l < end ? series->values.values[start + l] : NAN);
        fprintf(dat, "\n");
    }
}

int plots_layer_values(const char *dir, const char *stem, const char *title, const char *ylabel,
                       const char *metrics_path, const char *field) {
    layer_series series = {.field = field};
    int status = plots_each_metrics_line(metrics_path, collect_layer_values, &series);
    if (!status && series.steps.count == 0)
        status = pm_fail(PM_ERR_ARG, "plots: no line of %s has a per-layer \"%s\"", metrics_path, field);
    FILE *dat = NULL, *gp = NULL;
    char dat_path[PLOTS_PATH_MAX], gp_path[PLOTS_PATH_MAX];
    if (!status) status = plots_open_pair(dir, stem, &dat, dat_path, &gp, gp_path);
    if (status) {
        free_series(&series);
        return status;
    }
    write_rows(dat, &series);
    plots_set_quoted(gp, "title", title);
    plots_set_quoted(gp, "ylabel", ylabel ? ylabel : field);
    /* x ends at the last step; y keeps a margin so a flat line (a value not trained yet) is
     * not hidden on the frame. */
    fprintf(gp, "set xlabel 'training step'\nset key outside right top vertical Left reverse box samplen 2\n"
                "set autoscale xfix\nset offsets 0, 0, graph 0.05, graph 0.05\n");
    fprintf(gp, "plot \\\n");
    for (int l = 0; l < series.layers; l++) {
        fprintf(gp, "  '%s.dat' using 1:%d with lines lw 2 lc ", stem, l + 2);
        plots_write_colour(gp, l, 0);
        const bool numbered = series.numbers.count == (size_t)series.layers;
        fprintf(gp, " title 'layer %d'%s", numbered ? (int)series.numbers.values[l] : l,
                l + 1 < series.layers ? ", \\\n" : "\n");
    }
    free_series(&series);
    return plots_close_pair_and_run(dir, stem, dat, dat_path, gp, gp_path);
}
