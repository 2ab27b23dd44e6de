#include "core/utf8.h"

#include <stdint.h>
#include <string.h>

size_t utf8_invalid_at(const unsigned char *s, size_t length) {
    size_t i = 0;
    while (i < length) {
        uint64_t word;
        if (i + 8 <= length && (memcpy(&word, s + i, 8), (word & 0x8080808080808080ull) == 0)) {
            i += 8; /* ASCII fast path */
            continue;
        }
        const unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        const size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (n == 0 || n > length - i) return i;
        uint32_t cp = c & (0x7Fu >> n);
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3Fu);
        }
        if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return i;
        i += n;
    }
    return length;
}
