#define _POSIX_C_SOURCE 200809L /* mkdtemp, opendir */
/* The BPE vocabulary trainer: merges of a hand-worked corpus (ties included), the
 * tokenizer.json's structure, determinism, the incremental counts against a trainer that
 * recounts every pair per merge, chunked reading against whole-file pre-tokenization, UTF-8
 * checking against PCRE2's, bad input, and a round trip through tokenizer_load. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/bpe_train_internal.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

static char work_dir[] = "/tmp/test_bpe_train_XXXXXX";

static int make_work_dir(void **state) {
    (void)state;
    return mkdtemp(work_dir) ? 0 : -1;
}

static int remove_work_dir(void **state) {
    (void)state;
    DIR *dir = opendir(work_dir);
    if (!dir) return 0;
    char path[512];
    for (struct dirent *entry; (entry = readdir(dir));) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", work_dir, entry->d_name);
        remove(path);
    }
    closedir(dir);
    rmdir(work_dir);
    return 0;
}

/* work_dir/name, in a rotating set of buffers: a test may hold up to 64 at once. */
static const char *work_path(const char *name) {
    static char paths[64][512];
    static int next;
    char *path = paths[next++ % 64];
    snprintf(path, 512, "%s/%s", work_dir, name);
    return path;
}

static const char *write_file(const char *name, const char *text, size_t length) {
    const char *path = work_path(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, length, f), length);
    fclose(f);
    return path;
}

static char *read_file(const char *path, size_t *length) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
    text[size] = '\0';
    fclose(f);
    if (length) *length = (size_t)size;
    return text;
}

static int file_exists(const char *path) { return access(path, F_OK) == 0; }

static int train_one(const char *corpus, int vocab_size, const char *out, bpe_train_stats *stats) {
    const char *files[] = {corpus};
    return bpe_train(files, 1, vocab_size, out, stats);
}

static cJSON *load_json(const char *path) {
    char *text = read_file(path, NULL);
    assert_non_null(text);
    cJSON *json = cJSON_Parse(text);
    free(text);
    assert_non_null(json);
    return json;
}

static const cJSON *item(const cJSON *object, const char *key) {
    const cJSON *found = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!found) fail_msg("tokenizer.json lacks \"%s\"", key);
    return found;
}

static const cJSON *merges_of(const cJSON *json) { return item(item(json, "model"), "merges"); }

/* "aaab aaab aab": pieces "aaab", " aaab", " aab". Counts (a,a) 5, (a,b) 3, (Ġ,a) 2 → "a a".
 * Then (Ġ,aa), (a,b) and (aa,a) all have 2: the lowest ids win, (32, 256) → "Ġ aa". Then
 * (a,b) 2 → "a b"; then three pairs of count 1 in id order: (aa,ab), (Ġaa,b), (Ġaa,ab). */
static void test_hand_worked_merges(void **state) {
    (void)state;
    static const char *const expected[] = {"a a", "Ġ aa", "a b", "aa ab", "Ġaa b", "Ġaa ab"};
    const char *corpus = write_file("hand.txt", "aaab aaab aab", 13);
    const char *out = work_path("hand.json");
    bpe_train_stats stats;
    assert_int_equal(train_one(corpus, 1000, out, &stats), 0);
    assert_int_equal(stats.merges, 6); /* then no pair is left: a smaller vocabulary */
    assert_int_equal(stats.vocab_size, 256 + 6 + 1);
    assert_int_equal(stats.pieces, 3);
    assert_int_equal(stats.distinct_pieces, 3);
    assert_int_equal(stats.bytes, 13);
    cJSON *json = load_json(out);
    const cJSON *merges = merges_of(json);
    assert_int_equal(cJSON_GetArraySize(merges), 6);
    for (int i = 0; i < 6; i++) assert_string_equal(cJSON_GetArrayItem(merges, i)->valuestring, expected[i]);
    const cJSON *vocab = item(item(json, "model"), "vocab");
    assert_int_equal(item(vocab, "Ġaaab")->valueint, 261);
    assert_int_equal(item(vocab, "<|endoftext|>")->valueint, 262);
    cJSON_Delete(json);

    assert_int_equal(train_one(corpus, 259, out, &stats), 0); /* two merges, then the end-of-text */
    assert_int_equal(stats.merges, 2);
    json = load_json(out);
    assert_int_equal(cJSON_GetArraySize(merges_of(json)), 2);
    assert_string_equal(cJSON_GetArrayItem(merges_of(json), 1)->valuestring, "Ġ aa");
    assert_int_equal(item(cJSON_GetArrayItem(item(json, "added_tokens"), 0), "id")->valueint, 258);
    cJSON_Delete(json);
}

