/*
 * GPT-2's pre-tokenization: text is split into pieces by the regular expression
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * (PCRE2, UTF mode with Unicode properties, JIT-compiled when available); byte-level BPE
 * then merges within each piece. Pieces cover the text exactly, in order.
 */
#ifndef PM_TOKENIZER_PRETOKENIZE_H
#define PM_TOKENIZER_PRETOKENIZE_H

#include <stddef.h>

typedef struct pretokenizer pretokenizer;

/* GPT-2's pattern (also ByteLevel's use_regex in pre_tokenizer.c). */
extern const char pretokenize_gpt2_pattern[];

/* 0 or a negative pm_status (the pattern failed to compile). */
int pretokenizer_create(pretokenizer **out);
void pretokenizer_free(pretokenizer *pre);

/* Calls piece(user, start, length) for every piece of text[0..length). Returns 0, the first
 * non-zero value piece returned, or a negative pm_status for invalid UTF-8 (the message
 * gives the byte offset). Not thread-safe per object: use one pretokenizer per thread. */
typedef int (*pretokenize_piece)(void *user, const char *start, size_t length);
int pretokenize(pretokenizer *pre, const char *text, size_t length, pretokenize_piece piece, void *user);

#endif
