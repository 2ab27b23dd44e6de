/* report.md of probmoe compare: the figures of every router (mean ± std over seeds), paired
 * differences against topk with bootstrap intervals, and the papers' claims one by one, each
 * with the figure that decides it and whether it held on this run. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "experiments/compare_internal.h"
#include "experiments/compare_report_internal.h"
#include "experiments/stats.h"

/* ----------------------------------------------------------------- reading */

/* The text of a small file, or NULL. */
static char *read_small(const char *path) {
    FILE *file = fopen(path, "r");
    if (!file) return NULL;
    char *text = malloc(1 << 16);
    size_t got = text ? fread(text, 1, (1 << 16) - 1, file) : 0;
    fclose(file);
    if (text) text[got] = '\0';
    return text;
}

/* A number of a JSON file; NaN if absent. */
static double json_number(const char *path, const char *key) {
    char *text = read_small(path);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    const double value = cJSON_IsNumber(item) ? item->valuedouble : NAN;
    cJSON_Delete(root);
    return value;
}

/* An array of numbers of a JSON file into values (at most capacity); the count. */
static int json_numbers(const char *path, const char *key, double *values, int capacity) {
    char *text = read_small(path);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *item;
    int count = 0;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(root, key))
        if (count < capacity && cJSON_IsNumber(item)) values[count++] = item->valuedouble;
    cJSON_Delete(root);
    return count;
}

const report_metric report_metrics[METRIC_COUNT] = {
    [EXACT_MATCH] = {"arithmetic exact match (%)", 1, +1},
    [ARITH_LOSS] = {"arithmetic answer loss", 3, -1},
    [GSM8K_LOSS] = {"GSM8K answer loss", 3, -1},
    [TEXT_LOSS] = {"text val. loss (after fine-tuning)", 3, -1},
    [ACTIVE_TRAIN] = {"active experts (fine-tuning)", 2, 0},
    [ACTIVE_INFERENCE] = {"active experts (inference)", 2, 0},
    [LOAD_ENTROPY] = {"load entropy", 3, +1},
    [DEAD_EXPERTS] = {"dead experts", 1, -1},
    [ROUTING_ENTROPY] = {"per-token routing entropy", 3, 0},
    [COVER99] = {"experts covering 99% of π", 2, 0},
    [GROUPS_MEAN] = {"groups a token spans (mean)", 2, 0},
    [GROUPS_MOST] = {"groups a token spans (most)", 0, 0},
    [TOKENS_PER_S] = {"training tokens/s (side by side)", 0, +1},
    [PEAK_MIB] = {"peak memory (MiB, side by side)", 0, -1},
};

/* Mean over the measurement repetitions of a router's field. */
static double measured(const compare_options *opt, const char *router, const char *key) {
    double sum = 0.0;
    int count = 0;
    for (int rep = 1; rep <= opt->measure_reps; rep++) {
        char path[COMPARE_PATH + 64];
        snprintf(path, sizeof path, "%s/measure/%s-rep%d.json", opt->out_dir, router, rep);
        const double value = json_number(path, key);
        if (!isnan(value)) sum += value, count++;
    }
    return count ? sum / count : NAN;
}

