/*
 * Plots through gnuplot. Each plot writes, into dir, the data (STEM.dat or STEM_<i>.dat), a
 * gnuplot script STEM.gp that users can edit and re-run (`gnuplot STEM.gp` in dir), and the
 * images STEM.png and STEM.svg. PNGs use the pngcairo terminal, or png where gnuplot lacks it.
 *
 * gnuplot is found on PATH, or at $PM_GNUPLOT when that is set. Without it the data and the
 * script are still written, a warning goes to stderr, and the functions return PLOTS_SKIPPED:
 * a missing optional tool, not an error. Errors are negative pm_status values.
 */
#ifndef PM_EVAL_PLOTS_H
#define PM_EVAL_PLOTS_H

#include "eval/analytics.h"

enum { PLOTS_SKIPPED = 1 };

/* (a) Training loss (and validation loss where logged) of runs from their metrics.jsonl. */
typedef struct {
    const char *label;
    const char *metrics_path;
} plots_run;
int plots_loss(const char *dir, const char *stem, const plots_run *runs, int count);

/* (b) Load fractions load[l·E + e] as a layer × expert heatmap; title may be NULL. */
int plots_expert_load(const char *dir, const char *stem, const char *title, const double *load,
                      int L, int E);

/* (c) Mean active experts per layer: one bar per run in each layer's group. */
typedef struct {
    const char *label;
    const double *values; /* (count) one per layer */
    int count;
} plots_series;
int plots_active_per_layer(const char *dir, const char *stem, const plots_series *runs, int count);

/* (d) Mean active experts against token frequency rank: one line per series. */
typedef struct {
    const char *label;
    const double *x, *y; /* (count) frequency rank, mean active experts */
    int count;
} plots_xy;
int plots_active_vs_frequency(const char *dir, const char *stem, const plots_xy *series, int count);

/* The points of a's frequency buckets for plots_active_vs_frequency: x = the geometric middle
 * of each bucket's rank range, y = its mean active experts in layer (-1: the mean over
 * layers). x and y hold analytics_get_buckets' count values. */
void plots_bucket_points(const analytics *a, int layer, double *x, double *y);

/* (b), (c) and (d) of one finished evaluation: STEM_load, STEM_active, STEM_frequency (one
 * line per layer and their mean). label names the run in titles and legends. Returns 0,
 * PLOTS_SKIPPED or a negative pm_status. */
int plots_from_analytics(const char *dir, const char *stem, const char *label, const analytics *a);

#endif
