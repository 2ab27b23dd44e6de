/* The papers' claims, one by one, with the figure that decides each and whether it held on
 * this run. A claim that two routers differ holds only when the paired bootstrap interval
 * of the difference lies wholly on the claimed side; an interval containing 0 is "no
 * difference", and one wholly on the other side means the opposite held. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "experiments/compare_internal.h"
#include "experiments/compare_report_internal.h"

/* "probmoe − topk: +1.2 [+0.3, +2.0]" and the verdict for "a is better than b on m". */
static const char *better_than(const report_data *data, int a, int b, int m, char *figure, size_t size) {
    stats_difference d;
    report_difference(data, a, b, m, &d);
    char text[128];
    stats_format_difference(text, sizeof text, &d, report_metrics[m].digits);
    snprintf(figure, size, "%s − %s, %s: %s", data->opt->routers[a], data->opt->routers[b], report_metrics[m].name,
             text);
    if (d.verdict == STATS_NO_DATA) return "not measured";
    if (d.verdict == STATS_ONE_SEED) return "undecided (one seed)";
    if (d.verdict == STATS_NO_DIFFERENCE) return "no difference";
    const bool higher = d.verdict == STATS_HIGHER;
    return (higher ? 1 : -1) == report_metrics[m].better ? "held" : "did not hold (the opposite)";
}

/* "a is not worse than b on m": held unless the interval lies wholly on the worse side. */
static const char *not_worse(const report_data *data, int a, int b, int m, char *figure, size_t size) {
    const char *verdict = better_than(data, a, b, m, figure, size);
    if (strcmp(verdict, "held") == 0 || strcmp(verdict, "no difference") == 0) return "held";
    return verdict;
}

/* "a has fewer active experts than b (at inference)". */
static const char *fewer_active(const report_data *data, int a, int b, char *figure, size_t size) {
    stats_difference d;
    report_difference(data, a, b, ACTIVE_INFERENCE, &d);
    char text[128];
    stats_format_difference(text, sizeof text, &d, 2);
    snprintf(figure, size, "%s − %s, active experts (inference): %s", data->opt->routers[a], data->opt->routers[b],
             text);
    if (d.verdict == STATS_NO_DATA) return "not measured";
    if (d.verdict == STATS_ONE_SEED) return "undecided (one seed)";
    return d.verdict == STATS_LOWER ? "held" : d.verdict == STATS_NO_DIFFERENCE ? "no difference"
                                                                              : "did not hold (the opposite)";
}

static void claim_line(FILE *file, const char *claim, const char *verdict, const char *figure) {
    fprintf(file, "| %s | **%s** | %s |\n", claim, verdict, figure);
}

/* A claim of several parts holds when every part holds; a part not measured or undecided
 * leaves it so; otherwise it did not hold. */
static const char *both(const char *first, const char *second) {
    if (strcmp(first, "held") == 0 && strcmp(second, "held") == 0) return "held";
    const char *open[] = {"not measured", "undecided (one seed)"};
    for (int i = 0; i < 2; i++)
        if (strcmp(first, open[i]) == 0 || strcmp(second, open[i]) == 0) return open[i];
    return "did not hold";
}

static void quality_claims(FILE *file, const report_data *data, int a, int b, const char *source) {
    char figure[512], claim[256];
    if (a < 0 || b < 0) return;
    const int metrics[] = {EXACT_MATCH, ARITH_LOSS, GSM8K_LOSS};
    for (size_t i = 0; i < sizeof metrics / sizeof metrics[0]; i++) {
        const char *verdict = better_than(data, a, b, metrics[i], figure, sizeof figure);
        snprintf(claim, sizeof claim, "%s beats %s on %s (%s)", data->opt->routers[a], data->opt->routers[b],
                 report_metrics[metrics[i]].name, source);
        claim_line(file, claim, verdict, figure);
    }
}

/* "fewer active experts than topk at comparable (not worse) quality". */
static void sparsity_claim(FILE *file, const report_data *data, int a, const char *claim) {
    if (a < 0 || data->topk < 0) return;
    char active[512], quality[512], accuracy[512], figure[1600];
    const char *verdict = fewer_active(data, a, data->topk, active, sizeof active);
    verdict = both(verdict, not_worse(data, a, data->topk, ARITH_LOSS, quality, sizeof quality));
    verdict = both(verdict, not_worse(data, a, data->topk, EXACT_MATCH, accuracy, sizeof accuracy));
    snprintf(figure, sizeof figure, "%s; %s; %s", active, quality, accuracy);
    claim_line(file, claim, verdict, figure);
}

