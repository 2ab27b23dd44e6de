/*
 * What the libFuzzer harnesses share: most parsers read files, so an input is written to a
 * file in a private temporary directory (in /dev/shm when it exists: no disk traffic) and the
 * real loader opens it, as a user's command would.
 */
#ifndef PM_FUZZ_INPUT_H
#define PM_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

#include "probmoe.h"

/* The harness's directory (created on first use, removed at exit). */
const char *fuzz_dir(void);
/* Writes data to fuzz_dir()/name and returns that path (static storage, one per name slot:
 * valid until the next call with the same name). Aborts if the file cannot be written: that
 * is the machine, not a finding. */
const char *fuzz_write(const char *name, const void *data, size_t size);

/* Splits data at the first FUZZ_SEPARATOR into two parts (the second empty when there is
 * none): harnesses for formats of two files. */
#define FUZZ_SEPARATOR "\n--8<--\n"
void fuzz_split(const uint8_t *data, size_t size, const uint8_t **second, size_t *first_size,
                size_t *second_size);

/* A finding that is not a crash: prints what and aborts, so libFuzzer keeps the input. */
void fuzz_fail(const char *what, const char *detail) __attribute__((noreturn));

#endif
