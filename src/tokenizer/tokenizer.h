/*
 * The tokenizer interface the data pipeline, the trainer and the generator use. Two kinds:
 * byte-level (token = byte, 256 tokens, no file) and BPE as Hugging Face tokenizers do it
 * (byte-level as GPT-2, Qwen, Llama-3 and DeepSeek; SentencePiece-style as Llama-2 and
 * Mistral), loaded from a tokenizer.json or from GPT-2's encoder.json + vocab.bpe.
 */
#ifndef PM_TOKENIZER_TOKENIZER_H
#define PM_TOKENIZER_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;
struct tokenizer {
    const char *name;
    int vocab_size;       /* ids are 0 .. vocab_size-1 (added tokens included) */
    int32_t eos_token;    /* the end-of-text token, or -1 */
    uint64_t vocab_hash;  /* identifies the vocabulary and merges; shards record it */
    /* Encodes text (added/special tokens written literally in the text map to their ids).
     * Writes at most capacity tokens and returns how many the text needs (it may exceed
     * capacity: call again with more room), or a negative pm_status (invalid UTF-8: the
     * message gives the byte offset). tokens may be NULL when capacity is 0. Safe to call
     * from several threads at once. */
    int64_t (*encode)(const tokenizer *self, const char *text, size_t length, int32_t *tokens,
                      size_t capacity);
    /* Writes the text of one token, as it reads inside a sequence, to out (capacity bytes);
     * returns the byte count (0 for an id outside the vocabulary). When lossless is set,
     * concatenating the bytes of encode's tokens gives the text back exactly. */
    size_t (*decode_token)(const tokenizer *self, int32_t token, char *out, size_t capacity);
    void (*destroy)(tokenizer *self); /* NULL for static tokenizers */
    void *impl;
    /* Decodes a sequence (what happens at its start included, e.g. SentencePiece's leading
     * space): writes at most capacity bytes and returns how many the text needs, or a
     * negative pm_status (an id outside the vocabulary). NULL: decode_token concatenated. */
    int64_t (*decode)(const tokenizer *self, const int32_t *tokens, size_t count, char *out, size_t capacity);
    /* decode(encode(text)) == text for every valid UTF-8 text (byte-level, no normalizer, no
     * added token with lstrip or rstrip). */
    bool lossless;
};

/* The byte-level tokenizer (static; never freed). */
const tokenizer *tokenizer_bytes(void);

/*
 * Loads a BPE tokenizer: a tokenizer.json file (Hugging Face format, model type BPE, with the
 * normalizers, pre-tokenizers and decoders README.md lists), or a directory holding
 * tokenizer.json, or one holding GPT-2's encoder.json and vocab.bpe. 0 or a negative pm_status
 * with a message naming the file and what is wrong (e.g. a merge whose parts are not in the
 * vocabulary, or a component that is not supported).
 */
int tokenizer_load(const char *path, tokenizer **out);
/* Frees a loaded tokenizer (does nothing for static ones). */
void tokenizer_free(tokenizer *tok);
/* Decodes tokens[0..count) into out (at most capacity bytes); returns the byte count the text
 * needs, or a negative pm_status. */
int64_t tokenizer_decode(const tokenizer *tok, const int32_t *tokens, size_t count, char *out, size_t capacity);

/* The longest byte string a token decodes to (for buffers). */
enum { TOKENIZER_MAX_TOKEN_BYTES = 256 };

#endif
