/*
 * Token shards: a tokenized corpus on disk, read back whole.
 *
 * File layout (all integers little-endian):
 *
 *   offset  bytes  field
 *        0      8  magic "PMSHARD\0"
 *        8      4  version (u32), 1
 *       12      4  vocab_size (u32): every token is < vocab_size, 1 <= vocab_size <= 2^24
 *       16      8  vocab_hash (u64): the tokenizer's vocab_hash (tokenizer.h)
 *       24      4  token_width (u32): 2 if vocab_size <= 65536, else 4
 *       28      4  reserved, written as 0 (keeps token_count 8-byte aligned)
 *       32      8  token_count (u64)
 *       40         token_count tokens, unsigned, token_width bytes each
 *
 * The file is exactly 40 + token_count * token_width bytes. Readers accept width 4 for any
 * vocabulary; the writer always uses the narrowest width, so shards are half the size for
 * GPT-2-sized vocabularies.
 */
#ifndef PM_DATA_SHARDS_H
#define PM_DATA_SHARDS_H

#include <stddef.h>
#include <stdint.h>

enum { SHARD_VERSION = 1, SHARD_HEADER_BYTES = 40, SHARD_MAX_VOCAB = 1 << 24 /* the config's bound */ };

typedef struct {
    uint32_t version;
    uint32_t vocab_size;
    uint64_t vocab_hash;
    uint32_t token_width;
    uint64_t token_count;
} shard_header;

typedef struct {
    shard_header header;
    int32_t *tokens; /* header.token_count tokens */
    size_t count;
} token_shard;

/* Writes tokens (each in [0, vocab_size)) to path atomically: a temporary file in the same
 * directory, flushed to disk, then renamed, so a crash never leaves a partial shard under the
 * final name. 0 or a negative pm_status. */
int shard_write(const char *path, const int32_t *tokens, size_t count, uint32_t vocab_size,
                uint64_t vocab_hash);

/* Reads and checks the header (magic, version, width, size against the file length) without
 * reading the tokens. */
int shard_read_header(const char *path, shard_header *header);

/*
 * Reads a whole shard and checks it: the header as above, every token < vocab_size (the
 * message names the first bad index) and vocab_hash == expected_vocab_hash (a shard made with
 * another tokenizer is an error that says so). Pass header.vocab_hash from
 * shard_read_header to accept any tokenizer. shard is zeroed on failure.
 */
int shard_read(const char *path, uint64_t expected_vocab_hash, token_shard *shard);
void shard_free(token_shard *shard);

#endif
