/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011).
 * The 128-bit counter is (block, substream, stream low, stream high); the 64-bit key is
 * the seed. Every (seed, stream, substream) is an independent sequence of 2^32 blocks. */
#include "probmoe.h"

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
