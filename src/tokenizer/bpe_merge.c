/*
 * The BPE merge loop over one pre-tokenized piece. The rule (GPT-2, Hugging Face, tiktoken
 * all agree on it): repeatedly merge the adjacent pair with the lowest merge rank; among equal
 * ranks (the same pair occurring several times) the leftmost goes first. Two implementations
 * of that one rule: a scan that rescans the pair ranks after each merge (quadratic, but nothing
 * beats it on the short pieces natural text is made of) and a heap with lazy deletion for long
 * pieces (a run of 100k spaces must not take 10^10 steps).
 */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/bpe_internal.h"

/* A pair of adjacent symbols starting at pos, ordered by rank, then position. An entry goes
 * stale when its symbols change; since each pair has one rank, an entry is still good exactly
 * when the pair now at pos has the entry's rank. */
struct bpe_heap_entry {
    int32_t rank, pos;
};

int bpe_scratch_reserve(bpe_scratch *s, size_t n) {
    if (n <= s->capacity) return PM_OK;
    size_t capacity = s->capacity ? s->capacity : 256;
    while (capacity < n) capacity *= 2;
    int32_t **arrays[4] = {&s->rank, &s->merged, &s->next, &s->prev};
    for (int a = 0; a < 4; a++) {
        int32_t *grown = realloc(*arrays[a], capacity * sizeof(int32_t));
        if (!grown) return pm_fail(PM_ERR_NOMEM, "bpe: out of memory for a piece of %zu bytes", n);
        *arrays[a] = grown;
    }
    /* Each merge pushes at most two new pairs: n - 1 initial + 2(n - 1) later entries. */
    struct bpe_heap_entry *heap = realloc(s->heap, 3 * capacity * sizeof *heap);
    if (!heap) return pm_fail(PM_ERR_NOMEM, "bpe: out of memory for a piece of %zu bytes", n);
    s->heap = heap;
    s->capacity = capacity;
    return PM_OK;
}

void bpe_scratch_free(bpe_scratch *s) {
    free(s->rank);
    free(s->merged);
    free(s->next);
    free(s->prev);
    free(s->heap);
    memset(s, 0, sizeof *s);
}

size_t bpe_merge_scan(const bpe_model *m, int32_t *ids, size_t n, bpe_scratch *s) {
    if (n < 2) return n;
    int32_t *rank = s->rank, *merged = s->merged; /* pair i is (ids[i], ids[i + 1]) */
    for (size_t i = 0; i + 1 < n; i++) rank[i] = bpe_pair_rank(m, ids[i], ids[i + 1], &merged[i]);
    while (n > 1) {
        size_t best = 0;
        int32_t best_rank = BPE_NO_RANK;
        for (size_t i = 0; i + 1 < n; i++)
            if (rank[i] < best_rank) { /* strict: the leftmost of equal ranks wins */
                best_rank = rank[i];
                best = i;
            }
        if (best_rank == BPE_NO_RANK) break;
        ids[best] = merged[best];
        /* Drop symbol best + 1; pairs after it shift down by one. */
        memmove(ids + best + 1, ids + best + 2, (n - best - 2) * sizeof *ids);
        if (n >= best + 3) {
            memmove(rank + best + 1, rank + best + 2, (n - best - 3) * sizeof *rank);
            memmove(merged + best + 1, merged + best + 2, (n - best - 3) * sizeof *merged);
        }
        n--;
        if (best > 0) rank[best - 1] = bpe_pair_rank(m, ids[best - 1], ids[best], &merged[best - 1]);
        if (best + 1 < n) rank[best] = bpe_pair_rank(m, ids[best], ids[best + 1], &merged[best]);
    }
    return n;
}

static int entry_before(const struct bpe_heap_entry *a, const struct bpe_heap_entry *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(struct bpe_heap_entry *heap, size_t *size, struct bpe_heap_entry e) {
    size_t i = (*size)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!entry_before(&e, &heap[parent])) break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = e;
}

static struct bpe_heap_entry heap_pop(struct bpe_heap_entry *heap, size_t *size) {
    struct bpe_heap_entry top = heap[0], last = heap[--*size];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= *size) break;
        if (child + 1 < *size && entry_before(&heap[child + 1], &heap[child])) child++;
        if (!entry_before(&heap[child], &last)) break;
        heap[i] = heap[child];
        i = child;
    }
    if (*size > 0) heap[i] = last;
    return top;
}

/* Pushes the pair (left_pos, right_pos) if it merges. */
static void push_pair(const bpe_model *m, struct bpe_heap_entry *heap, size_t *size, const int32_t *ids,
                      int32_t left_pos, int32_t right_pos) {
    int32_t merged = -1;
    const int32_t rank = bpe_pair_rank(m, ids[left_pos], ids[right_pos], &merged);
    if (rank != BPE_NO_RANK) heap_push(heap, size, (struct bpe_heap_entry){rank, left_pos});
}

size_t bpe_merge_heap(const bpe_model *m, int32_t *ids, size_t n, bpe_scratch *s) {
    if (n < 2) return n;
    int32_t *next = s->next, *prev = s->prev; /* a linked list over the live symbols */
    struct bpe_heap_entry *heap = s->heap;
    size_t size = 0;
    for (size_t i = 0; i < n; i++) {
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < n; i++) push_pair(m, heap, &size, ids, (int32_t)i, (int32_t)(i + 1));
    while (size > 0) {
        const struct bpe_heap_entry e = heap_pop(heap, &size);
        const int32_t right = next[e.pos];
        if (ids[e.pos] < 0 || right < 0) continue; /* merged away, or now last */
        int32_t merged = -1;
        if (bpe_pair_rank(m, ids[e.pos], ids[right], &merged) != e.rank) continue; /* stale */
        ids[e.pos] = merged;
        ids[right] = -1; /* dead */
        next[e.pos] = next[right];
        if (next[right] >= 0) prev[next[right]] = e.pos;
        if (prev[e.pos] >= 0) push_pair(m, heap, &size, ids, prev[e.pos], e.pos);
        if (next[e.pos] >= 0) push_pair(m, heap, &size, ids, e.pos, next[e.pos]);
    }
    size_t count = 0; /* symbol 0 is never merged away: it is the leftmost */
    for (int32_t i = 0; i >= 0; i = next[i]) ids[count++] = ids[i];
    return count;
}
