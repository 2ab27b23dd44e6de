/*
 * bfloat16: the top 16 bits of an IEEE float32 (sign, 8 exponent bits, 7 mantissa bits),
 * stored as uint16_t. Converting from float32 rounds to nearest, ties to even, on the bit
 * pattern, which is exact for subnormals too (no flush to zero, unlike the AVX-512 BF16
 * instruction); finite values that round past the largest bf16 become infinity. A NaN stays a
 * NaN of the same sign with its top payload bits and the quiet bit set, so a payload held only
 * in the dropped bits cannot turn into infinity.
 */
#ifndef PM_CORE_BF16_H
#define PM_CORE_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

static inline uint16_t bf16_from_float(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    const uint32_t quiet_nan = bits >> 16 | 0x0040u;
    /* adding 0x7FFF rounds halves down, 0x8000 up: the kept lowest bit picks the even one */
    const uint32_t rounded = (bits + 0x7FFFu + (bits >> 16 & 1u)) >> 16;
    /* a select, not a branch, so loops over arrays vectorise */
    return (uint16_t)((bits & 0x7FFFFFFFu) > 0x7F800000u ? quiet_nan : rounded);
}

static inline float bf16_to_float(uint16_t value) {
    const uint32_t bits = (uint32_t)value << 16;
    float result;
    memcpy(&result, &bits, sizeof result);
    return result;
}

/* out[i] = bf16_from_float(in[i]) for i < count (a loop the compiler vectorises): the first
 * bf16 copy of weights, or of weights that change outside an AdamW step. */
void bf16_from_floats(uint16_t *restrict out, const float *restrict in, size_t count);

#ifdef __AVX512F__
/* bf16_from_float of 16 lanes, each result in the low half of its 32-bit lane (store them
 * with _mm512_cvtepi32_epi16 or its masked store). Bit for bit the scalar conversion. */
static inline __m512i bf16_from_float_lanes(__m512 values) {
    const __m512i bits = _mm512_castps_si512(values);
    const __m512i low_kept_bit = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    const __m512i bias = _mm512_add_epi32(low_kept_bit, _mm512_set1_epi32(0x7FFF));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, bias), 16);
    const __m512i quiet_nan = _mm512_or_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x0040));
    const __mmask16 nan = _mm512_cmp_ps_mask(values, values, _CMP_UNORD_Q);
    return _mm512_mask_blend_epi32(nan, rounded, quiet_nan);
}
#endif

#endif
