#include "data/text_data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "data/shards.h"
#include "probmoe.h"

int text_data_load(text_data *data, const char *path, const tokenizer *tok, double val_fraction,
                   int min_tokens) {
    memset(data, 0, sizeof *data);
    FILE *file = fopen(path, "rb");
    if (!file) return pm_fail(PM_ERR_ARG, "cannot open the data file '%s'; check the path", path);
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    if (size <= 0) {
        fclose(file);
        return pm_fail(PM_ERR_ARG, "the data file '%s' is empty; give a text file to train on", path);
    }
    char *text = malloc((size_t)size);
    if (!text) {
        fclose(file);
        return pm_fail(PM_ERR_NOMEM, "out of memory reading '%s' (%ld bytes)", path, size);
    }
    size_t got = fread(text, 1, (size_t)size, file);
    fclose(file);
    int64_t needed = tok->encode(tok, text, got, NULL, 0);
    if (needed < 0) {
        char reason[400]; /* pm_fail formats into the buffer pm_last_error() returns */
        snprintf(reason, sizeof reason, "%s", pm_last_error());
        free(text);
        return pm_fail(PM_ERR_ARG, "%s: %s", path, reason);
    }
    data->tokens = malloc(sizeof(int32_t) * (needed ? (size_t)needed : 1));
    if (!data->tokens) {
        free(text);
        return pm_fail(PM_ERR_NOMEM, "out of memory tokenizing '%s'", path);
    }
    data->count = (size_t)tok->encode(tok, text, got, data->tokens, (size_t)needed);
    free(text);
    data->split = (size_t)((1.0 - val_fraction) * (double)data->count);
    if (data->split < (size_t)min_tokens + 1 || data->count - data->split < (size_t)min_tokens + 1) {
        size_t count = data->count;
        text_data_free(data);
        return pm_fail(PM_ERR_ARG, "'%s' has %zu tokens: too few for training and validation sequences of %d "
                       "tokens; give more text or a shorter --seq", path, count, min_tokens);
    }
    return PM_OK;
}

int text_data_load_shards(text_data *data, const char *dir, const tokenizer *tok, int min_tokens) {
    memset(data, 0, sizeof *data);
    char path[4096];
    token_shard train, val;
    snprintf(path, sizeof path, "%s/train.bin", dir);
    int status = shard_read(path, tok->vocab_hash, &train);
    if (status < 0) return status;
    snprintf(path, sizeof path, "%s/val.bin", dir);
    status = shard_read(path, tok->vocab_hash, &val);
    if (status < 0) {
        shard_free(&train);
        return status;
    }
    const uint32_t largest = train.header.vocab_size > val.header.vocab_size ? train.header.vocab_size
                                                                             : val.header.vocab_size;
    if (tok->vocab_size < 0 || largest > (uint32_t)tok->vocab_size) {
        /* the hash matched, yet the header claims more tokens than the tokenizer has: a damaged
         * or hand-made shard; its ids could index past every per-token table */
        status = pm_fail(PM_ERR_ARG, "%s: the shards declare a vocabulary of %u tokens but the %s tokenizer has %d; "
                         "prepare the shards again with this tokenizer (probmoe data prepare)", dir, largest,
                         tok->name, tok->vocab_size);
    } else if (train.count < (size_t)min_tokens + 1 || val.count < (size_t)min_tokens + 1) {
        status = pm_fail(PM_ERR_ARG, "%s: %zu training and %zu validation tokens: too few for sequences of %d "
                         "tokens; prepare more data or use a shorter --seq", dir, train.count, val.count, min_tokens);
    } else {
        data->tokens = malloc(sizeof(int32_t) * (train.count + val.count));
        if (!data->tokens) {
            status = pm_fail(PM_ERR_NOMEM, "out of memory for the shards of %s", dir);
        } else {
            memcpy(data->tokens, train.tokens, sizeof(int32_t) * train.count);
            memcpy(data->tokens + train.count, val.tokens, sizeof(int32_t) * val.count);
            data->count = train.count + val.count;
            data->split = train.count;
        }
    }
    shard_free(&train);
    shard_free(&val);
    return status;
}

void text_data_free(text_data *data) {
    free(data->tokens);
    memset(data, 0, sizeof *data);
}

double text_data_unigram_loss(const text_data *data, int vocab_size) {
    if (vocab_size < 1) return NAN;
    for (size_t i = 0; i < data->count; i++)
        if (data->tokens[i] < 0 || data->tokens[i] >= vocab_size) return NAN; /* not this vocabulary's ids */
    double *counts = calloc((size_t)vocab_size, sizeof(double));
    if (!counts) return NAN;
    for (size_t i = 0; i < data->split; i++) counts[data->tokens[i]] += 1.0;
    const double total = (double)data->split + vocab_size;
    double loss = 0.0;
    for (size_t i = data->split; i < data->count; i++) loss -= log((counts[data->tokens[i]] + 1.0) / total);
    free(counts);
    return loss / (double)(data->count - data->split);
}

static void window(const int32_t *tokens, size_t start, int S, int32_t *inputs, int32_t *targets) {
    memcpy(inputs, tokens + start, sizeof(int32_t) * S);
    memcpy(targets, tokens + start + 1, sizeof(int32_t) * S);
}

void text_data_train_batch(const text_data *data, uint64_t seed, uint64_t batch_index, int B, int S,
                           int32_t *inputs, int32_t *targets) {
    pm_rng base;
    pm_rng_init(&base, seed, 0xDA7A000000000000ull + batch_index);
    const size_t starts = data->split - (size_t)S; /* window + next token inside training */
    for (int b = 0; b < B; b++) {
        pm_rng rng;
        pm_rng_substream(&base, (uint32_t)b, &rng);
        size_t start = (size_t)(pm_rng_uniform(&rng) * (double)starts);
        if (start >= starts) start = starts - 1;
        window(data->tokens, start, S, inputs + (size_t)b * S, targets + (size_t)b * S);
    }
}

void text_data_val_batch(const text_data *data, int batch_index, int B, int S, int32_t *inputs,
                         int32_t *targets) {
    const size_t span = data->count - data->split - (size_t)S; /* ≥ 1 by text_data_load */
    for (int b = 0; b < B; b++) {
        size_t start = data->split + ((size_t)batch_index * B + b) * (size_t)S % span;
        window(data->tokens, start, S, inputs + (size_t)b * S, targets + (size_t)b * S);
    }
}
