#define _GNU_SOURCE /* memmem, mkdtemp, nftw */
#include "fuzz_input.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st, (void)type, (void)ftw;
    return remove(path);
}

static void remove_dir(void) {
    if (dir[0]) nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_dir(void) {
    if (dir[0]) return dir;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/pm-fuzz-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("fuzz: cannot create a temporary directory");
        abort();
    }
    atexit(remove_dir);
    return dir;
}

const char *fuzz_write(const char *name, const void *data, size_t size) {
    enum { SLOTS = 4 };
    static char paths[SLOTS][512];
    static int next;
    char *path = paths[next++ % SLOTS];
    snprintf(path, sizeof paths[0], "%s/%s", fuzz_dir(), name);
    FILE *file = fopen(path, "wb");
    if (!file || (size && fwrite(data, 1, size, file) != size) || fclose(file) != 0) {
        perror(path);
        abort();
    }
    return path;
}

void fuzz_split(const uint8_t *data, size_t size, const uint8_t **second, size_t *first_size,
                size_t *second_size) {
    const size_t n = sizeof FUZZ_SEPARATOR - 1;
    const uint8_t *at = memmem(data, size, FUZZ_SEPARATOR, n);
    *first_size = at ? (size_t)(at - data) : size;
    *second = at ? at + n : data + size;
    *second_size = at ? size - *first_size - n : 0;
}

void fuzz_fail(const char *what, const char *detail) {
    fprintf(stderr, "fuzz finding: %s\n%s\n", what, detail ? detail : "");
    abort();
}
