/*
 * Hostile variants of a valid file, generated deterministically: truncations, bit flips,
 * extreme integers written over binary fields, every JSON value replaced by extremes, wrong
 * types and non-finite numbers, and invalid UTF-8 inserted into text. The hostile-input test
 * (tests/test_hostile.c) feeds each to a loader.
 */
#ifndef PM_TEST_MUTATE_H
#define PM_TEST_MUTATE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *data;
    size_t size;
    const char *kind;  /* "truncated", "bit flip", "extreme", "wrong type", "non-finite", "invalid UTF-8" */
    char what[160];    /* e.g. "\"num_experts\" := 1e308" or "byte 12 bit 3" */
    char field[64];    /* the JSON key whose value was replaced, or "" */
    bool json_valid;   /* the replacement keeps the text valid JSON (for a JSON base) */
} mutant;

/* Called for each variant; return false to stop. */
typedef bool (*mutant_visit)(void *user, const mutant *m);

/* A binary field of the base: its offset and width in bytes (4 or 8), little-endian. */
typedef struct {
    size_t offset;
    int width;
} binary_field;

/* Every variant of base; json: also replace each JSON value; fields: binary fields to
 * overwrite with extremes (may be NULL). Returns how many variants were visited. */
long mutate_each(const char *base, size_t size, bool json, const binary_field *fields, int field_count,
                 mutant_visit visit, void *user);

#endif
