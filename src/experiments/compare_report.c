#define _POSIX_C_SOURCE 200809L
#include "experiments/compare_report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "eval/plots.h"
#include "core/fs.h"

/* A number from a small JSON file (result.json, eval.json) or a plain number file; NaN if absent. */
static double read_number(const char *path, const char *key) {
    FILE *file = fopen(path, "r");
    if (!file) return NAN;
    char text[4096];
    size_t got = fread(text, 1, sizeof text - 1, file);
    fclose(file);
    text[got] = '\0';
    if (!key) return strtod(text, NULL);
    cJSON *root = cJSON_Parse(text);
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    double value = cJSON_IsNumber(item) ? item->valuedouble : NAN;
    cJSON_Delete(root);
    return value;
}

enum {
    PRETRAIN_VAL, ANSWER_LOSS, EXACT_MATCH, ACTIVE_TRAIN, ACTIVE_INFERENCE, LOAD_ENTROPY, TOKENS_PER_S,
    PEAK_MIB, METRIC_COUNT
};
static const char *const metric_names[METRIC_COUNT] = {
    "text val. loss", "GSM8K answer loss", "GSM8K exact match", "active experts (train)",
    "active experts (inference)", "load entropy", "tokens/s (pre-training)", "peak memory (MiB)"};

static void run_metrics(const compare_options *opt, const char *router, int seed, double *values) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/runs/%s-seed%d", opt->out_dir, router, seed);
    snprintf(path, sizeof path, "%s/pretrain/result.json", dir);
    values[PRETRAIN_VAL] = read_number(path, "val_loss");
    values[ACTIVE_TRAIN] = read_number(path, "mean_active");
    values[TOKENS_PER_S] = read_number(path, "tokens_per_s");
    snprintf(path, sizeof path, "%s/eval.json", dir);
    values[ANSWER_LOSS] = read_number(path, "gsm8k_answer_loss");
    values[EXACT_MATCH] = 100.0 * read_number(path, "exact_match");
    values[ACTIVE_INFERENCE] = read_number(path, "mean_active_inference");
    values[LOAD_ENTROPY] = read_number(path, "load_entropy");
    double peak = 0.0;
    const char *stages[3] = {"pretrain", "finetune", "eval"};
    for (int s = 0; s < 3; s++) {
        snprintf(path, sizeof path, "%s/peak_%s_mib", dir, stages[s]);
        peak = fmax(peak, read_number(path, NULL));
    }
    values[PEAK_MIB] = peak;
}

/* layers[].mean_active of a run's routing.json into values (at most capacity); the count. */
static int active_per_layer(const char *path, double *values, int capacity) {
    FILE *file = fopen(path, "r");
    if (!file) return 0;
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    char *text = size > 0 ? malloc((size_t)size + 1) : NULL;
    size_t got = text ? fread(text, 1, (size_t)size, file) : 0;
    fclose(file);
    if (!text) return 0;
    text[got] = '\0';
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers"), *layer;
    int count = 0;
    cJSON_ArrayForEach(layer, layers) {
        const cJSON *active = cJSON_GetObjectItemCaseSensitive(layer, "mean_active");
        if (count < capacity && cJSON_IsNumber(active)) values[count++] = active->valuedouble;
    }
    cJSON_Delete(root);
    return count;
}

/* Training and validation loss of every router (seed 1), and active experts per layer at
 * inference; images in out_dir/plots. Returns the markdown lines that show them. */
static void write_plots(const compare_options *opt, FILE *report) {
    char plot_dir[4200];
    snprintf(plot_dir, sizeof plot_dir, "%s/plots", opt->out_dir);
    if (ensure_directory(plot_dir) < 0) return;
    plots_run runs[COMPARE_MAX_ROUTERS];
    plots_series series[COMPARE_MAX_ROUTERS];
    static char paths[COMPARE_MAX_ROUTERS][4200];
    static double active[COMPARE_MAX_ROUTERS][64];
    for (int r = 0; r < opt->router_count; r++) {
        snprintf(paths[r], sizeof paths[r], "%s/runs/%s-seed1/pretrain/metrics.jsonl", opt->out_dir, opt->routers[r]);
        runs[r] = (plots_run){opt->routers[r], paths[r]};
        char routing[4300];
        snprintf(routing, sizeof routing, "%s/runs/%s-seed1/routing/routing.json", opt->out_dir, opt->routers[r]);
        series[r] = (plots_series){opt->routers[r], active[r], active_per_layer(routing, active[r], 64)};
    }
    int loss = plots_loss(plot_dir, "pretrain_loss", runs, opt->router_count);
    int layers = plots_active_per_layer(plot_dir, "active_per_layer", series, opt->router_count);
    if (loss < 0 || layers < 0) fprintf(stderr, "compare: plots: %s\n", pm_last_error());
    if (loss == PLOTS_SKIPPED || layers == PLOTS_SKIPPED) {
        fprintf(report, "\n(gnuplot is not installed: the plots' data and scripts are in plots/, without images.)\n");
        return;
    }
    fprintf(report, "\n## Plots\n\n![pre-training loss](plots/pretrain_loss.png)\n\n"
            "![active experts per layer at inference](plots/active_per_layer.png)\n\n"
            "Each run's expert-load heatmap, active experts per layer and active experts against token "
            "frequency are in `runs/<router>-seed1/routing/plots/`.\n");
}

