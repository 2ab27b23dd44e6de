/* Whole tokenizer.json files beyond GPT-2's: SentencePiece-style BPE (Llama-2's normalizers and
 * decoder, Mistral's Metaspace) with byte fallback, the unknown token and fuse_unk; added
 * tokens' flags (lstrip, rstrip, single_word, normalized: HF's two passes); decoding whole
 * sequences; and the refusals of what is not supported, each naming it. Hand-made vocabularies
 * whose ids follow from Hugging Face's rules. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/error.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/tokenizer.h"

#define META "\xe2\x96\x81" /* U+2581 */

/* ------------------------------------------------------------------ helpers */

static char temp_path[64];

/* Loads the tokenizer.json text; NULL and the error set when it is refused. */
static tokenizer *load_text(const char *json) {
    strcpy(temp_path, "/tmp/test_tokenizer_spm.XXXXXX");
    const int fd = mkstemp(temp_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    tokenizer *tok = NULL;
    tokenizer_load(temp_path, &tok);
    unlink(temp_path);
    return tok;
}

static tokenizer *load_json(cJSON *root) {
    char *text = cJSON_PrintUnformatted(root);
    tokenizer *tok = load_text(text);
    if (!tok) fail_msg("loading failed: %s\n%s", pm_last_error(), text);
    cJSON_free(text);
    return tok;
}

static void expect_ids(const tokenizer *tok, const char *text, const int32_t *want, size_t want_count) {
    int32_t ids[256];
    const int64_t n = tok->encode(tok, text, strlen(text), ids, 256);
    if (n < 0) fail_msg("'%s': %s", text, pm_last_error());
    bool same = (size_t)n == want_count;
    for (int64_t i = 0; same && i < n; i++) same = ids[i] == want[i];
    if (!same) {
        char got[1024] = "";
        for (int64_t i = 0; i < n && i < 64; i++) snprintf(got + strlen(got), sizeof got - strlen(got), " %d", ids[i]);
        fail_msg("'%s': ids%s, want %zu others", text, got, want_count);
    }
}
#define EXPECT_IDS(tok, text, ...)                                  \
    do {                                                            \
        const int32_t want_[] = {__VA_ARGS__};                      \
        expect_ids(tok, text, want_, sizeof want_ / sizeof *want_); \
    } while (0)

static void expect_decoded(const tokenizer *tok, const int32_t *ids, size_t count, const char *want) {
    char text[1024];
    const int64_t n = tokenizer_decode(tok, ids, count, text, sizeof text);
    if (n < 0) fail_msg("decode: %s", pm_last_error());
    if ((size_t)n != strlen(want) || memcmp(text, want, (size_t)n) != 0)
        fail_msg("decoded '%.*s', want '%s'", (int)n, text, want);
}
#define EXPECT_DECODED(tok, want, ...)                                   \
    do {                                                                 \
        const int32_t ids_[] = {__VA_ARGS__};                            \
        expect_decoded(tok, ids_, sizeof ids_ / sizeof *ids_, want);     \
    } while (0)

static cJSON *object_of(const char *json) {
    cJSON *item = cJSON_Parse(json);
    if (!item) fail_msg("not JSON: %s", json);
    return item;
}

/* ------------------------------------------------------------------ SentencePiece-style */

enum { UNK = 0, BOS = 1, EOS = 2, BYTE0 = 3, SP = 259, A, B, C, SP_A, SP_AB, AB, A_SP, SP_C };

/* <unk> <s> </s>, <0x00>..<0xFF>, then ▁ a b c ▁a ▁ab ab a▁ ▁c; merges in rank order. The
 * normalizer, pre-tokenizer and decoder are Llama-2's unless the caller replaces them. */
static cJSON *spm_json(bool byte_fallback, bool with_cross_merge) {
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject();
    const char *specials[3] = {"<unk>", "<s>", "</s>"};
    cJSON *added = cJSON_CreateArray();
    for (int i = 0; i < 3; i++) {
        cJSON_AddNumberToObject(vocab, specials[i], i);
        cJSON *t = object_of("{\"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                             "\"special\": true}");
        cJSON_AddNumberToObject(t, "id", i);
        cJSON_AddStringToObject(t, "content", specials[i]);
        cJSON_AddItemToArray(added, t);
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        cJSON_AddNumberToObject(vocab, name, BYTE0 + b);
    }
    const char *words[] = {META, "a", "b", "c", META "a", META "ab", "ab", "a" META, META "c"};
    for (int i = 0; i < 9; i++) cJSON_AddNumberToObject(vocab, words[i], SP + i);
    cJSON *merges = cJSON_CreateArray();
    if (with_cross_merge) cJSON_AddItemToArray(merges, cJSON_CreateString("a " META)); /* rank 0: a▁ */
    cJSON_AddItemToArray(merges, cJSON_CreateString(META " a"));
    cJSON_AddItemToArray(merges, cJSON_CreateString(META "a b"));
    cJSON_AddItemToArray(merges, cJSON_CreateString("a b"));
    cJSON_AddItemToArray(merges, cJSON_CreateString(META " c"));
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddStringToObject(model, "unk_token", "<unk>");
    cJSON_AddBoolToObject(model, "fuse_unk", true);
    cJSON_AddBoolToObject(model, "byte_fallback", byte_fallback);
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", merges);
    cJSON_AddItemToObject(root, "model", model);
    cJSON_AddItemToObject(root, "added_tokens", added);
    cJSON_AddItemToObject(root, "normalizer", object_of(
        "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"" META "\"}, "
        "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"" META "\"}]}"));
    cJSON_AddNullToObject(root, "pre_tokenizer");
    cJSON_AddItemToObject(root, "post_processor", object_of(
        "{\"type\": \"TemplateProcessing\", \"single\": [], \"pair\": [], \"special_tokens\": {}}"));
    cJSON_AddItemToObject(root, "decoder", object_of(
        "{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"" META "\"}, "
        "\"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": \"Strip\", "
        "\"content\": \" \", \"start\": 1, \"stop\": 0}]}"));
    return root;
}

static void test_llama2_style(void **state) {
    (void)state;
    cJSON *root = spm_json(true, false);
    tokenizer *tok = load_json(root);
    assert_false(tok->lossless);
    assert_int_equal(tok->vocab_size, SP_C + 1);
    EXPECT_IDS(tok, "ab", SP_AB);                   /* ▁ a b: ▁a first (rank 0), then ▁ab */
    EXPECT_IDS(tok, "ab ab", SP_AB, SP_AB);         /* cut before ▁: words merged apart, same result */
    EXPECT_IDS(tok, "bab", SP, B, AB);              /* ▁ b a b: only "a b" applies */
    EXPECT_IDS(tok, "c", SP_C);
    /* é is not in the vocabulary: its two UTF-8 bytes as <0xC3> <0xA9> */
    EXPECT_IDS(tok, "\xc3\xa9", SP, BYTE0 + 0xC3, BYTE0 + 0xA9);
    /* added tokens split before normalizing: each stretch gets its own ▁ */
    EXPECT_IDS(tok, "a<s>b", SP_A, BOS, SP, B);
    EXPECT_IDS(tok, "<s>", BOS);
    /* decoding: ▁ is a space, byte tokens are bytes, one leading space is stripped */
    EXPECT_DECODED(tok, "ab", SP_AB);
    EXPECT_DECODED(tok, "ab ab", SP_AB, SP_AB);
    EXPECT_DECODED(tok, "\xc3\xa9", SP, BYTE0 + 0xC3, BYTE0 + 0xA9);
    EXPECT_DECODED(tok, " c", SP, SP_C);                  /* only one space is stripped */
    EXPECT_DECODED(tok, "a<s> b", SP_A, BOS, SP, B);
    char piece[TOKENIZER_MAX_TOKEN_BYTES];
    assert_int_equal(tok->decode_token(tok, SP_AB, piece, sizeof piece), 3); /* inside a sequence: " ab" */
    assert_memory_equal(piece, " ab", 3);
    assert_int_equal(tok->decode_token(tok, BYTE0 + 0x41, piece, sizeof piece), 1);
    assert_int_equal(piece[0], 'A');
    const int32_t outside = SP_C + 1;
    assert_true(tokenizer_decode(tok, &outside, 1, piece, sizeof piece) < 0);
    assert_non_null(strstr(pm_last_error(), "outside the vocabulary"));
    /* invalid UTF-8 is an error with its offset, not a crash */
    assert_true(tok->encode(tok, "ab\xff", 3, NULL, 0) < 0);
    assert_non_null(strstr(pm_last_error(), "not valid UTF-8 at byte 2"));
    tokenizer_free(tok);
    cJSON_Delete(root);
}

static void test_unknown_characters(void **state) {
    (void)state;
    cJSON *root = spm_json(false, false);
    tokenizer *tok = load_json(root);
    EXPECT_IDS(tok, "\xc3\xa9\xc3\xa9" "a", SP, UNK, A); /* fuse_unk: two unknown characters, one <unk> */
    tokenizer_free(tok);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(root, "model"), "fuse_unk", cJSON_CreateFalse());
    tok = load_json(root);
    EXPECT_IDS(tok, "\xc3\xa9\xc3\xa9" "a", SP, UNK, UNK, A);
    tokenizer_free(tok);
    /* neither byte fallback nor an unknown token: refused at encode time, naming the character */
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(root, "model"), "unk_token", cJSON_CreateNull());
    tok = load_json(root);
    assert_true(tok->encode(tok, "a\xc3\xa9", 3, NULL, 0) < 0);
    assert_non_null(strstr(pm_last_error(), "U+00E9"));
    tokenizer_free(tok);
    cJSON_Delete(root);
}

