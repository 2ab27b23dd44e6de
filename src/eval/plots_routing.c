/* (b) expert-load heatmap, (c) mean active experts per layer, (d) active experts against
 * token frequency. */
#include <math.h>
#include <stdlib.h>

#include "eval/plots_internal.h"

int plots_expert_load(const char *dir, const char *stem, const char *title, const double *load,
                      const int *layers, int L, int E) {
    if (L < 1 || E < 1) return pm_fail(PM_ERR_ARG, "plots: %d layers of %d experts", L, E);
    FILE *dat, *gp;
    char dat_path[PLOTS_PATH_MAX], gp_path[PLOTS_PATH_MAX];
    int status = plots_open_pair(dir, stem, &dat, dat_path, &gp, gp_path);
    if (status) return status;
    fprintf(dat, "# load fraction: one row per layer (0 first), one column per expert\n");
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) fprintf(dat, "%.6f%c", load[(size_t)l * E + e], e + 1 < E ? ' ' : '\n');

    char full_title[600];
    snprintf(full_title, sizeof full_title, "%s (balanced = 1/%d = %.3g)",
             title ? title : "Expert load fraction", E, 1.0 / E);
    fprintf(gp, "set title ");
    plots_quote(gp, full_title);
    fprintf(gp, "\nset xlabel 'expert'\nset ylabel 'layer'\nset cblabel 'load fraction'\n"
                "set xrange [-0.5:%g]\nset yrange [-0.5:%g]\nset cbrange [0:*]\n"
                "unset grid\nset tics out\n"
                "set palette defined (0 '#ffffff', 1 '#9ecae1', 2 '#3182bd', 3 '#08306b')\n",
            E - 0.5, L - 0.5);
    /* Integer tics while they fit; gnuplot's own spacing beyond. */
    if (E <= 32) fprintf(gp, "set xtics 1\n");
    if (L <= 32 && !layers) fprintf(gp, "set ytics 1\n");
    for (int l = 0; layers && l < L && L <= 32; l++) fprintf(gp, "set ytics %s('%d' %d)\n", l ? "add " : "", layers[l], l);
    /* Write each cell's value when the cells are big enough to hold it, white on the dark
     * cells (over 60% of the largest load) so it stays legible. */
    double largest = 0.0;
    for (size_t i = 0; i < (size_t)L * E; i++) largest = load[i] > largest ? load[i] : largest;
    fprintf(gp, "dark = %.6f\n", 0.6 * largest);
    if (L * E <= 256 && E <= 32)
        fprintf(gp, "plot '%s.dat' matrix with image notitle, \\\n"
                    "  '' matrix using 1:2:(sprintf('%%.2f', $3)):($3 > dark ? 0xffffff : 0x000000) "
                    "with labels font ',9' tc rgb variable notitle\n", stem);
    else
        fprintf(gp, "plot '%s.dat' matrix with image notitle\n", stem);
    return plots_close_pair_and_run(dir, stem, dat, dat_path, gp, gp_path);
}

