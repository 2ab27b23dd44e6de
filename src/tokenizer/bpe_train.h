/*
 * Learns a byte-level BPE vocabulary from text files and writes it as a Hugging Face
 * tokenizer.json that tokenizer_load (and the tokenizers library) read.
 *
 * The vocabulary: ids 0..255 are the single bytes, id = byte value (GPT-2 orders its base
 * tokens differently; any order is valid since tokenizer.json names every token's id). Then
 * one token per merge, in the order learned: each merge joins the most frequent adjacent pair
 * of tokens within the GPT-2 pre-tokenizer's pieces, ties going to the lowest (left id, right
 * id). Pairs are counted at every adjacent position ("aaa" holds (a, a) twice) and merged left
 * to right, as the encoder applies them. Two kinds of pair are never merged: one whose token
 * would exceed TOKENIZER_MAX_TOKEN_BYTES bytes, and one whose bytes equal an existing token's
 * (reachable through another split), so every id has distinct bytes. The last id is the
 * added special token "<|endoftext|>". Same corpus, same file: the output is deterministic.
 */
#ifndef PM_TOKENIZER_BPE_TRAIN_H
#define PM_TOKENIZER_BPE_TRAIN_H

#include <stdint.h>

enum { BPE_TRAIN_MIN_VOCAB = 257, BPE_TRAIN_MAX_VOCAB = 1000000 };

typedef struct {
    int64_t bytes;           /* corpus bytes read */
    int64_t pieces;          /* pre-tokenizer pieces in the corpus */
    int64_t distinct_pieces; /* different pieces (merges run over these, weighted by count) */
    int merges;              /* merges learned: vocab_size - 257, or fewer if the corpus ran out of pairs */
    int vocab_size;          /* tokens written, the end-of-text token included */
    double seconds;          /* wall time of the whole run */
} bpe_train_stats;

/*
 * Trains on the UTF-8 files and writes out_json (atomically: out_json.tmp, then a rename; a
 * failed run writes nothing). vocab_size counts the end-of-text token and must be in
 * [BPE_TRAIN_MIN_VOCAB, BPE_TRAIN_MAX_VOCAB]; a corpus with too few distinct pairs gives a
 * smaller vocabulary (stats->vocab_size says). Returns 0 or a negative pm_status with a message
 * naming the file and what is wrong (cannot be read, empty, invalid UTF-8 at byte N).
 * stats may be NULL.
 */
int bpe_train(const char *const *files, int file_count, int vocab_size, const char *out_json,
              bpe_train_stats *stats);

/* Called while training: phase is "reading" (done/total in bytes) or "merging" (in merges). */
typedef void (*bpe_train_progress)(void *user, const char *phase, int64_t done, int64_t total);

/* bpe_train, reporting progress now and then (progress may be NULL). */
int bpe_train_with_progress(const char *const *files, int file_count, int vocab_size, const char *out_json,
                            bpe_train_stats *stats, bpe_train_progress progress, void *user);

#endif
