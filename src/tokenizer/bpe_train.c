#define _POSIX_C_SOURCE 200809L /* clock_gettime, access */
/* bpe_train: checks the request, then counts the corpus's pieces, learns the merges and writes
 * the tokenizer.json (see bpe_train.h). */
#include "tokenizer/bpe_train.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "tokenizer/bpe_train_internal.h"

/* Corpus read in chunks of this size (more only to reach a place where a piece surely ends). */
enum { CHUNK_BYTES = 1 << 22 };

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* So that a long run does not end in "cannot write": the output's folder must take new files. */
static int check_output(const char *path) {
    if (!path || !*path) return pm_fail(PM_ERR_ARG, "tokenizer training needs an output file");
    struct stat info;
    if (stat(path, &info) == 0 && S_ISDIR(info.st_mode))
        return pm_fail(PM_ERR_ARG, "output '%s' is a directory; give a file name such as %s/tokenizer.json", path,
                       path);
    const char *slash = strrchr(path, '/');
    char *folder = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!folder) return pm_fail(PM_ERR_NOMEM, "out of memory");
    int status = PM_OK;
    if (access(folder, W_OK | X_OK) != 0)
        status = pm_fail(PM_ERR_ARG, "cannot write the output '%s' into '%s': %s", path, folder, strerror(errno));
    free(folder);
    return status;
}

int bpe_train_with_progress(const char *const *files, int file_count, int vocab_size, const char *out_json,
                            bpe_train_stats *stats, bpe_train_progress progress, void *user) {
    const double started = now_seconds();
    bpe_train_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    if (vocab_size < BPE_TRAIN_MIN_VOCAB || vocab_size > BPE_TRAIN_MAX_VOCAB)
        return pm_fail(PM_ERR_ARG, "vocabulary size %d is out of range: it must be %d to %d (256 bytes, the "
                       "merges and the end-of-text token)", vocab_size, BPE_TRAIN_MIN_VOCAB, BPE_TRAIN_MAX_VOCAB);
    if (file_count <= 0 || !files) return pm_fail(PM_ERR_ARG, "tokenizer training needs at least one corpus file");
    int status = check_output(out_json);
    if (status) return status;

    bpe_train_pieces pieces;
    status = bpe_train_pieces_init(&pieces);
    if (status == PM_OK)
        status = bpe_train_count_corpus(files, file_count, CHUNK_BYTES, &pieces, &stats->bytes, progress, user);
    stats->pieces = pieces.total;
    stats->distinct_pieces = (int64_t)pieces.size;
    if (status == PM_OK && pieces.total == 0) status = pm_fail(PM_ERR_ARG, "the corpus is empty");
    bpe_train_vocab vocab = {0};
    if (status == PM_OK) status = bpe_train_learn(&pieces, vocab_size - BPE_TRAIN_MIN_VOCAB, &vocab, progress, user);
    bpe_train_pieces_free(&pieces);
    if (status == PM_OK) status = bpe_train_write_json(&vocab, out_json);
    stats->merges = vocab.merge_count;
    stats->vocab_size = status == PM_OK ? vocab.token_count + 1 : 0;
    bpe_train_vocab_free(&vocab);
    stats->seconds = now_seconds() - started;
    return status;
}

int bpe_train(const char *const *files, int file_count, int vocab_size, const char *out_json,
              bpe_train_stats *stats) {
    return bpe_train_with_progress(files, file_count, vocab_size, out_json, stats, NULL, NULL);
}
