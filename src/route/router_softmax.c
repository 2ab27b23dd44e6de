/* π = softmax(θ) and logsumexp θ for one token: the exponentials in double, 32 at a time in
 * four interleaved vectors (core/exp_lanes.h). Compiled with -ffp-contract=fast
 * (CMakeLists.txt): the polynomial's steps are FMAs. Logits go from memory straight into
 * vectors and back (no arrays between them: a vector load of a value just stored by smaller
 * stores stalls). The sampling routers' lane DP computes the same exponentials as its weights;
 * route_softmax_lanes turns those into π with the same sums, bit for bit. */
#include <math.h>

#include "core/exp_lanes.h"
#include "route/router_internal.h"

typedef float float_lanes __attribute__((vector_size(8 * sizeof(float))));

enum { CHUNK = 8 * EXP_LANES_BATCH };

/* Eight logits minus `top` as doubles; past the end, −inf (whose exponential is 0). */
static inline exp_lanes shifted(const float *logits, int at, int E, float top) {
    float_lanes values;
    if (at + 8 <= E) {
        memcpy(&values, logits + at, sizeof values);
    } else {
        for (int i = 0; i < 8; i++) values[i] = at + i < E ? logits[at + i] : -INFINITY;
    }
    return __builtin_convertvector(values, exp_lanes) - (double)top;
}

static inline void store_floats(float *probs, int at, int E, exp_lanes e) {
    const float_lanes values = __builtin_convertvector(e, float_lanes);
    if (at + 8 <= E) {
        memcpy(probs + at, &values, sizeof values);
    } else {
        for (int i = 0; at + i < E; i++) probs[at + i] = values[i];
    }
}

/* probs holds the exponentials as floats, sum their partial sums by lane: scale them by the
 * total, whose logarithm gives lse. */
static void normalize(exp_lanes sum, int E, float top, float *probs, float *lse) {
    const double total = ((sum[0] + sum[1]) + (sum[2] + sum[3])) + ((sum[4] + sum[5]) + (sum[6] + sum[7]));
    const double scale = 1.0 / total;
#pragma omp simd
    for (int i = 0; i < E; i++) probs[i] = (float)(probs[i] * scale);
    *lse = (float)(top + log(total));
}

void route_softmax(const float *logits, int E, float *probs, float *lse) {
    float top = logits[0];
    /* exact in any order (from i = 0: whole vectors); without the pragma it stays scalar */
#pragma omp simd reduction(max : top)
    for (int i = 0; i < E; i++) top = logits[i] > top ? logits[i] : top;
    exp_lanes sum = exp_lanes_splat(0.0);
    for (int first = 0; first < E; first += CHUNK) {
        exp_lanes x[EXP_LANES_BATCH];
        for (int v = 0; v < EXP_LANES_BATCH; v++) x[v] = shifted(logits, first + 8 * v, E, top);
        exp_lanes_batch(x);
        for (int v = 0; v < EXP_LANES_BATCH && first + 8 * v < E; v++) {
            sum += x[v];
            store_floats(probs, first + 8 * v, E, x[v]);
        }
    }
    normalize(sum, E, top, probs, lse);
}

void route_softmax_lanes(const double *w, int E, const float *top, int lanes, float *const *probs, float *const *lse) {
    /* lane i % 8 of route_softmax's vector sum adds e_i in increasing i: here one vector per
     * residue, across the tokens */
    exp_lanes residue[8];
    for (int r = 0; r < 8; r++) residue[r] = exp_lanes_splat(0.0);
    for (int i = 0; i < E; i++) {
        exp_lanes e;
        memcpy(&e, w + (size_t)i * 8, sizeof e);
        residue[i % 8] += e;
        const float_lanes rounded = __builtin_convertvector(e, float_lanes);
        for (int l = 0; l < lanes; l++) probs[l][i] = rounded[l];
    }
    for (int l = 0; l < lanes; l++) {
        exp_lanes sum;
        for (int r = 0; r < 8; r++) sum[r] = residue[r][l];
        normalize(sum, E, top[l], probs[l], lse[l]);
    }
}
