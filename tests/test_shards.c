/* Token shards and `data prepare`: round trips in both token widths, every kind of damaged
 * shard rejected with its own message, and corpus preparation (split sizes, eos separators,
 * data.json, and bad input that must leave nothing behind). */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fs.h"
#include "data/corpus.h"
#include "data/shards.h"
#include "data/text_data.h"
#include "data_fixtures.h"

/* Overwrites `length` bytes at offset of a file. */
static void patch(const char *path, long offset, const void *bytes, size_t length) {
    FILE *file = fopen(path, "r+b");
    assert_non_null(file);
    assert_int_equal(fseek(file, offset, SEEK_SET), 0);
    assert_int_equal(fwrite(bytes, 1, length, file), length);
    fclose(file);
}

static long file_size(const char *path) {
    struct stat info;
    assert_int_equal(stat(path, &info), 0);
    return (long)info.st_size;
}

static void round_trip(uint32_t vocab_size, uint32_t width) {
    const size_t count = 100003; /* spans several write chunks, not a multiple of one */
    int32_t *tokens = malloc(sizeof(int32_t) * count);
    pm_rng rng;
    pm_rng_init(&rng, 5, 0);
    for (size_t i = 0; i < count; i++) tokens[i] = (int32_t)(pm_rng_u32(&rng) % vocab_size);
    tokens[0] = 0;
    tokens[1] = (int32_t)vocab_size - 1; /* both ends of the vocabulary survive */
    const char *path = scratch("round_trip.bin");
    const uint64_t hash = 0x0123456789ABCDEFull;
    assert_int_equal(shard_write(path, tokens, count, vocab_size, hash), PM_OK);
    assert_int_equal(file_size(path), SHARD_HEADER_BYTES + (long)(count * width));

    shard_header header;
    assert_int_equal(shard_read_header(path, &header), PM_OK);
    assert_int_equal(header.version, 1);
    assert_int_equal(header.vocab_size, vocab_size);
    assert_true(header.vocab_hash == hash);
    assert_int_equal(header.token_width, width);
    assert_int_equal(header.token_count, count);

    token_shard shard;
    assert_int_equal(shard_read(path, hash, &shard), PM_OK);
    assert_int_equal(shard.count, count);
    assert_memory_equal(shard.tokens, tokens, sizeof(int32_t) * count);
    shard_free(&shard);
    free(tokens);
    assert_int_equal(entry_count(scratch_dir), 1); /* no temporary file left */
    unlink(path);
}

static void test_round_trip_u16(void **state) {
    (void)state;
    round_trip(300, 2);
    round_trip(65536, 2); /* the largest vocabulary that fits two bytes */
}

static void test_round_trip_u32(void **state) {
    (void)state;
    round_trip(65537, 4);
    round_trip(200000, 4);
}

static void test_little_endian_layout(void **state) {
    (void)state;
    const int32_t tokens[] = {0x0102, 7};
    const char *path = scratch("layout.bin");
    assert_int_equal(shard_write(path, tokens, 2, 1000, 0x1122334455667788ull), PM_OK);
    size_t length;
    unsigned char *bytes = (unsigned char *)read_all(path, &length);
    const unsigned char want[] = {'P', 'M', 'S', 'H', 'A', 'R', 'D', 0, 1, 0, 0, 0, 0xE8, 3, 0, 0,
                                  0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 2, 0, 0, 0, 0, 0, 0, 0,
                                  2, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x01, 7, 0};
    assert_int_equal(length, sizeof want);
    assert_memory_equal(bytes, want, sizeof want);
    free(bytes);
    unlink(path);
}

static void test_empty_shard(void **state) {
    (void)state;
    const char *path = scratch("empty.bin");
    assert_int_equal(shard_write(path, NULL, 0, 256, 9), PM_OK);
    token_shard shard;
    assert_int_equal(shard_read(path, 9, &shard), PM_OK);
    assert_int_equal(shard.count, 0);
    shard_free(&shard);
    unlink(path);
}

/* Writes a good shard of 10 tokens (vocab 1000, hash 42) for a corruption to damage. */
static const char *good_shard(void) {
    const int32_t tokens[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 999};
    const char *path = scratch("damaged.bin");
    assert_int_equal(shard_write(path, tokens, 10, 1000, 42), PM_OK);
    return path;
}

