/* GSM8K as supervised data: parsing the real test file (exact prompt format, final answers),
 * answer extraction and matching, malformed lines (reported with their line, skipped or
 * stopping), loss masks on answer tokens only, and packed and padded rows. */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/gsm8k.h"
#include "data/sft.h"
#include "data_fixtures.h"

/* The shared copy next to the repository (as scripts/fetch_data.sh looks first), else the
 * one scripts/fetch_data.sh gsm8k-test downloads into data/. */
static const char *gsm8k_test_file(void) {
    static const char *const candidates[] = {FIXTURE_DIR "/../../../shared/data/gsm8k/test.jsonl",
                                             FIXTURE_DIR "/../../data/gsm8k/test.jsonl"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
        if (access(candidates[i], R_OK) == 0) return candidates[i];
    return NULL;
}

static void test_real_lines(void **state) {
    (void)state;
    const char *path = gsm8k_test_file();
    if (!path) {
        print_message("GSM8K test.jsonl not found; run scripts/fetch_data.sh gsm8k-test\n");
        skip();
    }
    gsm8k_set set;
    int status = gsm8k_load(path, false, &set);
    if (status != PM_OK) fail_msg("%s", pm_last_error());
    assert_int_equal(set.count, 1319);
    assert_int_equal(set.skipped, 0);

    const gsm8k_example *first = &set.examples[0];
    assert_string_equal(first->prompt,
                        "Answer the following question.\n\nQuestion: Janet\xe2\x80\x99s ducks lay 16 eggs per day. "
                        "She eats three for breakfast every morning and bakes muffins for her friends every day "
                        "with four. She sells the remainder at the farmers' market daily for $2 per fresh duck "
                        "egg. How much in dollars does she make every day at the farmers' market?\nAnswer:");
    assert_string_equal(first->completion,
                        " Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = "
                        "$<<9*2=18>>18 every day at the farmer\xe2\x80\x99s market.\n#### 18");
    assert_string_equal(first->final_answer, "18");
    assert_int_equal(first->line, 1);
    const char *finals[] = {"18", "3", "70000", "540", "20"};
    for (int i = 0; i < 5; i++) {
        assert_string_equal(set.examples[i].final_answer, finals[i]);
        assert_int_equal(set.examples[i].line, i + 1);
        /* prompt and completion are the question and answer in the documented frame */
        char prompt[4096];
        snprintf(prompt, sizeof prompt, "Answer the following question.\n\nQuestion: %s\nAnswer:",
                 set.examples[i].question);
        assert_string_equal(set.examples[i].prompt, prompt);
        assert_string_equal(set.examples[i].completion + 1, set.examples[i].answer);
        assert_int_equal(set.examples[i].completion[0], ' ');
    }
    assert_string_equal(set.examples[146].final_answer, "2125");    /* "#### 2,125" */
    assert_string_equal(set.examples[489].final_answer, "-10");     /* "#### -10" */
    assert_string_equal(set.examples[611].final_answer, "1450000"); /* "#### 1,450,000" */

    /* masks: with byte tokens, exactly the completion's bytes and eos carry loss */
    sft_tokens tokens;
    assert_int_equal(gsm8k_tokenize(&set, &test_tokenizer, &tokens), PM_OK);
    assert_int_equal(tokens.count, 1319);
    for (int i = 0; i < 5; i++) {
        const gsm8k_example *example = &set.examples[i];
        size_t start = tokens.offsets[i], prompt = strlen(example->prompt), completion = strlen(example->completion);
        assert_int_equal(tokens.offsets[i + 1] - start, prompt + completion + 1);
        for (size_t p = 0; p < prompt + completion + 1; p++) {
            assert_int_equal(tokens.loss_mask[start + p], p >= prompt);
            int want = p < prompt ? (unsigned char)example->prompt[p]
                       : p < prompt + completion ? (unsigned char)example->completion[p - prompt] : TEST_EOS;
            assert_int_equal(tokens.tokens[start + p], want);
        }
    }
    sft_tokens_free(&tokens);
    gsm8k_free(&set);
}

static void test_answer_extraction(void **state) {
    (void)state;
    const struct {
        const char *text, *want; /* want NULL: no answer */
    } cases[] = {
        {"so 1000 + 234.\n#### 1,234", "1234"},
        {"#### -5", "-5"},
        {"#### 0.25", "0.25"},
        {"work\n####   72  \n", "72"},
        {"#### 1,450,000", "1450000"},
        {" The answer is #### 18\n\nQuestion: next one", "18"}, /* a generation that runs on */
        {"no marker here", NULL},
        {"#### \n", NULL},
        {"####", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64];
        bool found = gsm8k_extract_answer(cases[i].text, out, sizeof out);
        if (found != (cases[i].want != NULL)) fail_msg("case %zu: found = %d", i, found);
        if (found) assert_string_equal(out, cases[i].want);
    }
    char tiny[3];
    assert_false(gsm8k_extract_answer("#### 123", tiny, sizeof tiny)); /* does not fit */

    assert_true(gsm8k_answers_match("18", "18"));
    assert_true(gsm8k_answers_match("18.00", "18"));
    assert_true(gsm8k_answers_match("+3", "3"));
    assert_true(gsm8k_answers_match("007", "7"));
    assert_true(gsm8k_answers_match("-0", "0"));
    assert_true(gsm8k_answers_match(".5", "0.50"));
    assert_false(gsm8k_answers_match("-5", "5"));
    assert_false(gsm8k_answers_match("18", "180"));
    assert_false(gsm8k_answers_match("1.5", "15"));
    assert_false(gsm8k_answers_match("18 dollars", "18"));
    assert_true(gsm8k_answers_match("n/a", "n/a"));
}

static const char malformed_file[] =
    "{\"question\": \"One?\", \"answer\": \"1\\n#### 1\"}\n"  /* 1: good */
    "this is not json\n"                                       /* 2 */
    "{\"question\": \"Q?\"}\n"                                 /* 3: no answer */
    "{\"question\": \"Q?\", \"answer\": \"no marker\"}\n"      /* 4 */
    "\n"                                                       /* 5: blank, ignored */
    "{\"question\": 7, \"answer\": \"#### 3\"}\n"              /* 6: question not a string */
    "{\"question\": \"Q?\", \"answer\": \"#### \"}\n"          /* 7: nothing after #### */
    "[1, 2]\n"                                                 /* 8: not an object */
    "{\"question\": \"Two?\", \"answer\": \"x\\n#### 2\"}\r\n"; /* 9: good, CRLF */

static void test_malformed_lines(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s", scratch("malformed.jsonl"));
    write_text(path, malformed_file);
    gsm8k_set set;
    assert_int_equal(gsm8k_load(path, false, &set), PM_ERR_ARG);
    char expected[600];
    const long line2 = (long)(strchr(malformed_file, '\n') - malformed_file) + 1; /* where line 2 starts */
    snprintf(expected, sizeof expected, "%s:2: not valid JSON, at byte %ld of the file (column 1)", path, line2);
    if (!strstr(pm_last_error(), expected)) fail_msg("'%s' lacks '%s'", pm_last_error(), expected);
    assert_non_null(strstr(pm_last_error(), "fix the line"));
    assert_null(set.examples);

    assert_int_equal(gsm8k_load(path, true, &set), PM_OK);
    assert_int_equal(set.count, 2);
    assert_int_equal(set.skipped, 6);
    assert_string_equal(set.first_skipped, expected);
    assert_int_equal(set.examples[0].line, 1);
    assert_int_equal(set.examples[1].line, 9);
    assert_string_equal(set.examples[1].final_answer, "2");
    assert_string_equal(set.examples[1].prompt, "Answer the following question.\n\nQuestion: Two?\nAnswer:");
    assert_string_equal(set.examples[1].completion, " x\n#### 2");
    gsm8k_free(&set);

    /* each kind of problem, alone, stops the load with its reason and line */
    const struct {
        const char *line, *reason;
    } problems[] = {
        {"{\"question\": \"Q?\"}", "no string field \"answer\""},
        {"{\"answer\": \"#### 1\"}", "no string field \"question\""},
        {"{\"question\": \"Q?\", \"answer\": \"no marker\"}", "the answer has no final \"#### <number>\""},
        {"{\"question\": \"Q?\", \"answer\": \"####\"}", "nothing (or too much) after"},
        {"[1]", "not a JSON object"},
        {"{\"question\": \"Q?\", \"answer\": \"#### 1\"} extra", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof problems / sizeof problems[0]; i++) {
        char text[256];
        snprintf(text, sizeof text, "{\"question\": \"A?\", \"answer\": \"#### 4\"}\n%s\n", problems[i].line);
        write_text(path, text);
        assert_int_equal(gsm8k_load(path, false, &set), PM_ERR_ARG);
        snprintf(expected, sizeof expected, "%s:2: %s", path, problems[i].reason);
        if (!strstr(pm_last_error(), expected)) fail_msg("'%s' lacks '%s'", pm_last_error(), expected);
    }

    /* nothing usable, or no file, is an error even when skipping */
    write_text(path, "nonsense\n");
    assert_int_equal(gsm8k_load(path, true, &set), PM_ERR_ARG);
    assert_non_null(strstr(pm_last_error(), "holds no GSM8K examples"));
    assert_int_equal(gsm8k_load(scratch("absent.jsonl"), true, &set), PM_ERR_ARG);
    assert_non_null(strstr(pm_last_error(), "cannot open"));
}

/* Lines with bytes that are not text: each alone stops the load with the file, line, byte
 * offset and the fix; skipping counts them with the other bad lines. */
static void test_bad_bytes(void **state) {
    (void)state;
    const char good[] = "{\"question\": \"A?\", \"answer\": \"#### 4\"}\n";
    const struct {
        const char *line;
        size_t length, column; /* of the bad byte, 1-based */
        const char *reason;
    } cases[] = {
        {"{\"question\": \"A\0?\", \"answer\": \"#### 4\"}\n", 40, 16, "a NUL byte: the line is binary or corrupt"},
        {"{\"question\": \"caf\xE9?\", \"answer\": \"#### 4\"}\n", 42, 18, "byte 0xE9 is not UTF-8"},
        {"{\"question\": \"\xC0\xAF?\", \"answer\": \"#### 4\"}\n", 40, 15, "byte 0xC0 is not UTF-8"}, /* overlong */
        /* a surrogate */
        {"{\"question\": \"\xED\xA0\x80?\", \"answer\": \"#### 4\"}\n", 41, 15, "byte 0xED is not UTF-8"},
        {"{\"question\": \"A?\", \"answer\": \"#### 4\xE2\x82\"}\n", 41, 37, "byte 0xE2 is not UTF-8"}, /* cut short */
        {"{\"question\": \"A\\u0000B?\", \"answer\": \"#### 4\"}\n", 46, 16, "an escaped NUL (\\u0000)"},
    };
    char path[512];
    snprintf(path, sizeof path, "%s", scratch("bad_bytes.jsonl"));
    char file[512], expected[700];
    gsm8k_set set;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const size_t good_length = strlen(good);
        memcpy(file, good, good_length);
        memcpy(file + good_length, cases[i].line, cases[i].length);
        write_bytes(path, file, good_length + cases[i].length);
        assert_int_equal(gsm8k_load(path, false, &set), PM_ERR_ARG);
        snprintf(expected, sizeof expected, "%s:2: %s", path, cases[i].reason);
        if (!strstr(pm_last_error(), expected)) fail_msg("case %zu: '%s' lacks '%s'", i, pm_last_error(), expected);
        snprintf(expected, sizeof expected, "at byte %zu of the file (column %zu); fix the line",
                 good_length + cases[i].column - 1, cases[i].column);
        if (!strstr(pm_last_error(), expected)) fail_msg("case %zu: '%s' lacks '%s'", i, pm_last_error(), expected);
        assert_null(set.examples);
    }
    /* a line longer than GSM8K_MAX_LINE_BYTES: refused where it crosses the bound */
    {
        const size_t long_length = (size_t)GSM8K_MAX_LINE_BYTES + 100;
        char *long_line = malloc(long_length);
        assert_non_null(long_line);
        memset(long_line, ' ', long_length);
        memcpy(long_line, good, strlen(good) - 1);
        long_line[long_length - 1] = '\n';
        write_bytes(path, long_line, long_length);
        assert_int_equal(gsm8k_load(path, false, &set), PM_ERR_ARG);
        snprintf(expected, sizeof expected, "%s:1: a line of more than the %d bytes an example may have", path,
                 GSM8K_MAX_LINE_BYTES);
        if (!strstr(pm_last_error(), expected)) fail_msg("'%s' lacks '%s'", pm_last_error(), expected);
        /* only the bound's worth of it is kept, and the next line is read whole after it */
        char *two = malloc(long_length + strlen(good));
        memcpy(two, long_line, long_length);
        memcpy(two + long_length, good, strlen(good));
        write_bytes(path, two, long_length + strlen(good));
        free(two);
        if (gsm8k_load(path, true, &set) != PM_OK) fail_msg("%s", pm_last_error());
        assert_int_equal(set.count, 1);
        assert_int_equal(set.skipped, 1);
        assert_int_equal(set.examples[0].line, 2);
        gsm8k_free(&set);
        free(long_line);
    }
    /* "\\u0000" is an escaped backslash and then text: fine */
    write_text(path, "{\"question\": \"A\\\\u0000?\", \"answer\": \"#### 4\"}\n");
    if (gsm8k_load(path, false, &set) != PM_OK) fail_msg("%s", pm_last_error());
    assert_string_equal(set.examples[0].question, "A\\u0000?");
    gsm8k_free(&set);
    /* skipped and counted like other bad lines; the good ones around them kept */
    size_t used = 0;
    memcpy(file + used, good, strlen(good)), used += strlen(good);
    for (size_t i = 0; i < 3; i++) memcpy(file + used, cases[i].line, cases[i].length), used += cases[i].length;
    memcpy(file + used, "not json\n", 9), used += 9;
    memcpy(file + used, good, strlen(good)), used += strlen(good);
    write_bytes(path, file, used);
    assert_int_equal(gsm8k_load(path, true, &set), PM_OK);
    assert_int_equal(set.count, 2);
    assert_int_equal(set.skipped, 4);
    assert_int_equal(set.examples[1].line, 6);
    snprintf(expected, sizeof expected, "%s:2: a NUL byte", path);
    if (strncmp(set.first_skipped, expected, strlen(expected)) != 0)
        fail_msg("first skipped: '%s', not '%s...'", set.first_skipped, expected);
    gsm8k_free(&set);
}

/* gsm8k_parse_line reads only its length: every prefix of a good line, in a buffer of
 * exactly that many bytes (AddressSanitizer catches a read past it), parses or is refused;
 * only the whole line (with or without its newline) parses. */
static void test_parse_line_stays_in_bounds(void **state) {
    (void)state;
    const char line[] = "{\"question\": \"Caf\xC3\xA9 \\\"2\\\"?\", \"answer\": \"1 + 1 = 2\\n#### 2\", "
                        "\"n\": [1, 2.5e3, true, null]}\n";
    const size_t length = sizeof line - 1;
    for (size_t n = 0; n <= length; n++) {
        char *copy = malloc(n ? n : 1);
        assert_non_null(copy);
        memcpy(copy, line, n);
        gsm8k_example example;
        char reason[160];
        size_t offset = 99;
        const int parsed = gsm8k_parse_line(copy, n, &example, reason, sizeof reason, &offset);
        free(copy);
        if (n >= length - 1) {
            if (parsed != PM_OK) fail_msg("the whole line (%zu bytes) was refused: %s", n, reason);
            assert_string_equal(example.question, "Caf\xC3\xA9 \"2\"?");
            assert_string_equal(example.final_answer, "2");
            free(example.question), free(example.answer), free(example.prompt), free(example.completion);
            free(example.final_answer);
        } else {
            if (parsed != 1) fail_msg("a prefix of %zu bytes parsed", n);
            assert_true(offset <= n);
        }
    }
}

/* Three examples with byte tokens + eos: "abc"+"XY" (6 tokens), "abcdefgh"+"Z" (10),
 * "a"+"LMNOPQRSTUV" (13). */
static void small_examples(sft_tokens *tokens) {
    const char *prompts[] = {"abc", "abcdefgh", "a"}, *completions[] = {"XY", "Z", "LMNOPQRSTUV"};
    assert_int_equal(sft_tokenize(tokens, prompts, completions, 3, &test_tokenizer, true), PM_OK);
    assert_int_equal(tokens->offsets[3], 29);
}

static void test_padded_rows(void **state) {
    (void)state;
    sft_tokens tokens;
    small_examples(&tokens);
    sft_rows rows;
    assert_int_equal(sft_rows_init(&rows, &tokens, SFT_PAD, 6), PM_OK);
    /* example 2 (10 tokens) keeps its last 7; example 3's 12-token answer cannot fit 6 targets */
    assert_int_equal(rows.row_count, 2);
    assert_int_equal(rows.truncated, 1);
    assert_int_equal(rows.dropped, 1);
    int32_t inputs[6], targets[6];
    sft_rows_fill(&rows, 0, inputs, targets);
    const int32_t in0[] = {'a', 'b', 'c', 'X', 'Y', TEST_EOS}, tg0[] = {-1, -1, 'X', 'Y', TEST_EOS, -1};
    assert_memory_equal(inputs, in0, sizeof in0);
    assert_memory_equal(targets, tg0, sizeof tg0);
    sft_rows_fill(&rows, 1, inputs, targets);
    const int32_t in1[] = {'d', 'e', 'f', 'g', 'h', 'Z'}, tg1[] = {-1, -1, -1, -1, 'Z', TEST_EOS};
    assert_memory_equal(inputs, in1, sizeof in1);
    assert_memory_equal(targets, tg1, sizeof tg1);
    sft_rows_free(&rows);

    /* a longer row holds everything; padding is eos with no target */
    assert_int_equal(sft_rows_init(&rows, &tokens, SFT_PAD, 16), PM_OK);
    assert_int_equal(rows.row_count, 3);
    assert_int_equal(rows.truncated + rows.dropped, 0);
    int32_t long_inputs[16], long_targets[16];
    sft_rows_fill(&rows, 0, long_inputs, long_targets);
    for (int j = 5; j < 16; j++) {
        assert_int_equal(long_inputs[j], TEST_EOS);
        assert_int_equal(long_targets[j], -1);
    }
    sft_rows_free(&rows);

    assert_int_equal(sft_rows_init(&rows, &tokens, SFT_PAD, 1), PM_ERR_ARG); /* every answer too long */
    assert_non_null(strstr(pm_last_error(), "longer than the sequence length"));
    sft_tokens_free(&tokens);
}

static void test_packed_rows(void **state) {
    (void)state;
    sft_tokens tokens;
    small_examples(&tokens);
    sft_rows rows;
    const int S = 6;
    assert_int_equal(sft_rows_init(&rows, &tokens, SFT_PACK, S), PM_OK);
    assert_int_equal(rows.row_count, 5); /* 28 targets in rows of 6, the last one padded */
    assert_int_equal(rows.truncated + rows.dropped, 0);
    /* every answer token (mask 1) is the target of exactly one row position, with the token
     * before it as that position's input; nothing else is a target */
    int hits[29] = {0};
    for (size_t r = 0; r < rows.row_count; r++) {
        int32_t inputs[6], targets[6];
        sft_rows_fill(&rows, r, inputs, targets);
        for (int j = 0; j < S; j++) {
            size_t p = r * (size_t)S + (size_t)j;
            if (p < 29) assert_int_equal(inputs[j], tokens.tokens[p]);
            else assert_int_equal(inputs[j], TEST_EOS);
            if (targets[j] < 0) continue;
            assert_true(p + 1 < 29);
            assert_int_equal(targets[j], tokens.tokens[p + 1]);
            hits[p + 1]++;
        }
    }
    for (int q = 0; q < 29; q++) assert_int_equal(hits[q], tokens.loss_mask[q]);
    sft_rows_free(&rows);
    sft_tokens_free(&tokens);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_lines),
        cmocka_unit_test(test_answer_extraction),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_bad_bytes),
        cmocka_unit_test(test_parse_line_stays_in_bounds),
        cmocka_unit_test(test_padded_rows),
        cmocka_unit_test(test_packed_rows),
    };
    return cmocka_run_group_tests(tests, make_scratch, remove_scratch);
}
