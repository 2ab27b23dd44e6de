#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include "word_corpus.h"

#include <stdio.h>
#include <stdlib.h>

#include "probmoe.h"

int word_corpus_make(char *template, const char *const *words, int word_count, int count, uint64_t seed) {
    if (!mkdtemp(template)) return -1;
    char path[4200];
    snprintf(path, sizeof path, "%s/corpus.txt", template);
    FILE *file = fopen(path, "w");
    if (!file) return -1;
    pm_rng rng;
    pm_rng_init(&rng, seed, 0);
    for (int i = 0; i < count; i++) fputs(words[pm_rng_u32(&rng) % (uint32_t)word_count], file);
    return fclose(file) == 0 ? 0 : -1;
}

int word_corpus_remove(const char *dir) {
    char command[4200];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    return system(command) == 0 ? 0 : -1;
}
