/*
 * Preparing text corpora as token shards (what `probmoe data prepare` does).
 *
 * A corpus is a list of sources (e.g. tinyshakespeare, moby-dick), each a list of documents
 * (text files, UTF-8). Each document is tokenized and followed by the tokenizer's eos token
 * when it has one, so the model sees where documents end. The last val_fraction of each
 * source's tokens is held out (taken from its end, so validation text is text the model never
 * saw, not a random sample of windows that overlap training ones). out_dir receives:
 *   train.bin  the training parts of all sources, in the order given (shards.h format)
 *   val.bin    the held-out parts, same order (may hold 0 tokens when val_fraction is 0)
 *   data.json  the sources (files, documents, bytes, token counts), the tokenizer (name,
 *              vocab_size, vocab_hash as 16 hex digits, eos_token) and val_fraction
 */
#ifndef PM_DATA_CORPUS_H
#define PM_DATA_CORPUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

typedef struct {
    const char *name;         /* recorded in data.json */
    const char *const *files; /* the documents, in order */
    int file_count;
} corpus_source;

typedef struct {
    const tokenizer *tok;
    const char *tokenizer_path; /* recorded in data.json; NULL for a built-in tokenizer */
    double val_fraction;        /* in [0, 1) */
    bool overwrite;             /* replace train.bin, val.bin, data.json already in out_dir */
} corpus_options;

typedef struct {
    uint64_t bytes;
    size_t documents, train_tokens, val_tokens;
} corpus_stats;

/*
 * Tokenizes every source and writes out_dir/{train.bin,val.bin,data.json}. Everything is
 * encoded before anything is written, and the files are written into a staging directory
 * inside out_dir and renamed into place only when all three are complete: on any error
 * (a missing or empty file, invalid UTF-8 — the message names the file, byte offset and
 * line —, a tokenizer error, a full disk) out_dir is left as it was (and is not created).
 * stats (source_count entries, or NULL) receives per-source counts. 0 or a negative pm_status.
 */
int corpus_prepare(const char *out_dir, const corpus_source *sources, int source_count,
                   const corpus_options *options, corpus_stats *stats);

/* Reads one document and tokenizes it (without eos). Checks that the file exists, is not
 * empty and is UTF-8. *tokens is malloc'ed. 0 or a negative pm_status naming the file. */
int corpus_tokenize_file(const char *path, const tokenizer *tok, int32_t **tokens, size_t *count,
                         uint64_t *bytes);

#endif
