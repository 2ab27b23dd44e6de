/* Plots: with gnuplot, every plot leaves its data, script, PNG (with the PNG signature) and
 * SVG; without it (PM_GNUPLOT pointing nowhere) the data and script are still written and the
 * functions return PLOTS_SKIPPED. The loss plot's smoothing, validation index and y range,
 * its panels, the interval rows and the per-layer series are checked against values the
 * tests compute themselves. */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw, setenv */

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "eval/plots.h"

static char scratch_dir[64];

static int remove_entry(const char *path, const struct stat *info, int type, struct FTW *walk) {
    (void)info, (void)type, (void)walk;
    return remove(path);
}

static int make_scratch(void **state) {
    (void)state;
    snprintf(scratch_dir, sizeof scratch_dir, "/tmp/pm_plots_XXXXXX");
    return mkdtemp(scratch_dir) ? 0 : -1;
}

static int remove_scratch(void **state) {
    (void)state;
    return nftw(scratch_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *in_dir(const char *sub, const char *name) {
    static char paths[4][512];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, 512, "%s/%s/%s", scratch_dir, sub, name);
    return path;
}

static bool have_gnuplot(void) {
    return system("command -v gnuplot >/dev/null 2>&1") == 0;
}

static void write_metrics(const char *path, int steps, int val_every, double scale) {
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    for (int s = 1; s <= steps; s++) {
        fprintf(file, "{\"step\": %d, \"loss\": %.4f, \"lr\": 0.001", s, scale * (4.0 + 3.0 / s));
        if (s % val_every == 0) fprintf(file, ", \"val_loss\": %.4f", scale * (4.2 + 3.0 / s));
        fprintf(file, ", \"layers\": [{\"mean_active\": 2.0}, {\"mean_active\": %.3f}]}\n", 1.0 + 1.0 / s);
    }
    fprintf(file, "{\"step\": %d, \"lo", steps + 1); /* a line cut short by a crash */
    fclose(file);
}

static analytics *small_analytics(void) {
    /* 2 layers, 4 experts, tokens 0..5 with falling frequency. */
    analytics *a = analytics_create_raw(2, 4, 2, 8);
    assert_int_equal(analytics_set_groups(a, 2), PM_OK); /* {0, 1} and {2, 3} */
    enum { T = 21 };
    int32_t ids[T];
    int offsets[T + 1], experts[T * 2];
    float probs[T * 4];
    int t = 0;
    for (int v = 0; v < 6; v++)
        for (int c = 0; c < 6 - v; c++, t++) ids[t] = v;
    for (int l = 0; l < 2; l++) {
        int pairs = 0;
        offsets[0] = 0;
        for (t = 0; t < T; t++) {
            const int n = 1 + (ids[t] + l) % 2;
            /* one expert, or two in increasing order; expert 3 only in layer 1's pairs */
            experts[pairs++] = (t + l) % 3;
            if (n == 2) experts[pairs++] = 3;
            offsets[t + 1] = pairs;
            for (int e = 0; e < 4; e++) probs[t * 4 + e] = e == 0 ? 0.7f : 0.1f;
        }
        assert_int_equal(analytics_add_routing(a, l, probs, offsets, experts, ids, T), PM_OK);
    }
    assert_int_equal(analytics_finish(a), PM_OK);
    return a;
}

static void assert_image(const char *path, bool png) {
    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    char head[4096] = {0};
    const size_t n = fread(head, 1, sizeof head - 1, file);
    fclose(file);
    if (png) {
        assert_true(n > 8);
        assert_memory_equal(head, "\x89PNG\r\n\x1a\n", 8);
    } else {
        assert_non_null(strstr(head, "<svg"));
    }
}

static bool exists(const char *path) {
    return access(path, F_OK) == 0;
}

static char *read_text(const char *path);

/* Runs every plot into scratch_dir/sub; expect is PM_OK or PLOTS_SKIPPED. */
static void all_plots(const char *sub, int expect) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/%s", scratch_dir, sub);
    char metrics_a[300], metrics_b[300];
    snprintf(metrics_a, sizeof metrics_a, "%s/a.jsonl", scratch_dir);
    snprintf(metrics_b, sizeof metrics_b, "%s/b.jsonl", scratch_dir);
    write_metrics(metrics_a, 60, 10, 1.0);
    write_metrics(metrics_b, 40, 1000, 0.9); /* never validated: no validation line */
    const plots_run runs[2] = {{"topk k=2", metrics_a}, {"probmoe's run", metrics_b}};
    assert_int_equal(plots_loss(dir, "loss", runs, 2), expect);

    analytics *a = small_analytics();
    assert_int_equal(plots_from_analytics(dir, "eval", "probmoe", a), expect);
    const double active_a[2] = {2.0, 2.0}, active_b[3] = {1.5, 2.5, 2.2};
    const int moe_layers[3] = {1, 3, 5}; /* the runs' MoE layers among dense ones */
    const plots_series series[2] = {{"topk", active_a, 2, NULL}, {"probmoe-dyn", active_b, 3, moe_layers}};
    assert_int_equal(plots_active_per_layer(dir, "active_runs", series, 2), expect);
    analytics_free(a);
    const plots_interval rows[2] = {{"topk", 4.0, 3.9, 4.1}, {"probmoe", 4.2, NAN, NAN}};
    assert_int_equal(plots_intervals(dir, "intervals", "val. loss", "nats", rows, 2, 4.0), expect);
    assert_int_equal(plots_layer_values(dir, "layers", NULL, NULL, metrics_a, "mean_active"), expect);

    const char *stems[8] = {"loss", "eval_load", "eval_active", "eval_frequency", "active_runs",
                            "intervals", "layers", "eval_groups"};
    char name[64];
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof name, "%s.gp", stems[i]);
        assert_true(exists(in_dir(sub, name)));
        snprintf(name, sizeof name, "%s.png", stems[i]);
        if (expect == PM_OK) assert_image(in_dir(sub, name), true);
        else assert_false(exists(in_dir(sub, name)));
        snprintf(name, sizeof name, "%s.svg", stems[i]);
        if (expect == PM_OK) assert_image(in_dir(sub, name), false);
        else assert_false(exists(in_dir(sub, name)));
    }
    assert_true(exists(in_dir(sub, "loss_0_0.dat")));
    assert_true(exists(in_dir(sub, "eval_load.dat")));
    /* layer 0 by hand: the 9 tokens of odd ids add expert 3 to expert t mod 3, which spans both
     * groups unless t mod 3 = 2 (t = 8, 17, 20); 12 + 6·2 + 3 = 27 groups over 21 tokens */
    char *groups = read_text(in_dir(sub, "eval_groups.dat"));
    assert_non_null(strstr(groups, "\n0 1.285714\n"));
    free(groups);
    char *load_script = read_text(in_dir(sub, "eval_load.gp")); /* rows labelled by layer number */
    assert_non_null(strstr(load_script, "set ytics ('0' 0)\nset ytics add ('1' 1)\n"));
    free(load_script);
    /* the bars' groups are labelled with the layer numbers: 1, 3 and 5, not 0, 1, 2 */
    char *bars = read_text(in_dir(sub, "active_runs.dat"));
    assert_non_null(strstr(bars, "\n1 2.000000 1.500000\n3 2.000000 2.500000\n5 nan 2.200000\n"));
    free(bars);
}

