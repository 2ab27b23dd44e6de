/* RMSNorm: y = x · rstd · w with rstd = 1/sqrt(mean(x²) + eps), per row. */
#include <math.h>
#include <stddef.h>

#include "nn/nn.h"

/* Channels per task of the dweight reduction: each task owns a slice of dweight and sums over
 * tokens in order, so the result does not depend on the thread count. */
#define RMS_CHUNK 64

void rmsnorm_forward(float *out, float *rstd, const float *in, const float *weight, int T, int C,
                     float eps) {
    /* a decoding step's few rows: cheaper on one thread than waking the others */
#pragma omp parallel for schedule(static) if ((size_t)T * C > 16384)
    for (int t = 0; t < T; t++) {
        const float *x = in + (size_t)t * C;
        float *y = out + (size_t)t * C;
        double sum_sq = 0.0;
#pragma omp simd reduction(+ : sum_sq)
        for (int c = 0; c < C; c++) sum_sq += (double)x[c] * x[c];
        float r = (float)(1.0 / sqrt(sum_sq / (C > 0 ? C : 1) + eps));
        rstd[t] = r;
        for (int c = 0; c < C; c++) y[c] = x[c] * r * weight[c];
    }
}

/* With g = dout and s = Σ_c g_c w_c x_c:  dx_c = rstd·w_c·g_c − rstd³·x_c·s / C,
 * dw_c = Σ_t g_tc · x_tc · rstd_t. */
void rmsnorm_backward(float *din, float *dweight, const float *dout, const float *in,
                      const float *weight, const float *rstd, int T, int C) {
    if (C <= 0) return;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *x = in + (size_t)t * C, *g = dout + (size_t)t * C;
        float *dx = din + (size_t)t * C;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int c = 0; c < C; c++) s += (double)g[c] * weight[c] * x[c];
        float r = rstd[t];
        float coef = (float)((double)r * r * r * s / C);
        for (int c = 0; c < C; c++) dx[c] += r * weight[c] * g[c] - coef * x[c];
    }
    if (!dweight) return;
    int chunks = (C + RMS_CHUNK - 1) / RMS_CHUNK;
#pragma omp parallel for schedule(static)
    for (int chunk = 0; chunk < chunks; chunk++) {
        int c0 = chunk * RMS_CHUNK, n = C - c0 < RMS_CHUNK ? C - c0 : RMS_CHUNK;
        double acc[RMS_CHUNK] = {0};
        for (int t = 0; t < T; t++) {
            const float *x = in + (size_t)t * C + c0, *g = dout + (size_t)t * C + c0;
            double r = rstd[t];
            for (int c = 0; c < n; c++) acc[c] += (double)g[c] * x[c] * r;
        }
        for (int c = 0; c < n; c++) dweight[c0 + c] += (float)acc[c];
    }
}
