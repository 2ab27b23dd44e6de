/* The tokenizer's stages one at a time, each against Hugging Face's documented behaviour:
 * normalizers (Unicode forms through utf8proc, Prepend, Replace, Sequence), pre-tokenizers
 * (Split's five behaviors and invert on the docs' example, Qwen2's regex, Metaspace's prepend
 * schemes and split), and every refusal naming the component. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "check.h"
#include "core/error.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"

/* ------------------------------------------------------------------ normalizers */

static normalizer *normalizer_of(const char *json) {
    cJSON *item = cJSON_Parse(json);
    assert_non_null(item);
    normalizer *n = NULL;
    if (normalizer_from_json("t.json", item, &n) != 0) fail_msg("%s: %s", json, pm_last_error());
    cJSON_Delete(item);
    return n;
}

static void expect_normalized(const char *json, const char *text, const char *want) {
    normalizer *n = normalizer_of(json);
    assert_non_null(n);
    text_buffer out = {0};
    normalizer_scratch scratch = {0};
    assert_int_equal(normalize(n, text, strlen(text), &out, &scratch), 0);
    if (out.length != strlen(want) || (out.length && memcmp(out.data, want, out.length) != 0))
        fail_msg("%s on '%s' gave '%.*s', want '%s'", json, text, (int)out.length, out.data ? out.data : "", want);
    text_buffer_free(&out);
    normalizer_scratch_free(&scratch);
    normalizer_free(n);
}

static void test_unicode_forms(void **state) {
    (void)state;
    const char *nfc = "{\"type\": \"NFC\"}";
    expect_normalized(nfc, "caf" "e\xcc\x81", "caf\xc3\xa9");               /* e + U+0301 -> é */
    expect_normalized(nfc, "A\xcc\x8a ok", "\xc3\x85 ok");                   /* A + ring -> Å */
    expect_normalized(nfc, "\xe1\x84\x80\xe1\x85\xa1", "\xea\xb0\x80");      /* Hangul jamo -> 가 */
    expect_normalized(nfc, "\xef\xa4\x80", "\xe8\xb1\x88");                  /* U+F900 -> U+8C48 */
    expect_normalized(nfc, "plain ASCII \t\n", "plain ASCII \t\n");
    expect_normalized(nfc, "d\xc3\xa9j\xc3\xa0 \xe6\x9d\xb1", "d\xc3\xa9j\xc3\xa0 \xe6\x9d\xb1"); /* already NFC */
    /* combining marks in canonical order: U+0323 (ccc 220) before U+0307 (ccc 230) */
    expect_normalized(nfc, "s\xcc\x87\xcc\xa3", "\xe1\xb9\xa9");
    expect_normalized("{\"type\": \"NFD\"}", "\xc3\xa9", "e\xcc\x81");
    expect_normalized("{\"type\": \"NFKC\"}", "\xef\xac\x81" "x\xc2\xb2", "fix2"); /* ﬁ, ² */
    expect_normalized("{\"type\": \"NFKD\"}", "\xe2\x91\xa0", "1");                /* ① */
    expect_normalized("{\"type\": \"NFC\"}", "", "");
}

/* NFC through the inert-code-point shortcut equals utf8proc's NFC of the whole text, on random
 * strings of the code points where composition is subtle: combining marks out of order,
 * Hangul jamo, Indic vowel signs that compose with what precedes them, singletons,
 * composition exclusions. */