/* A few KB of text from a small alphabet (many ties and runs like "aaa"), with capitals,
 * digits, punctuation, contractions, runs of spaces, newlines and multi-byte characters. */
static char *random_corpus(uint64_t seed, size_t target, int long_runs, size_t *length) {
    static const char *const extras[] = {"é", "日本", "😀", "ß", "\xC2\xA0"};
    static const char *const separators[] = {" ", " ", " ", " ", "  ", "\n", ", ", ". ", "'s ", " 42 ", " \n",
                                             "\n\n", "\t", "\" ", " \\"};
    const uint32_t separator_count = sizeof separators / sizeof separators[0];
    pm_rng rng;
    pm_rng_init(&rng, seed, 0);
    char *text = malloc(target + 1024);
    size_t n = 0;
    while (n < target) {
        const int letters = 1 + (int)(pm_rng_u32(&rng) % 8);
        for (int i = 0; i < letters; i++) {
            const uint32_t r = pm_rng_u32(&rng) % 100;
            if (r < 5) n += (size_t)sprintf(text + n, "%s", extras[pm_rng_u32(&rng) % 5]);
            else if (r < 12) text[n++] = (char)('A' + pm_rng_u32(&rng) % 3);
            else text[n++] = "aaabbcde"[pm_rng_u32(&rng) % 8];
        }
        n += (size_t)sprintf(text + n, "%s", separators[pm_rng_u32(&rng) % separator_count]);
    }
    text = realloc(text, n + 602 * (size_t)long_runs + 1);
    for (int r = 0; r < long_runs; r++) { /* runs of 600 'a': tokens grow to the length limit */
        memset(text + n, 'a', 600);
        n += 600;
        text[n++] = '\n';
    }
    text[n] = '\0';
    *length = n;
    return text;
}

/* The reference: every piece occurrence is a word of its own, and each merge recounts every
 * pair from scratch. Same rules: most frequent, then lowest (left, right); no token over
 * TOKENIZER_MAX_TOKEN_BYTES bytes or repeating an existing token's bytes. */
enum { NAIVE_MAX_TOKENS = 1024 };

typedef struct {
    int32_t *symbols[8192];
    int length[8192];
    int words;
    uint8_t bytes[NAIVE_MAX_TOKENS][TOKENIZER_MAX_TOKEN_BYTES];
    int token_length[NAIVE_MAX_TOKENS];
    int tokens;
    int32_t merges[NAIVE_MAX_TOKENS][2];
} naive_bpe;

static int naive_add_word(void *user, const char *start, size_t length) {
    naive_bpe *n = user;
    assert_true(n->words < 8192);
    n->symbols[n->words] = malloc(length * sizeof(int32_t));
    for (size_t i = 0; i < length; i++) n->symbols[n->words][i] = (uint8_t)start[i];
    n->length[n->words++] = (int)length;
    return 0;
}

typedef struct {
    uint64_t key;
    int64_t count;
} naive_pair;

static int by_key(const void *a, const void *b) {
    const uint64_t x = ((const naive_pair *)a)->key, y = ((const naive_pair *)b)->key;
    return (x > y) - (x < y);
}

static int by_rank(const void *a, const void *b) {
    const naive_pair *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return (x->key > y->key) - (x->key < y->key);
}

static int naive_mergeable(const naive_bpe *n, int32_t left, int32_t right) {
    const int length = n->token_length[left] + n->token_length[right];
    if (length > TOKENIZER_MAX_TOKEN_BYTES) return 0;
    uint8_t joined[2 * TOKENIZER_MAX_TOKEN_BYTES];
    memcpy(joined, n->bytes[left], (size_t)n->token_length[left]);
    memcpy(joined + n->token_length[left], n->bytes[right], (size_t)n->token_length[right]);
    for (int t = 0; t < n->tokens; t++)
        if (n->token_length[t] == length && memcmp(n->bytes[t], joined, (size_t)length) == 0) return 0;
    return 1;
}

