/*
 * Hugging Face normalizers: what changes the text before it is split, applied to each stretch
 * of text between added tokens. Supported: NFC, NFD, NFKC and NFKD (utf8proc), Prepend,
 * Replace with a String pattern, and Sequence of these. Anything else is refused by name.
 */
#ifndef PM_TOKENIZER_NORMALIZER_H
#define PM_TOKENIZER_NORMALIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/text_buffer.h"

typedef struct normalizer normalizer;

/* Reads tokenizer.json's "normalizer" (a cJSON *, as void * to keep cJSON out of headers).
 * *out is NULL when it does nothing (absent, null, an empty Sequence). file names the source
 * in messages. */
int normalizer_from_json(const char *file, const void *json, normalizer **out);
void normalizer_free(normalizer *n);

/* Normalizes text[0..length) (valid UTF-8) into out (its old contents are discarded); scratch
 * is the caller's, kept between calls. */
typedef struct {
    text_buffer swap;
    int32_t *codepoints; /* for utf8proc */
    size_t codepoint_capacity;
} normalizer_scratch;
int normalize(const normalizer *n, const char *text, size_t length, text_buffer *out, normalizer_scratch *scratch);
void normalizer_scratch_free(normalizer_scratch *scratch);

#endif