static void expect_read_error(const char *path, uint64_t hash, const char *message) {
    token_shard shard;
    assert_int_equal(shard_read(path, hash, &shard), PM_ERR_ARG);
    if (!strstr(pm_last_error(), message)) fail_msg("'%s' lacks '%s'", pm_last_error(), message);
    if (!strstr(pm_last_error(), path)) fail_msg("'%s' does not name the file", pm_last_error());
    assert_null(shard.tokens);
    assert_int_equal(shard.count, 0);
}

static void test_corruptions(void **state) {
    (void)state;
    const char *path = good_shard();
    patch(path, 0, "X", 1);
    expect_read_error(path, 42, "not a probmoe token shard");

    path = good_shard();
    patch(path, 8, "\x02", 1);
    expect_read_error(path, 42, "version 2 shard");

    path = good_shard();
    patch(path, 24, "\x03", 1);
    expect_read_error(path, 42, "token width 3");

    path = good_shard();
    assert_int_equal(truncate(path, SHARD_HEADER_BYTES + 19), 0);
    expect_read_error(path, 42, "truncated");

    path = good_shard();
    assert_int_equal(truncate(path, 12), 0);
    expect_read_error(path, 42, "less than the 40-byte shard header");

    path = good_shard();
    assert_int_equal(truncate(path, SHARD_HEADER_BYTES + 21), 0);
    expect_read_error(path, 42, "longer than its header says");

    path = good_shard();
    patch(path, 32, "\xff\xff\xff\xff\xff\xff\xff\x7f", 8); /* a count whose byte size overflows */
    expect_read_error(path, 42, "truncated");

    path = good_shard();
    patch(path, SHARD_HEADER_BYTES + 2 * 7, "\xe8\x03", 2); /* token 7 := 1000 = vocab_size */
    expect_read_error(path, 42, "token 7 is 1000, outside the vocabulary of 1000 tokens");

    path = good_shard();
    patch(path, 24, "\x04", 1); /* width 4, so the payload no longer matches either */
    patch(path, 12, "\x00\x00\x00\x80", 4); /* vocab_size 2^31: tokens would not fit an int32 */
    expect_read_error(path, 42, "vocab_size 2147483648 in its header (1 to 16777216 allowed)");

    path = good_shard();
    expect_read_error(path, 43, "was made with another tokenizer");

    expect_read_error(scratch("missing.bin"), 42, "cannot open");
    unlink(path);
}

static void test_writer_refuses_bad_tokens(void **state) {
    (void)state;
    const int32_t tokens[] = {1, 256, 3};
    const char *path = scratch("refused.bin");
    assert_int_equal(shard_write(path, tokens, 3, 256, 0), PM_ERR_ARG);
    assert_non_null(strstr(pm_last_error(), "token 1 is 256"));
    const int32_t negative[] = {-1};
    assert_int_equal(shard_write(path, negative, 1, 256, 0), PM_ERR_ARG);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(entry_count(scratch_dir), 0);
}

/* Shards whose header claims a larger vocabulary than the tokenizer's (the hash matching) are
 * refused by name before any id is used; the unigram baseline never indexes past its table. */
static void test_shard_vocabulary_larger_than_tokenizer(void **state) {
    (void)state;
    const tokenizer *bytes = tokenizer_bytes();
    enum { COUNT = 300 };
    int32_t tokens[COUNT];
    for (int i = 0; i < COUNT; i++) tokens[i] = (i * 37) % 1000; /* ids up to 999: beyond the 256 bytes */
    const char *dir = scratch("big_vocab");
    assert_int_equal(ensure_directory(dir), 0);
    char path[4200];
    snprintf(path, sizeof path, "%s/train.bin", dir);
    assert_int_equal(shard_write(path, tokens, COUNT, 1000, bytes->vocab_hash), 0);
    snprintf(path, sizeof path, "%s/val.bin", dir);
    assert_int_equal(shard_write(path, tokens, COUNT, 1000, bytes->vocab_hash), 0);
    text_data data;
    assert_true(text_data_load_shards(&data, dir, bytes, 8) < 0);
    assert_non_null(strstr(pm_last_error(), "declare a vocabulary of 1000 tokens but the bytes tokenizer has 256"));
    text_data direct = {tokens, COUNT, COUNT / 2};
    assert_true(isnan(text_data_unigram_loss(&direct, 256)));
    assert_false(isnan(text_data_unigram_loss(&direct, 1000)));
}

