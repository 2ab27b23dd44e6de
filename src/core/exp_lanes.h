/*
 * pm_exp (fast_exp.h) on vectors of 8 doubles, EXP_LANES_BATCH vectors at a time in lockstep.
 * One vector's degree-13 polynomial is a chain of 13 dependent FMAs; a loop over vectors keeps
 * only two or three such chains in flight (the scheduler fills with waiting operations), so
 * its exponentials cost their latency. Interleaving the chains of four vectors makes them
 * cost their throughput instead: about 2x in the router's softmax.
 * For x <= 0 only (softmax arguments, the subset DP's weights): results down to exp(-700)
 * match pm_exp's, and x < -700 gives 0 (pm_exp would give a value below 1e-304).
 */
#ifndef PM_CORE_EXP_LANES_H
#define PM_CORE_EXP_LANES_H

#include <stdint.h>
#include <string.h>

typedef double exp_lanes __attribute__((vector_size(8 * sizeof(double))));
typedef int64_t exp_lanes_int __attribute__((vector_size(8 * sizeof(int64_t))));

#define EXP_LANES_BATCH 4

static inline exp_lanes exp_lanes_splat(double x) { return (exp_lanes){x, x, x, x, x, x, x, x}; }

/* x[v] = exp(x[v]) for v < EXP_LANES_BATCH. */
static inline void exp_lanes_batch(exp_lanes *x) {
    const double log2e = 1.4426950408889634, ln2_hi = 6.93147180369123816490e-01,
                 ln2_lo = 1.90821492927058770002e-10, shifter = 0x1.8p52;
    static const double coefficients[13] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                            1.0 / 362880.0,    1.0 / 40320.0,    1.0 / 5040.0,
                                            1.0 / 720.0,       1.0 / 120.0,      1.0 / 24.0,
                                            1.0 / 6.0,         0.5,              1.0,
                                            1.0};
    const exp_lanes floor = exp_lanes_splat(-700.0);
    exp_lanes n[EXP_LANES_BATCH], r[EXP_LANES_BATCH], p[EXP_LANES_BATCH];
    exp_lanes_int in_range[EXP_LANES_BATCH];
    for (int v = 0; v < EXP_LANES_BATCH; v++) {
        in_range[v] = x[v] >= floor;
        exp_lanes_int bits, floor_bits;
        memcpy(&bits, &x[v], sizeof bits);
        memcpy(&floor_bits, &floor, sizeof floor_bits);
        bits = (bits & in_range[v]) | (floor_bits & ~in_range[v]);
        exp_lanes clamped;
        memcpy(&clamped, &bits, sizeof clamped);
        n[v] = (clamped * log2e + shifter) - shifter;
        r[v] = (clamped - n[v] * ln2_hi) - n[v] * ln2_lo;
        p[v] = exp_lanes_splat(1.0 / 6227020800.0);
    }
    for (int d = 0; d < 13; d++)
        for (int v = 0; v < EXP_LANES_BATCH; v++) p[v] = p[v] * r[v] + coefficients[d];
    for (int v = 0; v < EXP_LANES_BATCH; v++) {
        /* 2^n is a normal double for n >= -1010: one scaling (pm_exp's two halves agree) */
        exp_lanes_int bits = (__builtin_convertvector(n[v], exp_lanes_int) + 1023) << 52;
        exp_lanes scale;
        memcpy(&scale, &bits, sizeof scale);
        const exp_lanes result = p[v] * scale;
        memcpy(&bits, &result, sizeof bits);
        bits &= in_range[v];
        memcpy(&x[v], &bits, sizeof bits);
    }
}

#endif
