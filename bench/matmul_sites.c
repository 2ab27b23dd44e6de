/* The model's fp32 matrix products, each call site and product (forward, backward-data,
 * backward-weight) of the demo and large configs of bench/train_step, with OpenBLAS and with
 * oneDNN's f32 matmul in the same run: GFLOP/s of both, the ratio and the winner, oneDNN only
 * when more than MATMUL_ONEDNN_MARGIN (3%) faster. The two alternate, a warm-up each and then
 * `rounds` runs each, the best kept, since this machine is noisy. Experts run at their mean row
 * count (tokens · k / E). Ends with the lines of matmul_choice.c's measured table
 * (PM_FP32_MATMUL_MEASURED, train's default) for the products oneDNN won at every site of
 * that shape.
 * Usage: matmul_sites [rounds (default 7)] */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

typedef struct {
    const char *name;
    int layers, hidden, heads, experts, k, intermediate, seq, batch, vocab;
} bench_config;

/* A call site: its rows (M), in_features (K) and out_features (N), and how many times a
 * training step runs each of its products. */
typedef struct {
    char name[96];
    int rows, k, n, calls;
} site;

typedef struct {
    matmul_product kind;
    int k, n;
    bool onednn_everywhere;
    double ratio; /* the smallest oneDNN / OpenBLAS of its sites */
    char where[256];
} table_line;

static void random_fill(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(seed >> 11) / 9007199254740992.0 - 0.5);
    }
}

/* The sites of one config, those of the same shape merged: the attention projections q and o
 * (H → H), k and v (H → KV; the configs have as many KV heads as heads), the experts' gate and
 * up as one product (H → 2I) and down (I → H), lm_head (H → V). */
static int config_sites(const bench_config *c, site out[5]) {
    const int T = c->batch * c->seq, rows = T * c->k / c->experts, H = c->hidden, KV = H, L = c->layers;
    const int E = c->experts, I = c->intermediate;
    const site all[5] = {{"attn q,o", T, H, H, 2 * L},      {"attn k,v", T, H, KV, 2 * L},
                         {"gate|up", rows, H, 2 * I, L * E}, {"down", rows, I, H, L * E},
                         {"lm_head", T, H, c->vocab, 1}};
    int count = 0;
    for (int i = 0; i < 5; i++) {
        int same = -1;
        for (int j = 0; j < count; j++)
            if (out[j].rows == all[i].rows && out[j].k == all[i].k && out[j].n == all[i].n) same = j;
        if (same < 0) {
            out[count++] = all[i];
            continue;
        }
        const size_t used = strlen(out[same].name);
        snprintf(out[same].name + used, sizeof out[same].name - used, " %s", all[i].name);
        out[same].calls += all[i].calls;
    }
    return count;
}

/* Best seconds of each library for one product of site s, alternating. */
static bool time_product(matmul_bf16 *ctx, matmul_product kind, const site *s, int rounds, double *blas,
                         double *dnnl) {
    const int T = s->rows, K = s->k, N = s->n;
    const size_t a_count = kind == MATMUL_FORWARD ? (size_t)T * K : (size_t)T * N;
    const size_t b_count = kind == MATMUL_WEIGHTS ? (size_t)T * K : (size_t)N * K;
    const size_t dst_count = matmul_product_count(kind, T, K, N);
    float *a = malloc(sizeof(float) * a_count), *b = malloc(sizeof(float) * b_count);
    float *dst = calloc(dst_count, sizeof(float));
    bool ok = a && b && dst;
    if (ok) {
        random_fill(a, a_count, 1);
        random_fill(b, b_count, 2);
    }
    ok = ok && matmul_time_both(ctx, kind, dst, a, b, T, K, N, rounds, blas, dnnl);
    free(a), free(b), free(dst);
    return ok;
}

