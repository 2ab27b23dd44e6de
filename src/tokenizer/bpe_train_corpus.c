#define _POSIX_C_SOURCE 200809L /* fstat */
/* Reads the training corpus in chunks, checks it is UTF-8 and counts its pre-tokenizer pieces.
 * Chunks keep memory bounded on big corpora; they are cut only where GPT-2's pattern must end
 * a piece, so the pieces are exactly those of pre-tokenizing each file whole. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "tokenizer/bpe_train_internal.h"
#include "tokenizer/pretokenize.h"

size_t bpe_train_utf8_valid_prefix(const char *text, size_t length) {
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    while (i < length) {
        if (s[i] < 0x80) { /* ASCII: skip 8 at a time when none has the top bit */
            uint64_t word;
            if (i + 8 <= length && (memcpy(&word, s + i, 8), (word & 0x8080808080808080ull) == 0)) i += 8;
            else i++;
            continue;
        }
        size_t need;
        uint32_t cp, min;
        if ((s[i] & 0xE0) == 0xC0) need = 1, cp = s[i] & 0x1F, min = 0x80;
        else if ((s[i] & 0xF0) == 0xE0) need = 2, cp = s[i] & 0x0F, min = 0x800;
        else if ((s[i] & 0xF8) == 0xF0) need = 3, cp = s[i] & 0x07, min = 0x10000;
        else return i;
        if (length - i <= need) return i;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += need + 1;
    }
    return length;
}

/* ASCII letters, digits and punctuation: never whitespace, never part of a multi-byte char. */
static int ascii_graphic(char c) { return c > 0x20 && c < 0x7F; }

/* The end of the longest prefix of text[0..length) that ends with "X\n" and is followed by Y,
 * X and Y ASCII graphic, or 0 if none. There the pattern surely splits: the piece holding X
 * stops at the newline (only whitespace alternatives match whitespace, and they match nothing
 * else), the newline is a piece alone (\s+(?!\S) and \s+ both stop before Y), and Y starts
 * the next; the pattern has no look-behind, so the rest pre-tokenizes the same on its own. */
static size_t safe_cut(const char *text, size_t length) {
    if (length < 3) return 0;
    for (size_t p = length - 1; p >= 2; p--)
        if (text[p - 1] == '\n' && ascii_graphic(text[p]) && ascii_graphic(text[p - 2])) return p;
    return 0;
}

typedef struct {
    pretokenizer *pre;
    bpe_train_pieces *pieces;
    char *buffer;
    size_t capacity;
    int64_t done, total;
    bpe_train_progress progress;
    void *user;
} corpus_reader;

static int count_piece(void *user, const char *start, size_t length) {
    return bpe_train_pieces_add(user, start, length);
}

/* Checks and counts text, which starts at byte `offset` of file `name`. */
static int count_text(corpus_reader *reader, const char *name, int64_t offset, const char *text, size_t length) {
    const size_t valid = bpe_train_utf8_valid_prefix(text, length);
    if (valid < length)
        return pm_fail(PM_ERR_ARG, "corpus file '%s' is not valid UTF-8 at byte %lld; convert it to UTF-8 "
                       "first (e.g. iconv -f LATIN1 -t UTF-8)", name, (long long)(offset + (int64_t)valid));
    const int status = pretokenize(reader->pre, text, length, count_piece, reader->pieces);
    if (status < 0) {
        char message[512];
        snprintf(message, sizeof message, "%s", pm_last_error());
        return pm_fail(status, "corpus file '%s': %s", name, message);
    }
    reader->done += (int64_t)length;
    if (reader->progress) reader->progress(reader->user, "reading", reader->done, reader->total);
    return PM_OK;
}

static int count_file(corpus_reader *reader, const char *name, size_t chunk_bytes) {
    FILE *file = fopen(name, "rb");
    if (!file) return pm_fail(PM_ERR_ARG, "cannot open corpus file '%s': %s", name, strerror(errno));
    size_t have = 0;
    int64_t offset = 0; /* file offset of buffer[0] */
    int status = PM_OK;
    for (;;) {
        if (have == reader->capacity) { /* no safe cut in a full buffer: read on in a bigger one */
            const size_t capacity = reader->capacity ? 2 * reader->capacity : chunk_bytes;
            char *buffer = realloc(reader->buffer, capacity);
            if (!buffer) {
                status = pm_fail(PM_ERR_NOMEM, "out of memory reading corpus file '%s'", name);
                break;
            }
            reader->buffer = buffer;
            reader->capacity = capacity;
        }
        const size_t wanted = (have < chunk_bytes ? chunk_bytes : reader->capacity) - have;
        const size_t got = fread(reader->buffer + have, 1, wanted, file);
        have += got;
        if (got < wanted) {
            if (ferror(file)) {
                status = pm_fail(PM_ERR_ARG, "cannot read corpus file '%s': %s", name, strerror(errno));
            } else if (offset + (int64_t)have == 0) {
                status = pm_fail(PM_ERR_ARG, "corpus file '%s' is empty", name);
            } else if (have > 0) {
                status = count_text(reader, name, offset, reader->buffer, have);
            }
            break;
        }
        const size_t cut = safe_cut(reader->buffer, have);
        if (cut == 0) continue;
        status = count_text(reader, name, offset, reader->buffer, cut);
        if (status) break;
        memmove(reader->buffer, reader->buffer + cut, have - cut);
        have -= cut;
        offset += (int64_t)cut;
    }
    fclose(file);
    return status;
}

/* Fails early, before any work, on a file that is missing, not a regular file, or empty. */
static int check_file(const char *name, int64_t *size) {
    struct stat info;
    if (stat(name, &info) != 0) return pm_fail(PM_ERR_ARG, "cannot open corpus file '%s': %s", name, strerror(errno));
    if (S_ISDIR(info.st_mode)) return pm_fail(PM_ERR_ARG, "corpus file '%s' is a directory; give the text files", name);
    if (S_ISREG(info.st_mode) && info.st_size == 0) return pm_fail(PM_ERR_ARG, "corpus file '%s' is empty", name);
    *size = (int64_t)info.st_size;
    return PM_OK;
}

int bpe_train_count_corpus(const char *const *files, int file_count, size_t chunk_bytes, bpe_train_pieces *pieces,
                           int64_t *bytes, bpe_train_progress progress, void *user) {
    if (chunk_bytes < 16) chunk_bytes = 16;
    corpus_reader reader = {.pieces = pieces, .progress = progress, .user = user};
    for (int f = 0; f < file_count; f++) {
        int64_t size = 0;
        const int status = check_file(files[f], &size);
        if (status) return status;
        reader.total += size;
    }
    int status = pretokenizer_create(&reader.pre);
    for (int f = 0; f < file_count && status == PM_OK; f++) status = count_file(&reader, files[f], chunk_bytes);
    pretokenizer_free(reader.pre);
    free(reader.buffer);
    *bytes = reader.done;
    return status;
}
