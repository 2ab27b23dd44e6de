/* Validation loss and perplexity on a token shard, with inference-mode routing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "data/loader.h"
#include "data/shards.h"
#include "eval/eval.h"
#include "eval/eval_internal.h"

int eval_shards(pm_model *model, const tokenizer *tok, const char *shard_dir, int batches, int seq, int batch,
                eval_loss_result *result) {
    memset(result, 0, sizeof *result);
    const pm_model_config *cfg = pm_model_get_config(model);
    if (seq < 1 || seq > cfg->max_position_embeddings)
        return pm_fail(PM_ERR_ARG, "sequence length %d: the model takes 1 to %d tokens (max_position_embeddings)",
                       seq, cfg->max_position_embeddings);
    if (tok->vocab_size > cfg->vocab_size)
        return pm_fail(PM_ERR_ARG, "the tokenizer (%s) has %d tokens but the model only %d", tok->name,
                       tok->vocab_size, cfg->vocab_size);
    int status = eval_check_batch(model, batch, seq);
    if (status < 0) return status;
    char path[4096];
    snprintf(path, sizeof path, "%s/val.bin", shard_dir);
    shard_header header;
    if (shard_read_header(path, &header) < 0) {
        char why[512]; /* pm_fail writes the buffer pm_last_error returns: copy it first */
        snprintf(why, sizeof why, "%s", pm_last_error());
        return pm_fail(PM_ERR_ARG, "no validation shard in %s: %s (make one with probmoe data prepare)", shard_dir,
                       why);
    }
    token_shard shard;
    status = shard_read(path, tok->vocab_hash, &shard); /* fails on another tokenizer's shard */
    if (status < 0) return status;
    loader_rows rows = loader_shard_rows(&shard, seq);
    if (rows.row_count == 0) {
        shard_free(&shard);
        return pm_fail(PM_ERR_ARG, "%s holds %zu tokens, fewer than one row of --seq %d + 1", path, shard.count,
                       seq);
    }
    const size_t count = batches <= 0 || (size_t)batches > rows.row_count ? rows.row_count : (size_t)batches;
    const size_t window = (size_t)batch * seq;
    int32_t *inputs = malloc(sizeof(int32_t) * window), *targets = malloc(sizeof(int32_t) * window);
    if (!inputs || !targets) status = pm_fail(PM_ERR_NOMEM, "evaluation: out of memory");
    double total = 0.0; /* cross-entropy summed over rows: each row's seq targets are all valid */
    for (size_t r = 0; status == 0 && r < count;) {
        const int n = eval_next_rows(r, count, batch);
        for (int i = 0; i < n; i++)
            rows.fill(rows.source, seq, r + i, inputs + (size_t)i * seq, targets + (size_t)i * seq);
        status = pm_model_forward(model, inputs, targets, n, seq, false, 0, 0, NULL);
        float ce;
        pm_model_last_losses(model, &ce, NULL); /* cross-entropy alone: aux terms are not the data's loss */
        total += (double)ce * n;                 /* the batch's mean over its n·seq tokens */
        r += (size_t)n;
    }
    free(inputs);
    free(targets);
    shard_free(&shard);
    if (status < 0) return status;
    result->batches = (int)count;
    result->seq = seq;
    result->tokens = (long)count * seq;
    result->loss = total / (double)count;
    result->perplexity = exp(result->loss);
    return PM_OK;
}
