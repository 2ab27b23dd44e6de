/* (a) Training and validation loss of runs from their metrics.jsonl, in one or more panels:
 * the smoothing, the y range and the styles plots.h describes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/plots_internal.h"

/* The smoothing span is the longest run's point count over this (plots.h). */
#define SMOOTHING_SPAN_DIVISOR 20
/* The y range ignores each run's first 10% of steps (the initial drop) ... */
#define WARMUP_FRACTION 0.1
/* ... and the top 5% of the smoothed values past them (a late spike). */
#define TOP_PERCENTILE 0.95
#define RANGE_PADDING 0.05
/* The raw loss is drawn faint: about 25% opaque. */
#define RAW_TRANSPARENCY 0xC0
/* The height of each panel of a stack (one panel has the default size). */
#define STACKED_PANEL_HEIGHT 430

typedef struct {
    plots_values step, loss, smoothed, val_step, val_loss;
} loss_curve;

static void free_curve(loss_curve *curve) {
    plots_values_free(&curve->step);
    plots_values_free(&curve->loss);
    plots_values_free(&curve->smoothed);
    plots_values_free(&curve->val_step);
    plots_values_free(&curve->val_loss);
}

static int collect_losses(const cJSON *line, void *context) {
    loss_curve *curve = context;
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(line, "step");
    const cJSON *loss = cJSON_GetObjectItemCaseSensitive(line, "loss");
    const cJSON *val_loss = cJSON_GetObjectItemCaseSensitive(line, "val_loss");
    if (!cJSON_IsNumber(step)) return PM_OK;
    int status = PM_OK;
    if (cJSON_IsNumber(loss)) {
        status = plots_values_push(&curve->step, step->valuedouble);
        if (!status) status = plots_values_push(&curve->loss, loss->valuedouble);
    }
    if (!status && cJSON_IsNumber(val_loss)) {
        status = plots_values_push(&curve->val_step, step->valuedouble);
        if (!status) status = plots_values_push(&curve->val_loss, val_loss->valuedouble);
    }
    return status;
}

static int read_curve(const char *metrics_path, loss_curve *curve) {
    int status = plots_each_metrics_line(metrics_path, collect_losses, curve);
    if (!status && curve->step.count == 0)
        status = pm_fail(PM_ERR_ARG, "plots: no step with a loss in %s", metrics_path);
    return status;
}

/* The bias-corrected exponential moving average of plots.h into curve->smoothed. */
static int smooth_curve(loss_curve *curve, double alpha) {
    double average = 0.0, kept = 1.0; /* kept = (1 − α)^t, the weight still on m_0 = 0 */
    for (size_t t = 0; t < curve->loss.count; t++) {
        average = (1.0 - alpha) * average + alpha * curve->loss.values[t];
        kept *= 1.0 - alpha;
        int status = plots_values_push(&curve->smoothed, average / (1.0 - kept));
        if (status) return status;
    }
    return PM_OK;
}

/* Steps from here on count for the y range's top. */
static double warmup_end(const loss_curve *curve) {
    const double first = curve->step.values[0], last = curve->step.values[curve->step.count - 1];
    return first + WARMUP_FRACTION * (last - first);
}

static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The y range of plots.h over a panel's curves. */
static int loss_range(const loss_curve *curves, int count, double *bottom, double *top) {
    plots_values past_warmup = {0};
    double lowest = INFINITY, highest_validation = -INFINITY;
    for (int r = 0; r < count; r++) {
        const loss_curve *curve = &curves[r];
        const double start = warmup_end(curve);
        for (size_t i = 0; i < curve->smoothed.count; i++) {
            lowest = fmin(lowest, curve->smoothed.values[i]);
            if (curve->step.values[i] < start) continue;
            int status = plots_values_push(&past_warmup, curve->smoothed.values[i]);
            if (status) {
                plots_values_free(&past_warmup);
                return status;
            }
        }
        for (size_t i = 0; i < curve->val_loss.count; i++) {
            lowest = fmin(lowest, curve->val_loss.values[i]);
            if (curve->val_step.values[i] >= start)
                highest_validation = fmax(highest_validation, curve->val_loss.values[i]);
        }
    }
    /* Never empty: each curve's last step is past its warm-up. */
    qsort(past_warmup.values, past_warmup.count, sizeof(double), by_value);
    const size_t rank = (size_t)ceil(TOP_PERCENTILE * (double)past_warmup.count);
    *top = fmax(past_warmup.values[rank > 0 ? rank - 1 : 0], highest_validation);
    plots_values_free(&past_warmup);
    const double height = *top - lowest;
    const double pad = height > 0.0 ? RANGE_PADDING * height : fmax(RANGE_PADDING * fabs(*top), 0.05);
    *bottom = lowest - pad;
    *top += pad;
    return PM_OK;
}

