/*
 * Supervised examples (prompt → completion, e.g. GSM8K) as tokens with a loss mask, and as
 * fixed-length rows for training.
 *
 * The prompt and the completion are tokenized separately and concatenated, so the mask
 * boundary is exact (with GPT-2-style pre-tokenization, "Answer:" and " 18" are separate
 * pieces anyway, so this is also how the joint text tokenizes). The completion is followed by
 * eos when the tokenizer has one: the model learns to stop after the answer.
 *
 * Rows: inputs x[0..S-1] and targets y[0..S-1] with y[j] = the token after x[j], or -1 where
 * no loss is taken (the next token is a prompt token, or padding). Two layouts:
 *   SFT_PACK  all examples back to back, cut into rows of S+1 tokens that overlap by one
 *             (row k covers stream positions kS .. kS+S, so every token is a target once);
 *             the last row is padded. Nothing is truncated or dropped; an example may span
 *             two rows.
 *   SFT_PAD   one example per row, padded at the end with the pad token (targets -1). An
 *             example of L tokens fits when L <= S+1. A longer one keeps its last S+1 tokens
 *             (its prompt is cut from the left: the question's start is lost, the whole
 *             answer kept) when its completion has at most S tokens, and is dropped
 *             otherwise (no row could hold its answer). Both are counted.
 */
#ifndef PM_DATA_SFT_H
#define PM_DATA_SFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

typedef struct {
    int32_t *tokens;    /* every example's prompt then completion tokens, back to back */
    uint8_t *loss_mask; /* per token: 1 on completion tokens (eos included), 0 on the prompt */
    size_t *offsets;    /* example i is tokens [offsets[i], offsets[i+1]); count+1 entries */
    int count;
    int32_t pad_token;  /* eos, or 0 when the tokenizer has none (padding is never a target) */
} sft_tokens;

/* Tokenizes count (prompt, completion) pairs, each completion followed by eos when append_eos
 * is set and the tokenizer has one. 0 or a negative pm_status naming the example. */
int sft_tokenize(sft_tokens *out, const char *const *prompts, const char *const *completions, int count,
                 const tokenizer *tok, bool append_eos);
void sft_tokens_free(sft_tokens *data);

typedef enum { SFT_PACK, SFT_PAD } sft_layout;

typedef struct {
    const sft_tokens *data; /* borrowed: must outlive the rows */
    sft_layout layout;
    int seq_len;            /* S */
    size_t row_count;
    /* SFT_PAD: row r shows tokens [starts[r], ends[r]) of the stream (one example, truncated
     * from the left if needed) */
    size_t *starts, *ends;
    int truncated, dropped; /* SFT_PAD: examples cut from the left / left out */
} sft_rows;

/* 0 or a negative pm_status (no rows at all, e.g. every example dropped, is an error). */
int sft_rows_init(sft_rows *rows, const sft_tokens *data, sft_layout layout, int seq_len);
/* Fills inputs and targets (seq_len each) with row row (< row_count). */
void sft_rows_fill(const sft_rows *rows, size_t row, int32_t *inputs, int32_t *targets);
void sft_rows_free(sft_rows *rows);

#endif
