#include "tokenizer/tokenizer.h"

#include <string.h>

#include "core/error.h"

static int64_t encode_bytes(const tokenizer *self, const char *text, size_t length, int32_t *tokens,
                            size_t capacity) {
    (void)self;
    for (size_t i = 0; i < length && i < capacity; i++) tokens[i] = (unsigned char)text[i];
    return (int64_t)length;
}

static size_t decode_byte(const tokenizer *self, int32_t token, char *out, size_t capacity) {
    (void)self;
    if (capacity < 1 || token < 0 || token > 255) return 0;
    out[0] = (char)token;
    return 1;
}

const tokenizer *tokenizer_bytes(void) {
    static const tokenizer bytes = {"bytes", 256, -1, 0x62797465735F3235ull, encode_bytes, decode_byte, NULL, NULL,
                                    NULL, true};
    return &bytes;
}

void tokenizer_free(tokenizer *tok) {
    if (tok && tok->destroy) tok->destroy(tok);
}

int64_t tokenizer_decode(const tokenizer *tok, const int32_t *tokens, size_t count, char *out, size_t capacity) {
    if (tok->decode) return tok->decode(tok, tokens, count, out, capacity);
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        char piece[TOKENIZER_MAX_TOKEN_BYTES];
        if (tokens[i] < 0 || tokens[i] >= tok->vocab_size)
            return pm_fail(PM_ERR_ARG, "decode: id %d is outside the vocabulary (0 to %d)", tokens[i], tok->vocab_size - 1);
        const size_t n = tok->decode_token(tok, tokens[i], piece, sizeof piece);
        if (used < capacity) memcpy(out + used, piece, n < capacity - used ? n : capacity - used);
        used += n;
    }
    return (int64_t)used;
}
