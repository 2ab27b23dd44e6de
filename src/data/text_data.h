/* A text corpus as one token stream, split into training and validation parts. */
#ifndef PM_DATA_TEXT_DATA_H
#define PM_DATA_TEXT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

typedef struct {
    int32_t *tokens;
    size_t count;       /* all tokens; training is [0, split), validation [split, count) */
    size_t split;
} text_data;

/* Reads and tokenizes a file; the last val_fraction of the tokens is held out. Errors (a
 * missing or empty file, too little text for one sequence) name the file and what to do. */
int text_data_load(text_data *data, const char *path, const tokenizer *tok, double val_fraction,
                   int min_tokens);
/* Reads DIR/train.bin and DIR/val.bin (made by `probmoe data prepare` with the same
 * tokenizer: the shards' vocabulary hash must match tok's, and their declared vocabulary
 * size must not exceed tok's). */
int text_data_load_shards(text_data *data, const char *dir, const tokenizer *tok, int min_tokens);
void text_data_free(text_data *data);

/* Cross-entropy (nats/token) of the validation tokens under the training tokens' unigram
 * distribution (add-one smoothing): the baseline a language model must beat. NaN if a token
 * lies outside [0, vocab_size). */
double text_data_unigram_loss(const text_data *data, int vocab_size);

/*
 * Fills inputs and targets (B, S) with random windows of the training part (or fixed
 * consecutive windows of the validation part): targets are the inputs shifted by one.
 * Training windows come from generator (seed, stream = batch_index) so data order is fixed
 * by the seed.
 */
void text_data_train_batch(const text_data *data, uint64_t seed, uint64_t batch_index, int B, int S,
                           int32_t *inputs, int32_t *targets);
void text_data_val_batch(const text_data *data, int batch_index, int B, int S, int32_t *inputs,
                         int32_t *targets);

#endif