/* Returns the number of merges learned. */
static int naive_train(naive_bpe *n, int max_merges) {
    for (int b = 0; b < 256; b++) {
        n->bytes[b][0] = (uint8_t)b;
        n->token_length[b] = 1;
    }
    n->tokens = 256;
    size_t capacity = 0;
    for (int w = 0; w < n->words; w++) capacity += (size_t)n->length[w];
    naive_pair *pairs = malloc((capacity + 1) * sizeof *pairs);
    int merges = 0;
    for (; merges < max_merges; merges++) {
        size_t count = 0;
        for (int w = 0; w < n->words; w++)
            for (int i = 0; i + 1 < n->length[w]; i++)
                pairs[count++] = (naive_pair){(uint64_t)n->symbols[w][i] << 32 | (uint32_t)n->symbols[w][i + 1], 1};
        qsort(pairs, count, sizeof *pairs, by_key);
        size_t distinct = 0;
        for (size_t i = 0; i < count; i++) {
            if (distinct > 0 && pairs[distinct - 1].key == pairs[i].key) pairs[distinct - 1].count++;
            else pairs[distinct++] = pairs[i];
        }
        qsort(pairs, distinct, sizeof *pairs, by_rank);
        size_t best = 0;
        while (best < distinct && !naive_mergeable(n, (int32_t)(pairs[best].key >> 32), (int32_t)(uint32_t)pairs[best].key))
            best++;
        if (best == distinct) break;
        const int32_t left = (int32_t)(pairs[best].key >> 32), right = (int32_t)(uint32_t)pairs[best].key;
        const int32_t token = n->tokens++;
        memcpy(n->bytes[token], n->bytes[left], (size_t)n->token_length[left]);
        memcpy(n->bytes[token] + n->token_length[left], n->bytes[right], (size_t)n->token_length[right]);
        n->token_length[token] = n->token_length[left] + n->token_length[right];
        n->merges[merges][0] = left;
        n->merges[merges][1] = right;
        for (int w = 0; w < n->words; w++) {
            int out = 0;
            for (int i = 0; i < n->length[w];) {
                if (i + 1 < n->length[w] && n->symbols[w][i] == left && n->symbols[w][i + 1] == right) {
                    n->symbols[w][out++] = token;
                    i += 2;
                } else {
                    n->symbols[w][out++] = n->symbols[w][i++];
                }
            }
            n->length[w] = out;
        }
    }
    free(pairs);
    return merges;
}

/* Checks that a "left right" merge string names the given token bytes. */
static void check_merge(const char *merge, const naive_bpe *n, int index) {
    const char *space = strchr(merge, ' ');
    assert_non_null(space);
    uint8_t bytes[TOKENIZER_MAX_TOKEN_BYTES];
    for (int side = 0; side < 2; side++) {
        const char *start = side ? space + 1 : merge;
        const size_t length = side ? strlen(space + 1) : (size_t)(space - merge);
        const long got = utf8_to_bytes(start, length, bytes, sizeof bytes);
        const int32_t want = n->merges[index][side];
        if (got != n->token_length[want] || memcmp(bytes, n->bytes[want], (size_t)got) != 0)
            fail_msg("merge %d is \"%s\"; the reference merged tokens %d and %d", index, merge, n->merges[index][0],
                     n->merges[index][1]);
    }
}

static void test_against_naive_trainer(void **state) {
    (void)state;
    static const struct {
        uint64_t seed;
        size_t bytes;
        int vocab_size, long_runs;
    } cases[] = {{1, 3000, 600, 0}, {2, 5000, 400, 0}, {3, 2000, 1000, 0}, {4, 4000, 700, 3}, {5, 0, 400, 1}};
    pretokenizer *pre;
    assert_int_equal(pretokenizer_create(&pre), 0);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t length;
        char *text = random_corpus(cases[c].seed, cases[c].bytes, cases[c].long_runs, &length);
        const char *corpus = write_file("random.txt", text, length);
        const char *out = work_path("random.json");
        bpe_train_stats stats;
        assert_int_equal(train_one(corpus, cases[c].vocab_size, out, &stats), 0);

        naive_bpe *n = calloc(1, sizeof *n);
        assert_int_equal(pretokenize(pre, text, length, naive_add_word, n), 0);
        const int merges = naive_train(n, cases[c].vocab_size - 257);
        assert_int_equal(stats.merges, merges);
        assert_int_equal(stats.pieces, n->words);
        cJSON *json = load_json(out);
        const cJSON *list = merges_of(json);
        assert_int_equal(cJSON_GetArraySize(list), merges);
        for (int m = 0; m < merges; m++) check_merge(cJSON_GetArrayItem(list, m)->valuestring, n, m);
        if (cases[c].vocab_size == 1000) assert_true(merges < 1000 - 257); /* this one runs out of pairs */
        if (cases[c].long_runs) { /* the runs grew tokens to the limit and no further */
            int longest = 0;
            for (int t = 256; t < n->tokens; t++) longest = n->token_length[t] > longest ? n->token_length[t] : longest;
            assert_int_equal(longest, TOKENIZER_MAX_TOKEN_BYTES);
        }
        cJSON_Delete(json);
        for (int w = 0; w < n->words; w++) free(n->symbols[w]);
        free(n);
        free(text);
    }
    pretokenizer_free(pre);
}

