/* Token embedding lookup and its scatter-add gradient. */
#include <string.h>

#include "nn/nn.h"

/* Channels per task of the backward: a task owns a column slice of dtable and visits tokens
 * in order, so repeated tokens add up in the same order for any thread count. */
#define EMB_CHUNK 64

void embedding_forward(float *out, const int32_t *tokens, const float *table, int T, int C) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        memcpy(out + (size_t)t * C, table + (size_t)tokens[t] * C, sizeof(float) * (size_t)C);
}

void embedding_backward(float *dtable, const float *dout, const int32_t *tokens, int T, int C) {
    int chunks = (C + EMB_CHUNK - 1) / EMB_CHUNK;
#pragma omp parallel for schedule(static)
    for (int chunk = 0; chunk < chunks; chunk++) {
        int c0 = chunk * EMB_CHUNK, n = C - c0 < EMB_CHUNK ? C - c0 : EMB_CHUNK;
        for (int t = 0; t < T; t++) {
            float *dst = dtable + (size_t)tokens[t] * C + c0;
            const float *src = dout + (size_t)t * C + c0;
#pragma omp simd
            for (int c = 0; c < n; c++) dst[c] += src[c];
        }
    }
}