/* A token a▁ makes a merge across the start of a ▁ run: the piece must not be cut there. */
static void test_merge_across_meta(void **state) {
    (void)state;
    cJSON *root = spm_json(true, true);
    tokenizer *tok = load_json(root);
    EXPECT_IDS(tok, "a b", SP, A_SP, B); /* ▁ a ▁ b: a▁ (rank 0) before ▁a (rank 1) */
    tokenizer_free(tok);
    cJSON_Delete(root);
}

/* Mistral's newer files: no normalizer, Metaspace with prepend_scheme first, its decoder. */
static void test_metaspace_family(void **state) {
    (void)state;
    cJSON *root = spm_json(true, false);
    cJSON_ReplaceItemInObject(root, "normalizer", cJSON_CreateNull());
    cJSON_ReplaceItemInObject(root, "pre_tokenizer", object_of(
        "{\"type\": \"Metaspace\", \"replacement\": \"" META "\", \"prepend_scheme\": \"first\", \"split\": false}"));
    cJSON_ReplaceItemInObject(root, "decoder", object_of(
        "{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Metaspace\", \"replacement\": \"" META "\", "
        "\"prepend_scheme\": \"first\", \"split\": false}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}]}"));
    tokenizer *tok = load_json(root);
    EXPECT_IDS(tok, "ab c", SP_AB, SP_C);
    EXPECT_IDS(tok, "<s>ab", BOS, AB);         /* after an added token: not the first, no ▁ */
    EXPECT_DECODED(tok, "ab c", SP_AB, SP_C);  /* the first token's ▁ is dropped */
    EXPECT_DECODED(tok, "<s>ab", BOS, AB);
    tokenizer_free(tok);
    cJSON_Delete(root);
}