/* The required fields, every id once, the end-of-text token last, merges that build tokens. */
static void test_json_structure(void **state) {
    (void)state;
    size_t length;
    char *text = random_corpus(7, 4000, 0, &length);
    const char *corpus = write_file("structure.txt", text, length);
    free(text);
    const char *out = work_path("structure.json");
    bpe_train_stats stats;
    assert_int_equal(train_one(corpus, 420, out, &stats), 0);
    assert_int_equal(stats.vocab_size, 420);
    assert_int_equal(stats.merges, 420 - 257);
    assert_true(stats.seconds >= 0.0);
    assert_false(file_exists(work_path("structure.json.tmp")));
    cJSON *json = load_json(out);
    assert_string_equal(item(json, "version")->valuestring, "1.0");
    assert_true(cJSON_IsNull(item(json, "truncation")) && cJSON_IsNull(item(json, "padding")));
    assert_true(cJSON_IsNull(item(json, "normalizer")));
    const cJSON *added = item(json, "added_tokens");
    assert_int_equal(cJSON_GetArraySize(added), 1);
    const cJSON *eos = cJSON_GetArrayItem(added, 0);
    assert_int_equal(item(eos, "id")->valueint, 419);
    assert_string_equal(item(eos, "content")->valuestring, "<|endoftext|>");
    assert_true(cJSON_IsTrue(item(eos, "special")) && cJSON_IsFalse(item(eos, "normalized")));
    assert_true(cJSON_IsFalse(item(eos, "single_word")) && cJSON_IsFalse(item(eos, "lstrip")));
    for (int k = 0; k < 3; k++) {
        const cJSON *part = item(json, (const char *[]){"pre_tokenizer", "post_processor", "decoder"}[k]);
        assert_string_equal(item(part, "type")->valuestring, "ByteLevel");
        assert_true(cJSON_IsTrue(item(part, "use_regex")));
        assert_int_equal(cJSON_IsTrue(item(part, "add_prefix_space")), k > 0);
    }
    const cJSON *model = item(json, "model");
    assert_string_equal(item(model, "type")->valuestring, "BPE");
    assert_true(cJSON_IsNull(item(model, "dropout")) && cJSON_IsNull(item(model, "unk_token")));
    assert_true(cJSON_IsFalse(item(model, "byte_fallback")) && cJSON_IsFalse(item(model, "fuse_unk")));

    const cJSON *vocab = item(model, "vocab");
    assert_int_equal(cJSON_GetArraySize(vocab), 420);
    char *seen = calloc(420, 1);
    char *names[420] = {0};
    for (const cJSON *entry = vocab->child; entry; entry = entry->next) {
        const int id = entry->valueint;
        assert_true(id >= 0 && id < 420);
        assert_false(seen[id]);
        seen[id] = 1;
        names[id] = entry->string;
    }
    assert_int_equal(item(vocab, "Ġ")->valueint, ' ');
    assert_int_equal(item(vocab, "\"")->valueint, '"'); /* escaped in the file */
    assert_int_equal(item(vocab, "\\")->valueint, '\\');
    assert_int_equal(item(vocab, "Ċ")->valueint, '\n');
    assert_int_equal(item(vocab, "<|endoftext|>")->valueint, 419);
    const cJSON *merges = item(model, "merges");
    assert_int_equal(cJSON_GetArraySize(merges), 420 - 257);
    for (int m = 0; m < 420 - 257; m++) { /* merge m joins two earlier tokens into token 256 + m */
        char joined[1024];
        const char *merge = cJSON_GetArrayItem(merges, m)->valuestring;
        const char *space = strchr(merge, ' ');
        assert_non_null(space);
        snprintf(joined, sizeof joined, "%.*s%s", (int)(space - merge), merge, space + 1);
        assert_string_equal(joined, names[256 + m]);
        *(char *)space = '\0';
        assert_true(item(vocab, merge)->valueint < 256 + m && item(vocab, space + 1)->valueint < 256 + m);
    }
    free(seen);
    cJSON_Delete(json);
}