static void test_nfc_by_stretches(void **state) {
    (void)state;
    static const int32_t alphabet[] = {'a', 'e', 'A', 's', ' ', '<', '=', 0x300, 0x301, 0x307, 0x323, 0x338, 0x1100,
                                       0x1161, 0x11A8, 0xAC00, 0xAC01, 0x0B47, 0x0B3E, 0x0B56, 0x0BC6, 0x0BBE, 0x0BD7,
                                       0x0CBF, 0x0CD5, 0x0DD9, 0x0DCF, 0xF900, 0x0344, 0x0958, 0x2126, 0x00C5, 0x212B,
                                       0x0F73, 0x1E9B, 0x05D0, 0x05B7, 0x6771, 0x00E9, 0x1E63, 0x1D15E, 0x1D165};
    const int letters = (int)(sizeof alphabet / sizeof *alphabet);
    normalizer *n = normalizer_of("{\"type\": \"NFC\"}");
    text_buffer out = {0};
    normalizer_scratch scratch = {0};
    uint64_t random = 14;
    for (int trial = 0; trial < 20000; trial++) {
        char text[128];
        size_t length = 0;
        random = random * 6364136223846793005ull + 1442695040888963407ull;
        const int count = 1 + (int)((random >> 33) % 12);
        for (int i = 0; i < count; i++) {
            random = random * 6364136223846793005ull + 1442695040888963407ull;
            length += (size_t)utf8proc_encode_char(alphabet[(random >> 33) % (uint64_t)letters], (utf8proc_uint8_t *)text + length);
        }
        utf8proc_uint8_t *want = NULL;
        const utf8proc_ssize_t want_length = utf8proc_map((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)length, &want,
                                                          UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        assert_true(want_length >= 0);
        assert_int_equal(normalize(n, text, length, &out, &scratch), 0);
        if (out.length != (size_t)want_length || memcmp(out.data, want, out.length) != 0)
            fail_msg("trial %d: NFC of '%.*s' differs from utf8proc's", trial, (int)length, text);
        free(want);
    }
    text_buffer_free(&out);
    normalizer_scratch_free(&scratch);
    normalizer_free(n);
}

static void test_prepend_replace_sequence(void **state) {
    (void)state;
    expect_normalized("{\"type\": \"Prepend\", \"prepend\": \"\xe2\x96\x81\"}", "ab", "\xe2\x96\x81" "ab");
    expect_normalized("{\"type\": \"Prepend\", \"prepend\": \"\xe2\x96\x81\"}", "", ""); /* only non-empty text */
    expect_normalized("{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xe2\x96\x81\"}",
                      " a b  c ", "\xe2\x96\x81" "a\xe2\x96\x81" "b\xe2\x96\x81\xe2\x96\x81" "c\xe2\x96\x81");
    /* non-overlapping, left to right */
    expect_normalized("{\"type\": \"Replace\", \"pattern\": {\"String\": \"aa\"}, \"content\": \"b\"}", "aaaaa", "bba");
    expect_normalized("{\"type\": \"Replace\", \"pattern\": {\"String\": \"x\"}, \"content\": \"\"}", "axbxc", "abc");
    /* Llama-2's pair, in order: the prepended meta symbol is not replaced again */
    expect_normalized("{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"\xe2\x96\x81\"},"
                      " {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xe2\x96\x81\"}]}",
                      "hi there", "\xe2\x96\x81hi\xe2\x96\x81there");
    /* three steps: the buffers alternate correctly */
    expect_normalized("{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFD\"}, {\"type\": \"Replace\", "
                      "\"pattern\": {\"String\": \"\xcc\x81\"}, \"content\": \"\"}, {\"type\": \"Prepend\", \"prepend\": \"<\"}]}",
                      "caf\xc3\xa9", "<cafe");
    /* an empty Sequence is no normalizer at all */
    assert_null(normalizer_of("{\"type\": \"Sequence\", \"normalizers\": []}"));
    assert_null(normalizer_of("null"));
}

static void expect_refused(int (*parse)(const char *json), const char *json, const char *fragment) {
    pm_clear_error();
    if (parse(json) == 0) fail_msg("%s should be refused", json);
    const char *message = pm_last_error();
    if (!strstr(message, "t.json") || !strstr(message, fragment))
        fail_msg("refusing %s: message '%s' should name t.json and say '%s'", json, message, fragment);
}

static int parse_normalizer(const char *json) {
    cJSON *item = cJSON_Parse(json);
    normalizer *n = NULL;
    const int status = normalizer_from_json("t.json", item, &n);
    normalizer_free(n);
    cJSON_Delete(item);
    return status;
}

static void test_normalizer_refusals(void **state) {
    (void)state;
    expect_refused(parse_normalizer, "{\"type\": \"Lowercase\"}", "normalizer type Lowercase is not supported");
    expect_refused(parse_normalizer, "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, "
                   "{\"type\": \"StripAccents\"}]}", "normalizer type StripAccents");
    expect_refused(parse_normalizer, "{\"type\": \"Replace\", \"pattern\": {\"Regex\": \" +\"}, \"content\": \" \"}",
                   "Replace normalizer with a Regex pattern is not supported");
    expect_refused(parse_normalizer, "{\"type\": \"Replace\", \"pattern\": {\"String\": \"\"}, \"content\": \"x\"}",
                   "pattern is empty");
    expect_refused(parse_normalizer, "{\"type\": \"Prepend\"}", "Prepend normalizer has no string \"prepend\"");
    expect_refused(parse_normalizer, "{\"type\": \"Sequence\"}", "no \"normalizers\" array");
    /* cJSON does not check UTF-8; text built from a bad string would break characters */
    expect_refused(parse_normalizer, "{\"type\": \"Prepend\", \"prepend\": \"\xa5x\"}", "\"prepend\" is not valid UTF-8");
    expect_refused(parse_normalizer, "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xe2\x96\"}",
                   "\"content\" is not valid UTF-8");
    expect_refused(parse_normalizer, "[1]", "must be an object or null");
    expect_refused(parse_normalizer, "{}", "normalizer type (no type)");
}

/* ------------------------------------------------------------------ pre-tokenizers */

typedef struct {
    char text[1024];
    size_t used;
    int count;
} pieces;

/* Collects pieces as "a|b|c". */
static int collect(void *user, const char *start, size_t length) {
    pieces *p = user;
    if (p->count++) p->text[p->used++] = '|';
    memcpy(p->text + p->used, start, length);
    p->used += length;
    p->text[p->used] = '\0';
    return 0;
}

static void expect_pieces_at(const char *json, const char *text, bool at_start, const char *want) {
    cJSON *item = cJSON_Parse(json);
    if (!item) fail_msg("not JSON: %s", json);
    pre_tokenizer *p = NULL;
    bool byte_level;
    if (pre_tokenizer_from_json("t.json", item, &p, &byte_level) != 0) fail_msg("%s: %s", json, pm_last_error());
    pre_tokenizer_state *s = NULL;
    assert_int_equal(pre_tokenizer_state_create(p, &s), 0);
    pieces got = {{0}, 0, 0};
    assert_int_equal(pre_tokenize_text(p, s, text, strlen(text), at_start, collect, &got), 0);
    if (strcmp(got.text, want) != 0) fail_msg("%s on '%s': pieces '%s', want '%s'", json, text, got.text, want);
    pre_tokenizer_state_free(s);
    pre_tokenizer_free(p);
    cJSON_Delete(item);
}

static void expect_pieces(const char *json, const char *text, const char *want) {
    expect_pieces_at(json, text, true, want);
}

static void test_split_behaviors(void **state) {
    (void)state;
    /* The example of Hugging Face's SplitDelimiterBehavior documentation. */
    const char *text = "the-final--countdown";
    char json[256];
    const char *behaviors[5][2] = {{"Removed", "the|final|countdown"},
                                   {"Isolated", "the|-|final|-|-|countdown"},
                                   {"MergedWithPrevious", "the-|final-|-|countdown"},
                                   {"MergedWithNext", "the|-final|-|-countdown"},
                                   {"Contiguous", "the|-|final|--|countdown"}};
    for (int i = 0; i < 5; i++) {
        snprintf(json, sizeof json, "{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"%s\", "
                 "\"invert\": false}", behaviors[i][0]);
        expect_pieces(json, text, behaviors[i][1]);
    }
    /* invert: the pattern marks what to keep */
    expect_pieces("{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\d+\"}, \"behavior\": \"Removed\", \"invert\": true}",
                  "ab12cd345", "12|345");
    /* a String pattern is literal, not a regex */
    expect_pieces("{\"type\": \"Split\", \"pattern\": {\"String\": \".\"}, \"behavior\": \"Isolated\"}", "a.b", "a|.|b");
    expect_pieces("{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"Isolated\"}", "", "");
    /* one character: Removed drops it when it matches; the other behaviors keep it whole */
    expect_pieces("{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"Removed\"}", "-", "");
    expect_pieces("{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"Removed\", "
                  "\"invert\": true}", "x", "");
    expect_pieces("{\"type\": \"Split\", \"pattern\": {\"String\": \"\xc3\xa9\"}, \"behavior\": \"Contiguous\"}",
                  "\xc3\xa9", "\xc3\xa9");
}

static void test_family_regexes(void **state) {
    (void)state;
    /* Qwen2's pattern (as in its tokenizer.json, JSON-escaped). */
    const char *qwen = "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}"
                       "\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|"
                       "\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false}";
    expect_pieces(qwen, "Hello world's 123\n\n  x", "Hello| world|'s| |1|2|3|\n\n| | x");
    expect_pieces(qwen, "I'LL GO", "I|'LL| GO"); /* contractions in any case */
    /* Llama-3's: digits in runs of at most three */
    const char *llama3 = "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}"
                         "\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|"
                         "\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false}";
    expect_pieces(llama3, "1234567 ok", "123|456|7| ok");
    /* a Sequence: each step cuts the pieces of the one before; ByteLevel without its regex
     * leaves them as they are */
    expect_pieces("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
                  "\"\\\\p{N}{1,3}\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"Split\", \"pattern\": "
                  "{\"String\": \" \"}, \"behavior\": \"MergedWithNext\"}, {\"type\": \"ByteLevel\", \"add_prefix_space\": "
                  "false, \"use_regex\": false}]}", "ab 12345 c", "ab| |123|45| c");
    /* ByteLevel with its regex: GPT-2's pieces */
    expect_pieces("{\"type\": \"ByteLevel\", \"add_prefix_space\": false}", "It's  2 u", "It|'s| | 2| u");
}

static void test_metaspace(void **state) {
    (void)state;
    const char *always = "{\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", \"prepend_scheme\": \"always\", "
                         "\"split\": true}";
    expect_pieces(always, "Hey friend", "\xe2\x96\x81Hey|\xe2\x96\x81" "friend");
    expect_pieces(always, " Hey", "\xe2\x96\x81Hey");                        /* the space is the prefix */
    expect_pieces(always, "a  b", "\xe2\x96\x81" "a|\xe2\x96\x81|\xe2\x96\x81" "b"); /* runs: MergedWithNext */
    expect_pieces_at(always, "Hey", false, "\xe2\x96\x81Hey");
    const char *first = "{\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", \"prepend_scheme\": \"first\", "
                        "\"split\": false}";
    expect_pieces_at(first, "a b", true, "\xe2\x96\x81" "a\xe2\x96\x81" "b");
    expect_pieces_at(first, "a b", false, "a\xe2\x96\x81" "b"); /* not the start of the input */
    expect_pieces("{\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", \"prepend_scheme\": \"never\"}", "a b",
                  "a|\xe2\x96\x81" "b");
    /* older files: add_prefix_space instead of prepend_scheme */
    expect_pieces("{\"type\": \"Metaspace\", \"replacement\": \"_\", \"add_prefix_space\": false}", "a b", "a|_b");
}

static int parse_pre_tokenizer(const char *json) {
    cJSON *item = cJSON_Parse(json);
    pre_tokenizer *p = NULL;
    bool byte_level;
    const int status = pre_tokenizer_from_json("t.json", item, &p, &byte_level);
    pre_tokenizer_free(p);
    cJSON_Delete(item);
    return status;
}

static void test_pre_tokenizer_refusals(void **state) {
    (void)state;
    expect_refused(parse_pre_tokenizer, "{\"type\": \"Whitespace\"}", "pre_tokenizer type Whitespace is not supported");
    expect_refused(parse_pre_tokenizer, "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\"}]}",
                   "pre_tokenizer type Digits");
    expect_refused(parse_pre_tokenizer, "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(ab\"}, \"behavior\": "
                   "\"Isolated\"}", "Split pattern does not compile");
    expect_refused(parse_pre_tokenizer, "{\"type\": \"Split\", \"pattern\": {\"String\": \"a\"}, \"behavior\": \"Glued\"}",
                   "behavior Glued is not one of");
    expect_refused(parse_pre_tokenizer, "{\"type\": \"Split\", \"behavior\": \"Isolated\"}", "no \"pattern\" object");
    expect_refused(parse_pre_tokenizer, "{\"type\": \"Split\", \"pattern\": {\"String\": \"a\"}, \"behavior\": "
                   "\"Isolated\", \"invert\": 3}", "\"invert\" must be true or false");
    expect_refused(parse_pre_tokenizer, "{\"type\": \"ByteLevel\", \"add_prefix_space\": true}", "add_prefix_space");
    expect_refused(parse_pre_tokenizer, "{\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", "
                   "\"prepend_scheme\": \"sometimes\"}", "prepend_scheme 'sometimes'");
    expect_refused(parse_pre_tokenizer, "{\"type\": \"Metaspace\"}", "one-character \"replacement\"");
    expect_refused(parse_pre_tokenizer, "{\"type\": \"Metaspace\", \"replacement\": \"\x96\x81\"}", "one-character \"replacement\"");
    expect_refused(parse_pre_tokenizer, "{\"type\": \"Metaspace\", \"replacement\": \"ab\"}", "one-character \"replacement\"");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unicode_forms),       cmocka_unit_test(test_nfc_by_stretches),
        cmocka_unit_test(test_prepend_replace_sequence),
        cmocka_unit_test(test_normalizer_refusals), cmocka_unit_test(test_split_behaviors),
        cmocka_unit_test(test_family_regexes),      cmocka_unit_test(test_metaspace),
        cmocka_unit_test(test_pre_tokenizer_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
