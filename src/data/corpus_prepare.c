#define _POSIX_C_SOURCE 200809L /* mkdtemp, rmdir, unlink */
/* corpus_prepare: tokenizes the sources, splits each into training and validation parts and
 * writes the shards and data.json through a staging directory (see corpus.h). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "data/corpus.h"
#include "data/shards.h"
#include "core/atomic_file.h"
#include "core/fs.h"

static const char *const output_names[] = {"train.bin", "val.bin", "data.json"};
enum { OUTPUT_COUNT = 3, PATH_BYTES = 4096 };

typedef struct {
    int32_t *data;
    size_t count, capacity;
} token_list;

static int append(token_list *list, const int32_t *tokens, size_t count) {
    if (list->count + count > list->capacity) {
        size_t grown = list->capacity ? list->capacity : 1 << 16;
        while (grown < list->count + count) grown *= 2;
        int32_t *data = realloc(list->data, sizeof(int32_t) * grown);
        if (!data) return pm_fail(PM_ERR_NOMEM, "out of memory collecting tokens (%zu)", grown);
        list->data = data;
        list->capacity = grown;
    }
    if (count) memcpy(list->data + list->count, tokens, sizeof(int32_t) * count);
    list->count += count;
    return PM_OK;
}

/* One document's result; workers record errors here because pm_fail's message is per thread. */
typedef struct {
    int32_t *tokens;
    size_t count;
    uint64_t bytes;
    int status;
    char message[1024];
} document;

/* Tokenizes one source's documents (in parallel: encode is thread-safe) and appends them,
 * each followed by eos, to a token list; then moves the last val_fraction to val. */
static int prepare_source(const corpus_source *source, const corpus_options *options, token_list *train,
                          token_list *val, corpus_stats *stats) {
    memset(stats, 0, sizeof *stats);
    if (source->file_count < 1)
        return pm_fail(PM_ERR_ARG, "the source '%s' has no files", source->name);
    document *documents = calloc((size_t)source->file_count, sizeof(document));
    if (!documents) return pm_fail(PM_ERR_NOMEM, "out of memory preparing '%s'", source->name);
#pragma omp parallel for schedule(dynamic, 1)
    for (int d = 0; d < source->file_count; d++) {
        document *doc = &documents[d];
        doc->status = corpus_tokenize_file(source->files[d], options->tok, &doc->tokens, &doc->count, &doc->bytes);
        if (doc->status < 0) snprintf(doc->message, sizeof doc->message, "%s", pm_last_error());
    }
    int status = PM_OK;
    token_list all = {0};
    const int32_t eos = options->tok->eos_token;
    for (int d = 0; d < source->file_count; d++) {
        document *doc = &documents[d];
        if (status == PM_OK && doc->status < 0) status = pm_fail(doc->status, "%s", doc->message);
        if (status == PM_OK) status = append(&all, doc->tokens, doc->count);
        if (status == PM_OK && eos >= 0) status = append(&all, &eos, 1);
        stats->bytes += doc->bytes;
        free(doc->tokens);
    }
    free(documents);
    if (status == PM_OK) {
        /* the held-out part is the end of the source: text the training part never contains */
        size_t split = (size_t)((1.0 - options->val_fraction) * (double)all.count);
        if (split > all.count) split = all.count;
        status = append(train, all.data, split);
        if (status == PM_OK) status = append(val, all.data + split, all.count - split);
        stats->documents = (size_t)source->file_count;
        stats->train_tokens = split;
        stats->val_tokens = all.count - split;
    }
    free(all.data);
    return status;
}

static cJSON *describe(const corpus_source *sources, int source_count, const corpus_options *options,
                       const corpus_stats *stats, size_t train_tokens, size_t val_tokens) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", "probmoe-data");
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON *tok = cJSON_AddObjectToObject(root, "tokenizer");
    const tokenizer *t = options->tok;
    cJSON_AddStringToObject(tok, "name", t->name ? t->name : "");
    if (options->tokenizer_path) cJSON_AddStringToObject(tok, "path", options->tokenizer_path);
    else cJSON_AddNullToObject(tok, "path");
    cJSON_AddNumberToObject(tok, "vocab_size", t->vocab_size);
    /* a string: JSON numbers are doubles and would round a 64-bit hash */
    char hash[17];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)t->vocab_hash);
    cJSON_AddStringToObject(tok, "vocab_hash", hash);
    cJSON_AddNumberToObject(tok, "eos_token", t->eos_token);
    cJSON_AddNumberToObject(root, "val_fraction", options->val_fraction);
    cJSON *train = cJSON_AddObjectToObject(root, "train");
    cJSON_AddStringToObject(train, "file", output_names[0]);
    cJSON_AddNumberToObject(train, "tokens", (double)train_tokens);
    cJSON *val = cJSON_AddObjectToObject(root, "val");
    cJSON_AddStringToObject(val, "file", output_names[1]);
    cJSON_AddNumberToObject(val, "tokens", (double)val_tokens);
    cJSON *list = cJSON_AddArrayToObject(root, "sources");
    for (int s = 0; s < source_count; s++) {
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "name", sources[s].name);
        cJSON_AddNumberToObject(item, "documents", (double)stats[s].documents);
        cJSON_AddNumberToObject(item, "bytes", (double)stats[s].bytes);
        cJSON_AddNumberToObject(item, "train_tokens", (double)stats[s].train_tokens);
        cJSON_AddNumberToObject(item, "val_tokens", (double)stats[s].val_tokens);
        cJSON *files = cJSON_AddArrayToObject(item, "files");
        for (int f = 0; f < sources[s].file_count; f++)
            cJSON_AddItemToArray(files, cJSON_CreateString(sources[s].files[f]));
        cJSON_AddItemToArray(list, item);
    }
    return root;
}

