/* Rotary position embedding (rotate-half pairs i and i + D/2). */
#include <math.h>
#include <stddef.h>

#include "nn/nn.h"

/* Frequencies handled per pass; bounds the stack tables. */
#define ROPE_CHUNK 32

/* Rotates every head of every token by +angle (sign = 1) or −angle (sign = −1); accumulate
 * adds into out instead of overwriting. Each pair is read before it is written, so out == in
 * works. Angles p·theta^(−2i/D) are formed and reduced in double: in float, p·f at p ~ 1e5
 * would already be off by ~1e-2 rad. */
static void rope_apply(float *out, const float *in, const int32_t *positions, int T, int heads,
                       int D, float theta, float sign, int accumulate) {
    int half = D / 2;
    if (T <= 0 || heads <= 0 || half <= 0) return;
    for (int i0 = 0; i0 < half; i0 += ROPE_CHUNK) {
        int n = half - i0 < ROPE_CHUNK ? half - i0 : ROPE_CHUNK;
        double inv_freq[ROPE_CHUNK];
        for (int i = 0; i < n; i++) inv_freq[i] = pow((double)theta, -2.0 * (i0 + i) / D);
        /* a decoding step's few rows: cheaper on one thread than waking the others */
#pragma omp parallel for schedule(static) if ((size_t)T * heads * D > 16384)
        for (int t = 0; t < T; t++) {
            float cs[ROPE_CHUNK], sn[ROPE_CHUNK];
            for (int i = 0; i < n; i++) {
                double angle = (double)positions[t] * inv_freq[i];
                cs[i] = (float)cos(angle);
                sn[i] = sign * (float)sin(angle);
            }
            for (int h = 0; h < heads; h++) {
                float *y = out + ((size_t)t * heads + h) * D + i0;
                const float *x = in + ((size_t)t * heads + h) * D + i0;
                if (accumulate) {
#pragma omp simd
                    for (int i = 0; i < n; i++) {
                        float a = x[i], b = x[i + half];
                        y[i] += a * cs[i] - b * sn[i];
                        y[i + half] += b * cs[i] + a * sn[i];
                    }
                } else {
                    for (int i = 0; i < n; i++) {
                        float a = x[i], b = x[i + half];
                        y[i] = a * cs[i] - b * sn[i];
                        y[i + half] = b * cs[i] + a * sn[i];
                    }
                }
            }
        }
    }
}

void rope_forward(float *out, const float *in, const int32_t *positions, int T, int heads, int D,
                  float theta) {
    rope_apply(out, in, positions, T, heads, D, theta, 1.0f, 0);
}

/* The rotation is orthogonal, so its adjoint is the rotation by the opposite angle. */
void rope_backward(float *din, const float *dout, const int32_t *positions, int T, int heads,
                   int D, float theta) {
    rope_apply(din, dout, positions, T, heads, D, theta, -1.0f, 1);
}