static void test_deterministic(void **state) {
    (void)state;
    size_t length;
    char *text = random_corpus(11, 6000, 0, &length);
    const char *files[] = {write_file("det1.txt", text, length / 2), write_file("det2.txt", text + length / 2, length - length / 2)};
    free(text);
    assert_int_equal(bpe_train(files, 2, 700, work_path("det_a.json"), NULL), 0);
    assert_int_equal(bpe_train(files, 2, 700, work_path("det_b.json"), NULL), 0);
    size_t a_length, b_length;
    char *a = read_file(work_path("det_a.json"), &a_length), *b = read_file(work_path("det_b.json"), &b_length);
    assert_int_equal(a_length, b_length);
    assert_memory_equal(a, b, a_length);
    free(a);
    free(b);
}

static int count_into(void *user, const char *start, size_t length) {
    return bpe_train_pieces_add(user, start, length);
}

/* Chunks of any size give exactly the pieces of pre-tokenizing each file whole. */
static void test_chunked_reading(void **state) {
    (void)state;
    size_t length;
    char *text = random_corpus(5, 20000, 0, &length);
    const char *corpus = write_file("chunks.txt", text, length);
    bpe_train_pieces whole;
    assert_int_equal(bpe_train_pieces_init(&whole), 0);
    pretokenizer *pre;
    assert_int_equal(pretokenizer_create(&pre), 0);
    assert_int_equal(pretokenize(pre, text, length, count_into, &whole), 0);
    pretokenizer_free(pre);
    const size_t chunk_sizes[] = {16, 61, 333, 1 << 20};
    for (size_t c = 0; c < 4; c++) {
        bpe_train_pieces chunked;
        assert_int_equal(bpe_train_pieces_init(&chunked), 0);
        int64_t bytes = 0;
        assert_int_equal(bpe_train_count_corpus(&corpus, 1, chunk_sizes[c], &chunked, &bytes, NULL, NULL), 0);
        assert_int_equal(bytes, (int64_t)length);
        assert_int_equal(chunked.total, whole.total);
        assert_int_equal(chunked.size, whole.size);
        for (size_t i = 0; i < whole.size; i++)
            assert_int_equal(bpe_train_pieces_count(&chunked, whole.bytes + whole.start[i], whole.length[i]), whole.count[i]);
        bpe_train_pieces_free(&chunked);
    }
    bpe_train_pieces_free(&whole);
    free(text);
}

static int ignore_piece(void *user, const char *start, size_t length) {
    (void)user, (void)start, (void)length;
    return 0;
}

/* The trainer's UTF-8 check accepts exactly what PCRE2 does. */
static void test_utf8_check(void **state) {
    (void)state;
    static const char *const samples[] = {
        "plain", "caf\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xF4\x8F\xBF\xBF", "\xEF\xBF\xBF",
        "\xC0\xAF", "\xC1\xBF", "\xE0\x80\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xF8\x88\x80\x80\x80",
        "\x80", "\xBF", "\xE2\x82", "ok\xC3", "\xFE", "\xFF", "\xF0\x9F\x98", "\xC3\x28"};
    pretokenizer *pre;
    assert_int_equal(pretokenizer_create(&pre), 0);
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        const size_t length = strlen(samples[i]);
        const int valid = bpe_train_utf8_valid_prefix(samples[i], length) == length;
        if (valid != (pretokenize(pre, samples[i], length, ignore_piece, NULL) == 0))
            fail_msg("sample %zu: the trainer says %s, PCRE2 disagrees", i, valid ? "valid" : "invalid");
    }
    pretokenizer_free(pre);
    assert_int_equal(bpe_train_utf8_valid_prefix("abcdefghij\xC3", 11), 10);
    assert_int_equal(bpe_train_utf8_valid_prefix("abcdefghijklmnop\xE2\x82\xAC!\x80", 21), 20);
}

/* Fails with a message holding `want`, and leaves no output file. */
static void expect_failure(const char *const *files, int count, int vocab_size, const char *want) {
    const char *out = work_path("bad.json");
    remove(out);
    const int status = bpe_train(files, count, vocab_size, out, NULL);
    assert_true(status < 0);
    if (!strstr(pm_last_error(), want)) fail_msg("error '%s' lacks '%s'", pm_last_error(), want);
    assert_false(file_exists(out));
    assert_false(file_exists(work_path("bad.json.tmp")));
}

