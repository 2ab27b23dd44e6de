/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011).
 * The 128-bit counter is (block, substream, stream low, stream high); the 64-bit key is
 * the seed. Every (seed, stream, substream) is an independent sequence of 2^32 blocks. */
#include "probmoe.h"

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "core/rng_lanes.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void philox4x32_10(const uint32_t counter[4], uint64_t seed, uint32_t out[4]) {
    uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

void pm_rng_init(pm_rng *rng, uint64_t seed, uint64_t stream) {
    rng->seed = seed;
    rng->stream = stream;
    rng->substream = 0;
    rng->counter = 0;
    rng->used = 4;
}

void pm_rng_substream(const pm_rng *base, uint32_t index, pm_rng *out) {
    pm_rng_init(out, base->seed, base->stream);
    out->substream = index;
}

uint32_t pm_rng_u32(pm_rng *rng) {
    if (rng->used == 4) {
        uint32_t counter[4] = {rng->counter, rng->substream, (uint32_t)rng->stream,
                               (uint32_t)(rng->stream >> 32)};
        philox4x32_10(counter, rng->seed, rng->block);
        rng->counter++;
        rng->used = 0;
    }
    return rng->block[rng->used++];
}

double pm_rng_uniform(pm_rng *rng) {
    uint64_t high = pm_rng_u32(rng) >> 5; /* 27 bits */
    uint64_t low = pm_rng_u32(rng) >> 6;  /* 26 bits */
    return (double)((high << 26) | low) * 0x1.0p-53;
}

/* ------------------------------------------------ eight substreams at once */

/* One 32-bit word per 64-bit lane, so that the products are full 64-bit ones. */
typedef uint64_t words_v __attribute__((vector_size(RNG_LANES * sizeof(uint64_t))));

static inline words_v words_splat(uint64_t x) { return (words_v){x, x, x, x, x, x, x, x}; }

/* a * m for words a below 2^32: one vpmuludq (GCC would otherwise emit the 3-µop vpmullq). */
static inline words_v multiply_words(words_v a, uint32_t m) {
#ifdef __AVX512F__
    return (words_v)_mm512_mul_epu32((__m512i)a, _mm512_set1_epi64(m));
#else
    return a * m;
#endif
}

/* Block `index` of each lane's substream, as philox4x32_10 (the counters differ in word 1). */
static void philox_lanes(uint32_t index, const words_v substream, const pm_rng *base, words_v out[4]) {
    const words_v low = words_splat(0xFFFFFFFFu);
    words_v c0 = words_splat(index), c1 = substream, c2 = words_splat((uint32_t)base->stream),
            c3 = words_splat((uint32_t)(base->stream >> 32));
    uint32_t k0 = (uint32_t)base->seed, k1 = (uint32_t)(base->seed >> 32);
    for (int round = 0; round < 10; round++) {
        const words_v p0 = multiply_words(c0, PHILOX_M0), p1 = multiply_words(c2, PHILOX_M1);
        c0 = ((p1 >> 32) ^ c1 ^ k0) & low;
        c1 = p1 & low;
        c2 = ((p0 >> 32) ^ c3 ^ k1) & low;
        c3 = p0 & low;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

void rng_uniform_lanes(const pm_rng *base, const uint32_t substream[RNG_LANES], int count, double *out) {
    words_v lanes;
    for (int l = 0; l < RNG_LANES; l++) lanes[l] = substream[l];
    /* two words per uniform, two uniforms per block (pm_rng_uniform: 27 high bits, 26 low) */
    for (int i = 0; i < count; i += 2) {
        words_v block[4];
        philox_lanes((uint32_t)(i / 2), lanes, base, block);
        for (int half = 0; half < 2 && i + half < count; half++) {
            const words_v bits = ((block[2 * half] >> 5) << 26) | (block[2 * half + 1] >> 6);
            for (int l = 0; l < RNG_LANES; l++) out[(size_t)(i + half) * RNG_LANES + l] = (double)bits[l] * 0x1.0p-53;
        }
    }
}
