#include "core/string_set.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* FNV-1a, 64 bits */
static size_t hash_text(const char *text) {
    uint64_t hash = 0xCBF29CE484222325ull;
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) hash = (hash ^ *c) * 0x100000001B3ull;
    return (size_t)hash;
}

/* The slot holding text, or the free slot where it would go. */
static size_t find_slot(const char *const *slots, size_t mask, const char *text) {
    size_t slot = hash_text(text) & mask;
    while (slots[slot] && strcmp(slots[slot], text) != 0) slot = (slot + 1) & mask;
    return slot;
}

static int allocate(string_set *set, size_t slot_count) {
    const char **slots = calloc(slot_count, sizeof *slots);
    if (!slots) return pm_fail(PM_ERR_NOMEM, "out of memory for a set of %zu strings", slot_count / 2);
    for (size_t i = 0; set->slots && i <= set->mask; i++)
        if (set->slots[i]) slots[find_slot(slots, slot_count - 1, set->slots[i])] = set->slots[i];
    free(set->slots);
    set->slots = slots;
    set->mask = slot_count - 1;
    return PM_OK;
}

int string_set_init(string_set *set, size_t expected) {
    memset(set, 0, sizeof *set);
    size_t slot_count = 16;
    while (slot_count < 2 * expected) slot_count *= 2;
    return allocate(set, slot_count);
}

int string_set_add(string_set *set, const char *text) {
    size_t slot = find_slot(set->slots, set->mask, text);
    if (set->slots[slot]) return 0;
    /* at most half full, so probe runs stay short */
    if (2 * (set->count + 1) > set->mask + 1) {
        int status = allocate(set, 2 * (set->mask + 1));
        if (status < 0) return status;
        slot = find_slot(set->slots, set->mask, text);
    }
    set->slots[slot] = text;
    set->count++;
    return 1;
}

void string_set_free(string_set *set) {
    free(set->slots);
    memset(set, 0, sizeof *set);
}
