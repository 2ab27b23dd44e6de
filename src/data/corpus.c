#define _POSIX_C_SOURCE 200809L /* fstat, fileno */
/* Reading and tokenizing one corpus document, with the checks a corpus file must pass. */
#include "data/corpus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/utf8.h"

static size_t line_of(const char *text, size_t offset) {
    size_t line = 1;
    for (size_t i = 0; i < offset; i++) line += text[i] == '\n';
    return line;
}

/* Reads a whole file; an empty or missing one is an error. */
static int read_text(const char *path, char **text, size_t *length) {
    *text = NULL;
    *length = 0;
    FILE *file = fopen(path, "rb");
    if (!file) return pm_fail(PM_ERR_ARG, "cannot open the corpus file '%s': %s", path, strerror(errno));
    struct stat info;
    if (fstat(fileno(file), &info) != 0 || !S_ISREG(info.st_mode)) {
        fclose(file);
        return pm_fail(PM_ERR_ARG, "the corpus file '%s' is not a regular file", path);
    }
    if (info.st_size == 0) {
        fclose(file);
        return pm_fail(PM_ERR_ARG, "the corpus file '%s' is empty; give files with text in them", path);
    }
    *text = malloc((size_t)info.st_size);
    if (!*text) {
        fclose(file);
        return pm_fail(PM_ERR_NOMEM, "out of memory reading '%s' (%lld bytes)", path, (long long)info.st_size);
    }
    *length = fread(*text, 1, (size_t)info.st_size, file);
    fclose(file);
    if (*length != (size_t)info.st_size) {
        free(*text);
        *text = NULL;
        return pm_fail(PM_ERR_ARG, "cannot read all of '%s'", path);
    }
    return PM_OK;
}

int corpus_tokenize_file(const char *path, const tokenizer *tok, int32_t **tokens, size_t *count,
                         uint64_t *bytes) {
    *tokens = NULL;
    *count = 0;
    char *text;
    size_t length;
    int status = read_text(path, &text, &length);
    if (status < 0) return status;
    *bytes = length;
    /* checked here rather than left to the tokenizer so that a corpus is rejected the same
     * way whichever tokenizer encodes it (the byte-level one accepts any bytes) */
    size_t bad = utf8_invalid_at((const unsigned char *)text, length);
    if (bad < length) {
        size_t line = line_of(text, bad);
        free(text);
        return pm_fail(PM_ERR_ARG, "'%s' is not valid UTF-8: byte offset %zu (line %zu) starts no valid "
                       "character; convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)", path, bad, line);
    }
    /* Every token covers at least one byte, so length tokens is enough; if a tokenizer breaks
     * that rule, encode says how many it needs and we ask again with that much room. */
    int64_t needed = 0;
    size_t capacity = length;
    for (int attempt = 0; attempt < 2; attempt++) {
        free(*tokens);
        *tokens = malloc(sizeof(int32_t) * capacity);
        if (!*tokens) {
            free(text);
            return pm_fail(PM_ERR_NOMEM, "out of memory tokenizing '%s'", path);
        }
        needed = tok->encode(tok, text, length, *tokens, capacity);
        if (needed < 0 || (uint64_t)needed <= capacity) break;
        capacity = (size_t)needed;
    }
    free(text);
    if (needed < 0 || (uint64_t)needed > capacity) {
        char message[1024];
        snprintf(message, sizeof message, "%s", needed < 0 ? pm_last_error() : "the tokenizer's token count changed between two calls");
        free(*tokens);
        *tokens = NULL;
        return pm_fail(needed < 0 ? (pm_status)needed : PM_ERR_STATE, "'%s': %s", path, message);
    }
    *count = (size_t)needed;
    return PM_OK;
}