int compare_write_report(const compare_options *opt) {
    const int R = opt->router_count;
    double *mean = calloc((size_t)R * METRIC_COUNT, sizeof(double));
    double *spread = calloc((size_t)R * METRIC_COUNT, sizeof(double));
    if (!mean || !spread) {
        free(mean);
        free(spread);
        return pm_fail(PM_ERR_NOMEM, "compare: out of memory for the report");
    }
    for (int r = 0; r < R; r++)
        for (int m = 0; m < METRIC_COUNT; m++) {
            double sum = 0.0, squares = 0.0;
            for (int seed = 1; seed <= opt->seeds; seed++) {
                double values[METRIC_COUNT];
                run_metrics(opt, opt->routers[r], seed, values);
                sum += values[m];
                squares += values[m] * values[m];
            }
            const double n = opt->seeds;
            mean[r * METRIC_COUNT + m] = sum / n;
            spread[r * METRIC_COUNT + m] = n > 1 ? sqrt(fmax(0.0, (squares - sum * sum / n) / (n - 1))) : 0.0;
        }
    int topk = -1;
    for (int r = 0; r < R; r++)
        if (strcmp(opt->routers[r], "topk") == 0) topk = r;
    char path[4200];
    snprintf(path, sizeof path, "%s/report.md", opt->out_dir);
    FILE *file = fopen(path, "w");
    if (!file) {
        free(mean);
        free(spread);
        return pm_fail(PM_ERR_ARG, "compare: cannot write %s", path);
    }
    const pm_model_config *m = &opt->model;
    fprintf(file, "# probmoe compare\n\n");
    fprintf(file, "Model: %d layers, hidden %d, %d heads, %d experts of width %d, k = %d, BPE vocabulary of %d. "
            "Pre-training: %ld steps of %d × %d tokens; fine-tuning on GSM8K train: %ld steps of %d × %d tokens. "
            "Evaluation: %d validation windows of the text, the first %d GSM8K test problems (greedy, up to %d new "
            "tokens). %d seed(s) per router; figures are mean ± std over seeds, with the ratio to topk in "
            "brackets.\n\n",
            m->num_layers, m->hidden_size, m->num_heads, m->num_experts, m->intermediate_size, m->experts_per_token,
            opt->vocab_size, opt->pretrain_steps, opt->batch, opt->seq, opt->finetune_steps, opt->finetune_batch,
            opt->finetune_seq, opt->eval_batches, opt->gsm8k_limit, opt->max_new, opt->seeds);
    fprintf(file, "| router |");
    for (int k = 0; k < METRIC_COUNT; k++) fprintf(file, " %s |", metric_names[k]);
    fprintf(file, "\n|---|");
    for (int k = 0; k < METRIC_COUNT; k++) fprintf(file, "---|");
    fprintf(file, "\n");
    for (int r = 0; r < R; r++) {
        fprintf(file, "| %s |", opt->routers[r]);
        for (int k = 0; k < METRIC_COUNT; k++) {
            const double value = mean[r * METRIC_COUNT + k], deviation = spread[r * METRIC_COUNT + k];
            const int digits = k == TOKENS_PER_S || k == PEAK_MIB ? 0 : k == EXACT_MATCH ? 1 : 3;
            fprintf(file, " %.*f", digits, value);
            if (opt->seeds > 1) fprintf(file, " ± %.*f", digits, deviation);
            if (topk >= 0 && r != topk && mean[topk * METRIC_COUNT + k] != 0.0)
                fprintf(file, " (%.2f×)", value / mean[topk * METRIC_COUNT + k]);
            fprintf(file, " |");
        }
        fprintf(file, "\n");
    }
    write_plots(opt, file);
    fprintf(file, "\nPer-run details: `runs/<router>-seed<s>/` holds the training metrics (pretrain/, finetune/), "
            "eval.json, the generated GSM8K answers (gsm8k_outputs.jsonl) and the routing analytics (routing/).\n");
    fclose(file);
    free(mean);
    free(spread);
    printf("wrote %s\n", path);
    return PM_OK;
}