void report_run_metrics(const compare_options *opt, const char *router, int seed, double *values) {
    char dir[COMPARE_PATH], path[COMPARE_PATH + 32];
    compare_run_dir(opt, router, seed, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/finetune/result.json", dir);
    values[ACTIVE_TRAIN] = json_number(path, "mean_active");
    snprintf(path, sizeof path, "%s/eval.json", dir);
    values[EXACT_MATCH] = 100.0 * json_number(path, "arith_exact_match");
    values[ARITH_LOSS] = json_number(path, "arith_answer_loss");
    values[GSM8K_LOSS] = json_number(path, "gsm8k_answer_loss");
    values[TEXT_LOSS] = json_number(path, "text_val_loss");
    values[ACTIVE_INFERENCE] = json_number(path, "mean_active_inference");
    values[LOAD_ENTROPY] = json_number(path, "load_entropy");
    values[DEAD_EXPERTS] = json_number(path, "dead_experts");
    values[ROUTING_ENTROPY] = json_number(path, "routing_entropy");
    values[COVER99] = json_number(path, "cover99");
    values[GROUPS_MEAN] = json_number(path, "mean_groups");
    values[GROUPS_MOST] = json_number(path, "max_groups");
    /* measured once per router (seed 1's model), side by side */
    values[TOKENS_PER_S] = measured(opt, router, "tokens_per_s");
    values[PEAK_MIB] = measured(opt, router, "peak_mib");
}

int report_budget(const compare_options *opt, const char *router, int seed, double *k, int capacity) {
    char dir[COMPARE_PATH], path[COMPARE_PATH + 32];
    compare_run_dir(opt, router, seed, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/eval.json", dir);
    return json_numbers(path, "budget_k", k, capacity);
}

/* ------------------------------------------------------------------ tables */

report_data *report_data_read(const compare_options *opt) {
    report_data *data = calloc(1, sizeof *data);
    if (!data) return NULL;
    data->opt = opt;
    data->routers = opt->router_count;
    data->seeds = opt->seeds;
    data->values = calloc((size_t)opt->router_count * opt->seeds * METRIC_COUNT, sizeof(double));
    if (!data->values) {
        free(data);
        return NULL;
    }
    data->topk = -1;
    for (int r = 0; r < opt->router_count; r++) {
        if (strcmp(opt->routers[r], "topk") == 0) data->topk = r;
        for (int s = 0; s < opt->seeds; s++)
            report_run_metrics(opt, opt->routers[r], s + 1, data->values + ((size_t)r * opt->seeds + s) * METRIC_COUNT);
    }
    return data;
}

void report_data_free(report_data *data) {
    if (data) free(data->values);
    free(data);
}

int report_router_index(const report_data *data, const char *name) {
    for (int r = 0; r < data->routers; r++)
        if (strcmp(data->opt->routers[r], name) == 0) return r;
    return -1;
}

/* Per-seed values of metric m for router r. */
void report_series(const report_data *data, int r, int m, double *out) {
    for (int s = 0; s < data->seeds; s++) out[s] = data->values[((size_t)r * data->seeds + s) * METRIC_COUNT + m];
}

double report_most(const report_data *data, int r, int m) {
    double series[COMPARE_MAX_SEEDS], most = NAN;
    report_series(data, r, m, series);
    for (int s = 0; s < data->seeds; s++)
        if (!isnan(series[s]) && (isnan(most) || series[s] > most)) most = series[s];
    return most;
}

void report_difference(const report_data *data, int a, int b, int m, stats_difference *out) {
    double x[COMPARE_MAX_SEEDS], y[COMPARE_MAX_SEEDS];
    const int n = data->seeds;
    report_series(data, a, m, x);
    report_series(data, b, m, y);
    stats_paired_difference(x, y, n, out);
}

static void write_figures(FILE *file, const report_data *data) {
    fprintf(file, "## Figures\n\nMean ± std over %d seed(s); throughput and peak memory come from the side-by-side "
            "measurement (seed 1's fine-tuned models, %d repetitions, routers alternating).\n\n| router |",
            data->seeds, data->opt->measure_reps);
    for (int m = 0; m < METRIC_COUNT; m++) fprintf(file, " %s |", report_metrics[m].name);
    fprintf(file, "\n|---|");
    for (int m = 0; m < METRIC_COUNT; m++) fprintf(file, "---|");
    fprintf(file, "\n");
    for (int r = 0; r < data->routers; r++) {
        fprintf(file, "| %s |", data->opt->routers[r]);
        for (int m = 0; m < METRIC_COUNT; m++) {
            double series[COMPARE_MAX_SEEDS], mean, std;
            report_series(data, r, m, series);
            const int used = stats_mean_std(series, data->seeds, &mean, &std);
            const int digits = report_metrics[m].digits;
            if (used == 0) fprintf(file, " n/a |");
            else if (m == GROUPS_MOST) fprintf(file, " %.0f |", report_most(data, r, m)); /* the most over seeds too */
            else if (m == TOKENS_PER_S || m == PEAK_MIB || used == 1) fprintf(file, " %.*f |", digits, mean);
            else fprintf(file, " %.*f ± %.*f |", digits, mean, digits, std);
        }
        fprintf(file, "\n");
    }
}

/* Paired differences against topk of the quality and routing figures. */
static void write_differences(FILE *file, const report_data *data) {
    if (data->topk < 0) return;
    static const int shown[] = {EXACT_MATCH, ARITH_LOSS, GSM8K_LOSS, TEXT_LOSS, ACTIVE_INFERENCE, LOAD_ENTROPY,
                                ROUTING_ENTROPY, GROUPS_MEAN};
    fprintf(file, "\n## Differences against topk\n\nPer seed, router minus topk (the same backbone and data order "
            "per seed under the fine-tuning protocol); the mean difference and its paired bootstrap 95%% interval "
            "over seeds. An interval that contains 0 is reported as \"no difference\".\n\n| router |");
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++) fprintf(file, " %s |", report_metrics[shown[i]].name);
    fprintf(file, "\n|---|");
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++) fprintf(file, "---|");
    fprintf(file, "\n");
    for (int r = 0; r < data->routers; r++) {
        if (r == data->topk) continue;
        fprintf(file, "| %s |", data->opt->routers[r]);
        for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++) {
            stats_difference d;
            char text[128];
            report_difference(data, r, data->topk, shown[i], &d);
            stats_format_difference(text, sizeof text, &d, report_metrics[shown[i]].digits);
            fprintf(file, " %s |", text);
        }
        fprintf(file, "\n");
    }
}

