#include "tokenizer/bpe_train_pairs.h"

#include <stdlib.h>
#include <string.h>

/* Fibonacci hashing of the 64-bit key; the high half folded down so the mask sees all bits. */
static size_t pair_hash(uint64_t key) {
    const uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 32));
}

int bpe_train_pairs_init(bpe_train_pair_table *table) {
    memset(table, 0, sizeof *table);
    table->slot_mask = 4095;
    table->slots = calloc(table->slot_mask + 1, sizeof *table->slots);
    return table->slots ? 0 : -1;
}

void bpe_train_pairs_free(bpe_train_pair_table *table) {
    for (size_t i = 0; i < table->size; i++) free(table->pairs[i].words);
    free(table->pairs);
    free(table->slots);
    free(table->created);
    memset(table, 0, sizeof *table);
}

static size_t find_slot(const bpe_train_pair_table *table, uint64_t key) {
    size_t slot = pair_hash(key) & table->slot_mask;
    while (table->slots[slot] && table->pairs[table->slots[slot] - 1].key != key)
        slot = (slot + 1) & table->slot_mask;
    return slot;
}

int64_t bpe_train_pairs_find(const bpe_train_pair_table *table, uint64_t key) {
    const uint32_t entry = table->slots[find_slot(table, key)];
    return entry ? (int64_t)entry - 1 : -1;
}

/* Keeps the slots at most half full. */
static int grow_slots(bpe_train_pair_table *table) {
    const size_t mask = table->slot_mask * 2 + 1;
    uint32_t *slots = calloc(mask + 1, sizeof *slots);
    if (!slots) return -1;
    for (size_t i = 0; i < table->size; i++) {
        size_t slot = pair_hash(table->pairs[i].key) & mask;
        while (slots[slot]) slot = (slot + 1) & mask;
        slots[slot] = (uint32_t)(i + 1);
    }
    free(table->slots);
    table->slots = slots;
    table->slot_mask = mask;
    return 0;
}

/* Appends value to a growing uint32 array; 0 or -1. */
static int append_u32(uint32_t **items, uint32_t *size, uint32_t *capacity, uint32_t value) {
    if (*size == *capacity) {
        const uint32_t grown = *capacity ? 2 * *capacity : 4;
        uint32_t *bigger = realloc(*items, (size_t)grown * sizeof *bigger);
        if (!bigger) return -1;
        *items = bigger;
        *capacity = grown;
    }
    (*items)[(*size)++] = value;
    return 0;
}

static int64_t create_pair(bpe_train_pair_table *table, uint64_t key, size_t slot) {
    if ((table->size + 1) * 2 > table->slot_mask + 1) {
        if (grow_slots(table)) return -1;
        slot = find_slot(table, key);
    }
    if (table->size == table->capacity) {
        const size_t capacity = table->capacity ? 2 * table->capacity : 4096;
        if (capacity >= UINT32_MAX) return -1; /* slots hold index + 1 in 32 bits */
        bpe_train_pair *pairs = realloc(table->pairs, capacity * sizeof *pairs);
        if (!pairs) return -1;
        table->pairs = pairs;
        table->capacity = capacity;
    }
    if (table->created_size == table->created_capacity) {
        const size_t capacity = table->created_capacity ? 2 * table->created_capacity : 256;
        uint32_t *created = realloc(table->created, capacity * sizeof *created);
        if (!created) return -1;
        table->created = created;
        table->created_capacity = capacity;
    }
    const size_t index = table->size++;
    table->pairs[index] = (bpe_train_pair){.key = key};
    table->slots[slot] = (uint32_t)(index + 1);
    table->created[table->created_size++] = (uint32_t)index;
    return (int64_t)index;
}

void bpe_train_pairs_add(bpe_train_pair_table *table, uint64_t key, int64_t amount, uint32_t word) {
    const size_t slot = find_slot(table, key);
    const int64_t index = table->slots[slot] ? (int64_t)table->slots[slot] - 1 : create_pair(table, key, slot);
    if (index < 0) {
        table->out_of_memory = 1;
        return;
    }
    bpe_train_pair *pair = &table->pairs[index];
    pair->count += amount;
    /* A word's pairs are added while that word is processed, so a repeat is always the last. */
    if ((pair->word_count == 0 || pair->words[pair->word_count - 1] != word) &&
        append_u32(&pair->words, &pair->word_count, &pair->word_capacity, word))
        table->out_of_memory = 1;
}

void bpe_train_pairs_subtract(bpe_train_pair_table *table, uint64_t key, int64_t amount) {
    const uint32_t entry = table->slots[find_slot(table, key)];
    if (entry) table->pairs[entry - 1].count -= amount; /* always there: every pair was added first */
}

static int before(const bpe_train_heap_entry *a, const bpe_train_heap_entry *b) {
    return a->count > b->count || (a->count == b->count && a->key < b->key);
}

static void sift_down(bpe_train_heap *heap, size_t at) {
    bpe_train_heap_entry *e = heap->entries;
    const bpe_train_heap_entry moving = e[at];
    for (;;) {
        size_t child = 2 * at + 1;
        if (child >= heap->size) break;
        if (child + 1 < heap->size && before(&e[child + 1], &e[child])) child++;
        if (!before(&e[child], &moving)) break;
        e[at] = e[child];
        at = child;
    }
    e[at] = moving;
}

int bpe_train_heap_push(bpe_train_heap *heap, bpe_train_heap_entry entry) {
    if (heap->size == heap->capacity) {
        const size_t capacity = heap->capacity ? 2 * heap->capacity : 4096;
        bpe_train_heap_entry *entries = realloc(heap->entries, capacity * sizeof *entries);
        if (!entries) return -1;
        heap->entries = entries;
        heap->capacity = capacity;
    }
    size_t at = heap->size++;
    while (at > 0 && before(&entry, &heap->entries[(at - 1) / 2])) {
        heap->entries[at] = heap->entries[(at - 1) / 2];
        at = (at - 1) / 2;
    }
    heap->entries[at] = entry;
    return 0;
}

bpe_train_heap_entry bpe_train_heap_pop(bpe_train_heap *heap) {
    const bpe_train_heap_entry top = heap->entries[0];
    heap->entries[0] = heap->entries[--heap->size];
    if (heap->size > 0) sift_down(heap, 0);
    return top;
}

void bpe_train_heap_build(bpe_train_heap *heap) {
    for (size_t i = heap->size / 2; i-- > 0;) sift_down(heap, i);
}
