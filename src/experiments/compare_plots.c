/* compare's plots: the training curves of each stage in its own panel, each claim's figure
 * with its interval per router, SoftMoE's learned k_l over fine-tuning, and active experts
 * per layer. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "eval/plots.h"
#include "experiments/compare_internal.h"
#include "experiments/compare_report_internal.h"

/* layers[].field of a run's routing.json into values (at most capacity); the count. */
static int per_layer(const char *path, const char *field, double *values, int capacity) {
    FILE *file = fopen(path, "r");
    if (!file) return 0;
    fseek(file, 0, SEEK_END);
    const long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    char *text = size > 0 ? malloc((size_t)size + 1) : NULL;
    const size_t got = text ? fread(text, 1, (size_t)size, file) : 0;
    fclose(file);
    if (!text) return 0;
    text[got] = '\0';
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *layer;
    int count = 0;
    cJSON_ArrayForEach(layer, cJSON_GetObjectItemCaseSensitive(root, "layers")) {
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(layer, field);
        if (count < capacity && cJSON_IsNumber(value)) values[count++] = value->valuedouble;
    }
    cJSON_Delete(root);
    return count;
}

static void note(FILE *file, int status, const char *stem, const char *alt, bool *skipped) {
    if (status == PLOTS_SKIPPED) *skipped = true;
    else if (status < 0) fprintf(stderr, "compare: plot %s: %s\n", stem, pm_last_error());
    else fprintf(file, "![%s](plots/%s.png)\n\n", alt, stem);
}

/* Router minus topk of metric m with its interval, one row per router (topk left out). */
static int difference_plot(const report_data *data, const char *dir, const char *stem, int m) {
    plots_interval rows[COMPARE_MAX_ROUTERS];
    int count = 0;
    for (int r = 0; r < data->routers; r++) {
        if (r == data->topk) continue;
        stats_difference d;
        report_difference(data, r, data->topk, m, &d);
        if (isnan(d.mean_diff)) continue;
        rows[count++] = (plots_interval){data->opt->routers[r], d.mean_diff, isnan(d.lo) ? d.mean_diff : d.lo,
                                         isnan(d.hi) ? d.mean_diff : d.hi};
    }
    if (count == 0) return PLOTS_SKIPPED;
    char title[256], label[256];
    snprintf(title, sizeof title, "%s: router − topk (mean over seeds, bootstrap 95%% interval)",
             report_metrics[m].name);
    snprintf(label, sizeof label, "difference in %s", report_metrics[m].name);
    return plots_intervals(dir, stem, title, label, rows, count, 0.0);
}

void report_write_plots(FILE *file, const report_data *data) {
    const compare_options *opt = data->opt;
    char dir[COMPARE_PATH + 16];
    snprintf(dir, sizeof dir, "%s/plots", opt->out_dir);
    if (ensure_directory(dir) < 0) return;
    fprintf(file, "\n## Plots\n\n");
    bool skipped = false;
    /* the curves of seed 1: pre-training (the backbone, or each router) and fine-tuning */
    static char paths[2][COMPARE_MAX_ROUTERS][COMPARE_PATH + 64];
    plots_run pretrain[COMPARE_MAX_ROUTERS], finetune[COMPARE_MAX_ROUTERS];
    int pretrain_count = 0;
    for (int r = 0; r < opt->router_count; r++) {
        char run[COMPARE_PATH];
        const bool backbone = opt->protocol == COMPARE_FINETUNE;
        if (!backbone || r == 0) {
            compare_run_dir(opt, backbone ? "backbone" : opt->routers[r], 1, run, sizeof run);
            snprintf(paths[0][pretrain_count], sizeof paths[0][0], "%.4000s/pretrain/metrics.jsonl", run);
            pretrain[pretrain_count] = (plots_run){backbone ? "topk backbone" : opt->routers[r], paths[0][pretrain_count]};
            pretrain_count++;
        }
        compare_run_dir(opt, opt->routers[r], 1, run, sizeof run);
        snprintf(paths[1][r], sizeof paths[1][r], "%.4000s/finetune/metrics.jsonl", run);
        finetune[r] = (plots_run){opt->routers[r], paths[1][r]};
    }
    const plots_panel panels[2] = {{"pre-training on the text (seed 1)", pretrain, pretrain_count},
                                   {"fine-tuning on the arithmetic task (seed 1)", finetune, opt->router_count}};
    note(file, plots_loss_panels(dir, "loss", panels, 2), "loss", "training loss by stage", &skipped);
    if (data->topk >= 0) {
        const struct { int metric; const char *stem; } claims[] = {
            {EXACT_MATCH, "diff_exact_match"}, {ARITH_LOSS, "diff_answer_loss"}, {GSM8K_LOSS, "diff_gsm8k_loss"},
            {ACTIVE_INFERENCE, "diff_active"}, {LOAD_ENTROPY, "diff_load_entropy"}};
        for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++)
            note(file, difference_plot(data, dir, claims[i].stem, claims[i].metric), claims[i].stem,
                 report_metrics[claims[i].metric].name, &skipped);
    }
    const int softmoe = report_router_index(data, "softmoe");
    if (softmoe >= 0)
        note(file, plots_layer_values(dir, "softmoe_budget", "SoftMoE's learned k_l per layer during fine-tuning (seed 1)",
                                      "k_l", paths[1][softmoe], "soft_k"),
             "softmoe_budget", "softmoe k_l per layer", &skipped);
    static double active[COMPARE_MAX_ROUTERS][64], spanned[COMPARE_MAX_ROUTERS][64];
    plots_series series[COMPARE_MAX_ROUTERS], groups_series[COMPARE_MAX_ROUTERS];
    int with_groups = 0;
    for (int r = 0; r < opt->router_count; r++) {
        char run[COMPARE_PATH], routing[COMPARE_PATH + 32];
        compare_run_dir(opt, opt->routers[r], 1, run, sizeof run);
        snprintf(routing, sizeof routing, "%.4000s/routing/routing.json", run);
        series[r] = (plots_series){opt->routers[r], active[r], per_layer(routing, "mean_active", active[r], 64), NULL};
        groups_series[r] = (plots_series){opt->routers[r], spanned[r], per_layer(routing, "mean_groups", spanned[r], 64),
                                          NULL};
        with_groups += groups_series[r].count > 0;
    }
    note(file, plots_active_per_layer(dir, "active_per_layer", series, opt->router_count), "active_per_layer",
         "active experts per layer at inference", &skipped);
    int groups, max_groups;
    compare_groups(opt, &groups, &max_groups);
    if (with_groups && groups > 1)
        note(file, plots_groups_per_layer(dir, "groups_per_layer", "Mean groups a token's experts span, per layer "
                                          "(seed 1)", groups, groups_series, opt->router_count),
             "groups_per_layer", "groups a token's experts span per layer at inference", &skipped);
    if (skipped)
        fprintf(file, "(gnuplot is not installed: the plots' data and scripts are in plots/, without images.)\n\n");
    fprintf(file, "Each run's expert-load heatmap, active experts per layer and active experts against token "
            "frequency are in `runs/<router>-seed1/routing/plots/`.\n");
}
