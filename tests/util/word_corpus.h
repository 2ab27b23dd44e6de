/* A scratch directory holding corpus.txt: `count` words drawn from a list by a seeded
 * generator, for tests that train on text. */
#ifndef PM_TEST_WORD_CORPUS_H
#define PM_TEST_WORD_CORPUS_H

#include <stddef.h>
#include <stdint.h>

/* Makes a directory from template (e.g. "/tmp/probmoe_train_XXXXXX", rewritten in place) and
 * writes template/corpus.txt. 0 or -1. */
int word_corpus_make(char *template, const char *const *words, int word_count, int count, uint64_t seed);
/* Removes the directory and everything in it. 0 or -1. */
int word_corpus_remove(const char *dir);

#endif