static void with_gnuplot(void **state) {
    (void)state;
    if (!have_gnuplot()) {
        print_message("gnuplot is not installed: only the skip path is tested\n");
        skip();
    }
    unsetenv("PM_GNUPLOT");
    all_plots("drawn", PM_OK);
}

static void without_gnuplot(void **state) {
    (void)state;
    setenv("PM_GNUPLOT", "/nonexistent/gnuplot", 1);
    all_plots("skipped", PLOTS_SKIPPED);
    unsetenv("PM_GNUPLOT");
}


/* ---- What the files say: data and script contents against the tests' own computations ---- */

/* The status a drawing plot returns here: PM_OK with gnuplot, PLOTS_SKIPPED without. */
static int drawn(void) {
    return have_gnuplot() ? PM_OK : PLOTS_SKIPPED;
}

static char *read_text(const char *path) {
    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    fseek(file, 0, SEEK_END);
    const long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)size, file), (size_t)size);
    text[size] = '\0';
    fclose(file);
    return text;
}

static int count_of(const char *text, const char *needle) {
    int count = 0;
    for (const char *at = strstr(text, needle); at; at = strstr(at + 1, needle)) count++;
    return count;
}

/* Reads the rows of data block `index` of a gnuplot data file (blocks are separated by two
 * blank lines; # starts a comment): up to columns numbers per row into out. Returns the rows. */
