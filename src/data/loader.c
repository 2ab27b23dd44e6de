#include "data/loader.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "probmoe.h"

/* pm_rng stream of epoch e's permutation: LOADER_STREAM + e (apart from other users' streams). */
#define LOADER_STREAM 0x5E0D000000000000ull

static void fill_shard_row(const void *source, int seq_len, size_t row, int32_t *inputs, int32_t *targets) {
    const int32_t *tokens = ((const token_shard *)source)->tokens + row * (size_t)seq_len;
    memcpy(inputs, tokens, sizeof(int32_t) * (size_t)seq_len);
    memcpy(targets, tokens + 1, sizeof(int32_t) * (size_t)seq_len);
}

loader_rows loader_shard_rows(const token_shard *shard, int seq_len) {
    loader_rows rows = {0, seq_len, fill_shard_row, shard};
    if (seq_len >= 1 && shard->count > (size_t)seq_len) rows.row_count = (shard->count - 1) / (size_t)seq_len;
    return rows;
}

static void fill_sft_row(const void *source, int seq_len, size_t row, int32_t *inputs, int32_t *targets) {
    (void)seq_len; /* the rows know their own */
    sft_rows_fill(source, row, inputs, targets);
}

loader_rows loader_sft_rows(const sft_rows *rows) {
    loader_rows out = {rows->row_count, rows->seq_len, fill_sft_row, rows};
    return out;
}

int loader_init(data_loader *loader, loader_rows rows, const loader_options *options) {
    memset(loader, 0, sizeof *loader);
    if (rows.row_count == 0 || rows.seq_len < 1)
        return pm_fail(PM_ERR_ARG, "the data holds no whole sequence of %d tokens (+1 for the last "
                       "target); give more data or a shorter sequence length", rows.seq_len);
    if (options->batch_size < 1)
        return pm_fail(PM_ERR_ARG, "the batch size is %d; it must be at least 1", options->batch_size);
    if (options->world < 1 || options->rank < 0 || options->rank >= options->world)
        return pm_fail(PM_ERR_ARG, "rank %d of %d: need 0 <= rank < world", options->rank, options->world);
    loader->rows = rows;
    loader->options = *options;
    return PM_OK;
}

void loader_free(data_loader *loader) {
    free(loader->order);
    memset(loader, 0, sizeof *loader);
}

/* Uniform in [0, bound) without modulo bias: rejects the top partial range of 64-bit draws. */
static uint64_t uniform_below(pm_rng *rng, uint64_t bound) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    for (;;) {
        uint64_t draw = (uint64_t)pm_rng_u32(rng) << 32 | pm_rng_u32(rng);
        if (draw < limit) return draw % bound;
    }
}

/* Makes loader->order epoch's permutation. */
static int prepare_order(data_loader *loader, uint64_t epoch) {
    if (loader->has_order && loader->order_epoch == epoch) return PM_OK;
    const size_t n = loader->rows.row_count;
    if (!loader->order) {
        loader->order = malloc(sizeof(size_t) * n);
        if (!loader->order) return pm_fail(PM_ERR_NOMEM, "out of memory for the order of %zu rows", n);
    }
    for (size_t i = 0; i < n; i++) loader->order[i] = i;
    if (loader->options.shuffle) {
        pm_rng rng;
        pm_rng_init(&rng, loader->options.seed, LOADER_STREAM + epoch);
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = (size_t)uniform_below(&rng, (uint64_t)i + 1);
            size_t swap = loader->order[i];
            loader->order[i] = loader->order[j];
            loader->order[j] = swap;
        }
    }
    loader->order_epoch = epoch;
    loader->has_order = true;
    return PM_OK;
}

int loader_row_at(data_loader *loader, uint64_t epoch, size_t slot, size_t *row) {
    if (slot >= loader->rows.row_count)
        return pm_fail(PM_ERR_ARG, "slot %zu of an epoch of %zu rows", slot, loader->rows.row_count);
    int status = prepare_order(loader, epoch);
    if (status < 0) return status;
    *row = loader->order[slot];
    return PM_OK;
}

/* The position `steps` rows after p. */
static loader_position advance(loader_position p, uint64_t steps, size_t row_count) {
    uint64_t index = p.index + steps;
    p.epoch += index / row_count;
    p.index = index % row_count;
    return p;
}

int loader_next(data_loader *loader, int32_t *inputs, int32_t *targets) {
    const int B = loader->options.batch_size, S = loader->rows.seq_len;
    const size_t n = loader->rows.row_count;
    loader_position at = advance(loader->position, (uint64_t)loader->options.rank * (uint64_t)B, n);
    for (int b = 0; b < B; b++) {
        size_t row;
        int status = loader_row_at(loader, at.epoch, (size_t)at.index, &row);
        if (status < 0) return status;
        loader->rows.fill(loader->rows.source, S, row, inputs + (size_t)b * (size_t)S, targets + (size_t)b * (size_t)S);
        at = advance(at, 1, n);
    }
    loader->position = advance(loader->position, (uint64_t)loader->options.world * (uint64_t)B, n);
    return PM_OK;
}

loader_position loader_tell(const data_loader *loader) { return loader->position; }

int loader_seek(data_loader *loader, loader_position position) {
    if (position.index >= loader->rows.row_count)
        return pm_fail(PM_ERR_ARG, "the saved data position (epoch %llu, row %llu) is past the %zu rows of "
                       "an epoch: it was saved with other data or another sequence length",
                       (unsigned long long)position.epoch, (unsigned long long)position.index,
                       loader->rows.row_count);
    loader->position = position;
    return PM_OK;
}
