#define _POSIX_C_SOURCE 200809L /* fstat, fileno */
#include "data/shards.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/atomic_file.h"

static const char shard_magic[8] = {'P', 'M', 'S', 'H', 'A', 'R', 'D', '\0'};

/* Tokens are converted through a buffer of this many, so neither side holds two copies. */
enum { CHUNK_TOKENS = 16384 };

/* Explicit byte order, so shards move between machines of either endianness. */
static void put_le(unsigned char *out, uint64_t value, int bytes) {
    for (int i = 0; i < bytes; i++) out[i] = (unsigned char)(value >> (8 * i));
}

static uint64_t get_le(const unsigned char *in, int bytes) {
    uint64_t value = 0;
    for (int i = 0; i < bytes; i++) value |= (uint64_t)in[i] << (8 * i);
    return value;
}

static uint32_t width_for(uint32_t vocab_size) { return vocab_size <= 65536u ? 2u : 4u; }

int shard_write(const char *path, const int32_t *tokens, size_t count, uint32_t vocab_size,
                uint64_t vocab_hash) {
    if (vocab_size == 0 || vocab_size > SHARD_MAX_VOCAB)
        return pm_fail(PM_ERR_ARG, "shard '%s': vocab_size %u is outside 1..%d", path, vocab_size, SHARD_MAX_VOCAB);
    for (size_t i = 0; i < count; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= vocab_size)
            return pm_fail(PM_ERR_ARG, "shard '%s': token %zu is %d, outside the vocabulary of %u tokens",
                           path, i, (int)tokens[i], vocab_size);
    const uint32_t width = width_for(vocab_size);
    unsigned char header[SHARD_HEADER_BYTES] = {0};
    memcpy(header, shard_magic, sizeof shard_magic);
    put_le(header + 8, SHARD_VERSION, 4);
    put_le(header + 12, vocab_size, 4);
    put_le(header + 16, vocab_hash, 8);
    put_le(header + 24, width, 4);
    put_le(header + 32, count, 8);

    unsigned char *chunk = malloc((size_t)CHUNK_TOKENS * width);
    if (!chunk) return pm_fail(PM_ERR_NOMEM, "out of memory writing '%s'", path);
    atomic_file out;
    int status = atomic_file_open(&out, path);
    if (status < 0) {
        free(chunk);
        return status;
    }
    bool ok = fwrite(header, 1, sizeof header, out.file) == sizeof header;
    for (size_t start = 0; ok && start < count; start += CHUNK_TOKENS) {
        size_t n = count - start < CHUNK_TOKENS ? count - start : CHUNK_TOKENS;
        for (size_t i = 0; i < n; i++) put_le(chunk + i * width, (uint32_t)tokens[start + i], (int)width);
        ok = fwrite(chunk, width, n, out.file) == n;
    }
    free(chunk);
    if (!ok) {
        int saved = errno;
        atomic_file_abort(&out);
        return pm_fail(PM_ERR_ARG, "cannot write '%s': %s", path, strerror(saved));
    }
    return atomic_file_commit(&out);
}

/* Reads and checks the header of an open shard; leaves the file after the header. */
static int read_header(FILE *file, const char *path, shard_header *header) {
    memset(header, 0, sizeof *header);
    struct stat info;
    if (fstat(fileno(file), &info) != 0)
        return pm_fail(PM_ERR_ARG, "cannot read '%s': %s", path, strerror(errno));
    unsigned char raw[SHARD_HEADER_BYTES];
    const uint64_t file_bytes = (uint64_t)info.st_size;
    if (file_bytes < SHARD_HEADER_BYTES || fread(raw, 1, sizeof raw, file) != sizeof raw)
        return pm_fail(PM_ERR_ARG, "'%s' is truncated: %llu bytes, less than the %d-byte shard header; "
                       "prepare the data again (probmoe data prepare)", path,
                       (unsigned long long)file_bytes, SHARD_HEADER_BYTES);
    if (memcmp(raw, shard_magic, sizeof shard_magic) != 0)
        return pm_fail(PM_ERR_ARG, "'%s' is not a probmoe token shard (its first bytes are not \"PMSHARD\"); "
                       "make shards with 'probmoe data prepare'", path);
    header->version = (uint32_t)get_le(raw + 8, 4);
    header->vocab_size = (uint32_t)get_le(raw + 12, 4);
    header->vocab_hash = get_le(raw + 16, 8);
    header->token_width = (uint32_t)get_le(raw + 24, 4);
    header->token_count = get_le(raw + 32, 8);
    if (header->version != SHARD_VERSION)
        return pm_fail(PM_ERR_ARG, "'%s' is a version %u shard; this probmoe reads version %d: prepare the "
                       "data again with this version", path, header->version, SHARD_VERSION);
    /* tokens are held as int32 (and models allow 2^24 tokens): a larger vocabulary is corrupt */
    if (header->vocab_size == 0 || header->vocab_size > SHARD_MAX_VOCAB)
        return pm_fail(PM_ERR_ARG, "'%s' has vocab_size %u in its header (1 to %d allowed); the shard is corrupt, "
                       "prepare the data again", path, header->vocab_size, SHARD_MAX_VOCAB);
    if (header->token_width != 4 && !(header->token_width == 2 && header->vocab_size <= 65536u))
        return pm_fail(PM_ERR_ARG, "'%s' has token width %u for a vocabulary of %u tokens (2 up to 65536 "
                       "tokens, or 4); the shard is corrupt: prepare the data again", path, header->token_width, header->vocab_size);
    const uint64_t payload = file_bytes - SHARD_HEADER_BYTES;
    const bool short_payload = header->token_count > payload / header->token_width;
    if (short_payload || payload != header->token_count * header->token_width)
        return pm_fail(PM_ERR_ARG, "'%s' should hold %llu tokens of %u bytes after its header but has %llu "
                       "bytes: it is %s; prepare the data again", path,
                       (unsigned long long)header->token_count, header->token_width,
                       (unsigned long long)payload, short_payload ? "truncated" : "longer than its header says");
    return PM_OK;
}