/* SoftMoE's learned allocation: how uneven the k_l are (largest over smallest, mean over
 * seeds) and in how many seeds they grow with depth (a positive least-squares slope). */
static void allocation_claims(FILE *file, const report_data *data, int softmoe) {
    if (softmoe < 0) return;
    if (data->opt->freeze_router) {
        claim_line(file, "SoftMoE's learned allocation is highly non-uniform and grows with depth (SoftMoE)",
                   "not applicable", "the routing parameters were frozen (--freeze-router): the budget stays uniform");
        return;
    }
    double mean_k[64] = {0}, ratio = 0.0;
    int layers = 0, seeds = 0, growing = 0;
    for (int s = 1; s <= data->seeds; s++) {
        double k[64];
        const int L = report_budget(data->opt, "softmoe", s, k, 64);
        if (L < 2) continue;
        layers = L;
        seeds++;
        double lo = k[0], hi = k[0], sum_l = 0.0, sum_k = 0.0, sum_lk = 0.0, sum_ll = 0.0;
        for (int l = 0; l < L; l++) {
            lo = fmin(lo, k[l]), hi = fmax(hi, k[l]);
            mean_k[l] += k[l];
            sum_l += l, sum_k += k[l], sum_lk += l * k[l], sum_ll += (double)l * l;
        }
        ratio += hi / lo;
        growing += L * sum_lk - sum_l * sum_k > 0.0;
        (void)sum_ll;
    }
    if (seeds == 0) {
        claim_line(file, "SoftMoE's learned allocation is highly non-uniform (SoftMoE)", "not measured",
                   "no fine-tuned softmoe model with a learned budget");
        return;
    }
    ratio /= seeds;
    char figure[1024];
    size_t used = (size_t)snprintf(figure, sizeof figure, "learned k_l by layer (mean of %d seed(s)):", seeds);
    for (int l = 0; l < layers && used < sizeof figure; l++)
        used += (size_t)snprintf(figure + used, sizeof figure - used, " %.3f", mean_k[l] / seeds);
    if (used < sizeof figure) snprintf(figure + used, sizeof figure - used, "; largest / smallest %.3f", ratio);
    claim_line(file, "SoftMoE's learned allocation is highly non-uniform (largest k_l ≥ 1.5 × the smallest) "
               "(SoftMoE)", ratio >= 1.5 ? "held" : "did not hold", figure);
    char grows[256];
    snprintf(grows, sizeof grows, "k_l grows with depth (positive slope) in %d of %d seed(s)", growing, seeds);
    claim_line(file, "SoftMoE: later layers activate more experts (SoftMoE)",
               growing == seeds ? "held" : growing == 0 ? "did not hold" : "mixed", grows);
}

/* The ProbMoE paper's cost figure: step time and peak memory against topk. */
static void cost_claims(FILE *file, const report_data *data) {
    if (data->topk < 0) return;
    double base[COMPARE_MAX_SEEDS], series[COMPARE_MAX_SEEDS];
    report_series(data, data->topk, TOKENS_PER_S, base);
    const double topk_speed = base[0];
    report_series(data, data->topk, PEAK_MIB, base);
    const double topk_peak = base[0];
    for (int r = 0; r < data->routers; r++) {
        if (r == data->topk) continue;
        report_series(data, r, TOKENS_PER_S, series);
        const double speed = series[0] / topk_speed;
        report_series(data, r, PEAK_MIB, series);
        const double peak = series[0] / topk_peak;
        char claim[256], figure[256];
        snprintf(claim, sizeof claim, "%s trains within 25%% of topk's step time and peak memory (ProbMoE's cost "
                 "figure)", data->opt->routers[r]);
        snprintf(figure, sizeof figure, "tokens/s %.2f× topk's, peak memory %.2f× topk's", speed, peak);
        const bool held = speed >= 0.8 && peak <= 1.25;
        claim_line(file, claim, isnan(speed) || isnan(peak) ? "not measured" : held ? "held" : "did not hold",
                   figure);
    }
}

