/*
 * Where the trainer's batches come from: windows of a token stream (a text file or shards)
 * for pre-training, or GSM8K rows with the loss on answer tokens only for fine-tuning.
 * Training batch `index` is a function of (seed, index) alone, so a resumed run sees exactly
 * the batches it would have seen; validation batches are fixed.
 */
#ifndef PM_TRAIN_BATCHES_H
#define PM_TRAIN_BATCHES_H

#include <stdint.h>

#include "data/gsm8k.h"
#include "data/sft.h"
#include "data/text_data.h"

typedef struct {
    text_data text;          /* pre-training */
    bool supervised;         /* GSM8K fine-tuning instead */
    gsm8k_set gsm8k;
    sft_tokens sft;
    sft_rows rows;
    size_t train_rows;       /* rows [0, train_rows) train; the rest validate */
    double unigram_loss;     /* the baseline for text; NaN for supervised data */
} batch_source;

/* Text file or shard directory (by what path is). */
int batches_open_text(batch_source *source, const char *path, const tokenizer *tok, double val_fraction,
                      int seq);
/* GSM8K JSONL (train split) in a chat format: padded rows of seq tokens; val_fraction of
 * examples held out. */
int batches_open_gsm8k(batch_source *source, const char *path, const tokenizer *tok, chat_format format,
                       double val_fraction, int seq);
void batches_close(batch_source *source);

void batches_train(const batch_source *source, uint64_t seed, uint64_t index, int B, int S, int32_t *inputs,
                   int32_t *targets);
void batches_val(const batch_source *source, int index, int B, int S, int32_t *inputs, int32_t *targets);

#endif
