/*
 * One allocation for many buffers, laid out in two passes by the same function: first on an
 * arena without memory, which only adds up the sizes (each buffer 64-byte aligned, for the
 * vector kernels and so that no two buffers share a cache line), then, after arena_allocate,
 * on the real block, which hands out the pointers. Planning saturates at UINT64_MAX, so a
 * memory estimate can plan sizes no machine could hold.
 */
#ifndef PM_ARENA_H
#define PM_ARENA_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/memory.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* Under AddressSanitizer each buffer is followed by a poisoned guard, so that an access past
 * one buffer into the next is reported as it would be between separate allocations. */
enum { ARENA_GUARD = 64 };
#else
enum { ARENA_GUARD = 0 };
#endif

enum { ARENA_ALIGN = 64 };

typedef struct {
    char *base;       /* the block, or NULL while planning */
    uint64_t used;    /* bytes laid out so far, alignment included */
    uint64_t planned; /* the block's size (arena_allocate) */
} pm_arena;

/* count × each bytes: a pointer into the block, or NULL while planning. */
static inline void *arena_take(pm_arena *arena, uint64_t count, uint64_t each) {
    const uint64_t start = sat_mul(sat_add(arena->used, ARENA_ALIGN - 1) / ARENA_ALIGN, ARENA_ALIGN);
    const uint64_t bytes = sat_mul(count ? count : 1, each);
    arena->used = sat_add(sat_add(start, bytes), ARENA_GUARD);
    if (!arena->base) return NULL;
#if defined(__SANITIZE_ADDRESS__)
    ASAN_POISON_MEMORY_REGION(arena->base + start + bytes, ARENA_GUARD);
#endif
    return arena->base + start;
}

static inline float *arena_floats(pm_arena *arena, uint64_t count) {
    return (float *)arena_take(arena, count, sizeof(float));
}

static inline int *arena_ints(pm_arena *arena, uint64_t count) { return (int *)arena_take(arena, count, sizeof(int)); }

/* After the planning pass: allocates the planned bytes and starts the second pass. False if
 * the size does not fit size_t or memory is short (the arena stays empty). */
static inline bool arena_allocate(pm_arena *arena) {
    arena->planned = arena->used;
    arena->used = 0;
    if (arena->planned > SIZE_MAX - ARENA_ALIGN) return false;
    const uint64_t bytes = (arena->planned + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    arena->base = aligned_alloc(ARENA_ALIGN, (size_t)(bytes ? bytes : ARENA_ALIGN));
    return arena->base != NULL;
}

static inline void arena_free(pm_arena *arena) {
#if defined(__SANITIZE_ADDRESS__)
    if (arena->base) ASAN_UNPOISON_MEMORY_REGION(arena->base, arena->planned);
#endif
    free(arena->base);
    *arena = (pm_arena){0};
}

#endif