static void test_bad_input(void **state) {
    (void)state;
    const char *good[] = {write_file("good.txt", "to be or not to be\n", 19)};
    expect_failure(good, 1, 256, "out of range");
    expect_failure(good, 1, 1000001, "out of range");
    expect_failure(good, 0, 300, "at least one corpus file");
    const char *missing[] = {good[0], work_path("missing.txt")};
    expect_failure(missing, 2, 300, "missing.txt");
    const char *empty[] = {write_file("empty.txt", "", 0)};
    expect_failure(empty, 1, 300, "empty.txt' is empty");
    const char *latin1[] = {good[0], write_file("latin1.txt", "caf\xE9 au lait\n", 13)};
    expect_failure(latin1, 2, 300, "latin1.txt' is not valid UTF-8 at byte 3");
    /* An invalid byte far into a file is reported at its offset in the file, not the chunk. */
    char *big = malloc(5000000);
    for (size_t i = 0; i < 5000000; i++) big[i] = i % 50 == 49 ? '\n' : "abcde fgh"[i % 9];
    big[4999990] = (char)0xFF;
    const char *late[] = {write_file("late.txt", big, 5000000)};
    free(big);
    expect_failure(late, 1, 300, "late.txt' is not valid UTF-8 at byte 4999990");
    remove(late[0]);
    const char *folder[] = {work_dir};
    expect_failure(folder, 1, 300, "is a directory");
    assert_true(bpe_train(good, 1, 300, work_dir, NULL) < 0); /* the output is a directory */
    assert_non_null(strstr(pm_last_error(), "is a directory"));
    assert_true(bpe_train(good, 1, 300, work_path("no-such-dir/out.json"), NULL) < 0);
    assert_non_null(strstr(pm_last_error(), "no-such-dir"));
}

/* Train, load with tokenizer_load, encode the training text: it decodes back exactly, in
 * fewer tokens than bytes; the end-of-text token is the last id. */
static void test_round_trip(void **state) {
    (void)state;
    static const char english[] =
        "It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
        "age of foolishness; we had everything before us, we had nothing before us. I'm sure they'll "
        "say it's 1859 \xE2\x80\x94 caf\xC3\xA9s, na\xC3\xAFve r\xC3\xA9sum\xC3\xA9s and \xE6\x97\xA5\xE6\x9C\xAC.\n";
    size_t random_length;
    char *random = random_corpus(13, 6000, 1, &random_length);
    const size_t length = 20 * (sizeof english - 1) + random_length;
    char *text = malloc(length + 1);
    for (size_t i = 0; i < 20; i++) memcpy(text + i * (sizeof english - 1), english, sizeof english - 1);
    memcpy(text + 20 * (sizeof english - 1), random, random_length);
    free(random);
    const char *corpus = write_file("trip.txt", text, length);
    const char *out = work_path("trip.json");
    bpe_train_stats stats;
    assert_int_equal(train_one(corpus, 800, out, &stats), 0);
    tokenizer *tok = NULL;
    if (tokenizer_load(out, &tok) != 0) fail_msg("tokenizer_load: %s", pm_last_error());
    assert_int_equal(tok->vocab_size, stats.vocab_size);
    assert_int_equal(tok->eos_token, stats.vocab_size - 1);
    const int64_t count = tok->encode(tok, text, length, NULL, 0);
    assert_true(count > 0 && (size_t)count < length / 2);
    int32_t *ids = malloc((size_t)count * sizeof *ids);
    assert_int_equal(tok->encode(tok, text, length, ids, (size_t)count), count);
    char *decoded = malloc(length + TOKENIZER_MAX_TOKEN_BYTES), *at = decoded;
    for (int64_t i = 0; i < count; i++) {
        assert_true(ids[i] >= 0 && ids[i] < stats.vocab_size - 1);
        at += tok->decode_token(tok, ids[i], at, TOKENIZER_MAX_TOKEN_BYTES);
        assert_true((size_t)(at - decoded) <= length);
    }
    assert_int_equal((size_t)(at - decoded), length);
    assert_memory_equal(decoded, text, length);
    int32_t eos[2];
    assert_int_equal(tok->encode(tok, "<|endoftext|>", 13, eos, 2), 1);
    assert_int_equal(eos[0], stats.vocab_size - 1);
    tokenizer_free(tok);
    free(ids);
    free(decoded);
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_worked_merges),
        cmocka_unit_test(test_against_naive_trainer),
        cmocka_unit_test(test_json_structure),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_chunked_reading),
        cmocka_unit_test(test_utf8_check),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, make_work_dir, remove_work_dir);
}