int shard_read_header(const char *path, shard_header *header) {
    FILE *file = fopen(path, "rb");
    if (!file) {
        memset(header, 0, sizeof *header);
        return pm_fail(PM_ERR_ARG, "cannot open the shard '%s': %s", path, strerror(errno));
    }
    int status = read_header(file, path, header);
    fclose(file);
    return status;
}

/* Reads the tokens after the header, checking each against the vocabulary. */
static int read_tokens(FILE *file, const char *path, token_shard *shard) {
    const shard_header *header = &shard->header;
    const int width = (int)header->token_width;
    unsigned char *chunk = malloc((size_t)CHUNK_TOKENS * (size_t)width);
    if (!chunk) return pm_fail(PM_ERR_NOMEM, "out of memory reading '%s'", path);
    for (size_t start = 0; start < shard->count; start += CHUNK_TOKENS) {
        size_t n = shard->count - start < CHUNK_TOKENS ? shard->count - start : CHUNK_TOKENS;
        if (fread(chunk, (size_t)width, n, file) != n) {
            free(chunk);
            return pm_fail(PM_ERR_ARG, "cannot read '%s' (it may have been truncated while being read)", path);
        }
        for (size_t i = 0; i < n; i++) {
            uint64_t token = get_le(chunk + i * (size_t)width, width);
            if (token >= header->vocab_size) {
                free(chunk);
                return pm_fail(PM_ERR_ARG, "'%s': token %zu is %llu, outside the vocabulary of %u tokens; "
                               "the shard is corrupt, prepare the data again", path, start + i,
                               (unsigned long long)token, header->vocab_size);
            }
            shard->tokens[start + i] = (int32_t)token;
        }
    }
    free(chunk);
    return PM_OK;
}

int shard_read(const char *path, uint64_t expected_vocab_hash, token_shard *shard) {
    memset(shard, 0, sizeof *shard);
    FILE *file = fopen(path, "rb");
    if (!file) return pm_fail(PM_ERR_ARG, "cannot open the shard '%s': %s", path, strerror(errno));
    int status = read_header(file, path, &shard->header);
    if (status == PM_OK && shard->header.vocab_hash != expected_vocab_hash)
        status = pm_fail(PM_ERR_ARG, "'%s' was made with another tokenizer (vocab hash %016llx, %u tokens) "
                         "than this run's (vocab hash %016llx): use the tokenizer the data was prepared "
                         "with, or prepare the data again with this one", path,
                         (unsigned long long)shard->header.vocab_hash, shard->header.vocab_size,
                         (unsigned long long)expected_vocab_hash);
    if (status == PM_OK && shard->header.token_count > SIZE_MAX / sizeof(int32_t))
        status = pm_fail(PM_ERR_NOMEM, "'%s' holds %llu tokens, too many for this machine's memory", path,
                         (unsigned long long)shard->header.token_count);
    if (status == PM_OK) {
        shard->count = (size_t)shard->header.token_count;
        shard->tokens = malloc(sizeof(int32_t) * (shard->count ? shard->count : 1));
        if (!shard->tokens)
            status = pm_fail(PM_ERR_NOMEM, "out of memory reading '%s' (%zu tokens)", path, shard->count);
    }
    if (status == PM_OK) status = read_tokens(file, path, shard);
    fclose(file);
    if (status < 0) shard_free(shard);
    return status;
}

void shard_free(token_shard *shard) {
    free(shard->tokens);
    memset(shard, 0, sizeof *shard);
}
