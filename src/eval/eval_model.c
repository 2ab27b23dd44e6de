/* Loading a model directory for evaluation: the model sized for the batches to score, and
 * the tokenizer saved with it (else bytes), checked against each other once here. */
#define _POSIX_C_SOURCE 200809L /* stat */
#include <stdio.h>
#include <sys/stat.h>

#include "core/error.h"
#include "eval/eval.h"
#include "io/checkpoint.h"

static bool file_exists(const char *dir, const char *name) {
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int eval_load_model(const char *dir, int max_seq, int *max_batch, bool allow_unknown, pm_model **model,
                    tokenizer **tok) {
    *model = NULL;
    *tok = NULL;
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return pm_fail(PM_ERR_ARG, "model directory %s does not exist (give a directory written by probmoe train)",
                       dir);
    /* the context length decides the buffers, so the config is read before the weights */
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    pm_model_config cfg;
    int status = checkpoint_check_link(dir, "config.json");
    if (status == 0) status = pm_model_config_load(&cfg, path);
    if (status < 0) return status;
    if (max_seq <= 0 || max_seq > cfg.max_position_embeddings) max_seq = cfg.max_position_embeddings;
    tokenizer *loaded = NULL;
    if (file_exists(dir, "tokenizer.json") || file_exists(dir, "encoder.json")) {
        status = tokenizer_load(dir, &loaded);
        if (status < 0) return status;
    }
    const tokenizer *use = loaded ? loaded : tokenizer_bytes();
    if (use->vocab_size > cfg.vocab_size) {
        tokenizer_free(loaded);
        return pm_fail(PM_ERR_ARG, "%s: the tokenizer (%s) has %d tokens but the model only %d", dir, use->name,
                       use->vocab_size, cfg.vocab_size);
    }
    /* more rows only save time: fewer that fit beat a refusal (the results are the same) */
    int rows = *max_batch > 0 ? *max_batch : 1;
    while (rows > 1 && pm_model_memory_check(&cfg, rows, max_seq, false) < 0) rows /= 2;
    *max_batch = rows;
    *model = checkpoint_load_model(dir, rows, max_seq, allow_unknown);
    if (!*model) {
        tokenizer_free(loaded);
        return PM_ERR_ARG;
    }
    /* the byte tokenizer is static and tokenizer_free ignores it, so callers free either */
    *tok = loaded ? loaded : (tokenizer *)use;
    return PM_OK;
}