static int read_block(const char *path, int index, int columns, double *out, int max_rows) {
    FILE *file = fopen(path, "r");
    assert_non_null(file);
    char line[1024];
    int block = 0, blanks = 0, rows = 0;
    bool block_has_rows = false;
    while (fgets(line, sizeof line, file)) {
        if (line[0] == '\n') {
            if (++blanks == 2 && block_has_rows) {
                block++;
                block_has_rows = false;
            }
            continue;
        }
        if (line[0] == '#') continue;
        blanks = 0;
        block_has_rows = true;
        if (block != index) continue;
        assert_true(rows < max_rows);
        char *cursor = line;
        for (int c = 0; c < columns; c++) {
            char *end;
            out[rows * columns + c] = strtod(cursor, &end);
            assert_true(end != cursor);
            cursor = end;
        }
        rows++;
    }
    fclose(file);
    return rows;
}

/* All "set yrange [a:b]" of a script, in order. */
static int read_yranges(const char *text, double *ranges, int max) {
    int count = 0;
    for (const char *at = strstr(text, "set yrange ["); at; at = strstr(at + 1, "set yrange [")) {
        assert_true(count < max);
        assert_int_equal(sscanf(at, "set yrange [%lf:%lf]", &ranges[2 * count], &ranges[2 * count + 1]), 2);
        count++;
    }
    return count;
}

/* A noisy loss with a spike over the first steps; validation every val_every steps, above
 * the training loss by val_gap. */
static void write_noisy_metrics(const char *path, int steps, int val_every, double val_gap,
                                double level) {
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    for (int s = 1; s <= steps; s++) {
        const double loss = level + 20.0 * exp(-s / 3.0) + 0.3 * sin(2.1 * s) + 1.0 / s;
        fprintf(file, "{\"step\": %d, \"loss\": %.6f", s, loss);
        if (val_every && s % val_every == 0) fprintf(file, ", \"val_loss\": %.6f", loss + val_gap);
        fprintf(file, ", \"layers\": []}\n");
    }
    fclose(file);
}

/* The smoothed loss by its definition as a weighted mean: at point t, Σ_j β^(t−j)·x_j over
 * Σ_j β^(t−j), β = 1 − α (the bias-corrected moving average, written another way). */
static double weighted_mean_smoothing(const double *x, int t, double alpha) {
    double numerator = 0.0, denominator = 0.0;
    for (int j = 0; j <= t; j++) {
        const double weight = pow(1.0 - alpha, t - j);
        numerator += weight * x[j];
        denominator += weight;
    }
    return numerator / denominator;
}

static int by_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { MAX_POINTS = 200 };

/* One loss plot of two runs, checked against the definitions of plots.h: the smoothing, the
 * validation index and the y range. Run a is validated val_gap above its training loss;
 * validation_decides says which part of the rule should set the top. */
