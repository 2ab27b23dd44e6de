/*
 * Learns BPE merges over the corpus's distinct pieces ("words", each weighted by its count).
 *
 * Pair counts are kept up to date incrementally: merging (a, b) into X touches only the words
 * on (a, b)'s word list, and in each only the neighbours of the merged positions, (p, a) and
 * (b, n) losing what (p, X) and (X, n) gain. The next merge comes from a max-heap that is
 * updated lazily: a merge lowers the counts of existing pairs and creates pairs holding X, but
 * never raises an existing pair's count (every pair without X in the new split was adjacent
 * before). So a heap entry's count is at least its pair's true count: a popped entry whose
 * count is stale goes back in at the true count, and one that is current is the true maximum
 * (ties to the lowest key, i.e. (left id, right id)). New pairs enter the heap once the merge
 * is done, at their final counts.
 */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/bpe_train_internal.h"
#include "tokenizer/bpe_train_pairs.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    int32_t *symbols; /* word w's tokens: symbols[start[w] .. + length[w]) */
    const uint64_t *start;
    uint32_t *length;
    const int64_t *count;
    size_t words;
    bpe_train_pair_table pairs;
    bpe_train_heap heap;
    uint32_t *token_slots; /* token id + 1 by bytes: spots a merge that would repeat a token */
    size_t token_mask;
    size_t token_bytes_capacity;
    bpe_train_vocab *vocab;
} learner;

static const uint8_t *token_bytes(const bpe_train_vocab *vocab, int32_t token) {
    return vocab->token_bytes + vocab->token_start[token];
}

/* The slot holding the token with these bytes, or the empty slot where it would go. */
static size_t token_slot(const learner *l, const uint8_t *bytes, size_t length) {
    size_t slot = (size_t)bpe_train_hash_bytes((const char *)bytes, length) & l->token_mask;
    for (;; slot = (slot + 1) & l->token_mask) {
        const uint32_t entry = l->token_slots[slot];
        if (!entry) return slot;
        const int32_t t = (int32_t)entry - 1;
        if (l->vocab->token_length[t] == length && memcmp(token_bytes(l->vocab, t), bytes, length) == 0)
            return slot;
    }
}

/* Makes room for a new token of `length` bytes; returns where its bytes go, or NULL. */
static uint8_t *reserve_token(learner *l, size_t length) {
    bpe_train_vocab *vocab = l->vocab;
    const size_t start = vocab->token_count == 0 ? 0
                         : vocab->token_start[vocab->token_count - 1] + vocab->token_length[vocab->token_count - 1];
    if (start + length > l->token_bytes_capacity) {
        const size_t capacity = 2 * (start + length);
        uint8_t *bytes = realloc(vocab->token_bytes, capacity);
        if (!bytes) return NULL;
        vocab->token_bytes = bytes;
        l->token_bytes_capacity = capacity;
    }
    vocab->token_start[vocab->token_count] = start;
    vocab->token_length[vocab->token_count] = (uint16_t)length;
    return vocab->token_bytes + start;
}

/* Adds the token whose bytes reserve_token's buffer now holds (the caller checked it is new). */
static void commit_token(learner *l) {
    bpe_train_vocab *vocab = l->vocab;
    const int32_t token = vocab->token_count++;
    l->token_slots[token_slot(l, token_bytes(vocab, token), vocab->token_length[token])] = (uint32_t)token + 1;
}

