/* Attention of one new token over its sequence's key/value cache (decoding): the row the
 * causal attention_forward computes for the last position, without the rest of the matrix.
 * The cache is read once per query head in position order, so the cost is that of streaming
 * it; the dot products use 16 partial sums, the weighted sum of values runs along D. Each
 * head's result depends only on its query and the cache: a row decodes alike alone or in a
 * batch. */
#include <math.h>
#include <string.h>

#include "core/fast_exp.h"
#include "nn/nn.h"

enum { LANES = 16 };

/* x · y in a fixed order (lane j sums i ≡ j mod 16, then a halving tree), vectorised. */
static inline float dot_lanes(const float *x, const float *y, int n) {
    float partial[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
#pragma omp simd
        for (int j = 0; j < LANES; j++) partial[j] += x[i + j] * y[i + j];
    for (int j = 0; i < n; i++, j++) partial[j] += x[i] * y[i];
    for (int width = LANES / 2; width > 0; width /= 2)
        for (int j = 0; j < width; j++) partial[j] += partial[j + width];
    return partial[0];
}

void attention_decode_forward(float *out, float *scores, const float *q, const float *keys, const float *values,
                              int n, int heads, int kv_heads, int D) {
    const int group = heads / kv_heads, KV = kv_heads * D;
    const float scale = 1.0f / sqrtf((float)D);
    for (int h = 0; h < heads; h++) {
        const float *query = q + (size_t)h * D, *k = keys + (size_t)(h / group) * D;
        const float *v = values + (size_t)(h / group) * D;
        float *score = scores + (size_t)h * n, top = -INFINITY;
        for (int j = 0; j < n; j++) {
            score[j] = dot_lanes(query, k + (size_t)j * KV, D) * scale;
            top = score[j] > top ? score[j] : top;
        }
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < n; j++) {
            const double e = pm_exp((double)(score[j] - top));
            score[j] = (float)e;
            sum += e;
        }
        const float inv_sum = (float)(1.0 / sum);
        float *o = out + (size_t)h * D;
        memset(o, 0, sizeof(float) * D);
        for (int j = 0; j < n; j++) {
            const float p = score[j] * inv_sum, *value = v + (size_t)j * KV;
#pragma omp simd
            for (int d = 0; d < D; d++) o[d] += p * value[d];
        }
    }
}