static void check_loss_plot(const char *sub, double val_gap, bool validation_decides) {
    char dir[256], path_a[300], path_b[300];
    snprintf(dir, sizeof dir, "%s/%s", scratch_dir, sub);
    snprintf(path_a, sizeof path_a, "%s/%s_a.jsonl", scratch_dir, sub);
    snprintf(path_b, sizeof path_b, "%s/%s_b.jsonl", scratch_dir, sub);
    write_noisy_metrics(path_a, 100, 25, val_gap, 4.0);
    write_noisy_metrics(path_b, 60, 0, 0.0, 3.5); /* never validated */
    const plots_run runs[2] = {{"a", path_a}, {"b", path_b}};
    assert_int_equal(plots_loss(dir, "loss", runs, 2), drawn());

    /* span = max(1, floor(100 / 20)) = 5 points from the longer run: α = 2 / 6 for both */
    const double alpha = 1.0 / 3.0;
    const int steps[2] = {100, 60};
    double pool[2 * MAX_POINTS];
    double lowest = INFINITY, top_validation = -INFINITY;
    int pooled = 0;
    for (int r = 0; r < 2; r++) {
        char name[32];
        snprintf(name, sizeof name, "loss_0_%d.dat", r);
        double rows[MAX_POINTS * 3], raw[MAX_POINTS];
        assert_int_equal(read_block(in_dir(sub, name), 0, 3, rows, MAX_POINTS), steps[r]);
        for (int t = 0; t < steps[r]; t++) raw[t] = rows[3 * t + 1];
        for (int t = 0; t < steps[r]; t++) {
            assert_close(rows[3 * t], t + 1, 0, 0, "step", t);
            const double smoothed = weighted_mean_smoothing(raw, t, alpha);
            assert_close(rows[3 * t + 2], smoothed, 1e-7, 0, "smoothed loss", t);
            lowest = fmin(lowest, smoothed);
            if (t + 1 >= 1 + 0.1 * (steps[r] - 1)) pool[pooled++] = smoothed;
        }
        assert_close(rows[2], raw[0], 1e-7, 0, "first smoothed point = first loss", r);

        /* validation points, and only they, in index 1 */
        double val[MAX_POINTS * 2];
        const int val_rows = read_block(in_dir(sub, name), 1, 2, val, MAX_POINTS);
        assert_int_equal(val_rows, r == 0 ? 4 : 0);
        for (int v = 0; v < val_rows; v++) {
            assert_close(val[2 * v], 25 * (v + 1), 0, 0, "validation step", v);
            assert_close(val[2 * v + 1], raw[25 * (v + 1) - 1] + val_gap, 1e-6, 1e-9, "val_loss", v);
            lowest = fmin(lowest, val[2 * v + 1]);
            top_validation = fmax(top_validation, val[2 * v + 1]); /* all past step 10.9 */
        }
    }
    qsort(pool, (size_t)pooled, sizeof(double), by_double);
    const double percentile = pool[(int)ceil(0.95 * pooled) - 1];
    assert_true(validation_decides == (top_validation > percentile));
    const double top = fmax(percentile, top_validation);
    const double pad = 0.05 * (top - lowest);
    char *script = read_text(in_dir(sub, "loss.gp"));
    double range[2];
    assert_int_equal(read_yranges(script, range, 1), 1);
    assert_close(range[0], lowest - pad, 1e-5, 0, "y range bottom", 0);
    assert_close(range[1], top + pad, 1e-5, 0, "y range top", 0);
    /* the first steps' spike (above 10) is outside the range */
    assert_true(range[1] < 10.0);
    assert_non_null(strstr(script, "set key outside"));
    assert_int_equal(count_of(script, "index 1 using"), 1); /* only run a has validation */
    assert_int_equal(count_of(script, "keyentry"), 2 + 3); /* two runs, three line styles */
    free(script);
}

static void loss_smoothing_and_range(void **state) {
    (void)state;
    check_loss_plot("smooth_percentile", -0.3, false);
    check_loss_plot("smooth_validation", 0.9, true);
}

/* The colour spec of the first clause of script that contains needle (the text after
 * "lc rgb '" on the same line). */
static void clause_colour(const char *script, const char *needle, char *colour) {
    const char *at = strstr(script, needle);
    assert_non_null(at);
    const char *spec = strstr(at, "lc rgb '"), *line_end = strchr(at, '\n');
    assert_true(spec && line_end && spec < line_end);
    memcpy(colour, spec + 8, 9);
    colour[9] = '\0';
}

