#include "train/batches.h"

#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "probmoe.h"

int batches_open_text(batch_source *source, const char *path, const tokenizer *tok, double val_fraction,
                      int seq) {
    memset(source, 0, sizeof *source);
    struct stat info;
    int status = stat(path, &info) == 0 && S_ISDIR(info.st_mode)
                     ? text_data_load_shards(&source->text, path, tok, seq)
                     : text_data_load(&source->text, path, tok, val_fraction, seq);
    if (status == 0) source->unigram_loss = text_data_unigram_loss(&source->text, tok->vocab_size);
    return status;
}

int batches_open_gsm8k(batch_source *source, const char *path, const tokenizer *tok, chat_format format,
                       double val_fraction, int seq) {
    memset(source, 0, sizeof *source);
    source->supervised = true;
    source->unigram_loss = NAN;
    int status = chat_format_check(format, tok);
    if (status == 0) status = gsm8k_load(path, true, &source->gsm8k);
    if (status == 0 && format != CHAT_PLAIN) status = gsm8k_set_chat_format(&source->gsm8k, format);
    if (status == 0) status = gsm8k_tokenize(&source->gsm8k, tok, &source->sft);
    if (status == 0) status = sft_rows_init(&source->rows, &source->sft, SFT_PAD, seq);
    if (status == 0) {
        source->train_rows = (size_t)((1.0 - val_fraction) * (double)source->rows.row_count);
        if (source->train_rows < 1 || source->train_rows >= source->rows.row_count)
            status = pm_fail(PM_ERR_ARG, "%s: %zu examples fit in %d tokens: too few to hold some out for "
                             "validation", path, source->rows.row_count, seq);
    }
    if (status < 0) batches_close(source);
    return status;
}

void batches_close(batch_source *source) {
    if (source->supervised) {
        sft_rows_free(&source->rows);
        sft_tokens_free(&source->sft);
        gsm8k_free(&source->gsm8k);
    } else {
        text_data_free(&source->text);
    }
    memset(source, 0, sizeof *source);
}

void batches_train(const batch_source *source, uint64_t seed, uint64_t index, int B, int S, int32_t *inputs,
                   int32_t *targets) {
    if (!source->supervised) {
        text_data_train_batch(&source->text, seed, index, B, S, inputs, targets);
        return;
    }
    pm_rng base;
    pm_rng_init(&base, seed, 0x5F70000000000000ull + index);
    for (int b = 0; b < B; b++) {
        pm_rng rng;
        pm_rng_substream(&base, (uint32_t)b, &rng);
        size_t row = (size_t)(pm_rng_uniform(&rng) * (double)source->train_rows);
        if (row >= source->train_rows) row = source->train_rows - 1;
        sft_rows_fill(&source->rows, row, inputs + (size_t)b * S, targets + (size_t)b * S);
    }
}

void batches_val(const batch_source *source, int index, int B, int S, int32_t *inputs, int32_t *targets) {
    if (!source->supervised) {
        text_data_val_batch(&source->text, index, B, S, inputs, targets);
        return;
    }
    const size_t held_out = source->rows.row_count - source->train_rows;
    for (int b = 0; b < B; b++) {
        size_t row = source->train_rows + ((size_t)index * B + b) % held_out;
        sft_rows_fill(&source->rows, row, inputs + (size_t)b * S, targets + (size_t)b * S);
    }
}
