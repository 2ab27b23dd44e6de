/* The piece → count table of the BPE trainer: open addressing over indices into parallel
 * arrays, so growing the table moves 4-byte slots, never the pieces. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/bpe_train_internal.h"

/* Pieces average a few bytes: 8-byte words mixed by multiply and xor-shift, then a final
 * avalanche. */
uint64_t bpe_train_hash_bytes(const char *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    uint64_t tail = 0;
    memcpy(&tail, p, n);
    h = (h ^ tail) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

int bpe_train_pieces_init(bpe_train_pieces *pieces) {
    memset(pieces, 0, sizeof *pieces);
    pieces->slot_mask = 1023;
    pieces->slots = calloc(pieces->slot_mask + 1, sizeof *pieces->slots);
    return pieces->slots ? PM_OK : pm_fail(PM_ERR_NOMEM, "tokenizer training: out of memory");
}

void bpe_train_pieces_free(bpe_train_pieces *pieces) {
    free(pieces->bytes);
    free(pieces->start);
    free(pieces->length);
    free(pieces->count);
    free(pieces->hash);
    free(pieces->slots);
    memset(pieces, 0, sizeof *pieces);
}

static size_t find_slot(const bpe_train_pieces *pieces, const char *piece, size_t length, uint64_t hash) {
    size_t slot = (size_t)hash & pieces->slot_mask;
    for (;; slot = (slot + 1) & pieces->slot_mask) {
        const uint32_t entry = pieces->slots[slot];
        if (entry == 0) return slot;
        const size_t i = entry - 1;
        if (pieces->hash[i] == hash && pieces->length[i] == length &&
            memcmp(pieces->bytes + pieces->start[i], piece, length) == 0)
            return slot;
    }
}

/* Doubles the slot array (kept at most half full). */
static int grow_slots(bpe_train_pieces *pieces) {
    const size_t mask = pieces->slot_mask * 2 + 1;
    uint32_t *slots = calloc(mask + 1, sizeof *slots);
    if (!slots) return PM_ERR_NOMEM;
    for (size_t i = 0; i < pieces->size; i++) {
        size_t slot = (size_t)pieces->hash[i] & mask;
        while (slots[slot]) slot = (slot + 1) & mask;
        slots[slot] = (uint32_t)(i + 1);
    }
    free(pieces->slots);
    pieces->slots = slots;
    pieces->slot_mask = mask;
    return PM_OK;
}

static int grow_arrays(bpe_train_pieces *pieces) {
    const size_t capacity = pieces->capacity ? 2 * pieces->capacity : 4096;
    if (capacity >= UINT32_MAX) return PM_ERR_NOMEM; /* slots hold index + 1 in 32 bits */
    uint64_t *start = realloc(pieces->start, capacity * sizeof *start);
    if (start) pieces->start = start;
    uint32_t *length = realloc(pieces->length, capacity * sizeof *length);
    if (length) pieces->length = length;
    int64_t *count = realloc(pieces->count, capacity * sizeof *count);
    if (count) pieces->count = count;
    uint64_t *hash = realloc(pieces->hash, capacity * sizeof *hash);
    if (hash) pieces->hash = hash;
    if (!start || !length || !count || !hash) return PM_ERR_NOMEM;
    pieces->capacity = capacity;
    return PM_OK;
}

static int store_bytes(bpe_train_pieces *pieces, const char *piece, size_t length) {
    if (pieces->bytes_used + length > pieces->bytes_capacity) {
        size_t capacity = pieces->bytes_capacity ? 2 * pieces->bytes_capacity : 1 << 16;
        while (capacity < pieces->bytes_used + length) capacity *= 2;
        char *bytes = realloc(pieces->bytes, capacity);
        if (!bytes) return PM_ERR_NOMEM;
        pieces->bytes = bytes;
        pieces->bytes_capacity = capacity;
    }
    memcpy(pieces->bytes + pieces->bytes_used, piece, length);
    pieces->bytes_used += length;
    return PM_OK;
}

int bpe_train_pieces_add(bpe_train_pieces *pieces, const char *piece, size_t length) {
    if (length > UINT32_MAX)
        return pm_fail(PM_ERR_ARG, "tokenizer training: a pre-tokenizer piece of %zu bytes is too long", length);
    const uint64_t hash = bpe_train_hash_bytes(piece, length);
    size_t slot = find_slot(pieces, piece, length, hash);
    pieces->total++;
    if (pieces->slots[slot]) {
        pieces->count[pieces->slots[slot] - 1]++;
        return PM_OK;
    }
    if ((pieces->size + 1) * 2 > pieces->slot_mask + 1) {
        if (grow_slots(pieces)) return pm_fail(PM_ERR_NOMEM, "tokenizer training: out of memory");
        slot = find_slot(pieces, piece, length, hash);
    }
    if ((pieces->size == pieces->capacity && grow_arrays(pieces)) || store_bytes(pieces, piece, length))
        return pm_fail(PM_ERR_NOMEM, "tokenizer training: out of memory counting %zu distinct pieces",
                       pieces->size);
    const size_t i = pieces->size++;
    pieces->start[i] = pieces->bytes_used - length;
    pieces->length[i] = (uint32_t)length;
    pieces->count[i] = 1;
    pieces->hash[i] = hash;
    pieces->slots[slot] = (uint32_t)(i + 1);
    return PM_OK;
}

int64_t bpe_train_pieces_count(const bpe_train_pieces *pieces, const char *piece, size_t length) {
    const size_t slot = find_slot(pieces, piece, length, bpe_train_hash_bytes(piece, length));
    return pieces->slots[slot] ? pieces->count[pieces->slots[slot] - 1] : 0;
}
