/* The tokenizer interface the trainer and generator use. Until the BPE tokenizer lands the
 * only implementation is byte-level: token = byte, vocabulary 256. */
#ifndef PM_DATA_TOKENIZER_H
#define PM_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;
struct tokenizer {
    const char *name;
    int vocab_size;
    /* Writes at most capacity tokens; returns how many the text needs (may exceed capacity). */
    size_t (*encode)(const tokenizer *self, const char *text, size_t length, int32_t *tokens,
                     size_t capacity);
    /* Appends the bytes of one token to out (capacity bytes); returns the byte count. */
    size_t (*decode_token)(const tokenizer *self, int32_t token, char *out, size_t capacity);
};

const tokenizer *tokenizer_bytes(void);

#endif
