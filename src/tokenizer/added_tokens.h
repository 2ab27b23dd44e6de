/*
 * Added tokens (tokenizer.json's "added_tokens") are cut out of the text before the rest of the
 * pipeline sees it, in two passes as Hugging Face does: tokens with normalized false are
 * matched in the raw text, the others in each normalized stretch between those (their content
 * normalized too). At each position the longest token wins, leftmost first. Flags: single_word
 * (no word character may touch the match), lstrip/rstrip (the match takes the whitespace on its
 * left/right), special (recorded; decoding can skip them).
 */
#ifndef PM_TOKENIZER_ADDED_TOKENS_H
#define PM_TOKENIZER_ADDED_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int32_t id;
    uint32_t length;
    char *content; /* what is matched (normalized content for normalized tokens) */
    bool special, lstrip, rstrip, normalized, single_word;
} added_token;

typedef struct added_tokens added_tokens;

added_tokens *added_tokens_create(void);
void added_tokens_free(added_tokens *a);
/* Adds a token (content copied); 0 or PM_ERR_NOMEM. */
int added_tokens_add(added_tokens *a, const added_token *token);
/* Ends adding: builds each pass's matcher. */
int added_tokens_finish(added_tokens *a);
/* Whether some token takes whitespace beside it (lstrip or rstrip): decoding cannot give that
 * whitespace back. */
bool added_tokens_strip_whitespace(const added_tokens *a);

/* A match: text[start..end) (whitespace taken by lstrip/rstrip included) is token. */
typedef struct {
    size_t start, end;
    const added_token *token;
} added_match;

/* Finds the next match of the pass (normalized or not) at or after `from` in text[0..length);
 * taken_until is where the previous match ended (lstrip does not reach before it). Returns
 * false when there is none. */
bool added_tokens_next(const added_tokens *a, bool normalized, const char *text, size_t length, size_t from,
                       size_t taken_until, added_match *m);

#endif