static void test_overwrite_is_atomic(void **state) {
    (void)state;
    const char *path = scratch("replace.bin");
    const int32_t old_tokens[] = {1, 2, 3}, new_tokens[] = {4, 5};
    assert_int_equal(shard_write(path, old_tokens, 3, 10, 1), PM_OK);
    assert_int_equal(shard_write(path, new_tokens, 2, 10, 1), PM_OK);
    token_shard shard;
    assert_int_equal(shard_read(path, 1, &shard), PM_OK);
    assert_int_equal(shard.count, 2);
    assert_int_equal(shard.tokens[1], 5);
    shard_free(&shard);
    assert_int_equal(entry_count(scratch_dir), 1);
    /* a directory that cannot hold the temporary file: an error, nothing written */
    assert_int_equal(shard_write(scratch("no-such-dir/x.bin"), new_tokens, 2, 10, 1), PM_ERR_ARG);
    assert_non_null(strstr(pm_last_error(), "no-such-dir"));
    unlink(path);
}

/* ------------------------------------------------------------------ data prepare */

static token_shard read_shard(const char *dir, const char *name, uint64_t hash) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    token_shard shard;
    int status = shard_read(path, hash, &shard);
    if (status != PM_OK) fail_msg("%s", pm_last_error());
    return shard;
}

/* The stream of a source: each document's bytes followed by eos. */
static size_t source_stream(const char *const *texts, int count, int32_t *out) {
    size_t n = 0;
    for (int d = 0; d < count; d++) {
        for (const char *c = texts[d]; *c; c++) out[n++] = (unsigned char)*c;
        out[n++] = TEST_EOS;
    }
    return n;
}

static void test_prepare_split_and_separators(void **state) {
    (void)state;
    const char *a_texts[] = {"hello world\n", "second doc"};
    char b_text[101];
    for (int i = 0; i < 100; i++) b_text[i] = (char)('a' + i % 26);
    b_text[100] = '\0';
    const char *b_texts[] = {b_text};
    write_text(scratch("a1.txt"), a_texts[0]);
    write_text(scratch("a2.txt"), a_texts[1]);
    write_text(scratch("b.txt"), b_text);
    char a1[512], a2[512], b[512], out[512];
    snprintf(a1, sizeof a1, "%s", scratch("a1.txt"));
    snprintf(a2, sizeof a2, "%s", scratch("a2.txt"));
    snprintf(b, sizeof b, "%s", scratch("b.txt"));
    snprintf(out, sizeof out, "%s", scratch("out/nested"));
    const char *a_files[] = {a1, a2}, *b_files[] = {b};
    const corpus_source sources[] = {{"a", a_files, 2}, {"b", b_files, 1}};
    corpus_options options = {&test_tokenizer, "test.json", 0.25, false};
    corpus_stats stats[2];
    int status = corpus_prepare(out, sources, 2, &options, stats);
    if (status != PM_OK) fail_msg("%s", pm_last_error());

    /* a: 12 + 1 + 10 + 1 = 24 tokens, 18 for training; b: 101 tokens, 75 for training */
    int32_t a_stream[64], b_stream[128];
    size_t a_count = source_stream(a_texts, 2, a_stream), b_count = source_stream(b_texts, 1, b_stream);
    assert_int_equal(a_count, 24);
    assert_int_equal(b_count, 101);
    assert_int_equal(stats[0].documents, 2);
    assert_int_equal(stats[0].bytes, 22);
    assert_int_equal(stats[0].train_tokens, 18);
    assert_int_equal(stats[0].val_tokens, 6);
    assert_int_equal(stats[1].train_tokens, 75);
    assert_int_equal(stats[1].val_tokens, 26);
    assert_int_equal(a_stream[12], TEST_EOS); /* the separator after the first document */

    token_shard train = read_shard(out, "train.bin", test_tokenizer.vocab_hash);
    token_shard val = read_shard(out, "val.bin", test_tokenizer.vocab_hash);
    assert_int_equal(train.count, 18 + 75);
    assert_memory_equal(train.tokens, a_stream, sizeof(int32_t) * 18);
    assert_memory_equal(train.tokens + 18, b_stream, sizeof(int32_t) * 75);
    assert_int_equal(val.count, 6 + 26);
    assert_memory_equal(val.tokens, a_stream + 18, sizeof(int32_t) * 6);
    assert_memory_equal(val.tokens + 6, b_stream + 75, sizeof(int32_t) * 26);
    assert_int_equal(val.tokens[5], TEST_EOS);
    assert_int_equal(val.tokens[31], TEST_EOS);
    shard_free(&train);
    shard_free(&val);

    char json_path[1024];
    snprintf(json_path, sizeof json_path, "%s/data.json", out);
    char *text = read_all(json_path, NULL);
    cJSON *root = cJSON_Parse(text);
    free(text);
    assert_non_null(root);
    const cJSON *tok = cJSON_GetObjectItem(root, "tokenizer");
    assert_string_equal(cJSON_GetObjectItem(tok, "name")->valuestring, "bytes+eos");
    assert_string_equal(cJSON_GetObjectItem(tok, "path")->valuestring, "test.json");
    assert_string_equal(cJSON_GetObjectItem(tok, "vocab_hash")->valuestring, "7465737445305331");
    assert_int_equal(cJSON_GetObjectItem(tok, "vocab_size")->valueint, TEST_VOCAB);
    assert_int_equal(cJSON_GetObjectItem(tok, "eos_token")->valueint, TEST_EOS);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "train"), "tokens")->valueint, 93);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "val"), "tokens")->valueint, 32);
    const cJSON *list = cJSON_GetObjectItem(root, "sources");
    assert_int_equal(cJSON_GetArraySize(list), 2);
    const cJSON *first = cJSON_GetArrayItem(list, 0);
    assert_string_equal(cJSON_GetObjectItem(first, "name")->valuestring, "a");
    assert_int_equal(cJSON_GetObjectItem(first, "val_tokens")->valueint, 6);
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(first, "files"), 1)->valuestring, a2);
    cJSON_Delete(root);
    assert_int_equal(entry_count(out), 3); /* no staging directory left */

    /* prepared data is not replaced by accident, and is on request */
    assert_int_equal(corpus_prepare(out, sources, 1, &options, NULL), PM_ERR_ARG);
    assert_non_null(strstr(pm_last_error(), "already exists"));
    options.overwrite = true;
    options.val_fraction = 0.0;
    assert_int_equal(corpus_prepare(out, sources, 1, &options, stats), PM_OK);
    val = read_shard(out, "val.bin", test_tokenizer.vocab_hash);
    assert_int_equal(val.count, 0);
    shard_free(&val);
    train = read_shard(out, "train.bin", test_tokenizer.vocab_hash);
    assert_int_equal(train.count, 24);
    shard_free(&train);
}