static int write_curve(const char *dir, const char *name, const char *metrics_path,
                       const loss_curve *curve) {
    char path[PLOTS_PATH_MAX];
    FILE *out = plots_open(dir, name, path, sizeof path);
    if (!out) return PM_ERR_ARG;
    fprintf(out, "# %s: step loss smoothed_loss (index 0), step val_loss (index 1)\n", metrics_path);
    for (size_t i = 0; i < curve->step.count; i++)
        fprintf(out, "%.0f %.8g %.8g\n", curve->step.values[i], curve->loss.values[i],
                curve->smoothed.values[i]);
    fprintf(out, "\n\n");
    for (size_t i = 0; i < curve->val_step.count; i++)
        fprintf(out, "%.0f %.8g\n", curve->val_step.values[i], curve->val_loss.values[i]);
    return plots_close(out, path);
}

/* The colour of a run: labels get the palette in their order of first appearance, so a
 * router is one colour in every panel. */
static int run_colour(const plots_panel *panels, int panel_count, const char *label) {
    int distinct = 0;
    for (int p = 0; p < panel_count; p++)
        for (int r = 0; r < panels[p].run_count; r++) {
            const char *seen = panels[p].runs[r].label;
            bool earlier = false;
            for (int q = 0; q <= p && !earlier; q++)
                for (int s = 0; s < (q < p ? panels[q].run_count : r) && !earlier; s++)
                    earlier = strcmp(panels[q].runs[s].label, seen) == 0;
            if (earlier) continue;
            if (strcmp(seen, label) == 0) return distinct;
            distinct++;
        }
    return distinct;
}

static void write_clause_start(FILE *gp, const char *stem, int panel, int run, bool first) {
    char data[600];
    snprintf(data, sizeof data, "%s_%d_%d.dat", stem, panel, run);
    fprintf(gp, "%s  ", first ? "plot \\\n" : ", \\\n");
    plots_quote(gp, data);
}

/* Filled circle, square, triangles, diamond: validation markers, one per colour. */
static int point_type(int colour) {
    static const int types[5] = {7, 5, 9, 13, 11};
    return types[colour % 5];
}

/* One panel's commands: its title, ranges and plot. The faint raw lines come first, under
 * the rest; the key has one entry per run (its colour) and one per line style, rather than
 * one per curve, so that it stays short. */
static void write_panel_script(FILE *gp, const char *stem, const plots_panel *panels,
                               int panel_count, int p, const loss_curve *curves, double bottom,
                               double top) {
    const plots_panel *panel = &panels[p];
    if (panel->title) plots_set_quoted(gp, "title", panel->title);
    else fprintf(gp, "unset title\n");
    double last_step = 0.0;
    bool validated = false;
    for (int r = 0; r < panel->run_count; r++) {
        last_step = fmax(last_step, curves[r].step.values[curves[r].step.count - 1]);
        validated |= curves[r].val_step.count > 0;
    }
    fprintf(gp, "set xrange [0:%.0f]\nset yrange [%.6g:%.6g]\n", fmax(last_step, 1.0), bottom, top);
    for (int r = 0; r < panel->run_count; r++) {
        write_clause_start(gp, stem, p, r, r == 0);
        fprintf(gp, " index 0 using 1:2 with lines lw 1 lc ");
        plots_write_colour(gp, run_colour(panels, panel_count, panel->runs[r].label), RAW_TRANSPARENCY);
        fprintf(gp, " notitle");
    }
    for (int r = 0; r < panel->run_count; r++) {
        const int colour = run_colour(panels, panel_count, panel->runs[r].label);
        write_clause_start(gp, stem, p, r, false);
        fprintf(gp, " index 0 using 1:3 with lines lw 2.5 lc ");
        plots_write_colour(gp, colour, 0);
        fprintf(gp, " notitle");
        if (curves[r].val_step.count == 0) continue;
        write_clause_start(gp, stem, p, r, false);
        fprintf(gp, " index 1 using 1:2 with linespoints dt 2 lw 1.5 pt %d ps 1.2 lc ", point_type(colour));
        plots_write_colour(gp, colour, 0);
        fprintf(gp, " notitle");
    }
    for (int r = 0; r < panel->run_count; r++) {
        const int colour = run_colour(panels, panel_count, panel->runs[r].label);
        fprintf(gp, ", \\\n  keyentry with linespoints lw 2.5 pt %d ps 1.2 lc ", point_type(colour));
        plots_write_colour(gp, colour, 0);
        fprintf(gp, " title ");
        plots_quote(gp, panel->runs[r].label);
    }
    fprintf(gp, ", \\\n  keyentry with lines lw 2.5 lc rgb '#000000' title 'training loss (smoothed)'");
    fprintf(gp, ", \\\n  keyentry with lines lw 1 lc rgb '#%02X000000' title 'training loss (raw)'",
            RAW_TRANSPARENCY);
    if (validated)
        fprintf(gp, ", \\\n  keyentry with linespoints dt 2 lw 1.5 pt 6 ps 1.2 lc rgb '#000000' "
                    "title 'validation loss'");
    fprintf(gp, "\n");
}

