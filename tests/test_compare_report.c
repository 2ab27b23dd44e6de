/*
 * compare's report from crafted run results: the figures table, the paired differences and
 * every kind of claim verdict (held, no difference, the opposite, a composite claim that
 * fails, SoftMoE's allocation claims, the cost claim), each checked against what the crafted
 * numbers imply, with the exact bootstrap interval worked out by hand.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "core/fs.h"
#include "experiments/compare_internal.h"

static char work[64];

static void write_file(const char *path, const char *text) {
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fputs(text, file);
    fclose(file);
}

typedef struct {
    const char *router;
    double exact_match, answer_loss, active, load_entropy;
    const char *budget; /* ", \"budget_k\": [...]" or "" */
    double mean_groups; /* groups a token's experts span: mean and most */
    int max_groups;
} run_figures;

static void write_run(const compare_options *opt, const run_figures *f, int seed) {
    char dir[COMPARE_PATH], path[COMPARE_PATH + 64], text[1024];
    compare_run_dir(opt, f->router, seed, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/finetune", dir);
    assert_int_equal(ensure_directory(path), 0);
    snprintf(text, sizeof text,
             "{\"text_val_loss\": 5.0, \"arith_exact_match\": %.6f, \"arith_answer_loss\": %.6f, \"arith_examples\": 100, "
             "\"gsm8k_answer_loss\": 3.0, \"gsm8k_examples\": 10, \"mean_active_inference\": %.4f, "
             "\"load_entropy\": %.4f, \"dead_experts\": 0, \"routing_entropy\": 0.5, \"cover99\": 4.0, "
             "\"groups\": 4, \"mean_groups\": %.4f, \"max_groups\": %d%s}\n",
             f->exact_match, f->answer_loss, f->active, f->load_entropy, f->mean_groups, f->max_groups, f->budget);
    snprintf(path, sizeof path, "%s/eval.json", dir);
    write_file(path, text);
    snprintf(text, sizeof text, "{\"steps\": 10, \"val_loss\": 0.2, \"tokens_per_s\": 1.0, \"mean_active\": %.4f}\n",
             f->active);
    snprintf(path, sizeof path, "%s/finetune/result.json", dir);
    write_file(path, text);
}

static void write_measure(const compare_options *opt, const char *router, double tokens_per_s, double peak) {
    char path[COMPARE_PATH + 64], text[256];
    snprintf(path, sizeof path, "%s/measure", opt->out_dir);
    assert_int_equal(ensure_directory(path), 0);
    snprintf(path, sizeof path, "%s/measure/%s-rep1.json", opt->out_dir, router);
    snprintf(text, sizeof text, "{\"step_seconds\": 0.1, \"tokens_per_s\": %.1f, \"peak_mib\": %.1f}\n", tokens_per_s,
             peak);
    write_file(path, text);
}

static char *read_report(const compare_options *opt) {
    char path[COMPARE_PATH + 16];
    snprintf(path, sizeof path, "%s/report.md", opt->out_dir);
    FILE *file = fopen(path, "r");
    assert_non_null(file);
    static char text[1 << 17];
    const size_t got = fread(text, 1, sizeof text - 1, file);
    fclose(file);
    text[got] = '\0';
    return text;
}

static void expect(const char *report, const char *line) {
    if (!strstr(report, line)) fail_msg("report.md lacks\n  %s\n%s", line, report);
}

/* probmoe-group's seed 2 with a token whose experts span 2 groups. */
static void runs_past_limit(const compare_options *opt) {
    const run_figures past = {"probmoe-group", 0.3, 0.2, 2.0, 0.9, "", 1.01, 2};
    write_run(opt, &past, 2);
}

static void test_claims_follow_the_figures(void **state) {
    (void)state;
    snprintf(work, sizeof work, "/tmp/probmoe_report_XXXXXX");
    assert_non_null(mkdtemp(work));
    compare_options opt;
    assert_int_equal(compare_preset("quick", &opt), 0);
    opt.out_dir = work;
    opt.router_count = 6;
    const char *routers[6] = {"topk", "probmoe", "probmoe-dyn", "densemixer", "softmoe", "probmoe-group"};
    memcpy(opt.routers, routers, sizeof routers);
    opt.seeds = 3;
    opt.measure_reps = 1;
    for (int s = 1; s <= 3; s++) {
        const double em = 0.30 + 0.02 * (s - 1), loss = 0.20 + 0.01 * (s - 1);
        /* probmoe: +4, +5, +6 points of exact match; answer loss +0.01, −0.01, 0; lower load entropy */
        const double probmoe_loss[3] = {0.01, -0.01, 0.0};
        run_figures runs[6] = {
            {"topk", em, loss, 2.0, 0.9, "", 1.5 + 0.1 * s, 2},
            {"probmoe", em + 0.03 + 0.01 * s, loss + probmoe_loss[s - 1], 2.0, 0.8, "", 1.7, 2},
            /* fewer experts, quality unchanged */
            {"probmoe-dyn", em + (s == 2 ? 0.01 : -0.01), loss + (s == 2 ? -0.002 : 0.002), 1.5 + 0.01 * s, 0.9, "",
             1.4, 2},
            {"densemixer", em, loss + 0.002 * s, 2.0, 0.9, "", 1.7, 2},
            /* fewer experts but a worse loss in every seed; a budget that grows with depth */
            {"softmoe", em, loss + 0.1 + 0.01 * s, 1.8, 0.9, ", \"budget_k\": [1.2, 2.8]", 1.6, 2},
            /* within the limit (M = 1 of the quick preset's G = 4) */
            {"probmoe-group", em, loss, 2.0, 0.9, "", 1.0, 1},
        };
        for (int r = 0; r < 6; r++) write_run(&opt, &runs[r], s);
    }
    write_measure(&opt, "topk", 1000.0, 100.0);
    write_measure(&opt, "probmoe", 900.0, 101.0);
    write_measure(&opt, "probmoe-dyn", 950.0, 99.0);
    write_measure(&opt, "densemixer", 700.0, 150.0);
    write_measure(&opt, "softmoe", 980.0, 100.0);
    write_measure(&opt, "probmoe-group", 800.0, 100.0);
    assert_int_equal(compare_write_report(&opt), 0);
    const char *report = read_report(&opt);
    /* topk spans 1.6, 1.7, 1.8 groups: mean 1.70 ± 0.10; the limit holds in every seed */
    expect(report, "Groups: every router's experts are counted in G = 4 equal, contiguous groups of 2");
    expect(report, "| probmoe-group keeps every token's experts within M = 1 of G = 4 groups, where top-k needs a "
                   "two-stage heuristic (ProbMoE's circuit, DeepSeek-V3's limit) | **held** | most groups one token "
                   "spanned: 1; topk's tokens span 1.70 groups on average |");
    expect(report, " 1.70 ± 0.10 | 2 |");
    /* the exact bootstrap of {4, 5, 6}: P(all 4) = 1/27 ≥ 2.5% gives lo = 4; P(mean < 6) = 26/27
     * < 97.5% gives hi = 6 */
    expect(report, "| probmoe beats topk on arithmetic exact match (%) (ProbMoE) | **held** | probmoe − topk, "
                   "arithmetic exact match (%): +5.0 [+4.0, +6.0] (higher) |");
    expect(report, "| probmoe beats topk on arithmetic answer loss (ProbMoE) | **no difference** |");
    expect(report, "| probmoe uses the experts more evenly than topk: higher load entropy (ProbMoE) | **did not hold "
                   "(the opposite)** |");
    expect(report, "| probmoe beats densemixer on arithmetic exact match (%) (ProbMoE) | **held** |");
    expect(report, "| probmoe-dyn matches topk's quality with fewer active experts (ProbMoE) | **held** |");
    expect(report, "| softmoe activates fewer experts than topk at equal or better loss (SoftMoE) | **did not hold** |");
    expect(report, "(largest k_l ≥ 1.5 × the smallest) (SoftMoE) | **held** | learned k_l by layer (mean of 3 "
                   "seed(s)): 1.200 2.800; largest / smallest 2.333 |");
    expect(report, "| SoftMoE: later layers activate more experts (SoftMoE) | **held** | k_l grows with depth (positive "
                   "slope) in 3 of 3 seed(s) |");
    expect(report, "| probmoe trains within 25% of topk's step time and peak memory (ProbMoE's cost figure) | **held** | "
                   "tokens/s 0.90× topk's, peak memory 1.01× topk's |");
    expect(report, "| densemixer trains within 25% of topk's step time and peak memory (ProbMoE's cost figure) | **did "
                   "not hold** | tokens/s 0.70× topk's, peak memory 1.50× topk's |");
    /* figures: topk's exact match 30, 32, 34 → 32.0 ± 2.0 */
    expect(report, "| topk | 32.0 ± 2.0 | 0.210 ± 0.010 |");
    /* one token of one seed past the limit: it did not hold */
    runs_past_limit(&opt);
    assert_int_equal(compare_write_report(&opt), 0);
    report = read_report(&opt);
    expect(report, "within M = 1 of G = 4 groups, where top-k needs a two-stage heuristic (ProbMoE's circuit, "
                   "DeepSeek-V3's limit) | **did not hold** | most groups one token spanned: 2;");
    char command[128];
    snprintf(command, sizeof command, "rm -rf %s", work);
    assert_int_equal(system(command), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claims_follow_the_figures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