int plots_per_layer_bars(const char *dir, const char *stem, const char *title, const char *ylabel,
                         const plots_series *runs, int count) {
    if (count < 1) return pm_fail(PM_ERR_ARG, "plots: no run to plot");
    int L = 0;
    for (int r = 0; r < count; r++) L = runs[r].count > L ? runs[r].count : L;
    if (L < 1) return pm_fail(PM_ERR_ARG, "plots: no layer to plot");
    FILE *dat, *gp;
    char dat_path[PLOTS_PATH_MAX], gp_path[PLOTS_PATH_MAX];
    int status = plots_open_pair(dir, stem, &dat, dat_path, &gp, gp_path);
    if (status) return status;
    /* Rows are layers, columns runs; a run with fewer layers leaves NaN (no bar). */
    fprintf(dat, "# layer, then %s of each run:", ylabel);
    for (int r = 0; r < count; r++) fprintf(dat, " [%s]", runs[r].label);
    fprintf(dat, "\n");
    const int *numbers = NULL; /* the first run's that has them */
    for (int r = count - 1; r >= 0; r--) numbers = runs[r].layers && runs[r].count == L ? runs[r].layers : numbers;
    for (int l = 0; l < L; l++) {
        fprintf(dat, "%d", numbers ? numbers[l] : l);
        for (int r = 0; r < count; r++)
            fprintf(dat, " %.6f", l < runs[r].count ? runs[r].values[l] : NAN);
        fprintf(dat, "\n");
    }
    double top = 0.0;
    for (int r = 0; r < count; r++)
        for (int l = 0; l < runs[r].count; l++) top = runs[r].values[l] > top ? runs[r].values[l] : top;
    /* Headroom above the tallest bar for the key, and so equal bars (top-k: all k) do not touch the frame. */
    fprintf(gp, "set yrange [0:%g]\n", top > 0.0 ? 1.3 * top : 1.0);
    plots_set_quoted(gp, "title", title);
    plots_set_quoted(gp, "ylabel", ylabel);
    fprintf(gp, "set xlabel 'layer'\nset grid noxtics ytics\n"
                "set style data histograms\nset style histogram clustered gap 1\n"
                "set style fill solid 0.85 border rgb 'black'\nset boxwidth 0.9\n"
                "set key inside top center horizontal box opaque samplen 2\n");
    fprintf(gp, "plot \\\n");
    for (int r = 0; r < count; r++) {
        fprintf(gp, "  '%s.dat' using %d%s lc ", stem, r + 2, r ? "" : ":xtic(1)");
        plots_write_colour(gp, r, 0);
        fprintf(gp, " title ");
        plots_quote(gp, runs[r].label);
        fprintf(gp, "%s", r + 1 < count ? ", \\\n" : "\n");
    }
    return plots_close_pair_and_run(dir, stem, dat, dat_path, gp, gp_path);
}

int plots_active_per_layer(const char *dir, const char *stem, const plots_series *runs, int count) {
    return plots_per_layer_bars(dir, stem, "Mean active experts per layer", "active experts per token", runs, count);
}

int plots_groups_per_layer(const char *dir, const char *stem, const char *title, int groups,
                           const plots_series *runs, int count) {
    char ylabel[96];
    snprintf(ylabel, sizeof ylabel, "groups spanned per token (of G = %d)", groups);
    return plots_per_layer_bars(dir, stem, title, ylabel, runs, count);
}

int plots_active_vs_frequency(const char *dir, const char *stem, const plots_xy *series, int count) {
    if (count < 1) return pm_fail(PM_ERR_ARG, "plots: no series to plot");
    for (int s = 0; s < count; s++)
        if (series[s].count < 1) return pm_fail(PM_ERR_ARG, "plots: series %d is empty", s);
    FILE *dat, *gp;
    char dat_path[PLOTS_PATH_MAX], gp_path[PLOTS_PATH_MAX];
    int status = plots_open_pair(dir, stem, &dat, dat_path, &gp, gp_path);
    if (status) return status;
    /* One index per series, separated by two blank lines. */
    for (int s = 0; s < count; s++) {
        fprintf(dat, "%s# [%s] frequency rank, mean active experts\n", s ? "\n\n" : "", series[s].label);
        for (int i = 0; i < series[s].count; i++) fprintf(dat, "%.6g %.6f\n", series[s].x[i], series[s].y[i]);
    }
    /* The data's own x range (gnuplot would round out to whole decades) and y headroom. */
    double x_lo = INFINITY, x_hi = 0.0, top = 0.0;
    for (int s = 0; s < count; s++)
        for (int i = 0; i < series[s].count; i++) {
            x_lo = series[s].x[i] < x_lo ? series[s].x[i] : x_lo;
            x_hi = series[s].x[i] > x_hi ? series[s].x[i] : x_hi;
            top = series[s].y[i] > top ? series[s].y[i] : top;
        }
    if (!(x_lo > 0.0)) x_lo = 1.0;
    fprintf(gp, "set xrange [%g:%g]\nset yrange [0:%g]\n", x_lo / 1.3, (x_hi > x_lo ? x_hi : x_lo) * 1.3,
            top > 0.0 ? 1.3 * top : 1.0);
    fprintf(gp, "set title 'Active experts against token frequency'\n"
                "set xlabel 'token frequency rank in the evaluated data (1 = most frequent id; log scale)'\n"
                "set ylabel 'active experts per token'\n"
                "set logscale x 10\nset format x '%%g'\n"
                "set key inside top center horizontal box opaque samplen 2\n");
    fprintf(gp, "plot \\\n");
    for (int s = 0; s < count; s++) {
        fprintf(gp, "  '%s.dat' index %d using 1:2 with linespoints lw 2 pt 7 ps 1 lc ", stem, s);
        plots_write_colour(gp, s, 0);
        fprintf(gp, " title ");
        plots_quote(gp, series[s].label);
        fprintf(gp, "%s", s + 1 < count ? ", \\\n" : "\n");
    }
    return plots_close_pair_and_run(dir, stem, dat, dat_path, gp, gp_path);
}