static void test_prepare_bytes_without_eos(void **state) {
    (void)state;
    write_text(scratch("plain.txt"), "0123456789");
    char file[512], out[512];
    snprintf(file, sizeof file, "%s", scratch("plain.txt"));
    snprintf(out, sizeof out, "%s", scratch("plain_out"));
    const char *files[] = {file, file};
    const corpus_source source = {"twice", files, 2};
    corpus_options options = {tokenizer_bytes(), NULL, 0.1, false};
    assert_int_equal(corpus_prepare(out, &source, 1, &options, NULL), PM_OK);
    token_shard train = read_shard(out, "train.bin", tokenizer_bytes()->vocab_hash);
    token_shard val = read_shard(out, "val.bin", tokenizer_bytes()->vocab_hash);
    assert_int_equal(train.count, 18); /* (1 - 0.1) * 20; no separators */
    assert_int_equal(val.count, 2);
    assert_int_equal(train.tokens[10], '0');
    assert_int_equal(val.tokens[1], '9');
    assert_int_equal(train.header.token_width, 2);
    shard_free(&train);
    shard_free(&val);
}

/* Prepares one bad file next to a good one: the error names the file and the problem, and
 * neither the output directory nor anything in the existing one appears. */
static void expect_prepare_error(const char *bad_file, const tokenizer *tok, const char *message) {
    char good[512], out[512], existing[512];
    snprintf(good, sizeof good, "%s", scratch("good.txt"));
    write_text(good, "fine text\n");
    snprintf(out, sizeof out, "%s", scratch("never"));
    const char *files[] = {good, bad_file};
    const corpus_source source = {"s", files, 2};
    corpus_options options = {tok, NULL, 0.1, false};
    assert_int_equal(corpus_prepare(out, &source, 1, &options, NULL), PM_ERR_ARG);
    if (!strstr(pm_last_error(), message)) fail_msg("'%s' lacks '%s'", pm_last_error(), message);
    if (!strstr(pm_last_error(), bad_file)) fail_msg("'%s' does not name %s", pm_last_error(), bad_file);
    assert_int_equal(access(out, F_OK), -1);
    snprintf(existing, sizeof existing, "%s", scratch("existing"));
    mkdir(existing, 0755);
    assert_int_equal(corpus_prepare(existing, &source, 1, &options, NULL), PM_ERR_ARG);
    assert_int_equal(entry_count(existing), 0);
}