/* probmoe-group's limit, checked on every evaluated token: the most groups any token's experts
 * spanned, over layers and seeds, against M; topk's mean spread beside it. */
static void group_limit_claim(FILE *file, const report_data *data, int group) {
    if (group < 0) return;
    int groups, max_groups;
    compare_groups(data->opt, &groups, &max_groups);
    const double worst = report_most(data, group, GROUPS_MOST);
    char claim[256], figure[512];
    snprintf(claim, sizeof claim, "probmoe-group keeps every token's experts within M = %d of G = %d groups, where "
             "top-k needs a two-stage heuristic (ProbMoE's circuit, DeepSeek-V3's limit)", max_groups, groups);
    size_t used = (size_t)snprintf(figure, sizeof figure, "most groups one token spanned: %.0f", worst);
    if (data->topk >= 0) {
        double spread[COMPARE_MAX_SEEDS], mean, std;
        report_series(data, data->topk, GROUPS_MEAN, spread);
        if (stats_mean_std(spread, data->seeds, &mean, &std) > 0 && used < sizeof figure)
            snprintf(figure + used, sizeof figure - used, "; topk's tokens span %.2f groups on average", mean);
    }
    claim_line(file, claim, isnan(worst) ? "not measured" : worst <= max_groups ? "held" : "did not hold", figure);
}

void report_write_claims(FILE *file, const report_data *data) {
    const int probmoe = report_router_index(data, "probmoe"), densemixer = report_router_index(data, "densemixer");
    const int dyn = report_router_index(data, "probmoe-dyn"), softmoe = report_router_index(data, "softmoe");
    fprintf(file, "## Claims\n\nEach claim of the two papers, tested on this run. \"held\": the paired bootstrap "
            "95%% interval over seeds lies wholly on the claimed side; \"no difference\": it contains 0; \"did not "
            "hold (the opposite)\": it lies wholly on the other side.");
    if (data->seeds == 2 || data->seeds == 3)
        fprintf(file, " With %d seeds the exact bootstrap interval is the range of the per-seed differences (each "
                "extreme resample has probability 1/%d, above 2.5%%), so \"held\" means that every seed's difference "
                "lies on the claimed side: a sign test over %d seeds, not a 95%% guarantee.", data->seeds,
                data->seeds == 2 ? 4 : 27, data->seeds);
    fprintf(file, "\n\n| claim | on this run | figure |\n|---|---|---|\n");
    quality_claims(file, data, probmoe, data->topk, "ProbMoE");
    quality_claims(file, data, probmoe, densemixer, "ProbMoE");
    if (probmoe >= 0 && data->topk >= 0) {
        char figure[512];
        claim_line(file, "probmoe uses the experts more evenly than topk: higher load entropy (ProbMoE)",
                   better_than(data, probmoe, data->topk, LOAD_ENTROPY, figure, sizeof figure), figure);
        claim_line(file, "probmoe leaves fewer experts dead than topk (ProbMoE)",
                   better_than(data, probmoe, data->topk, DEAD_EXPERTS, figure, sizeof figure), figure);
        stats_difference d;
        char text[128], line[512];
        report_difference(data, probmoe, data->topk, ROUTING_ENTROPY, &d);
        stats_format_difference(text, sizeof text, &d, 3);
        snprintf(line, sizeof line, "per-token routing entropy, probmoe − topk: %s", text);
        claim_line(file, "probmoe routes more diversely than topk: higher per-token entropy (ProbMoE)",
                   d.verdict == STATS_HIGHER ? "held" : d.verdict == STATS_LOWER ? "did not hold (the opposite)"
                   : d.verdict == STATS_NO_DIFFERENCE ? "no difference" : stats_verdict_text(d.verdict), line);
    }
    sparsity_claim(file, data, dyn, "probmoe-dyn matches topk's quality with fewer active experts (ProbMoE)");
    sparsity_claim(file, data, softmoe, "softmoe activates fewer experts than topk at equal or better loss (SoftMoE)");
    allocation_claims(file, data, softmoe);
    group_limit_claim(file, data, report_router_index(data, "probmoe-group"));
    cost_claims(file, data);
    fprintf(file, "\n");
}