static void loss_panels(void **state) {
    (void)state;
    char dir[256], pre_a[300], pre_b[300], fine_b[300];
    snprintf(dir, sizeof dir, "%s/panels", scratch_dir);
    snprintf(pre_a, sizeof pre_a, "%s/pre_a.jsonl", scratch_dir);
    snprintf(pre_b, sizeof pre_b, "%s/pre_b.jsonl", scratch_dir);
    snprintf(fine_b, sizeof fine_b, "%s/fine_b.jsonl", scratch_dir);
    write_noisy_metrics(pre_a, 80, 20, 0.2, 4.0);
    write_noisy_metrics(pre_b, 80, 20, 0.2, 4.1);
    write_noisy_metrics(fine_b, 50, 10, 0.1, 2.0);
    const plots_run pretraining[2] = {{"topk", pre_a}, {"probmoe", pre_b}};
    const plots_run finetuning[1] = {{"probmoe", fine_b}};
    const plots_panel panels[2] = {{"pre-training", pretraining, 2}, {"fine-tuning", finetuning, 1}};
    assert_int_equal(plots_loss_panels(dir, "stages", panels, 2), drawn());

    char *script = read_text(in_dir("panels", "stages.gp"));
    assert_int_equal(count_of(script, "set multiplot layout 2,1"), 1);
    assert_int_equal(count_of(script, "unset multiplot"), 1);
    assert_int_equal(count_of(script, "plot \\"), 2);
    assert_int_equal(count_of(script, "set title 'pre-training'"), 1);
    assert_int_equal(count_of(script, "set title 'fine-tuning'"), 1);
    /* each panel its own range: the second panel's is that of its run plotted alone */
    double ranges[4], alone[2];
    assert_int_equal(read_yranges(script, ranges, 2), 2);
    assert_int_equal(plots_loss(dir, "fine_alone", finetuning, 1), drawn());
    char *alone_script = read_text(in_dir("panels", "fine_alone.gp"));
    assert_int_equal(read_yranges(alone_script, alone, 1), 1);
    free(alone_script);
    assert_true(ranges[2] == alone[0] && ranges[3] == alone[1]);
    assert_true(ranges[0] != alone[0]);
    /* a router keeps its colour from panel to panel */
    char first[10], second[10], other[10];
    clause_colour(script, "'stages_0_1.dat' index 0 using 1:3", first);
    clause_colour(script, "'stages_1_0.dat' index 0 using 1:3", second);
    clause_colour(script, "'stages_0_0.dat' index 0 using 1:3", other);
    assert_string_equal(first, second);
    assert_string_not_equal(first, other);
    free(script);
    assert_true(exists(in_dir("panels", "stages_1_0.dat")));
    if (have_gnuplot()) assert_image(in_dir("panels", "stages.png"), true);
}

static void interval_rows(void **state) {
    (void)state;
    char dir[256];
    snprintf(dir, sizeof dir, "%s/intervals", scratch_dir);
    const plots_interval rows[3] = {
        {"topk", 4.037, 3.99, 4.081}, {"probmoe", 4.121, NAN, NAN}, {"softmoe", 4.011, 3.95, 4.05}};
    assert_int_equal(plots_intervals(dir, "val_loss", "Validation loss", "nats per token", rows, 3, 4.037),
                     drawn());
    double data[3 * 6];
    assert_int_equal(read_block(in_dir("intervals", "val_loss.dat"), 0, 6, data, 3), 3);
    for (int i = 0; i < 3; i++) {
        const double *row = data + 6 * i;
        assert_close(row[0], i, 0, 0, "x", i);
        assert_close(row[1], rows[i].value, 1e-9, 0, "value", i);
        if (i == 1) {
            assert_true(isnan(row[2]) && isnan(row[3]));
            assert_close(row[4], 0, 0, 0, "has interval", i);
        } else {
            assert_close(row[2], rows[i].lo, 1e-9, 0, "lo", i);
            assert_close(row[3], rows[i].hi, 1e-9, 0, "hi", i);
            assert_close(row[4], 1, 0, 0, "has interval", i);
        }
    }
    char *script = read_text(in_dir("intervals", "val_loss.gp"));
    assert_non_null(strstr(script, "set xtics ('topk' 0, 'probmoe' 1, 'softmoe' 2)"));
    assert_non_null(strstr(script, "with yerrorbars"));
    assert_non_null(strstr(script, "'one seed: no interval'"));
    assert_non_null(strstr(script, "4.037 with lines dt 2")); /* the reference line */
    double range[2];
    assert_int_equal(read_yranges(script, range, 1), 1);
    assert_true(range[0] < 3.95 && range[1] > 4.121);
    free(script);

    /* all with intervals, no reference: neither the open circles nor the line */
    const plots_interval differences[2] = {{"probmoe", 0.01, -0.02, 0.04}, {"softmoe", -0.03, -0.05, -0.01}};
    assert_int_equal(plots_intervals(dir, "diff", NULL, "difference", differences, 2, NAN), drawn());
    script = read_text(in_dir("intervals", "diff.gp"));
    assert_null(strstr(script, "no interval"));
    assert_null(strstr(script, "with lines dt 2"));
    free(script);
    if (have_gnuplot()) assert_image(in_dir("intervals", "val_loss.png"), true);
}