static void test_prepare_bad_input(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s", scratch("missing.txt"));
    expect_prepare_error(path, &test_tokenizer, "cannot open the corpus file");

    snprintf(path, sizeof path, "%s", scratch("empty.txt"));
    write_text(path, "");
    expect_prepare_error(path, &test_tokenizer, "is empty");

    snprintf(path, sizeof path, "%s", scratch("latin1.txt"));
    write_text(path, "line one\nna\xefve\n");
    expect_prepare_error(path, tokenizer_bytes(), "byte offset 11 (line 2)");

    snprintf(path, sizeof path, "%s", scratch("tilde.txt"));
    write_text(path, "abc~");
    expect_prepare_error(path, &test_tokenizer, "the test tokenizer refuses '~' at byte 3");

    const corpus_source none = {"none", NULL, 0};
    corpus_options options = {&test_tokenizer, NULL, 1.0, false};
    assert_int_equal(corpus_prepare(scratch("never"), &none, 1, &options, NULL), PM_ERR_ARG);
    assert_non_null(strstr(pm_last_error(), "below 1"));
    options.val_fraction = 0.1;
    assert_int_equal(corpus_prepare(scratch("never"), &none, 1, &options, NULL), PM_ERR_ARG);
    assert_non_null(strstr(pm_last_error(), "has no files"));
}

/* Well-formed UTF-8 passes; each kind of malformed sequence is caught at its first byte. */
static void test_utf8_check(void **state) {
    (void)state;
    const struct {
        const char *text;
        long bad_offset; /* -1: valid */
    } cases[] = {
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e", -1}, /* é € 𝄞 */
        {"ab\xc0\xaf", 2},                                  /* overlong '/' */
        {"a\xed\xa0\x80", 1},                               /* a UTF-16 surrogate */
        {"\xf4\x90\x80\x80", 0},                            /* above U+10FFFF */
        {"xy\xe2\x82", 2},                                  /* cut short by the end */
        {"\x80", 0},                                        /* a lone continuation byte */
    };
    corpus_options options = {tokenizer_bytes(), NULL, 0.5, false};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char file[512], out[512], expected[64];
        snprintf(file, sizeof file, "%s", scratch("utf8.txt"));
        snprintf(out, sizeof out, "%s", scratch("utf8_out"));
        write_text(file, cases[i].text);
        const char *files[] = {file};
        const corpus_source source = {"utf8", files, 1};
        int status = corpus_prepare(out, &source, 1, &options, NULL);
        if (cases[i].bad_offset < 0) {
            if (status != PM_OK) fail_msg("case %zu: %s", i, pm_last_error());
            options.overwrite = true;
            continue;
        }
        assert_int_equal(status, PM_ERR_ARG);
        snprintf(expected, sizeof expected, "byte offset %ld (line 1)", cases[i].bad_offset);
        if (!strstr(pm_last_error(), expected)) fail_msg("case %zu: '%s' lacks '%s'", i, pm_last_error(), expected);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_u16),
        cmocka_unit_test(test_round_trip_u32),
        cmocka_unit_test(test_little_endian_layout),
        cmocka_unit_test(test_empty_shard),
        cmocka_unit_test(test_corruptions),
        cmocka_unit_test(test_writer_refuses_bad_tokens),
        cmocka_unit_test(test_overwrite_is_atomic),
        cmocka_unit_test(test_shard_vocabulary_larger_than_tokenizer),
        cmocka_unit_test(test_prepare_split_and_separators),
        cmocka_unit_test(test_prepare_bytes_without_eos),
        cmocka_unit_test(test_prepare_bad_input),
        cmocka_unit_test(test_utf8_check),
    };
    return cmocka_run_group_tests(tests, make_scratch, remove_scratch);
}
