/* The stages of bpe_train: count the corpus's pieces, learn merges over them, write the JSON. */
#ifndef PM_TOKENIZER_BPE_TRAIN_INTERNAL_H
#define PM_TOKENIZER_BPE_TRAIN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/bpe_train.h"

/* A fast 64-bit hash of a short byte string (not stable across machines: used for tables). */
uint64_t bpe_train_hash_bytes(const char *bytes, size_t length);

/* Distinct pre-tokenizer pieces with their counts, in order of first appearance (so everything
 * derived from them is deterministic whatever the hash function). */
typedef struct {
    char *bytes; /* every distinct piece's bytes, back to back */
    size_t bytes_used, bytes_capacity;
    uint64_t *start;  /* piece i is bytes[start[i] .. start[i] + length[i]) */
    uint32_t *length;
    int64_t *count;
    uint64_t *hash;
    size_t size, capacity;
    uint32_t *slots; /* open addressing: piece index + 1, or 0 for empty */
    size_t slot_mask;
    int64_t total; /* pieces added, repeats included */
} bpe_train_pieces;

int bpe_train_pieces_init(bpe_train_pieces *pieces);
void bpe_train_pieces_free(bpe_train_pieces *pieces);
/* Counts one occurrence of the piece. 0 or PM_ERR_NOMEM / PM_ERR_ARG (piece over 4 GiB). */
int bpe_train_pieces_add(bpe_train_pieces *pieces, const char *piece, size_t length);
/* How often the piece was added (0 if never). */
int64_t bpe_train_pieces_count(const bpe_train_pieces *pieces, const char *piece, size_t length);

/* Reads the files in chunks of about chunk_bytes (cut only where a piece boundary is certain),
 * checks them as UTF-8 and counts their pieces into `pieces` (initialised by the caller).
 * *bytes gets the byte count. 0 or a negative pm_status naming the file. */
int bpe_train_count_corpus(const char *const *files, int file_count, size_t chunk_bytes,
                           bpe_train_pieces *pieces, int64_t *bytes, bpe_train_progress progress,
                           void *user);

/* Offset of the first byte of text that is not part of valid UTF-8 (RFC 3629: no overlong
 * forms, surrogates or code points above U+10FFFF), or length if all of it is valid. */
size_t bpe_train_utf8_valid_prefix(const char *text, size_t length);

/* The learned vocabulary: 256 byte tokens, then merges[i] = {left, right} made token 256 + i. */
typedef struct {
    int32_t (*merges)[2];
    int merge_count;
    uint8_t *token_bytes;   /* token t's bytes: token_bytes[token_start[t] .. + token_length[t]) */
    uint64_t *token_start;
    uint16_t *token_length;
    int token_count; /* 256 + merge_count */
} bpe_train_vocab;

/* Learns up to max_merges merges over the pieces (see bpe_train.h for the rules). */
int bpe_train_learn(const bpe_train_pieces *pieces, int max_merges, bpe_train_vocab *vocab,
                    bpe_train_progress progress, void *user);
void bpe_train_vocab_free(bpe_train_vocab *vocab);

/* Writes vocab as a tokenizer.json with "<|endoftext|>" as id token_count, to path.tmp, then
 * renames it to path. 0 or a negative pm_status; on failure no file is left behind. */
int bpe_train_write_json(const bpe_train_vocab *vocab, const char *path);

/* The added end-of-text token. */
#define BPE_TRAIN_EOS "<|endoftext|>"

#endif
