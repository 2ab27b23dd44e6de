/* A growable byte buffer that the encoder's stages write their transformed text into; one per
 * stage and worker, reused from call to call so that steady-state encoding allocates nothing. */
#ifndef PM_TOKENIZER_TEXT_BUFFER_H
#define PM_TOKENIZER_TEXT_BUFFER_H

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

typedef struct {
    char *data;
    size_t length, capacity;
} text_buffer;

/* Makes room for `extra` more bytes; 0 or PM_ERR_NOMEM. */
static inline int text_buffer_reserve(text_buffer *b, size_t extra) {
    if (b->length + extra <= b->capacity) return PM_OK;
    size_t capacity = b->capacity ? b->capacity : 256;
    while (capacity < b->length + extra) capacity *= 2;
    char *grown = realloc(b->data, capacity);
    if (!grown) return pm_fail(PM_ERR_NOMEM, "tokenizer: out of memory for %zu bytes of text", b->length + extra);
    b->data = grown;
    b->capacity = capacity;
    return PM_OK;
}

static inline int text_buffer_append(text_buffer *b, const char *bytes, size_t length) {
    const int status = text_buffer_reserve(b, length);
    if (status) return status;
    if (length) memcpy(b->data + b->length, bytes, length);
    b->length += length;
    return PM_OK;
}

static inline void text_buffer_free(text_buffer *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

#endif