/* ------------------------------------------------------------------ added tokens */

/* Byte-level, no merges: a byte's id is the byte; added tokens from 256. */
static tokenizer *bytes_with_added(const char *added, const char *normalizer) {
    char json[16384];
    int at = snprintf(json, sizeof json, "{\"normalizer\": %s, \"pre_tokenizer\": {\"type\": \"ByteLevel\", "
                      "\"add_prefix_space\": false, \"use_regex\": false}, \"decoder\": {\"type\": \"ByteLevel\"}, "
                      "\"added_tokens\": %s, \"model\": {\"type\": \"BPE\", \"merges\": [], \"vocab\": {",
                      normalizer, added);
    cJSON *keys = cJSON_CreateObject();
    for (int b = 0; b < 256; b++) {
        char key[3] = {0};
        byte_to_utf8((uint8_t)b, key);
        cJSON_AddNumberToObject(keys, key, b);
    }
    char *vocab = cJSON_PrintUnformatted(keys);
    at += snprintf(json + at, sizeof json - (size_t)at, "%s}}", vocab + 1); /* without its '{' */
    cJSON_free(vocab);
    cJSON_Delete(keys);
    tokenizer *tok = load_text(json);
    if (!tok) fail_msg("loading failed: %s", pm_last_error());
    return tok;
}

