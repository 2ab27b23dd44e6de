/* Mean token cross-entropy with ignored targets (< 0). */
#include <math.h>

#include "core/fast_exp.h"
#include "nn/nn.h"

/* Fixed row blocks of the forward's loss sum. */
#define CE_BLOCKS 256

/* Row maximum and Σ exp(x − max) in double: V ~ 5e4 terms summed in float would lose ~1e-3
 * relative. pm_exp vectorises; libm's exp does not. */
static void row_stats(const float *x, int V, float *max_out, double *sum_out) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int v = 0; v < V; v++) m = x[v] > m ? x[v] : m;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int v = 0; v < V; v++) sum += pm_exp((double)x[v] - m);
    *max_out = m;
    *sum_out = sum;
}

static int count_targets(const int32_t *targets, int T) {
    int count = 0;
    for (int t = 0; t < T; t++) count += targets[t] >= 0;
    return count;
}

float cross_entropy_forward(const float *logits, const int32_t *targets, int T, int V,
                            int *count) {
    int n = count_targets(targets, T);
    if (count) *count = n;
    if (n == 0 || V <= 0) return 0.0f;
    /* Rows are cut into a fixed number of blocks, summed within and then across blocks in
     * order: an OpenMP reduction's order would depend on the thread count. */
    int blocks = T < CE_BLOCKS ? T : CE_BLOCKS;
    double block_loss[CE_BLOCKS];
#pragma omp parallel for schedule(static)
    for (int b = 0; b < blocks; b++) {
        int t0 = (int)((int64_t)T * b / blocks), t1 = (int)((int64_t)T * (b + 1) / blocks);
        double acc = 0.0;
        for (int t = t0; t < t1; t++) {
            if (targets[t] < 0) continue;
            const float *x = logits + (size_t)t * V;
            float m;
            double sum;
            row_stats(x, V, &m, &sum);
            acc += log(sum) + m - x[targets[t]];
        }
        block_loss[b] = acc;
    }
    double total = 0.0;
    for (int b = 0; b < blocks; b++) total += block_loss[b];
    return (float)(total / n);
}

void cross_entropy_backward(float *dlogits, const float *logits, const int32_t *targets, int T,
                            int V, float dloss) {
    int n = count_targets(targets, T);
    if (n == 0 || V <= 0) return;
    double scale = (double)dloss / n;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        if (targets[t] < 0) continue;
        const float *x = logits + (size_t)t * V;
        float *dx = dlogits + (size_t)t * V;
        float m;
        double sum;
        row_stats(x, V, &m, &sum);
        double factor = scale / sum;
#pragma omp simd
        for (int v = 0; v < V; v++) dx[v] += (float)(factor * pm_exp((double)x[v] - m));
        dx[targets[t]] -= (float)scale;
    }
}
