/*
 * fp32 → bf16 (core/bf16.h) against a reference that rounds by value rather than on the bit
 * pattern: x / ulp rounded by nearbyint (ties to even) in double, where ulp is the spacing of
 * bf16 values at x's binade (2^-133 for subnormals), and infinity from 2^128 up. Over every
 * upper half of the float bit patterns, each with lower halves that make ties, near-ties and
 * the largest and smallest values: zeros, subnormals, the largest floats, infinities and NaNs.
 * Also: named cases with their expected bits, exact round trips, and the array and AVX-512
 * forms against the scalar one.
 */
#include <fenv.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/bf16.h"

static float float_of_bits(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static uint32_t bits_of_float(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

/* The bf16 nearest to x by value; a NaN becomes the quiet NaN of its sign and top payload. */
static uint16_t reference_bf16(float x) {
    const uint32_t bits = bits_of_float(x);
    const uint16_t sign = (uint16_t)(bits >> 16 & 0x8000u);
    if (isnan(x)) return (uint16_t)(sign | 0x7FC0u | (bits >> 16 & 0x003Fu));
    if (isinf(x) || x == 0.0f) return (uint16_t)(bits >> 16);
    int exponent;
    frexp(fabs((double)x), &exponent); /* |x| = f · 2^exponent, f in [0.5, 1) */
    /* 8 significant bits (the implicit one and 7 stored), or the subnormals' fixed spacing */
    const int ulp_exponent = exponent - 8 > -133 ? exponent - 8 : -133;
    const double rounded = ldexp(nearbyint(ldexp(fabs((double)x), -ulp_exponent)), ulp_exponent);
    if (rounded >= 0x1p128) return (uint16_t)(sign | 0x7F80u);
    const uint32_t rounded_bits = bits_of_float((float)rounded); /* exact: it is a bf16 value */
    assert_true((rounded_bits & 0xFFFFu) == 0);
    return (uint16_t)(sign | rounded_bits >> 16);
}

static void test_against_reference(void **state) {
    (void)state;
    assert_int_equal(fegetround(), FE_TONEAREST);
    /* below a tie, ties, above a tie, the ends, and two arbitrary patterns */
    static const uint32_t lows[] = {0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x4000, 0xC3A5};
    long checked = 0;
    for (uint32_t high = 0; high <= 0xFFFFu; high++)
        for (size_t l = 0; l < sizeof lows / sizeof lows[0]; l++) {
            const uint32_t bits = high << 16 | lows[l];
            const float x = float_of_bits(bits);
            const uint16_t got = bf16_from_float(x), want = reference_bf16(x);
            if (got != want) fail_msg("bits 0x%08x (%g): 0x%04x, reference 0x%04x", bits, (double)x, got, want);
            checked++;
        }
    print_message("%ld patterns agree\n", checked);
}

static void test_named_cases(void **state) {
    (void)state;
    static const struct { uint32_t in; uint16_t want; const char *what; } cases[] = {
        {0x3F800000u, 0x3F80u, "1"},
        {0x3F808000u, 0x3F80u, "tie above 1: to the even 1"},
        {0x3F818000u, 0x3F82u, "tie with an odd kept bit: up to even"},
        {0x3F808001u, 0x3F81u, "just above a tie: up"},
        {0xBF808000u, 0xBF80u, "negative tie: to even"},
        {0x7F7FFFFFu, 0x7F80u, "largest float: rounds past the largest bf16 to inf"},
        {0x7F7F7FFFu, 0x7F7Fu, "just below the largest bf16's upper tie: the largest bf16"},
        {0x7F7F8000u, 0x7F80u, "the largest bf16's upper tie: odd, so up to inf"},
        {0xFF7FFFFFu, 0xFF80u, "most negative float: -inf"},
        {0x00000001u, 0x0000u, "smallest subnormal: to 0"},
        {0x00008000u, 0x0000u, "tie between 0 and the smallest bf16 subnormal: 0"},
        {0x00018000u, 0x0002u, "subnormal tie with an odd kept bit: up"},
        {0x00008001u, 0x0001u, "just above: the smallest bf16 subnormal"},
        {0x807FFFFFu, 0x8080u, "largest negative subnormal: up to the smallest normal"},
        {0x00000000u, 0x0000u, "+0"},
        {0x80000000u, 0x8000u, "-0"},
        {0x7F800000u, 0x7F80u, "inf"},
        {0xFF800000u, 0xFF80u, "-inf"},
        {0x7F800001u, 0x7FC0u, "signalling NaN with its payload in the dropped bits: a NaN, not inf"},
        {0xFF800001u, 0xFFC0u, "the same, negative"},
        {0x7FC00000u, 0x7FC0u, "quiet NaN"},
        {0x7FFFFFFFu, 0x7FFFu, "NaN with every payload bit: not rounded into the sign"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const uint16_t got = bf16_from_float(float_of_bits(cases[i].in));
        if (got != cases[i].want)
            fail_msg("%s: 0x%08x gave 0x%04x, want 0x%04x", cases[i].what, cases[i].in, got, cases[i].want);
    }
}

/* Every bf16 value converts to the float with its bits and back to itself (NaNs: to a NaN). */
static void test_round_trip(void **state) {
    (void)state;
    for (uint32_t h = 0; h <= 0xFFFFu; h++) {
        const float x = bf16_to_float((uint16_t)h);
        assert_true(bits_of_float(x) == h << 16);
        const uint16_t back = bf16_from_float(x);
        if (isnan(x)) assert_true((back & 0x7FC0u) == 0x7FC0u && (back & 0x8000u) == (h & 0x8000u));
        else assert_int_equal(back, h);
    }
}

/* Random patterns of every kind, and the lengths around the vector widths. */
static float *random_patterns(pm_rng *rng, size_t count) {
    float *x = malloc(sizeof(float) * (count ? count : 1));
    for (size_t i = 0; i < count; i++) x[i] = float_of_bits(pm_rng_u32(rng));
    return x;
}

static void test_array_form(void **state) {
    (void)state;
    pm_rng rng;
    pm_rng_init(&rng, 11, 0);
    enum { MAX = 1031 };
    float *in = random_patterns(&rng, MAX);
    uint16_t *out = malloc(sizeof(uint16_t) * (MAX + 1));
    for (size_t count = 0; count <= MAX; count += count < 70 ? 1 : 137) {
        out[count] = 0xAAAAu; /* one past the end: must stay */
        bf16_from_floats(out, in, count);
        for (size_t i = 0; i < count; i++)
            if (out[i] != bf16_from_float(in[i])) fail_msg("length %zu, [%zu]: 0x%04x", count, i, out[i]);
        assert_int_equal(out[count], 0xAAAAu);
    }
    free(in);
    free(out);
}

static void test_vector_lanes(void **state) {
    (void)state;
#ifdef __AVX512F__
    pm_rng rng;
    pm_rng_init(&rng, 12, 0);
    enum { COUNT = 1 << 14 };
    float *in = random_patterns(&rng, COUNT);
    /* and the edge cases in lanes of their own */
    static const uint32_t edges[] = {0x7F7FFFFFu, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu, 0x00008000u,
                                     0x00018000u, 0x3F808000u, 0x80000000u};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) in[3 * i + 1] = float_of_bits(edges[i]);
    for (size_t i = 0; i < COUNT; i += 16) {
        uint32_t lanes[16];
        _mm512_storeu_si512(lanes, bf16_from_float_lanes(_mm512_loadu_ps(in + i)));
        for (int k = 0; k < 16; k++)
            if (lanes[k] != bf16_from_float(in[i + k]))
                fail_msg("lane %d of 0x%08x: 0x%08x", k, bits_of_float(in[i + k]), lanes[k]);
    }
    free(in);
#else
    skip(); /* no AVX-512 in this build: the scalar form is the only one */
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_reference), cmocka_unit_test(test_named_cases),
        cmocka_unit_test(test_round_trip),        cmocka_unit_test(test_array_form),
        cmocka_unit_test(test_vector_lanes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