int main(int argc, char **argv) {
    const int rounds = argc > 1 && atoi(argv[1]) > 0 ? atoi(argv[1]) : 7;
    if (!matmul_bf16_available()) {
        printf("matmul_sites: this build has no oneDNN (install libdnnl-dev and rebuild); nothing to compare\n");
        return 0;
    }
    matmul_bf16 *ctx = matmul_bf16_create();
    if (!ctx) {
        fprintf(stderr, "matmul_sites: %s\n", pm_last_error());
        return 1;
    }
    /* the configs of bench/train_step */
    const bench_config configs[2] = {{"demo", 4, 256, 8, 8, 2, 512, 128, 8, 256},
                                     {"large", 4, 512, 8, 16, 4, 1024, 256, 8, 256}};
    printf("fp32 matrix products at the model's call sites, %d threads, best of %d alternating runs each\n",
           omp_get_max_threads(), rounds);
    printf("%-6s %-26s %-8s %15s %9s %9s %7s  %s\n", "config", "site", "product", "M x K x N", "OpenBLAS", "oneDNN",
           "ratio", "winner");
    printf("%-6s %-26s %-8s %15s %9s %9s %7s\n", "", "", "", "", "GFLOP/s", "GFLOP/s", "DNN/BLAS");
    enum { MAX_LINES = 32 };
    table_line lines[MAX_LINES];
    int line_count = 0;
    double blas_total[2] = {0, 0}, dnnl_total[2] = {0, 0}, best_total[2] = {0, 0};
    for (int ci = 0; ci < 2; ci++) {
        site sites[5];
        const int count = config_sites(&configs[ci], sites);
        for (int si = 0; si < count; si++)
            for (int kind = 0; kind < MATMUL_PRODUCTS; kind++) {
                const site *s = &sites[si];
                double blas, dnnl;
                if (!time_product(ctx, (matmul_product)kind, s, rounds, &blas, &dnnl)) {
                    printf("%-6s %-26s %-8s failed (oneDNN could not set it up)\n", configs[ci].name, s->name,
                           matmul_product_name((matmul_product)kind));
                    continue;
                }
                const double flops = 2.0 * s->rows * s->k * s->n * 1e-9, ratio = blas / dnnl;
                const bool onednn = ratio > 1.0 + MATMUL_ONEDNN_MARGIN;
                /* the time these products take in one training step */
                blas_total[ci] += s->calls * blas;
                dnnl_total[ci] += s->calls * dnnl;
                best_total[ci] += s->calls * (onednn ? dnnl : blas);
                char shape[48];
                snprintf(shape, sizeof shape, "%dx%dx%d", s->rows, s->k, s->n);
                printf("%-6s %-26s %-8s %15s %9.1f %9.1f %6.2fx  %s\n", configs[ci].name, s->name,
                       matmul_product_name((matmul_product)kind), shape, flops / blas, flops / dnnl, ratio,
                       onednn ? "oneDNN" : ratio >= 1.0 ? "OpenBLAS (tie)" : "OpenBLAS");
                table_line *line = NULL;
                for (int i = 0; i < line_count; i++)
                    if (lines[i].kind == (matmul_product)kind && lines[i].k == s->k && lines[i].n == s->n)
                        line = &lines[i];
                if (!line && line_count < MAX_LINES) {
                    line = &lines[line_count++];
                    *line = (table_line){(matmul_product)kind, s->k, s->n, true, ratio, ""};
                }
                if (!line) continue;
                line->onednn_everywhere = line->onednn_everywhere && onednn;
                line->ratio = fmin(line->ratio, ratio);
                const size_t used = strlen(line->where);
                snprintf(line->where + used, sizeof line->where - used, "%s%s %s", used ? "; " : "", configs[ci].name,
                         s->name);
            }
    }
    printf("\n");
    for (int ci = 0; ci < 2; ci++)
        printf("%s: one training step's products (every layer and expert, experts at their mean rows): OpenBLAS %.1f "
               "ms, oneDNN %.1f ms, the winner of each %.1f ms\n", configs[ci].name, 1e3 * blas_total[ci],
               1e3 * dnnl_total[ci], 1e3 * best_total[ci]);
    printf("measured_onednn[] in src/nn/matmul_choice.c (products oneDNN won at every site of that shape):\n");
    int listed = 0;
    static const char *const enum_names[] = {"MATMUL_FORWARD", "MATMUL_DATA", "MATMUL_WEIGHTS"};
    for (int i = 0; i < line_count; i++)
        if (lines[i].onednn_everywhere) {
            printf("    {%s, %d, %d}, /* %.2fx: %s */\n", enum_names[lines[i].kind], lines[i].k, lines[i].n,
                   lines[i].ratio, lines[i].where);
            listed++;
        }
    if (listed == 0) printf("    (none: OpenBLAS won or tied everywhere)\n");
    matmul_bf16_free(ctx);
    return 0;
}