static void test_added_token_flags(void **state) {
    (void)state;
    tokenizer *tok = bytes_with_added(
        "[{\"id\": 256, \"content\": \"<l>\", \"lstrip\": true, \"rstrip\": false, \"single_word\": false, "
        "\"normalized\": false, \"special\": true}, {\"id\": 257, \"content\": \"<r>\", \"lstrip\": false, "
        "\"rstrip\": true, \"single_word\": false, \"normalized\": false, \"special\": true}, {\"id\": 258, "
        "\"content\": \"<w>\", \"lstrip\": false, \"rstrip\": false, \"single_word\": true, \"normalized\": false, "
        "\"special\": false}, {\"id\": 259, \"content\": \"<l><r>\", \"lstrip\": false, \"rstrip\": false, "
        "\"single_word\": false, \"normalized\": false, \"special\": false}]", "null");
    EXPECT_IDS(tok, "a \t<l>b", 'a', 256, 'b');       /* lstrip takes the whitespace on the left */
    EXPECT_IDS(tok, "a<r> \n b", 'a', 257, 'b');      /* rstrip on the right */
    EXPECT_IDS(tok, "a <r>", 'a', ' ', 257);
    EXPECT_IDS(tok, "x <w> y", 'x', ' ', 258, ' ', 'y');
    EXPECT_IDS(tok, "x<w> y", 'x', '<', 'w', '>', ' ', 'y'); /* single_word: a letter touches it */
    EXPECT_IDS(tok, "<w>_", '<', 'w', '>', '_');             /* '_' is a word character */
    EXPECT_IDS(tok, "<w>.", 258, '.');
    EXPECT_IDS(tok, "<l><r>", 259);                          /* the longest match wins */
    EXPECT_IDS(tok, "<r> <l>", 257, 256);                    /* lstrip does not take what rstrip took */
    assert_false(tok->lossless);                             /* the whitespace they take is gone */
    tokenizer_free(tok);
    /* normalized true: matched in the normalized text; false: in the raw text, first */
    tok = bytes_with_added(
        "[{\"id\": 256, \"content\": \"yy\", \"lstrip\": false, \"rstrip\": false, \"single_word\": false, "
        "\"normalized\": true, \"special\": false}, {\"id\": 257, \"content\": \"xy\", \"lstrip\": false, "
        "\"rstrip\": false, \"single_word\": false, \"normalized\": false, \"special\": false}]",
        "{\"type\": \"Replace\", \"pattern\": {\"String\": \"x\"}, \"content\": \"y\"}");
    EXPECT_IDS(tok, "xx", 256);          /* normalized to yy */
    EXPECT_IDS(tok, "xy", 257);          /* raw match before normalizing */
    EXPECT_IDS(tok, "xxy", 'y', 257);    /* raw pass first: x|xy, then x -> y */
    assert_false(tok->lossless);
    tokenizer_free(tok);
}

/* Two threads encoding at once (each borrows its own normalizer, pre-tokenizer and cache
 * state) give the ids one thread gives. */
static void test_threads(void **state) {
    (void)state;
    cJSON *root = spm_json(true, false);
    tokenizer *tokenizers[2] = {load_json(root), bytes_with_added(
        "[{\"id\": 256, \"content\": \"<x>\", \"lstrip\": true, \"rstrip\": false, \"single_word\": false, "
        "\"normalized\": true, \"special\": true}]", "{\"type\": \"NFC\"}")};
    enum { TEXTS = 64 };
    char texts[TEXTS][64];
    static const char *parts[] = {"ab", " ", "c", "\xc3\xa9", "e\xcc\x81", "<s>", "<x>", "  ", "ba", "\xe6\x9d\xb1"};
    for (int t = 0; t < TEXTS; t++) {
        texts[t][0] = '\0';
        for (int k = 0; k < 6; k++) strcat(texts[t], parts[(t * 7 + k * 3 + k * k) % 10]);
    }
    for (int which = 0; which < 2; which++) {
        const tokenizer *tok = tokenizers[which];
        int32_t serial[TEXTS][64];
        int64_t counts[TEXTS];
        for (int t = 0; t < TEXTS; t++) counts[t] = tok->encode(tok, texts[t], strlen(texts[t]), serial[t], 64);
        int mismatches = 0;
#pragma omp parallel num_threads(2) reduction(+ : mismatches)
        for (int r = 0; r < 2000; r++) {
            const int t = omp_get_thread_num() == 0 ? r % TEXTS : TEXTS - 1 - r % TEXTS;
            int32_t ids[64];
            const int64_t n = tok->encode(tok, texts[t], strlen(texts[t]), ids, 64);
            if (n != counts[t] || memcmp(ids, serial[t], (size_t)n * sizeof *ids) != 0) mismatches++;
        }
        assert_int_equal(mismatches, 0);
    }
    tokenizer_free(tokenizers[0]);
    tokenizer_free(tokenizers[1]);
    cJSON_Delete(root);
}

