/* (e) A figure per router with its 95% interval: points and error bars (plots.h). */
#include <math.h>

#include "eval/plots_internal.h"

static bool has_interval(const plots_interval *row) {
    return !isnan(row->lo) && !isnan(row->hi);
}

/* The y range: every value, bound and the reference line, with 10% headroom each side. */
static void interval_range(const plots_interval *rows, int count, double reference,
                           double *bottom, double *top) {
    double lowest = isnan(reference) ? INFINITY : reference;
    double highest = isnan(reference) ? -INFINITY : reference;
    for (int i = 0; i < count; i++) {
        const double values[3] = {rows[i].value, rows[i].lo, rows[i].hi};
        for (int v = 0; v < 3; v++)
            if (!isnan(values[v])) {
                lowest = fmin(lowest, values[v]);
                highest = fmax(highest, values[v]);
            }
    }
    if (!(lowest <= highest)) lowest = highest = 0.0; /* nothing but NaN */
    const double height = highest - lowest;
    const double pad = height > 0.0 ? 0.1 * height : fmax(0.1 * fabs(highest), 0.05);
    *bottom = lowest - pad;
    *top = highest + pad;
}

int plots_intervals(const char *dir, const char *stem, const char *title, const char *ylabel,
                    const plots_interval *rows, int count, double reference) {
    if (count < 1) return pm_fail(PM_ERR_ARG, "plots: no interval to plot");
    FILE *dat, *gp;
    char dat_path[PLOTS_PATH_MAX], gp_path[PLOTS_PATH_MAX];
    int status = plots_open_pair(dir, stem, &dat, dat_path, &gp, gp_path);
    if (status) return status;
    fprintf(dat, "# x value lo hi has_interval colour [label]\n");
    int with_interval = 0;
    for (int i = 0; i < count; i++) {
        const bool interval = has_interval(&rows[i]);
        with_interval += interval;
        fprintf(dat, "%d %.8g %.8g %.8g %d %u # %s\n", i, rows[i].value, rows[i].lo, rows[i].hi,
                interval, plots_colour(i), rows[i].label);
    }

    double bottom, top;
    interval_range(rows, count, reference, &bottom, &top);
    plots_set_quoted(gp, "title", title);
    plots_set_quoted(gp, "ylabel", ylabel);
    fprintf(gp, "set xrange [-0.5:%g]\nset yrange [%.6g:%.6g]\nset grid noxtics ytics\n"
                "set key outside right top vertical Left reverse box samplen 2\n",
            count - 0.5, bottom, top);
    fprintf(gp, "set xtics (");
    for (int i = 0; i < count; i++) {
        plots_quote(gp, rows[i].label);
        fprintf(gp, " %d%s", i, i + 1 < count ? ", " : ")\n");
    }
    /* Rows are drawn by kind (column 5), each in its own colour (column 6); the value is
     * written to the right of its point. */
    const char *separator = "plot \\\n";
    if (with_interval) {
        fprintf(gp, "%s  '%s.dat' using 1:($5 > 0 ? $2 : NaN):3:4:6 with yerrorbars lw 2 pt 7 ps 1.5 "
                    "lc rgb variable title 'mean, 95%% interval'", separator, stem);
        separator = ", \\\n";
    }
    if (with_interval < count) {
        fprintf(gp, "%s  '%s.dat' using 1:($5 > 0 ? NaN : $2):6 with points pt 6 ps 2 lw 2 "
                    "lc rgb variable title 'one seed: no interval'", separator, stem);
        separator = ", \\\n";
    }
    fprintf(gp, "%s  '%s.dat' using 1:2:(sprintf('%%.4g', $2)) with labels offset 1.2,0 left "
                "notitle", separator, stem);
    if (!isnan(reference))
        fprintf(gp, ", \\\n  %.8g with lines dt 2 lw 1.5 lc rgb '#666666' title 'reference %.4g'",
                reference, reference);
    fprintf(gp, "\n");
    return plots_close_pair_and_run(dir, stem, dat, dat_path, gp, gp_path);
}
