/* The BPE trainer's pair statistics: a table of adjacent token pairs with their weighted
 * counts and the words holding them, and a max-heap choosing the next merge. */
#ifndef PM_TOKENIZER_BPE_TRAIN_PAIRS_H
#define PM_TOKENIZER_BPE_TRAIN_PAIRS_H

#include <stddef.h>
#include <stdint.h>

/* A pair's key: left << 32 | right, so comparing keys compares (left, right). */
static inline uint64_t bpe_train_pair_key(int32_t left, int32_t right) {
    return (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
}

typedef struct {
    uint64_t key;
    int64_t count;   /* weighted by word counts; counted at every adjacent position */
    uint32_t *words; /* words that held the pair at some point (no repeats; some may no longer) */
    uint32_t word_count, word_capacity;
} bpe_train_pair;

typedef struct {
    bpe_train_pair *pairs; /* never shrinks: a pair keeps its index while its count falls to 0 */
    size_t size, capacity;
    uint32_t *slots; /* open addressing: pair index + 1, or 0 */
    size_t slot_mask;
    uint32_t *created; /* indices of the pairs created since the owner last set created_size = 0 */
    size_t created_size, created_capacity;
    int out_of_memory; /* sticky: set by a failed allocation in bpe_train_pairs_add */
} bpe_train_pair_table;

int bpe_train_pairs_init(bpe_train_pair_table *table);
void bpe_train_pairs_free(bpe_train_pair_table *table);
/* The index of the pair, or -1. */
int64_t bpe_train_pairs_find(const bpe_train_pair_table *table, uint64_t key);
/* Adds amount to the pair's count (creating it) and records word as holding it. */
void bpe_train_pairs_add(bpe_train_pair_table *table, uint64_t key, int64_t amount, uint32_t word);
/* Subtracts amount from an existing pair's count. */
void bpe_train_pairs_subtract(bpe_train_pair_table *table, uint64_t key, int64_t amount);

/* Heap entries order by count, then by the lower key: the top is the pair to merge next. */
typedef struct {
    int64_t count; /* the pair's count when pushed: may be stale (too high), see bpe_train_merge.c */
    uint64_t key;
    uint32_t pair;
} bpe_train_heap_entry;

typedef struct {
    bpe_train_heap_entry *entries;
    size_t size, capacity;
} bpe_train_heap;

/* 0 or -1 when out of memory. */
int bpe_train_heap_push(bpe_train_heap *heap, bpe_train_heap_entry entry);
bpe_train_heap_entry bpe_train_heap_pop(bpe_train_heap *heap);
/* Orders entries[0..size) into a heap in O(size). */
void bpe_train_heap_build(bpe_train_heap *heap);

#endif