void plots_bucket_points(const analytics *a, int layer, double *x, double *y) {
    int count;
    const analytics_bucket *buckets = analytics_get_buckets(a, &count);
    for (int b = 0; b < count; b++) {
        x[b] = sqrt((double)buckets[b].rank_lo * (double)buckets[b].rank_hi);
        y[b] = layer < 0 ? buckets[b].mean_active_all : buckets[b].mean_active[layer];
    }
}

/* Keeps the first error, else the first skip. */
static int combine(int so_far, int next) {
    if (so_far < 0) return so_far;
    if (next < 0) return next;
    return so_far ? so_far : next;
}

int plots_from_analytics(const char *dir, const char *stem, const char *label, const analytics *a) {
    const int L = analytics_num_layers(a), E = analytics_num_experts(a);
    int buckets;
    analytics_get_buckets(a, &buckets);
    double *load = malloc(sizeof(double) * (size_t)L * (size_t)E);
    double *active = malloc(sizeof(double) * (size_t)L), *spanned = malloc(sizeof(double) * (size_t)L);
    const int *layers = analytics_layer_numbers(a);
    double *xy = malloc(sizeof(double) * 2 * (size_t)(L + 1) * (size_t)(buckets + 1));
    plots_xy *series = malloc(sizeof *series * (size_t)(L + 1));
    char (*names)[64] = malloc(sizeof *names * (size_t)(L + 1));
    int status = PM_OK;
    if (!load || !active || !spanned || !xy || !series || !names) {
        status = pm_fail(PM_ERR_NOMEM, "plots: out of memory");
        goto done;
    }
    for (int l = 0; l < L; l++) {
        const analytics_layer *r = analytics_get_layer(a, l);
        for (int e = 0; e < E; e++) load[(size_t)l * E + e] = r->load[e];
        active[l] = r->mean_active;
        spanned[l] = r->mean_groups;
    }
    char name[512], title[600];
    snprintf(title, sizeof title, "Expert load fraction: %s", label);
    status = plots_name(name, sizeof name, stem, "_load");
    if (status) goto done;
    status = plots_expert_load(dir, name, title, load, layers, L, E);

    plots_name(name, sizeof name, stem, "_active"); /* no longer than _load */
    status = combine(status, plots_active_per_layer(dir, name, &(plots_series){label, active, L, layers}, 1));
    if (analytics_groups(a) > 1) {
        plots_name(name, sizeof name, stem, "_groups");
        status = combine(status, plots_groups_per_layer(dir, name, "Mean groups a token's experts span, per layer",
                                                        analytics_groups(a), &(plots_series){label, spanned, L, layers}, 1));
    }

    if (buckets > 0) {
        /* One line per layer, then their mean. */
        for (int s = 0; s <= L; s++) {
            double *x = xy + (size_t)2 * s * buckets, *y = x + buckets;
            plots_bucket_points(a, s < L ? s : -1, x, y);
            if (s < L) snprintf(names[s], sizeof names[s], "layer %d", layers[s]);
            else snprintf(names[s], sizeof names[s], "mean over layers");
            series[s] = (plots_xy){names[s], x, y, buckets};
        }
        if (plots_name(name, sizeof name, stem, "_frequency")) {
            status = combine(status, PM_ERR_ARG);
            goto done;
        }
        status = combine(status, plots_active_vs_frequency(dir, name, series, L + 1));
    }
done:
    free(load);
    free(active);
    free(spanned);
    free(xy);
    free(series);
    free(names);
    return status;
}
