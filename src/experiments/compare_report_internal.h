/* Internals of compare's report: the figures of every run, read once, shared by the tables
 * (compare_report.c), the claims (compare_claims.c) and the plots (compare_plots.c). */
#ifndef PM_EXPERIMENTS_COMPARE_REPORT_INTERNAL_H
#define PM_EXPERIMENTS_COMPARE_REPORT_INTERNAL_H

#include <stdio.h>

#include "experiments/compare.h"
#include "experiments/stats.h"

enum {
    EXACT_MATCH, ARITH_LOSS, GSM8K_LOSS, TEXT_LOSS, ACTIVE_TRAIN, ACTIVE_INFERENCE, LOAD_ENTROPY, DEAD_EXPERTS,
    ROUTING_ENTROPY, COVER99, GROUPS_MEAN, GROUPS_MOST, TOKENS_PER_S, PEAK_MIB, METRIC_COUNT
};

typedef struct {
    const char *name;
    int digits;
    int better; /* +1: higher is better, -1: lower is better, 0: neither */
} report_metric;

extern const report_metric report_metrics[METRIC_COUNT];

typedef struct {
    const compare_options *opt;
    int routers, seeds;
    int topk;       /* index of "topk" among the routers, or -1 */
    double *values; /* (routers, seeds, METRIC_COUNT); NaN where a run is missing */
} report_data;

report_data *report_data_read(const compare_options *opt);
void report_data_free(report_data *data);
int report_router_index(const report_data *data, const char *name);
/* Per-seed values of metric m of router r (data->seeds values). */
void report_series(const report_data *data, int r, int m, double *out);
/* The largest of router r's per-seed values of metric m, NaN where no seed has one. */
double report_most(const report_data *data, int r, int m);
/* Router a minus router b, paired by seed. */
void report_difference(const report_data *data, int a, int b, int m, stats_difference *out);
/* The learned k_l of a run's fine-tuned model (softmoe); the count (0 if none). */
int report_budget(const compare_options *opt, const char *router, int seed, double *k, int capacity);
void report_run_metrics(const compare_options *opt, const char *router, int seed, double *values);

void report_write_claims(FILE *file, const report_data *data);
void report_write_plots(FILE *file, const report_data *data);

#endif
