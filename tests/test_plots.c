/* Plots: with gnuplot, every plot leaves its data, script, PNG (with the PNG signature) and
 * SVG; without it (PM_GNUPLOT pointing nowhere) the data and script are still written and the
 * functions return PLOTS_SKIPPED. */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw, setenv */

#include <ftw.h>
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
        fprintf(file, ", \"layers\": []}\n");
    }
    fprintf(file, "{\"step\": %d, \"lo", steps + 1); /* a line cut short by a crash */
    fclose(file);
}

static analytics *small_analytics(void) {
    /* 2 layers, 4 experts, tokens 0..5 with falling frequency. */
    analytics *a = analytics_create_raw(2, 4, 2, 8);
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
    const plots_series series[2] = {{"topk", active_a, 2}, {"probmoe-dyn", active_b, 3}};
    assert_int_equal(plots_active_per_layer(dir, "active_runs", series, 2), expect);
    analytics_free(a);

    const char *stems[5] = {"loss", "eval_load", "eval_active", "eval_frequency", "active_runs"};
    char name[64];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "%s.gp", stems[i]);
        assert_true(exists(in_dir(sub, name)));
        snprintf(name, sizeof name, "%s.png", stems[i]);
        if (expect == PM_OK) assert_image(in_dir(sub, name), true);
        else assert_false(exists(in_dir(sub, name)));
        snprintf(name, sizeof name, "%s.svg", stems[i]);
        if (expect == PM_OK) assert_image(in_dir(sub, name), false);
        else assert_false(exists(in_dir(sub, name)));
    }
    assert_true(exists(in_dir(sub, "loss_0.dat")));
    assert_true(exists(in_dir(sub, "eval_load.dat")));
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

static void bad_input(void **state) {
    (void)state;
    char dir[256];
    snprintf(dir, sizeof dir, "%s/bad", scratch_dir);
    const plots_run missing = {"x", "/nonexistent/metrics.jsonl"};
    assert_int_equal(plots_loss(dir, "loss", &missing, 1), PM_ERR_ARG);
    assert_int_equal(plots_loss(dir, "loss", &missing, 0), PM_ERR_ARG);
    assert_int_equal(plots_expert_load(dir, "load", NULL, NULL, 0, 4), PM_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(with_gnuplot),
        cmocka_unit_test(without_gnuplot),
        cmocka_unit_test(bad_input),
    };
    return cmocka_run_group_tests(tests, make_scratch, remove_scratch);
}
