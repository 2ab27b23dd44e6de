/*
 * Plots through gnuplot. Each plot writes, into dir, the data (STEM.dat, or for the loss
 * STEM_<panel>_<run>.dat), a gnuplot script STEM.gp that users can edit and re-run
 * (`gnuplot STEM.gp` in dir), and the images STEM.png and STEM.svg. PNGs use the pngcairo
 * terminal, or png where gnuplot lacks it. Keys (legends) sit outside the data. A run or
 * router keeps its colour in every plot drawn with the same order of labels.
 *
 * gnuplot is found on PATH, or at $PM_GNUPLOT when that is set. Without it the data and the
 * script are still written, a warning goes to stderr, and the functions return PLOTS_SKIPPED:
 * a missing optional tool, not an error. Errors are negative pm_status values.
 */
#ifndef PM_EVAL_PLOTS_H
#define PM_EVAL_PLOTS_H

#include "eval/analytics.h"

enum { PLOTS_SKIPPED = 1 };

/*
 * (a) Training loss (and validation loss where logged) of runs from their metrics.jsonl, in
 * one panel or several stacked panels (gnuplot multiplot), each with its own y range.
 *
 * Each run's training loss is drawn as an exponential moving average over a faint line of
 * the raw loss in the same colour; its validation losses are markers joined by a dashed
 * line; the key has one entry per run and one per line style. The average has span
 * S = max(1, ⌊N / 20⌋) points, N the most training points of a run in the panel (the same
 * smoothing for every run of a panel): α = 2 / (S + 1), m_t = (1 − α)·m_{t−1} + α·loss_t
 * from m_0 = 0, drawn as m_t / (1 − (1 − α)^t), the bias correction that keeps the first
 * points at the loss rather than pulled towards 0.
 *
 * The y range shows where the runs differ rather than the first steps' drop: past a run's
 * first 10% of steps (step >= first + 0.1·(last − first)), top = the larger of the 95th
 * percentile of the smoothed losses of all runs (the smallest value with at least 95% of them
 * at or below it) and the largest validation loss; bottom = the smallest smoothed or
 * validation loss anywhere; padded by 5% of top − bottom on both sides.
 *
 * STEM_<panel>_<run>.dat: index 0 holds step, loss, smoothed loss; index 1 step, val_loss.
 */
typedef struct {
    const char *label;
    const char *metrics_path;
} plots_run;
typedef struct {
    const char *title; /* NULL: no panel title */
    const plots_run *runs;
    int run_count;
} plots_panel;
int plots_loss_panels(const char *dir, const char *stem, const plots_panel *panels, int panel_count);
/* One panel, titled "Training and validation loss". */
int plots_loss(const char *dir, const char *stem, const plots_run *runs, int count);

/* (b) Load fractions load[l·E + e] as a layer × expert heatmap; title may be NULL; layers (L)
 * label the rows with decoder layer numbers, or NULL: 0, 1, ... */
int plots_expert_load(const char *dir, const char *stem, const char *title, const double *load,
                      const int *layers, int L, int E);

/* (c) Mean active experts per layer: one bar per run in each layer's group. */
typedef struct {
    const char *label;
    const double *values; /* (count) one per layer */
    int count;
    const int *layers;    /* (count) their decoder layer numbers (the MoE layers), or NULL: 0, 1, ... */
} plots_series;
int plots_active_per_layer(const char *dir, const char *stem, const plots_series *runs, int count);
/* The same bars for any per-layer figure. */
int plots_per_layer_bars(const char *dir, const char *stem, const char *title, const char *ylabel,
                         const plots_series *runs, int count);
/* The mean groups (of G) a token's experts span, per layer, as those bars. */
int plots_groups_per_layer(const char *dir, const char *stem, const char *title, int groups,
                           const plots_series *runs, int count);

/* (d) Mean active experts against token frequency rank: one line per series. */
typedef struct {
    const char *label;
    const double *x, *y; /* (count) frequency rank, mean active experts */
    int count;
} plots_xy;
int plots_active_vs_frequency(const char *dir, const char *stem, const plots_xy *series, int count);

/* (e) One figure per router with its 95% interval: points with error bars, one router per
 * x tick, the value written beside each point. Rows whose lo or hi is NaN (one seed) are
 * drawn as open circles without a bar. reference (NaN: none) draws a dashed horizontal line,
 * say at topk's value, or at 0 for differences to it. STEM.dat has one line per row:
 * x, value, lo, hi, 1 if it has an interval (else 0), colour (0xRRGGBB). */
typedef struct {
    const char *label;
    double value, lo, hi;
} plots_interval;
int plots_intervals(const char *dir, const char *stem, const char *title, const char *ylabel,
                    const plots_interval *rows, int count, double reference);

/* (f) A per-layer value over training: field of each object in the "layers" array of a
 * metrics.jsonl (say "mean_active", or softmoe's "soft_k" and "alpha"), one line per layer.
 * Lines where no layer has the field are skipped; PM_ERR_ARG when none has it. STEM.dat has
 * one row per kept line: step, then the value of each layer (NaN where a layer lacks it). */
int plots_layer_values(const char *dir, const char *stem, const char *title, const char *ylabel,
                       const char *metrics_path, const char *field);

/* The points of a's frequency buckets for plots_active_vs_frequency: x = the geometric middle
 * of each bucket's rank range, y = its mean active experts in layer (-1: the mean over
 * layers). x and y hold analytics_get_buckets' count values. */
void plots_bucket_points(const analytics *a, int layer, double *x, double *y);

/* (b), (c) and (d) of one finished evaluation: STEM_load, STEM_active, STEM_frequency (one
 * line per layer and their mean), and with more than one group STEM_groups (the groups a
 * token's experts span per layer). label names the run in titles and legends. Returns 0,
 * PLOTS_SKIPPED or a negative pm_status. */
int plots_from_analytics(const char *dir, const char *stem, const char *label, const analytics *a);

#endif