static int setup(learner *l, const bpe_train_pieces *pieces, int max_merges, bpe_train_vocab *vocab) {
    l->vocab = vocab;
    const size_t tokens = 256 + (size_t)max_merges;
    vocab->merges = malloc(((size_t)max_merges + 1) * sizeof *vocab->merges);
    vocab->token_start = malloc(tokens * sizeof *vocab->token_start);
    vocab->token_length = malloc(tokens * sizeof *vocab->token_length);
    l->token_mask = 1023;
    while (l->token_mask + 1 < 2 * tokens) l->token_mask = 2 * l->token_mask + 1;
    l->token_slots = calloc(l->token_mask + 1, sizeof *l->token_slots);
    l->symbols = malloc((pieces->bytes_used + 1) * sizeof *l->symbols);
    l->length = malloc((pieces->size + 1) * sizeof *l->length);
    if (!vocab->merges || !vocab->token_start || !vocab->token_length || !l->token_slots || !l->symbols ||
        !l->length || bpe_train_pairs_init(&l->pairs))
        return PM_ERR_NOMEM;
    for (int b = 0; b < 256; b++) { /* the base tokens: id = byte value */
        uint8_t *bytes = reserve_token(l, 1);
        if (!bytes) return PM_ERR_NOMEM;
        bytes[0] = (uint8_t)b;
        commit_token(l);
    }
    /* Pieces lie back to back, so word w's symbols sit where its bytes do. */
    for (size_t i = 0; i < pieces->bytes_used; i++) l->symbols[i] = (uint8_t)pieces->bytes[i];
    if (pieces->size) memcpy(l->length, pieces->length, pieces->size * sizeof *l->length);
    l->start = pieces->start;
    l->count = pieces->count;
    l->words = pieces->size;
    return PM_OK;
}

/* Counts every word's pairs and heaps them all. */
static int count_pairs(learner *l) {
    for (size_t w = 0; w < l->words; w++) {
        const int32_t *s = l->symbols + l->start[w];
        for (uint32_t i = 0; i + 1 < l->length[w]; i++)
            bpe_train_pairs_add(&l->pairs, bpe_train_pair_key(s[i], s[i + 1]), l->count[w], (uint32_t)w);
    }
    l->pairs.created_size = 0;
    if (l->pairs.out_of_memory) return PM_ERR_NOMEM;
    l->heap.capacity = l->pairs.size + 1;
    l->heap.entries = malloc(l->heap.capacity * sizeof *l->heap.entries);
    if (!l->heap.entries) return PM_ERR_NOMEM;
    for (size_t p = 0; p < l->pairs.size; p++)
        l->heap.entries[l->heap.size++] = (bpe_train_heap_entry){l->pairs.pairs[p].count, l->pairs.pairs[p].key, (uint32_t)p};
    bpe_train_heap_build(&l->heap);
    return PM_OK;
}

/* Replaces every (left, right) in word w by token, left to right, updating the counts of the
 * pairs around each replaced position. */
static void merge_word(learner *l, uint32_t w, int32_t left, int32_t right, int32_t token) {
    int32_t *s = l->symbols + l->start[w];
    const uint32_t length = l->length[w];
    const int64_t count = l->count[w];
    uint32_t out = 0;
    for (uint32_t i = 0; i < length;) {
        if (i + 1 < length && s[i] == left && s[i + 1] == right) {
            if (out > 0) { /* the previous token may already be a new one: that pair was counted so */
                bpe_train_pairs_subtract(&l->pairs, bpe_train_pair_key(s[out - 1], left), count);
                bpe_train_pairs_add(&l->pairs, bpe_train_pair_key(s[out - 1], token), count, w);
            }
            if (i + 2 < length) {
                bpe_train_pairs_subtract(&l->pairs, bpe_train_pair_key(right, s[i + 2]), count);
                bpe_train_pairs_add(&l->pairs, bpe_train_pair_key(token, s[i + 2]), count, w);
            }
            bpe_train_pairs_subtract(&l->pairs, bpe_train_pair_key(left, right), count);
            s[out++] = token;
            i += 2;
        } else {
            s[out++] = s[i++];
        }
    }
    l->length[w] = out;
}

/* Whether (left, right) may become a token: short enough, and not the bytes of one already. */
static int mergeable(const learner *l, int32_t left, int32_t right) {
    const bpe_train_vocab *vocab = l->vocab;
    const size_t left_length = vocab->token_length[left], length = left_length + vocab->token_length[right];
    if (length > TOKENIZER_MAX_TOKEN_BYTES) return 0;
    uint8_t joined[2 * TOKENIZER_MAX_TOKEN_BYTES];
    memcpy(joined, token_bytes(vocab, left), left_length);
    memcpy(joined + left_length, token_bytes(vocab, right), vocab->token_length[right]);
    return l->token_slots[token_slot(l, joined, length)] == 0;
}

