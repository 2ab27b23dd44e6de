/* (a) Training and validation loss from the trainer's metrics.jsonl files. */
#define _POSIX_C_SOURCE 200809L /* getline */

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "eval/plots_internal.h"

/* Copies one metrics.jsonl into data file STEM_<run>.dat: index 0 holds (step, loss), index 1
 * (step, val_loss). Lines that do not parse are skipped: the trainer may be writing the last
 * one right now. Counts the points of each index. */
static int write_run_data(const char *dir, const char *stem, int run, const char *metrics_path,
                          int *train_points, int *val_points) {
    FILE *in = fopen(metrics_path, "r");
    if (!in) return pm_fail(PM_ERR_ARG, "plots: cannot read %s", metrics_path);
    char name[512], path[4096];
    snprintf(name, sizeof name, "%s_%d.dat", stem, run);
    FILE *out = plots_open(dir, name, path, sizeof path);
    if (!out) {
        fclose(in);
        return PM_ERR_ARG;
    }
    /* Validation points are buffered and written as index 1 after the training block. */
    char *line = NULL, *val = NULL;
    size_t line_cap = 0, val_len = 0, val_cap = 0;
    int status = PM_OK;
    *train_points = *val_points = 0;
    fprintf(out, "# %s: step loss (index 0), step val_loss (index 1)\n", metrics_path);
    while (getline(&line, &line_cap, in) > 0) {
        cJSON *obj = cJSON_Parse(line);
        const cJSON *step = cJSON_GetObjectItemCaseSensitive(obj, "step");
        const cJSON *loss = cJSON_GetObjectItemCaseSensitive(obj, "loss");
        const cJSON *val_loss = cJSON_GetObjectItemCaseSensitive(obj, "val_loss");
        if (cJSON_IsNumber(step) && cJSON_IsNumber(loss)) {
            fprintf(out, "%.0f %.6g\n", step->valuedouble, loss->valuedouble);
            ++*train_points;
        }
        if (cJSON_IsNumber(step) && cJSON_IsNumber(val_loss)) {
            if (val_cap - val_len < 64) {
                val_cap = 2 * val_cap + 256;
                char *grown = realloc(val, val_cap);
                if (!grown) {
                    cJSON_Delete(obj);
                    status = pm_fail(PM_ERR_NOMEM, "plots: out of memory");
                    break;
                }
                val = grown;
            }
            val_len += (size_t)snprintf(val + val_len, val_cap - val_len, "%.0f %.6g\n",
                                        step->valuedouble, val_loss->valuedouble);
            ++*val_points;
        }
        cJSON_Delete(obj);
    }
    fprintf(out, "\n\n");
    if (val_len) fwrite(val, 1, val_len, out);
    free(line);
    free(val);
    fclose(in);
    const int closed = plots_close(out, path);
    if (!status && !closed && *train_points == 0)
        status = pm_fail(PM_ERR_ARG, "plots: no step with a loss in %s", metrics_path);
    return status ? status : closed;
}

int plots_loss(const char *dir, const char *stem, const plots_run *runs, int count) {
    if (count < 1) return pm_fail(PM_ERR_ARG, "plots: no run to plot");
    char name[512], path[4096];
    if (strlen(stem) > 400) return pm_fail(PM_ERR_ARG, "plots: stem too long: %s", stem);
    int *val_points = calloc((size_t)count, sizeof(int));
    if (!val_points) return pm_fail(PM_ERR_NOMEM, "plots: out of memory");
    int status = PM_OK;
    for (int r = 0; r < count && !status; r++) {
        int train_points;
        status = write_run_data(dir, stem, r, runs[r].metrics_path, &train_points, &val_points[r]);
    }
    plots_name(name, sizeof name, stem, ".gp");
    FILE *gp = status ? NULL : plots_open(dir, name, path, sizeof path);
    if (!status && !gp) status = PM_ERR_ARG;
    if (gp) {
        plots_script_begin(gp, stem);
        fprintf(gp, "set title 'Training and validation loss'\n"
                    "set xlabel 'training step'\nset ylabel 'loss (nats per token)'\n"
                    "set key top right box opaque\n"
                    "set xrange [0:*]\n");
        /* One colour per run: training loss as a thin line, validation as dashed points. */
        fprintf(gp, "plot \\\n");
        for (int r = 0; r < count; r++) {
            char data[512];
            snprintf(data, sizeof data, "%s_%d.dat", stem, r);
            fprintf(gp, "  ");
            plots_quote(gp, data);
            fprintf(gp, " index 0 using 1:2 with lines lw 1.5 lc %d title ", r + 1);
            char title[600];
            snprintf(title, sizeof title, "%s (train)", runs[r].label);
            plots_quote(gp, title);
            if (val_points[r]) {
                fprintf(gp, ", \\\n  ");
                plots_quote(gp, data);
                fprintf(gp, " index 1 using 1:2 with linespoints dt 2 lw 2 pt 7 ps 0.8 lc %d title ",
                        r + 1);
                snprintf(title, sizeof title, "%s (validation)", runs[r].label);
                plots_quote(gp, title);
            }
            fprintf(gp, "%s", r + 1 < count ? ", \\\n" : "\n");
        }
        plots_script_end(gp, stem);
        status = plots_close(gp, path);
    }
    free(val_points);
    return status ? status : plots_run_gnuplot(dir, stem);
}
