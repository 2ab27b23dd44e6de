/* Helpers shared by the data-pipeline tests (test_shards, test_gsm8k, test_loader): a scratch
 * directory, small files, and a byte tokenizer with an end-of-text token (the built-in byte
 * tokenizer has none) that can also be told to fail. Header-only: each test is one file. */
#ifndef PM_TEST_DATA_FIXTURES_H
#define PM_TEST_DATA_FIXTURES_H

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

/* ---------------------------------------------------------------- scratch directory */

static char scratch_dir[64];

static inline int make_scratch(void **state) {
    (void)state;
    snprintf(scratch_dir, sizeof scratch_dir, "/tmp/pm_data_XXXXXX");
    return mkdtemp(scratch_dir) ? 0 : -1;
}

static inline int remove_entry(const char *path, const struct stat *info, int type, struct FTW *walk) {
    (void)info, (void)type, (void)walk;
    return remove(path);
}

static inline int remove_scratch(void **state) {
    (void)state;
    return nftw(scratch_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* scratch_dir/name in a static buffer (one of four, so a few can be alive at once). */
static inline const char *scratch(const char *name) {
    static char paths[4][512];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, sizeof paths[0], "%s/%s", scratch_dir, name);
    return path;
}

static inline void write_bytes(const char *path, const void *bytes, size_t length) {
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(fwrite(bytes, 1, length, file), length);
    assert_int_equal(fclose(file), 0);
}

static inline void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

/* The whole file, NUL-terminated; *length gets its size. */
static inline char *read_all(const char *path, size_t *length) {
    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    char *data = malloc((size_t)size + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)size, file), (size_t)size);
    fclose(file);
    data[size] = '\0';
    if (length) *length = (size_t)size;
    return data;
}

/* Entries of a directory besides . and .. */
static inline int entry_count(const char *dir) {
    DIR *listing = opendir(dir);
    if (!listing) return -1;
    int count = 0;
    for (struct dirent *entry; (entry = readdir(listing));)
        count += strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0;
    closedir(listing);
    return count;
}

/* ---------------------------------------------------------------- test tokenizer */

enum { TEST_EOS = 256, TEST_VOCAB = 257 };

/* Bytes, plus eos = 256; fails on '~' with an offset, as a tokenizer reports bad input. */
static inline int64_t encode_test(const tokenizer *self, const char *text, size_t length, int32_t *tokens,
                           size_t capacity) {
    (void)self;
    for (size_t i = 0; i < length; i++) {
        if (text[i] == '~') return pm_fail(PM_ERR_ARG, "the test tokenizer refuses '~' at byte %zu", i);
        if (i < capacity) tokens[i] = (unsigned char)text[i];
    }
    return (int64_t)length;
}

static inline size_t decode_test(const tokenizer *self, int32_t token, char *out, size_t capacity) {
    (void)self;
    if (capacity < 1 || token < 0 || token > 255) return 0;
    out[0] = (char)token;
    return 1;
}

static const tokenizer test_tokenizer = {"bytes+eos", TEST_VOCAB, TEST_EOS, 0x7465737445305331ull,
                                         encode_test, decode_test, NULL, NULL, NULL, false};

#endif