static int merge(learner *l, uint32_t pair, int32_t left, int32_t right) {
    bpe_train_vocab *vocab = l->vocab;
    const int32_t token = vocab->token_count;
    const size_t left_length = vocab->token_length[left];
    uint8_t *bytes = reserve_token(l, left_length + vocab->token_length[right]);
    if (!bytes) return PM_ERR_NOMEM;
    memcpy(bytes, token_bytes(vocab, left), left_length); /* after reserve_token: it may move them */
    memcpy(bytes + left_length, token_bytes(vocab, right), vocab->token_length[right]);
    commit_token(l);
    vocab->merges[vocab->merge_count][0] = left;
    vocab->merges[vocab->merge_count][1] = right;
    vocab->merge_count++;
    /* Detached first: the table may move while the words are merged. Nothing adds to this list
     * meanwhile (only pairs holding the new token gain). */
    uint32_t *words = l->pairs.pairs[pair].words;
    const uint32_t word_count = l->pairs.pairs[pair].word_count;
    l->pairs.pairs[pair].words = NULL;
    l->pairs.pairs[pair].word_count = l->pairs.pairs[pair].word_capacity = 0;
    l->pairs.created_size = 0;
    for (uint32_t k = 0; k < word_count; k++) merge_word(l, words[k], left, right, token);
    free(words);
    if (l->pairs.out_of_memory) return PM_ERR_NOMEM;
    for (size_t c = 0; c < l->pairs.created_size; c++) {
        const bpe_train_pair *created = &l->pairs.pairs[l->pairs.created[c]];
        if (created->count > 0 &&
            bpe_train_heap_push(&l->heap, (bpe_train_heap_entry){created->count, created->key, l->pairs.created[c]}))
            return PM_ERR_NOMEM;
    }
    return PM_OK;
}

int bpe_train_learn(const bpe_train_pieces *pieces, int max_merges, bpe_train_vocab *vocab,
                    bpe_train_progress progress, void *user) {
    memset(vocab, 0, sizeof *vocab);
    learner l = {0};
    int status = setup(&l, pieces, max_merges, vocab);
    if (status == PM_OK) status = count_pairs(&l);
    while (status == PM_OK && vocab->merge_count < max_merges && l.heap.size > 0) {
        const bpe_train_heap_entry top = bpe_train_heap_pop(&l.heap);
        bpe_train_pair *pair = &l.pairs.pairs[top.pair];
        if (pair->count != top.count) { /* stale (counts only fall): back in at the true count */
            if (pair->count > 0 && bpe_train_heap_push(&l.heap, (bpe_train_heap_entry){pair->count, top.key, top.pair}))
                status = PM_ERR_NOMEM;
            continue;
        }
        const int32_t left = (int32_t)(top.key >> 32), right = (int32_t)(uint32_t)top.key;
        if (!mergeable(&l, left, right)) { /* out of the heap for good: no merge raises it again */
            free(pair->words);
            pair->words = NULL;
            pair->word_count = pair->word_capacity = 0;
            continue;
        }
        status = merge(&l, top.pair, left, right);
        if (progress && (vocab->merge_count % 64 == 0 || vocab->merge_count == max_merges))
            progress(user, "merging", vocab->merge_count, max_merges);
    }
    bpe_train_pairs_free(&l.pairs);
    free(l.heap.entries);
    free(l.token_slots);
    free(l.symbols);
    free(l.length);
    if (status == PM_ERR_NOMEM) status = pm_fail(PM_ERR_NOMEM, "tokenizer training: out of memory");
    if (status) bpe_train_vocab_free(vocab);
    return status;
}

void bpe_train_vocab_free(bpe_train_vocab *vocab) {
    free(vocab->merges);
    free(vocab->token_bytes);
    free(vocab->token_start);
    free(vocab->token_length);
    memset(vocab, 0, sizeof *vocab);
}
