/*
 * exp(x) in double precision that compilers can vectorise: Cody–Waite range reduction
 * x = n ln2 + r, |r| <= ln2/2, a degree-13 Taylor polynomial (truncation < 2e-17), and
 * 2^n applied in two halves so that results down to the subnormal range stay right.
 * Within 2 ulp of libm's exp over [-745, 709]; 0 below, +inf above. Used by the hot loops
 * (softmax, the subset DP), where glibc's scalar exp dominated the cost.
 */
#ifndef PM_CORE_FAST_EXP_H
#define PM_CORE_FAST_EXP_H

#include <stdint.h>
#include <string.h>

static inline double pm_pow2i(int64_t n) {
    uint64_t bits = (uint64_t)(n + 1023) << 52;
    double result;
    memcpy(&result, &bits, sizeof result);
    return result;
}

static inline double pm_exp(double x) {
    const double log2e = 1.4426950408889634, ln2_hi = 6.93147180369123816490e-01,
                 ln2_lo = 1.90821492927058770002e-10, shifter = 0x1.8p52;
    double clamped = x < -746.0 ? -746.0 : x > 710.0 ? 710.0 : x;
    double rounded = clamped * log2e + shifter;
    double n = rounded - shifter;
    double r = (clamped - n * ln2_hi) - n * ln2_lo;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t whole = (int64_t)n, half = whole / 2;
    /* at the clamps the two halves round to 0 and overflow to +inf, as exp does */
    return p * pm_pow2i(half) * pm_pow2i(whole - half);
}

#endif