static void layer_value_series(void **state) {
    (void)state;
    char dir[256], path[300];
    snprintf(dir, sizeof dir, "%s/layers", scratch_dir);
    snprintf(path, sizeof path, "%s/softmoe.jsonl", scratch_dir);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    /* 3 layers; soft_k = 2 + step/100 + layer/10 every 10 steps; other lines lack it; at
     * step 30 layer 2 lacks it too */
    for (int s = 1; s <= 40; s++) {
        fprintf(file, "{\"step\": %d, \"loss\": 3.0, \"layers\": [", s);
        for (int l = 0; l < 3; l++) {
            fprintf(file, "%s{\"layer\": %d, \"mean_active\": 2.0", l ? ", " : "", 2 * l); /* dense layers between */
            if (s % 10 == 0 && !(s == 30 && l == 2)) fprintf(file, ", \"soft_k\": %.4f", 2.0 + s / 100.0 + l / 10.0);
            fprintf(file, "}");
        }
        fprintf(file, "]}\n");
    }
    fprintf(file, "{\"step\": 41, \"layers\": [{\"soft_k\"");  /* cut short */
    fclose(file);
    assert_int_equal(plots_layer_values(dir, "soft_k", "softmoe k per layer", "k", path, "soft_k"), drawn());
    double rows[4 * 4];
    assert_int_equal(read_block(in_dir("layers", "soft_k.dat"), 0, 4, rows, 4), 4);
    for (int r = 0; r < 4; r++) {
        const int step = 10 * (r + 1);
        assert_close(rows[4 * r], step, 0, 0, "step", r);
        for (int l = 0; l < 3; l++) {
            if (step == 30 && l == 2) assert_true(isnan(rows[4 * r + 1 + l]));
            else assert_close(rows[4 * r + 1 + l], 2.0 + step / 100.0 + l / 10.0, 1e-9, 0, "soft_k", l);
        }
    }
    char *script = read_text(in_dir("layers", "soft_k.gp"));
    assert_int_equal(count_of(script, "with lines"), 3);
    assert_non_null(strstr(script, "using 1:4 with lines"));
    assert_non_null(strstr(script, "title 'layer 4'")); /* the decoder layer number of the third */
    free(script);
    if (have_gnuplot()) assert_image(in_dir("layers", "soft_k.png"), true);
    assert_int_equal(plots_layer_values(dir, "alpha", NULL, NULL, path, "alpha"), PM_ERR_ARG);
}

static void bad_input(void **state) {
    (void)state;
    char dir[256];
    snprintf(dir, sizeof dir, "%s/bad", scratch_dir);
    const plots_run missing = {"x", "/nonexistent/metrics.jsonl"};
    assert_int_equal(plots_loss(dir, "loss", &missing, 1), PM_ERR_ARG);
    assert_int_equal(plots_loss(dir, "loss", &missing, 0), PM_ERR_ARG);
    assert_int_equal(plots_expert_load(dir, "load", NULL, NULL, NULL, 0, 4), PM_ERR_ARG);
    assert_int_equal(plots_loss_panels(dir, "loss", NULL, 0), PM_ERR_ARG);
    const plots_panel empty = {"empty", &missing, 0};
    assert_int_equal(plots_loss_panels(dir, "loss", &empty, 1), PM_ERR_ARG);
    assert_int_equal(plots_intervals(dir, "intervals", NULL, NULL, NULL, 0, NAN), PM_ERR_ARG);
    assert_int_equal(plots_layer_values(dir, "layers", NULL, NULL, missing.metrics_path, "soft_k"),
                     PM_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(with_gnuplot),
        cmocka_unit_test(without_gnuplot),
        cmocka_unit_test(loss_smoothing_and_range),
        cmocka_unit_test(loss_panels),
        cmocka_unit_test(interval_rows),
        cmocka_unit_test(layer_value_series),
        cmocka_unit_test(bad_input),
    };
    return cmocka_run_group_tests(tests, make_scratch, remove_scratch);
}
