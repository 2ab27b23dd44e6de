/*
 * Hugging Face pre-tokenizers: how a normalized stretch of text is cut into the pieces that
 * BPE merges within. Supported: Split (a Regex or String pattern, every behavior, invert),
 * ByteLevel (GPT-2's regex split when use_regex is set; the byte mapping itself is the
 * model's), Metaspace (replacement, prepend_scheme or the older add_prefix_space, split) and
 * Sequence of these. Anything else is refused by name. Patterns are PCRE2 in UTF mode with
 * Unicode properties, JIT-compiled.
 */
#ifndef PM_TOKENIZER_PRE_TOKENIZER_H
#define PM_TOKENIZER_PRE_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct pre_tokenizer pre_tokenizer;             /* immutable, shared by threads */
typedef struct pre_tokenizer_state pre_tokenizer_state; /* one per thread */

/* Reads tokenizer.json's "pre_tokenizer" (a cJSON *). *out is NULL when there is none (the
 * whole stretch is one piece). *byte_level tells whether a ByteLevel step is present (the
 * vocabulary is then in GPT-2's byte alphabet). */
int pre_tokenizer_from_json(const char *file, const void *json, pre_tokenizer **out, bool *byte_level);
/* GPT-2's: ByteLevel with its regex (for encoder.json + vocab.bpe). */
int pre_tokenizer_gpt2(pre_tokenizer **out);
void pre_tokenizer_free(pre_tokenizer *p);

int pre_tokenizer_state_create(const pre_tokenizer *p, pre_tokenizer_state **out);
void pre_tokenizer_state_free(pre_tokenizer_state *s);

/* Calls piece(user, start, length) for every non-empty piece of text[0..length) (valid UTF-8),
 * in order. at_start says whether the text begins the original input (Metaspace's "first").
 * Returns 0, the first non-zero value piece returned, or a negative pm_status. */
typedef int (*pre_tokenizer_piece)(void *user, const char *start, size_t length);
int pre_tokenize_text(const pre_tokenizer *p, pre_tokenizer_state *s, const char *text, size_t length, bool at_start,
                      pre_tokenizer_piece piece, void *user);

#endif
