#include "tokenizer/byte_unicode.h"

/* Printable bytes keep their code point: '!'..'~', '¡'..'¬', '®'..'ÿ'. */
static int printable(uint8_t b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

uint32_t byte_to_codepoint(uint8_t b) {
    if (printable(b)) return b;
    uint32_t rank = 0; /* how many non-printable bytes come before b */
    for (int c = 0; c < b; c++) rank += !printable((uint8_t)c);
    return 256 + rank;
}

size_t byte_to_utf8(uint8_t b, char *out) {
    uint32_t cp = byte_to_codepoint(b);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* The byte written as code point cp, or -1. (Used when loading vocabularies, not per token.) */
static int codepoint_to_byte(uint32_t cp) {
    if (cp < 256) return printable((uint8_t)cp) ? (int)cp : -1;
    uint32_t rank = 256;
    for (int b = 0; b < 256; b++)
        if (!printable((uint8_t)b) && rank++ == cp) return b;
    return -1;
}

long utf8_to_bytes(const char *text, size_t length, uint8_t *out, size_t capacity) {
    size_t count = 0;
    for (size_t i = 0; i < length;) {
        const uint8_t c = (uint8_t)text[i];
        uint32_t cp;
        if (c < 0x80) {
            cp = c;
            i += 1;
        } else if ((c & 0xE0) == 0xC0 && i + 1 < length && ((uint8_t)text[i + 1] & 0xC0) == 0x80) {
            cp = (uint32_t)(c & 0x1F) << 6 | ((uint8_t)text[i + 1] & 0x3F);
            i += 2;
        } else {
            return -1;
        }
        const int b = codepoint_to_byte(cp);
        if (b < 0 || count >= capacity) return -1;
        out[count++] = (uint8_t)b;
    }
    return (long)count;
}
