/*
 * Hugging Face decoders: how token strings become text again. Supported: ByteLevel (for
 * byte-level vocabularies, whose tokens are already stored as their bytes), and for the
 * SentencePiece-style ones Replace with a String pattern, ByteFallback (a token <0xNN> is the
 * byte NN), Metaspace (the replacement becomes a space; the first token's is dropped unless
 * prepend_scheme is never), Fuse, and Strip (after Fuse: of the whole text; before: of each
 * token), in a Sequence in the file's order. Anything else is refused by name.
 */
#ifndef PM_TOKENIZER_DECODER_H
#define PM_TOKENIZER_DECODER_H

#include <stdbool.h>
#include <stddef.h>

#include "tokenizer/text_buffer.h"

typedef struct decoder decoder;

/* Reads tokenizer.json's "decoder" (a cJSON *). byte_level says the vocabulary is byte-level
 * (then only ByteLevel, or none, fits). *out is NULL when tokens decode to themselves. */
int decoder_from_json(const char *file, const void *json, bool byte_level, decoder **out);
void decoder_free(decoder *d);

/* Writes the text of one token (its string as in the vocabulary, at most
 * TOKENIZER_MAX_TOKEN_BYTES bytes) to out, which has room for that many: no step lengthens a
 * token. first: it is the first token of the sequence. Returns the byte count. */
size_t decoder_token(const decoder *d, const char *token, size_t length, bool first, char *out);
/* Applies what acts on the joined text (Strip after Fuse) to out->data[start..]. */
void decoder_finish(const decoder *d, text_buffer *out, size_t start);

#endif
