/* The property both tokenizer harnesses check on a tokenizer that loaded: text encodes to ids
 * inside the vocabulary that decode, and, for a lossless tokenizer, whose bytes concatenate
 * back to the text and whose sequence decoding gives it back too. */
#ifndef PM_FUZZ_TOKENIZER_CHECK_H
#define PM_FUZZ_TOKENIZER_CHECK_H

#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "tokenizer/tokenizer.h"

static inline void fuzz_check_round_trip(const tokenizer *tok, const char *text, size_t length) {
    enum { CAPACITY = 4096 };
    int32_t ids[CAPACITY];
    int64_t n = tok->encode(tok, text, length, ids, CAPACITY);
    if (n < 0 || n > CAPACITY) return; /* invalid UTF-8 is refused; long texts are not checked */
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tok->vocab_size) fuzz_fail("encode gave an id outside the vocabulary", text);
    const int64_t decoded = tokenizer_decode(tok, ids, (size_t)n, NULL, 0);
    if (decoded < 0) fuzz_fail("the ids encode gave do not decode", text);
    if (!tok->lossless) return;
    char *back = malloc(length + 1), piece[TOKENIZER_MAX_TOKEN_BYTES];
    size_t used = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t bytes = tok->decode_token(tok, ids[i], piece, sizeof piece);
        if (used + bytes > length) fuzz_fail("decode(encode(text)) is longer than the text", text);
        memcpy(back + used, piece, bytes);
        used += bytes;
    }
    if (used != length || memcmp(back, text, length) != 0) fuzz_fail("decode(encode(text)) != text", text);
    if (decoded != (int64_t)length || tokenizer_decode(tok, ids, (size_t)n, back, length) != (int64_t)length ||
        memcmp(back, text, length) != 0)
        fuzz_fail("tokenizer_decode(encode(text)) != text", text);
    free(back);
}

static inline void fuzz_check_tokenizer(const tokenizer *tok, const uint8_t *data, size_t size) {
    static const char sample[] = "Hello, world! It's 2026: 12.5% of   spaces\n\tand h\xc3\xa9llo \xf0\x9f\x98\x80<|endoftext|>";
    fuzz_check_round_trip(tok, sample, sizeof sample - 1);
    fuzz_check_round_trip(tok, (const char *)data, size < 512 ? size : 512);
}

#endif
