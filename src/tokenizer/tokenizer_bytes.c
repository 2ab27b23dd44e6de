#include "tokenizer/tokenizer.h"

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
    static const tokenizer bytes = {"bytes", 256, -1, 0x62797465735F3235ull, encode_bytes, decode_byte, NULL, NULL};
    return &bytes;
}

void tokenizer_free(tokenizer *tok) {
    if (tok && tok->destroy) tok->destroy(tok);
}