static int write_json(const char *path, const cJSON *root) {
    char *text = cJSON_Print(root);
    if (!text) return pm_fail(PM_ERR_NOMEM, "out of memory writing '%s'", path);
    atomic_file out;
    int status = atomic_file_open(&out, path);
    if (status == PM_OK) {
        if (fputs(text, out.file) < 0 || fputc('\n', out.file) < 0) {
            atomic_file_abort(&out);
            status = pm_fail(PM_ERR_ARG, "cannot write '%s': %s", path, strerror(errno));
        } else {
            status = atomic_file_commit(&out);
        }
    }
    free(text);
    return status;
}

static int join(char *out, const char *dir, const char *name) {
    if (snprintf(out, PATH_BYTES, "%s/%s", dir, name) >= PATH_BYTES)
        return pm_fail(PM_ERR_ARG, "the path '%s/%s' is too long", dir, name);
    return PM_OK;
}

static void remove_staging(const char *staging) {
    char path[PATH_BYTES];
    for (int i = 0; i < OUTPUT_COUNT; i++)
        if (join(path, staging, output_names[i]) == PM_OK) unlink(path);
    rmdir(staging);
}

/* Writes the three files into a fresh directory inside out_dir, then renames them into
 * out_dir: a failure while writing leaves out_dir untouched. data.json goes last, so its
 * presence says the shards beside it are complete. */
static int write_outputs(const char *out_dir, const token_list *train, const token_list *val,
                         const cJSON *description, const tokenizer *tok) {
    char staging[PATH_BYTES], from[PATH_BYTES], to[PATH_BYTES];
    int status = join(staging, out_dir, ".prepare-XXXXXX");
    if (status < 0) return status;
    if (!mkdtemp(staging)) return pm_fail(PM_ERR_ARG, "cannot create '%s': %s", staging, strerror(errno));
    const token_list *shards[2] = {train, val};
    for (int i = 0; i < 2 && status == PM_OK; i++) {
        status = join(from, staging, output_names[i]);
        if (status == PM_OK)
            status = shard_write(from, shards[i]->data, shards[i]->count, (uint32_t)tok->vocab_size, tok->vocab_hash);
    }
    if (status == PM_OK) status = join(from, staging, output_names[2]);
    if (status == PM_OK) status = write_json(from, description);
    if (status == PM_OK && join(to, out_dir, output_names[2]) == PM_OK) unlink(to); /* old data.json */
    for (int i = 0; i < OUTPUT_COUNT && status == PM_OK; i++) {
        status = join(from, staging, output_names[i]);
        if (status == PM_OK) status = join(to, out_dir, output_names[i]);
        if (status == PM_OK && rename(from, to) != 0)
            status = pm_fail(PM_ERR_ARG, "cannot move '%s' to '%s': %s", from, to, strerror(errno));
    }
    remove_staging(staging);
    return status;
}

static int check_options(const char *out_dir, int source_count, const corpus_options *options) {
    if (!options->tok) return pm_fail(PM_ERR_ARG, "corpus_prepare needs a tokenizer");
    if (!(options->val_fraction >= 0.0 && options->val_fraction < 1.0))
        return pm_fail(PM_ERR_ARG, "the validation fraction is %g; it must be at least 0 and below 1",
                       options->val_fraction);
    if (source_count < 1) return pm_fail(PM_ERR_ARG, "no sources to prepare: name a source or text files");
    if (options->overwrite) return PM_OK;
    char path[PATH_BYTES];
    for (int i = 0; i < OUTPUT_COUNT; i++) {
        int status = join(path, out_dir, output_names[i]);
        if (status < 0) return status;
        if (access(path, F_OK) == 0)
            return pm_fail(PM_ERR_ARG, "'%s' already exists; choose another directory or replace the "
                           "prepared data (--force)", path);
    }
    return PM_OK;
}

int corpus_prepare(const char *out_dir, const corpus_source *sources, int source_count,
                   const corpus_options *options, corpus_stats *stats) {
    int status = check_options(out_dir, source_count, options);
    if (status < 0) return status;
    corpus_stats *counts = calloc((size_t)source_count, sizeof(corpus_stats));
    if (!counts) return pm_fail(PM_ERR_NOMEM, "out of memory");
    token_list train = {0}, val = {0};
    for (int s = 0; s < source_count && status == PM_OK; s++)
        status = prepare_source(&sources[s], options, &train, &val, &counts[s]);

    struct stat info;
    const bool existed = stat(out_dir, &info) == 0;
    if (status == PM_OK) status = ensure_directory(out_dir);
    if (status == PM_OK) {
        cJSON *description = describe(sources, source_count, options, counts, train.count, val.count);
        status = description ? write_outputs(out_dir, &train, &val, description, options->tok)
                             : pm_fail(PM_ERR_NOMEM, "out of memory");
        cJSON_Delete(description);
    }
    if (status < 0 && !existed) rmdir(out_dir); /* only succeeds if empty: never removes data */
    if (stats && status == PM_OK) memcpy(stats, counts, sizeof(corpus_stats) * (size_t)source_count);
    free(counts);
    free(train.data);
    free(val.data);
    return status;
}
