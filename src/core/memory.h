/* Sizes of memory: saturating 64-bit arithmetic for estimates built from input sizes (a
 * product that would wrap becomes UINT64_MAX, which no machine holds), and the memory this
 * machine offers. */
#ifndef PM_CORE_MEMORY_H
#define PM_CORE_MEMORY_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }
static inline uint64_t sat_mul(uint64_t a, uint64_t b) { return a != 0 && b > UINT64_MAX / a ? UINT64_MAX : a * b; }
static inline uint64_t sat_mul3(uint64_t a, uint64_t b, uint64_t c) { return sat_mul(sat_mul(a, b), c); }

/* "12.3 GiB", "512 B", ... into out (at least 16 bytes); "more than 16 EiB" for UINT64_MAX. */
const char *memory_format(uint64_t bytes, char *out, size_t size);

/* The memory this process can have, in bytes: the physical memory (sysconf), or a container's
 * cgroup limit when that is lower; 0 if unknown. *source (may be NULL) names which. */
uint64_t machine_memory_bytes(const char **source);

#endif
