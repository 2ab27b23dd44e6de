/*
 * Evaluation of a trained model: validation loss on token shards, and GSM8K (answer-token loss
 * plus exact match of greedily decoded answers). Used by `probmoe eval` and `probmoe compare`.
 *
 * Every evaluation runs the routers at their inference rules (no sampling), `batch` sequences
 * per forward pass (or decoding step), so the model needs max_batch >= batch and a max_seq
 * long enough for what it scores; eval_load_model gives such a model. The results do not
 * depend on the batch: losses agree to float rounding (a mean over tokens, however the rows
 * are grouped), decoded text exactly (pm_generator_feed_rows). The first forward pass of each
 * evaluation takes one row alone, as a router may set its state on the first batch it routes
 * (softmoe calibrates tau on an untrained model).
 */
#ifndef PM_EVAL_EVAL_H
#define PM_EVAL_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "data/chat_format.h"
#include "tokenizer/tokenizer.h"
#include "probmoe.h"

/* Rows per forward pass when the caller does not say (probmoe eval --eval-batch). */
#define EVAL_DEFAULT_BATCH 8
/* The most rows per forward pass --eval-batch takes. */
#define EVAL_MAX_BATCH 1024

/*
 * Loads a model directory (checkpoint_load_model) and its tokenizer: tokenizer.json or
 * encoder.json + vocab.bpe in the directory, else the byte-level tokenizer. The model gets
 * buffers for *max_batch (>= 1) sequences of max_seq tokens; max_seq <= 0 means
 * max_position_embeddings (what eval_gsm8k may need). Rows that do not fit this machine's
 * memory (pm_model_memory_check) are halved until they do: *max_batch gets the rows the model
 * has. A missing directory, a tokenizer larger than the model's vocabulary, or a bad
 * checkpoint is an error naming the directory. On success free the results with
 * pm_model_free and tokenizer_free (the byte tokenizer is static: freeing it does nothing).
 * 0 or a negative pm_status; *model and *tok are NULL on failure.
 */
int eval_load_model(const char *dir, int max_seq, int *max_batch, bool allow_unknown, pm_model **model,
                    tokenizer **tok);

typedef struct {
    double loss;       /* mean cross-entropy per target token, nats (auxiliary terms excluded) */
    double perplexity; /* exp(loss) */
    int batches;       /* rows scored */
    int seq;           /* tokens per row */
    long tokens;       /* target tokens scored: batches × seq */
} eval_loss_result;

/*
 * Validation loss on shard_dir/val.bin. The shard must have been made with tok (its vocab hash
 * must match: a shard of another tokenizer is an error) and tok's ids must fit the model.
 * Rows are the shard's consecutive windows of seq+1 tokens (loader_shard_rows: row k holds
 * tokens kS .. kS+S), in file order, `batch` rows per forward pass. The first `batches` rows
 * are scored (batches <= 0 or more than there are: all of them). The model needs
 * max_seq >= seq and max_batch >= batch. Each row's targets are all valid, so the mean over
 * rows is the mean over tokens. 0 or a negative pm_status (no val.bin, a shard shorter than
 * seq+1 tokens, ...).
 */
int eval_shards(pm_model *model, const tokenizer *tok, const char *shard_dir, int batches, int seq, int batch,
                eval_loss_result *result);

typedef struct {
    int examples;            /* evaluated */
    int correct;             /* exact matches */
    double exact_match;      /* correct / examples, in [0, 1] */
    double answer_loss;      /* mean cross-entropy over all answer tokens of all examples */
    double answer_perplexity;/* exp(answer_loss) */
    long answer_tokens;      /* answer tokens scored (eos included when the tokenizer has one) */
    int truncated;           /* examples cut from the left to fit the context (loss or prompt) */
    double seconds;          /* wall time */
} eval_gsm8k_result;

/*
 * GSM8K on the JSONL file jsonl (gsm8k.h format; malformed lines are an error), its first
 * `limit` examples (limit < 0: all; limit 0 is an error, as is a file without examples):
 *  - answer loss: the example tokenized as for fine-tuning (prompt, then " answer" + eos with
 *    the loss mask on the completion, sft.h), cross-entropy on the masked targets; `batch`
 *    examples per forward pass, padded at the end to the longest. An example longer than the
 *    context keeps its last max_position_embeddings + 1 tokens (as padded fine-tuning rows
 *    do). The model needs max_seq >= the longest example, capped at max_position_embeddings,
 *    and max_batch >= batch.
 *  - exact match: the prompt's tokens are fed to a key/value-cache generator of `batch` rows,
 *    then up to max_new tokens are chosen greedily, stopping at the end-of-text token (not
 *    part of the text); a row that stops takes the next prompt, and every row decodes as its
 *    prompt would alone. A prompt that leaves fewer than max_new positions in the context is
 *    cut from the left (counted in truncated); max_new must be below max_position_embeddings.
 *    With max_new 0 nothing is decoded. eval_score_answer compares the output's last number
 *    with the reference answer.
 * out_jsonl (NULL: none) gets one JSON object per example, in the file's order:
 *   {"index": i (0-based, in the file's order), "line": file line, "prompt", "generated",
 *    "predicted": "18" or null, "gold": "18", "correct": bool, "answer_loss", "answer_tokens"}
 * Text that is not valid UTF-8 (a byte-level model may stop mid-character) is written with
 * U+FFFD in place of the bad bytes. progress (NULL: silent) gets "done/total, accuracy,
 * examples/s", rewritten in place on a terminal, else a line every 5% of the examples.
 * 0 or a negative pm_status; result holds what was done so far on failure.
 */
int eval_gsm8k(pm_model *model, const tokenizer *tok, const char *jsonl, chat_format format, int limit, int max_new,
               int batch, const char *out_jsonl, FILE *progress, eval_gsm8k_result *result);

/*
 * The last number in text: an optional '-', digits with optional thousands commas, and an
 * optional decimal part ("$1,234.50." gives "1234.50"). Written to out without commas;
 * false when text holds no digit or the number does not fit in capacity bytes.
 */
bool eval_last_number(const char *text, char *out, size_t capacity);

/* Whether generated text answers correctly: its last number matches reference (a final
 * answer as gsm8k_extract_answer gives it) under gsm8k_answers_match. predicted (may be NULL)
 * gets the number, or "" when there is none. */
bool eval_score_answer(const char *generated, const char *reference, char *predicted, size_t capacity);

/*
 * Routing analytics (analytics.h) over the first `batches` validation windows of seq tokens
 * of shard_dir, `batch` per forward pass, in inference mode, written to out_dir (routing_layers.csv,
 * routing_frequency.csv, routing.json) with plots in out_dir/plots (skipped with a warning
 * without gnuplot). groups > 0: the groups a token's experts span are counted over that many
 * equal groups (it must divide the experts), whatever the router; 0: the router's own groups.
 * *out (may be NULL) receives the analytics; free with analytics_free.
 */
#include "eval/analytics.h"
int eval_routing(pm_model *model, const tokenizer *tok, const char *shard_dir, int batches, int seq, int batch,
                 int groups, const char *out_dir, const char *label, analytics **out);

#endif
