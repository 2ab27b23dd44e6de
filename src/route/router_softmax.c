/* π = softmax(θ) and logsumexp θ for one token: the exponentials in double, 32 at a time in
 * four interleaved vectors (core/exp_lanes.h). Compiled with -ffp-contract=fast
 * (CMakeLists.txt): the polynomial's steps are FMAs. */
#include <math.h>

#include "core/exp_lanes.h"
#include "route/router_internal.h"

enum { CHUNK = 8 * EXP_LANES_BATCH };

void route_softmax(const float *logits, int E, float *probs, float *lse) {
    float top = logits[0];
    /* exact in any order (from i = 0: whole vectors); without the pragma it stays scalar */
#pragma omp simd reduction(max : top)
    for (int i = 0; i < E; i++) top = logits[i] > top ? logits[i] : top;
    exp_lanes sum = exp_lanes_splat(0.0);
    for (int first = 0; first < E; first += CHUNK) {
        const int count = E - first < CHUNK ? E - first : CHUNK;
        double values[CHUNK];
        for (int i = 0; i < count; i++) values[i] = (double)logits[first + i] - top;
        for (int i = count; i < CHUNK; i++) values[i] = -INFINITY; /* exp gives 0 */
        exp_lanes x[EXP_LANES_BATCH];
        memcpy(x, values, sizeof x);
        exp_lanes_batch(x);
        for (int v = 0; v < EXP_LANES_BATCH; v++) sum += x[v];
        memcpy(values, x, sizeof values);
        for (int i = 0; i < count; i++) probs[first + i] = (float)values[i];
    }
    double lanes[8];
    memcpy(lanes, &sum, sizeof lanes);
    const double total = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    const double scale = 1.0 / total;
#pragma omp simd
    for (int i = 0; i < E; i++) probs[i] = (float)(probs[i] * scale);
    *lse = (float)(top + log(total));
}
