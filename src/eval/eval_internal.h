/* What the evaluation files share: batching, the per-example GSM8K record and its JSON form,
 * the batched answer loss and greedy decoding. */
#ifndef PM_EVAL_EVAL_INTERNAL_H
#define PM_EVAL_EVAL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data/sft.h"
#include "probmoe.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    int index, line;          /* 0-based example index; 1-based line of the JSONL file */
    const char *prompt, *generated, *predicted, *gold; /* predicted "" when there is none */
    bool correct;
    double answer_loss;       /* mean cross-entropy over the example's answer tokens */
    long answer_tokens;
} eval_gsm8k_record;

/* text[0..length) as a NUL-terminated string that is valid UTF-8: every byte that does not
 * start a valid sequence (RFC 3629), and every NUL, becomes U+FFFD. free() it; NULL on OOM. */
char *eval_clean_text(const char *text, size_t length);

/* Writes record as one JSON line (eval.h lists the fields). 0 or a negative pm_status. */
int eval_write_record(FILE *out, const char *path, const eval_gsm8k_record *record);

/* 0 if the model takes `batch` rows per forward pass of seq tokens (seq 0: not checked), else
 * an error naming what to change. */
int eval_check_batch(const pm_model *model, int batch, int seq);

/* The rows of the next forward pass once `done` of `total` rows are scored: up to batch, but
 * the first pass takes one row alone (eval.h says why). */
static inline int eval_next_rows(size_t done, size_t total, int batch) {
    const size_t left = total - done;
    if (done == 0) return 1;
    return left < (size_t)batch ? (int)left : batch;
}

/* Where each example's answer loss stands. */
typedef struct {
    double sum;      /* cross-entropy summed over the answer targets, nats */
    long count;      /* answer targets scored */
    bool truncated;  /* longer than the context: its start was cut */
} eval_answer_loss;

/* Answer-token losses of examples 0 .. count-1 of data (sft.h: the mask marks the answer),
 * `batch` per forward pass padded at the end to the longest; an example longer than
 * `context` + 1 tokens keeps its end. inputs and targets hold batch × context tokens.
 * 0 or a negative pm_status. */
int eval_answer_losses(pm_model *model, const sft_tokens *data, int count, int batch, int context, int32_t *inputs,
                       int32_t *targets, eval_answer_loss *losses);

/* A prompt to continue: its tokens, already cut to leave room for the new ones. */
typedef struct {
    const int32_t *tokens;
    int length;
} eval_prompt;

/* Called as prompt i's continuation ends, prompts finishing in any order: its bytes
 * text[0..length). A negative return stops the decoding with that status. */
typedef int (*eval_decoded_fn)(void *user, int i, const char *text, size_t length);

/*
 * Greedy continuations of prompts[0..count) through the rows of gen: each prompt goes to a
 * free row, then up to max_new tokens of largest logit are chosen (vocab of them), stopping at
 * tok's end-of-text token or at stop_token (-1: none; neither is part of the text), e.g. a
 * chat format's end of turn. A row that stops takes the next prompt; each
 * row decodes exactly as its prompt alone would. Every prompt with max_new tokens must fit
 * gen's context. 0 or a negative pm_status.
 */
int eval_greedy_decode(pm_generator *gen, const tokenizer *tok, int32_t stop_token, int vocab,
                       const eval_prompt *prompts, int count, int max_new, eval_decoded_fn decoded, void *user);

#endif