/* Reads, smooths and writes one panel's runs, then its part of the script. */
static int draw_panel(const char *dir, const char *stem, const plots_panel *panels,
                      int panel_count, int p, FILE *gp) {
    const plots_panel *panel = &panels[p];
    if (panel->run_count < 1) return pm_fail(PM_ERR_ARG, "plots: panel %d has no run", p);
    loss_curve *curves = calloc((size_t)panel->run_count, sizeof *curves);
    if (!curves) return pm_fail(PM_ERR_NOMEM, "plots: out of memory");
    int status = PM_OK;
    size_t most_points = 0;
    for (int r = 0; r < panel->run_count && !status; r++) {
        status = read_curve(panel->runs[r].metrics_path, &curves[r]);
        if (!status && curves[r].step.count > most_points) most_points = curves[r].step.count;
    }
    const double span = fmax(1.0, (double)(most_points / SMOOTHING_SPAN_DIVISOR));
    const double alpha = 2.0 / (span + 1.0);
    for (int r = 0; r < panel->run_count && !status; r++) {
        status = smooth_curve(&curves[r], alpha);
        char name[600];
        snprintf(name, sizeof name, "%s_%d_%d.dat", stem, p, r);
        if (!status) status = write_curve(dir, name, panel->runs[r].metrics_path, &curves[r]);
    }
    double bottom = 0.0, top = 0.0;
    if (!status) status = loss_range(curves, panel->run_count, &bottom, &top);
    if (!status) write_panel_script(gp, stem, panels, panel_count, p, curves, bottom, top);
    for (int r = 0; r < panel->run_count; r++) free_curve(&curves[r]);
    free(curves);
    return status;
}

int plots_loss_panels(const char *dir, const char *stem, const plots_panel *panels, int panel_count) {
    if (panel_count < 1) return pm_fail(PM_ERR_ARG, "plots: no panel to plot");
    if (strlen(stem) > 400) return pm_fail(PM_ERR_ARG, "plots: stem too long: %s", stem);
    char name[512], path[PLOTS_PATH_MAX];
    plots_name(name, sizeof name, stem, ".gp");
    FILE *gp = plots_open(dir, name, path, sizeof path);
    if (!gp) return PM_ERR_ARG;
    const int height = panel_count == 1 ? PLOTS_HEIGHT : STACKED_PANEL_HEIGHT * panel_count;
    plots_script_begin_sized(gp, stem, PLOTS_WIDTH, height);
    /* The key outside, right of the data, in a right margin as wide (in characters) as its
     * longest entry in any panel, so stacked panels line their axes up. */
    size_t longest = strlen("training loss (smoothed)");
    for (int p = 0; p < panel_count; p++)
        for (int r = 0; r < panels[p].run_count; r++)
            if (strlen(panels[p].runs[r].label) > longest) longest = strlen(panels[p].runs[r].label);
    fprintf(gp, "set xlabel 'training step'\nset ylabel 'loss (nats per token)'\n"
                "set key outside right top vertical Left reverse box samplen 2\n"
                "set lmargin 10\nset rmargin %zu\n", longest + 10);
    if (panel_count > 1) fprintf(gp, "set multiplot layout %d,1\n", panel_count);
    int status = PM_OK;
    for (int p = 0; p < panel_count && !status; p++)
        status = draw_panel(dir, stem, panels, panel_count, p, gp);
    if (panel_count > 1) fprintf(gp, "unset multiplot\n");
    plots_script_end(gp);
    const int closed = plots_close(gp, path);
    if (status || closed) return status ? status : closed;
    return plots_run_gnuplot(dir, stem);
}

int plots_loss(const char *dir, const char *stem, const plots_run *runs, int count) {
    if (count < 1) return pm_fail(PM_ERR_ARG, "plots: no run to plot");
    const plots_panel panel = {"Training and validation loss", runs, count};
    return plots_loss_panels(dir, stem, &panel, 1);
}