/* ------------------------------------------------------------------ refusals */

static void expect_refused(cJSON *root, const char *fragment) {
    char *text = cJSON_PrintUnformatted(root);
    tokenizer *tok = load_text(text);
    if (tok) fail_msg("should be refused (%s):\n%s", fragment, text);
    const char *message = pm_last_error();
    if (!strstr(message, temp_path) || !strstr(message, fragment))
        fail_msg("message '%s' should name the file and say '%s'", message, fragment);
    cJSON_free(text);
    cJSON_Delete(root);
}

static cJSON *spm_with(const char *key, const char *json) {
    cJSON *root = spm_json(true, false);
    cJSON_DeleteItemFromObject(root, key);
    cJSON_AddItemToObject(root, key, json ? object_of(json) : cJSON_CreateNull());
    return root;
}

static void test_refusals(void **state) {
    (void)state;
    expect_refused(spm_with("decoder", NULL), "there is no decoder");
    expect_refused(spm_with("decoder", "{\"type\": \"WordPiece\"}"), "decoder type WordPiece is not supported");
    expect_refused(spm_with("decoder", "{\"type\": \"ByteLevel\"}"), "ByteLevel decoder needs a byte-level vocabulary");
    expect_refused(spm_with("decoder", "{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Fuse\"}, {\"type\": "
                            "\"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"b\"}]}"),
                   "decoder type Replace after Fuse is not supported");
    expect_refused(spm_with("decoder", "{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"bb\"}"),
                   "content is longer than its pattern");
    expect_refused(spm_with("post_processor", "{\"type\": \"RobertaProcessing\"}"), "post_processor type RobertaProcessing");
    expect_refused(spm_with("truncation", "{\"max_length\": 8}"), "\"truncation\" is set");
    expect_refused(spm_with("padding", "{\"strategy\": \"BatchLongest\"}"), "\"padding\" is set");
    expect_refused(spm_with("normalizer", "{\"type\": \"BertNormalizer\"}"), "normalizer type BertNormalizer");
    expect_refused(spm_with("pre_tokenizer", "{\"type\": \"Punctuation\"}"), "pre_tokenizer type Punctuation");
    cJSON *root = spm_json(true, false);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(root, "model"), "unk_token", cJSON_CreateString("<nope>"));
    expect_refused(root, "unknown token '<nope>'");
    root = spm_json(true, false);
    cJSON_AddTrueToObject(cJSON_GetObjectItem(root, "model"), "ignore_merges");
    expect_refused(root, "ignore_merges is supported with byte-level vocabularies only");
    root = spm_json(true, false);
    cJSON_ReplaceItemInObject(root, "pre_tokenizer", object_of("{\"type\": \"ByteLevel\", \"use_regex\": false}"));
    expect_refused(root, "byte_fallback is set with a ByteLevel pre-tokenizer");
    root = spm_json(true, false);
    cJSON_AddStringToObject(cJSON_GetObjectItem(root, "model"), "continuing_subword_prefix", "##");
    expect_refused(root, "continuing_subword_prefix");
    root = spm_json(true, false);
    cJSON_AddItemToArray(cJSON_GetObjectItem(root, "added_tokens"),
                         object_of("{\"id\": 3, \"content\": \"<x>\", \"lstrip\": \"yes\"}"));
    expect_refused(root, "\"lstrip\" must be true or false");
    root = spm_json(true, false);
    cJSON_AddItemToArray(cJSON_GetObjectItem(root, "added_tokens"), object_of("{\"id\": 3, \"content\": \"\xa9\"}"));
    expect_refused(root, "has no UTF-8 string \"content\"");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama2_style),      cmocka_unit_test(test_unknown_characters),
        cmocka_unit_test(test_merge_across_meta), cmocka_unit_test(test_metaspace_family),
        cmocka_unit_test(test_added_token_flags), cmocka_unit_test(test_threads),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
