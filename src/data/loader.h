/*
 * Batches of training rows in a reproducible, resumable, rank-partitioned order.
 *
 * A row source is anything that can fill row r (of row_count) as inputs and targets of
 * seq_len tokens: a token shard (loader_shard_rows) or supervised rows (loader_sft_rows).
 *
 * Order: epoch e visits all rows in a permutation drawn by Fisher-Yates from pm_rng(seed,
 * LOADER_STREAM + e) (or in file order when shuffle is off). The epochs' permutations are
 * laid end to end as one global stream of rows; each batch step consumes the next
 * world × batch_size of them and rank r takes the r-th block of batch_size. So:
 *   - every rank is always at the same position (epoch, index): a position saved by any rank
 *     and restored (loader_seek) on all of them replays exactly the batches that would have
 *     come, even if the number of batches per epoch is not whole;
 *   - within an epoch every row goes to exactly one rank, once; a batch that straddles two
 *     epochs ends one permutation and starts the next.
 */
#ifndef PM_DATA_LOADER_H
#define PM_DATA_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/sft.h"
#include "data/shards.h"

typedef struct {
    size_t row_count;
    int seq_len;
    /* fills inputs and targets (seq_len each) with row `row` */
    void (*fill)(const void *source, int seq_len, size_t row, int32_t *inputs, int32_t *targets);
    const void *source; /* borrowed: must outlive the loader */
} loader_rows;

/* Rows of a shard: row k is tokens kS .. kS+S (inputs the first S, targets the last S), so
 * consecutive rows overlap by one token and every token but the first is a target once;
 * the at most S-1 tokens after the last whole row are not used. row_count is 0 when the
 * shard has fewer than S+1 tokens. */
loader_rows loader_shard_rows(const token_shard *shard, int seq_len);
/* Rows of supervised examples (sft.h: packed or padded). */
loader_rows loader_sft_rows(const sft_rows *rows);

typedef struct {
    int batch_size;   /* rows per rank per batch, B */
    uint64_t seed;
    bool shuffle;     /* false: every epoch in row order (validation) */
    int rank, world;  /* 0 <= rank < world; world 1 without data parallelism */
} loader_options;

/* Where the global row stream stands: the next batch starts at row `index` of epoch `epoch`'s
 * order (index < row_count). Save both numbers to resume. */
typedef struct {
    uint64_t epoch, index;
} loader_position;

typedef struct {
    loader_rows rows;
    loader_options options;
    loader_position position;
    size_t *order;          /* the permutation of order_epoch, when has_order */
    uint64_t order_epoch;
    bool has_order;
} data_loader;

/* 0 or a negative pm_status (no rows, bad batch size, rank or world). */
int loader_init(data_loader *loader, loader_rows rows, const loader_options *options);
void loader_free(data_loader *loader);

/* Fills this rank's next batch, inputs and targets (B, S), and advances the position by
 * world × B rows. 0 or a negative pm_status (out of memory). */
int loader_next(data_loader *loader, int32_t *inputs, int32_t *targets);

loader_position loader_tell(const data_loader *loader);
/* 0, or a negative pm_status when index is not below row_count (a position from other data). */
int loader_seek(data_loader *loader, loader_position position);

/* The row at `slot` of epoch's order (slot < row_count): which row a given step shows. */
int loader_row_at(data_loader *loader, uint64_t epoch, size_t slot, size_t *row);

#endif
