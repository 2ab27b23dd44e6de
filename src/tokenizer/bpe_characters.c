/* The starting symbols of a piece for SentencePiece-style vocabularies (Llama-2, Mistral):
 * one token per character; a character outside the vocabulary becomes the byte-fallback
 * tokens of its UTF-8 bytes when the model has them all, else the unknown token, as Hugging
 * Face's BPE does. */
#include "core/error.h"
#include "tokenizer/bpe_internal.h"

static size_t char_length(uint8_t lead) {
    return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

static uint32_t decode_char(const uint8_t *p, size_t n) {
    switch (n) {
    case 1: return p[0];
    case 2: return (uint32_t)(p[0] & 0x1F) << 6 | (p[1] & 0x3F);
    case 3: return (uint32_t)(p[0] & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
    default: return (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3F) << 12 | (uint32_t)(p[2] & 0x3F) << 6 | (p[3] & 0x3F);
    }
}

int64_t bpe_character_symbols(const bpe_model *m, const uint8_t *p, size_t length, int32_t *ids) {
    size_t n = 0;
    bool previous_unknown = false;
    for (size_t at = 0; at < length;) {
        const size_t bytes = char_length(p[at]);
        if (bytes > length - at) /* the stages before keep pieces whole characters */
            return pm_fail(PM_ERR_STATE, "encode: a piece ends inside a character");
        const uint32_t cp = decode_char(p + at, bytes);
        const int32_t id = cp < 0x10000 ? m->char_token[cp] : bpe_whole_token(m, p + at, bytes);
        if (id >= 0) {
            ids[n++] = id;
            previous_unknown = false;
        } else {
            bool fallback = m->byte_fallback[p[at]] >= 0;
            for (size_t k = 1; k < bytes && fallback; k++) fallback = m->byte_fallback[p[at + k]] >= 0;
            if (fallback) {
                for (size_t k = 0; k < bytes; k++) ids[n++] = m->byte_fallback[p[at + k]];
                previous_unknown = false;
            } else if (m->unk >= 0) {
                if (!(m->fuse_unk && previous_unknown)) ids[n++] = m->unk;
                previous_unknown = true;
            } else {
                return pm_fail(PM_ERR_ARG, "encode: character U+%04X is not in the vocabulary, and the tokenizer has "
                               "neither byte fallback nor an unknown token", cp);
            }
        }
        at += bytes;
    }
    return (int64_t)n;
}