int compare_write_report(const compare_options *opt) {
    report_data *data = report_data_read(opt);
    if (!data) return pm_fail(PM_ERR_NOMEM, "compare: out of memory for the report");
    char path[COMPARE_PATH + 16];
    snprintf(path, sizeof path, "%s/report.md", opt->out_dir);
    FILE *file = fopen(path, "w");
    if (!file) {
        report_data_free(data);
        return pm_fail(PM_ERR_ARG, "compare: cannot write %s", path);
    }
    const pm_model_config *m = &opt->model;
    fprintf(file, "# probmoe compare (preset %s)\n\n", opt->preset ? opt->preset : "custom");
    fprintf(file, "Model: %d layers, hidden %d, %d heads, %d experts of width %d, k = %d, BPE vocabulary of %d "
            "learned on the text. ", m->num_layers, m->hidden_size, m->num_heads, m->num_experts,
            m->intermediate_size, m->experts_per_token, opt->vocab_size);
    if (opt->protocol == COMPARE_FINETUNE)
        fprintf(file, "Protocol **finetune** (the ProbMoE paper's): per seed one backbone pre-trained with top-k "
                "for %ld steps of %d × %d text tokens, then each router fine-tuned from it", opt->pretrain_steps,
                opt->batch, opt->seq);
    else
        fprintf(file, "Protocol **scratch**: each router pre-trained on its own for %ld steps of %d × %d text "
                "tokens, then fine-tuned", opt->pretrain_steps, opt->batch, opt->seq);
    fprintf(file, " for %ld steps of %d × %d tokens on the arithmetic task (`probmoe data arith`: %d training "
            "problems of %d–%d steps, operands up to %d)%s. Evaluation: %d validation windows of the text, the "
            "first %d arithmetic test problems (greedy, up to %d new tokens, final-number exact match) and the "
            "answer loss of the first %d GSM8K test problems. %d seed(s) per router.\n\n",
            opt->finetune_steps, opt->finetune_batch, opt->finetune_seq, opt->arith.train_count,
            opt->arith.min_steps, opt->arith.max_steps, opt->arith.max_operand,
            opt->freeze_router ? ", the routing parameters frozen" : "", opt->eval_batches, opt->arith_limit,
            opt->arith_max_new, opt->gsm8k_limit, opt->seeds);
    int groups, max_groups;
    compare_groups(opt, &groups, &max_groups);
    fprintf(file, "Groups: every router's experts are counted in G = %d equal, contiguous groups of %d (as expert "
            "parallelism over %d ranks would hold them, `--groups`); probmoe-group, where listed, routes within "
            "M = %d of them (`--max-groups`).\n\n", groups, m->num_experts / groups, groups, max_groups);
    report_write_claims(file, data);
    write_figures(file, data);
    write_differences(file, data);
    report_write_plots(file, data);
    fprintf(file, "\nPer-run details: `runs/<router>-seed<s>/` holds the training metrics, eval.json, the generated "
            "arithmetic answers (arith_outputs.jsonl) and the routing analytics (routing/); `measure/` the "
            "side-by-side timings.\n");
    const bool ok = fclose(file) == 0;
    report_data_free(data);
    if (!ok) return pm_fail(PM_ERR_ARG, "compare: writing %s failed", path);
    printf("wrote %s\n", path);
    return PM_OK;
}
