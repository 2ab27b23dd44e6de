/*
 * The first uniforms of eight substreams at once: for lane l, exactly the values that
 * pm_rng_uniform would return, one after another, from pm_rng_substream(base, substream[l]).
 * Philox's rounds on 32-bit words become one vector operation across the eight counters
 * (vpmuludq with AVX-512), where drawing them one at a time cost about 12 ns per uniform
 * in the router's sampling.
 */
#ifndef PM_CORE_RNG_LANES_H
#define PM_CORE_RNG_LANES_H

#include <stdint.h>

#include "probmoe.h"

#define RNG_LANES 8

/* out[i * RNG_LANES + l] = uniform i of lane l's substream, for i < count. */
void rng_uniform_lanes(const pm_rng *base, const uint32_t substream[RNG_LANES], int count, double *out);

#endif
