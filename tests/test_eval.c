/* Evaluation: shard loss equals the model's own losses, GSM8K answer loss equals a direct
 * masked cross-entropy, greedy outputs and their scores reach the JSONL, batches of rows give
 * the results of one row at a time, and bad input fails with a message. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "data/shards.h"
#include "eval/eval.h"
#include "eval/eval_internal.h"

enum { VOCAB = 256, CONTEXT = 128 }; /* byte-level: every byte must be a token */

static pm_model_config tiny_config(void) {
    pm_model_config cfg = pm_model_config_default();
    cfg.vocab_size = VOCAB;
    cfg.hidden_size = 32;
    cfg.intermediate_size = 24;
    cfg.num_layers = 2;
    cfg.num_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.num_experts = 6;
    cfg.experts_per_token = 2;
    cfg.max_position_embeddings = CONTEXT;
    cfg.initializer_range = 0.3f;
    cfg.router = pm_router_config_default(PM_ROUTER_PROBMOE, cfg.num_experts, cfg.experts_per_token);
    return cfg;
}

static pm_model *tiny_model(int max_seq) {
    pm_model_config cfg = tiny_config();
    pm_model *model = pm_model_create(&cfg, 1, max_seq);
    assert_non_null(model);
    pm_model_init_weights(model, 21);
    return model;
}

static void make_temp_dir(char *dir) { assert_non_null(mkdtemp(dir)); }

static void remove_tree(const char *dir) {
    char command[256];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    assert_int_equal(system(command), 0);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* dir/val.bin of count byte tokens from a fixed pattern. */
static void write_val_shard(const char *dir, int32_t *tokens, size_t count, uint64_t hash) {
    for (size_t i = 0; i < count; i++) tokens[i] = (int32_t)((i * 37 + i / 5) % VOCAB);
    char path[256];
    snprintf(path, sizeof path, "%s/val.bin", dir);
    assert_int_equal(shard_write(path, tokens, count, VOCAB, hash), 0);
}

static void test_shards_loss(void **state) {
    (void)state;
    enum { S = 16, ROWS = 5, COUNT = S * ROWS + 3 };
    char dir[] = "/tmp/probmoe_eval_XXXXXX";
    make_temp_dir(dir);
    int32_t tokens[COUNT];
    write_val_shard(dir, tokens, COUNT, tokenizer_bytes()->vocab_hash);
    pm_model *model = tiny_model(S);
    double direct[ROWS];
    for (int r = 0; r < ROWS; r++) { /* row r: tokens rS .. rS+S */
        float loss;
        assert_int_equal(pm_model_forward(model, tokens + r * S, tokens + r * S + 1, 1, S, false, 0, 0, &loss), 0);
        direct[r] = loss;
    }
    eval_loss_result result;
    assert_int_equal(eval_shards(model, tokenizer_bytes(), dir, 3, S, 1, &result), 0);
    assert_int_equal(result.batches, 3);
    assert_int_equal(result.tokens, 3 * S);
    assert_close(result.loss, (direct[0] + direct[1] + direct[2]) / 3, 1e-6, 1e-7, "3 batches", 0);
    assert_close(result.perplexity, exp(result.loss), 1e-12, 0, "perplexity", 0);
    assert_int_equal(eval_shards(model, tokenizer_bytes(), dir, 0, S, 1, &result), 0); /* all rows */
    assert_int_equal(result.batches, ROWS);
    double mean = 0.0;
    for (int r = 0; r < ROWS; r++) mean += direct[r] / ROWS;
    assert_close(result.loss, mean, 1e-6, 1e-7, "all batches", 0);
    pm_model_free(model);
    remove_tree(dir);
}

static void expect_error(int status, const char *fragment) {
    assert_true(status < 0);
    if (!strstr(pm_last_error(), fragment)) fail_msg("error '%s' does not mention '%s'", pm_last_error(), fragment);
}

static void test_shards_errors(void **state) {
    (void)state;
    char dir[] = "/tmp/probmoe_eval_XXXXXX";
    make_temp_dir(dir);
    pm_model *model = tiny_model(16);
    eval_loss_result result;
    expect_error(eval_shards(model, tokenizer_bytes(), dir, 1, 16, 1, &result), "no validation shard");
    expect_error(eval_shards(model, tokenizer_bytes(), "/tmp/probmoe_eval_missing", 1, 16, 1, &result),
                 "no validation shard");
    int32_t tokens[40];
    write_val_shard(dir, tokens, 10, tokenizer_bytes()->vocab_hash);
    expect_error(eval_shards(model, tokenizer_bytes(), dir, 1, 16, 1, &result), "fewer than one row");
    expect_error(eval_shards(model, tokenizer_bytes(), dir, 1, CONTEXT + 1, 1, &result), "max_position_embeddings");
    write_val_shard(dir, tokens, 40, 12345); /* made with another tokenizer */
    expect_error(eval_shards(model, tokenizer_bytes(), dir, 1, 16, 1, &result), "another tokenizer");
    write_val_shard(dir, tokens, 40, tokenizer_bytes()->vocab_hash);
    expect_error(eval_shards(model, tokenizer_bytes(), dir, 1, 16, 2, &result), "made for 1 per forward pass");
    expect_error(eval_shards(model, tokenizer_bytes(), dir, 1, 16, 0, &result), "batch of 0 rows: give 1 to 1024");
    pm_model_free(model);
    remove_tree(dir);
}

/* A saved model loads back with the byte tokenizer and scores exactly as before. */
static void test_load_model(void **state) {
    (void)state;
    char dir[] = "/tmp/probmoe_eval_XXXXXX";
    make_temp_dir(dir);
    int32_t tokens[40];
    write_val_shard(dir, tokens, 40, tokenizer_bytes()->vocab_hash);
    char model_dir[256];
    snprintf(model_dir, sizeof model_dir, "%s/model", dir);
    pm_model *model = tiny_model(16);
    assert_int_equal(pm_model_save(model, model_dir), 0);
    pm_model *loaded;
    tokenizer *tok;
    int rows = 4;
    assert_int_equal(eval_load_model(model_dir, 16, &rows, false, &loaded, &tok), 0);
    assert_ptr_equal(tok, tokenizer_bytes());
    assert_int_equal(rows, 4);
    assert_int_equal(pm_model_max_batch(loaded), 4);
    eval_loss_result a, b;
    assert_int_equal(eval_shards(model, tokenizer_bytes(), dir, 0, 16, 1, &a), 0);
    assert_int_equal(eval_shards(loaded, tok, dir, 0, 16, 1, &b), 0);
    assert_true(a.loss == b.loss);
    pm_model_free(loaded);
    tokenizer_free(tok);
    pm_model_free(model);
    expect_error(eval_load_model("/tmp/probmoe_eval_missing", 0, &rows, false, &loaded, &tok), "does not exist");
    assert_null(loaded);
    expect_error(eval_load_model(dir, 0, &rows, false, &loaded, &tok), "config.json"); /* not a model directory */
    remove_tree(dir);
}

static const char gsm8k_lines[] =
    "{\"question\": \"What is 2+3?\", \"answer\": \"2+3=5\\n#### 5\"}\n"
    "\n"
    "{\"question\": \"Tom has 7 pens and buys 4. How many?\", \"answer\": \"7+4=11\\n#### 11\"}\n"
    "{\"question\": \"Half of 10?\", \"answer\": \"10/2=5\\n#### 5\"}\n";

static const char *const questions[] = {"What is 2+3?", "Tom has 7 pens and buys 4. How many?", "Half of 10?"};
static const char *const answers[] = {"2+3=5\n#### 5", "7+4=11\n#### 11", "10/2=5\n#### 5"};
static const char *const golds[] = {"5", "11", "5"};
static const int lines[] = {1, 3, 4};

/* Masked cross-entropy of " answer" after the prompt, from the full forward's logits. */
static double direct_answer_loss(pm_model *model, int i, long *count) {
    char prompt[256], text[512];
    snprintf(prompt, sizeof prompt, "Answer the following question.\n\nQuestion: %s\nAnswer:", questions[i]);
    snprintf(text, sizeof text, "%s %s", prompt, answers[i]);
    const int P = (int)strlen(prompt), L = (int)strlen(text);
    int32_t tokens[512];
    for (int j = 0; j < L; j++) tokens[j] = (unsigned char)text[j];
    assert_int_equal(pm_model_forward(model, tokens, NULL, 1, L - 1, false, 0, 0, NULL), 0);
    const float *logits = pm_model_logits(model);
    double sum = 0.0;
    *count = 0;
    for (int j = P - 1; j < L - 1; j++) { /* position j predicts token j+1, the answer from P on */
        const float *row = logits + (size_t)j * VOCAB;
        double max = row[0], z = 0.0;
        for (int v = 1; v < VOCAB; v++) max = row[v] > max ? row[v] : max;
        for (int v = 0; v < VOCAB; v++) z += exp(row[v] - max);
        sum += max + log(z) - row[tokens[j + 1]];
        ++*count;
    }
    return sum;
}

/* The greedy continuation through the generator, cleaned as the JSONL writes it. */
static char *direct_generation(pm_model *model, int i, int max_new) {
    char prompt[256];
    snprintf(prompt, sizeof prompt, "Answer the following question.\n\nQuestion: %s\nAnswer:", questions[i]);
    pm_generator *gen = pm_generator_create(model, NULL, CONTEXT);
    float logits[VOCAB];
    for (const char *c = prompt; *c; c++) assert_int_equal(pm_generator_feed(gen, (unsigned char)*c, logits), 0);
    char bytes[64];
    for (int g = 0; g < max_new; g++) {
        bytes[g] = (char)pm_sample_token(logits, VOCAB, 0.0f, 1.0f, NULL);
        if (g + 1 < max_new) assert_int_equal(pm_generator_feed(gen, (unsigned char)bytes[g], logits), 0);
    }
    pm_generator_free(gen);
    return eval_clean_text(bytes, (size_t)max_new);
}

static void test_gsm8k_loss_and_outputs(void **state) {
    (void)state;
    enum { MAX_NEW = 6 };
    char dir[] = "/tmp/probmoe_eval_XXXXXX";
    make_temp_dir(dir);
    char data[256], out[256];
    snprintf(data, sizeof data, "%s/test.jsonl", dir);
    snprintf(out, sizeof out, "%s/out.jsonl", dir);
    write_text(data, gsm8k_lines);
    pm_model *model = tiny_model(CONTEXT);
    eval_gsm8k_result result;
    assert_int_equal(eval_gsm8k(model, tokenizer_bytes(), data, CHAT_PLAIN, -1, MAX_NEW, 1, out, NULL, &result), 0);
    assert_int_equal(result.examples, 3);
    assert_int_equal(result.truncated, 0);
    double sum = 0.0, per_example[3];
    long tokens = 0;
    for (int i = 0; i < 3; i++) {
        long count;
        double s = direct_answer_loss(model, i, &count);
        per_example[i] = s / count;
        sum += s;
        tokens += count;
        assert_int_equal(count, (long)strlen(answers[i]) + 1); /* " answer"; bytes have no eos */
    }
    assert_int_equal(result.answer_tokens, tokens);
    assert_close(result.answer_loss, sum / tokens, 1e-5, 1e-6, "answer loss", 0);
    assert_close(result.answer_perplexity, exp(result.answer_loss), 1e-12, 0, "answer perplexity", 0);

    FILE *f = fopen(out, "r");
    assert_non_null(f);
    char line[8192];
    int correct = 0;
    for (int i = 0; i < 3; i++) {
        assert_non_null(fgets(line, sizeof line, f));
        cJSON *rec = cJSON_Parse(line);
        assert_non_null(rec);
        assert_int_equal(cJSON_GetObjectItem(rec, "index")->valueint, i);
        assert_int_equal(cJSON_GetObjectItem(rec, "line")->valueint, lines[i]);
        assert_non_null(strstr(cJSON_GetStringValue(cJSON_GetObjectItem(rec, "prompt")), questions[i]));
        char *generated = direct_generation(model, i, MAX_NEW);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(rec, "generated")), generated);
        char predicted[64];
        const bool right = eval_score_answer(generated, golds[i], predicted, sizeof predicted);
        const cJSON *p = cJSON_GetObjectItem(rec, "predicted");
        if (predicted[0]) assert_string_equal(cJSON_GetStringValue(p), predicted);
        else assert_true(cJSON_IsNull(p));
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(rec, "gold")), golds[i]);
        assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(rec, "correct")), right);
        correct += right;
        assert_close(cJSON_GetObjectItem(rec, "answer_loss")->valuedouble, per_example[i], 1e-5, 1e-6,
                     "example loss", i);
        free(generated);
        cJSON_Delete(rec);
    }
    assert_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_int_equal(result.correct, correct);

    assert_int_equal(eval_gsm8k(model, tokenizer_bytes(), data, CHAT_PLAIN, 2, MAX_NEW, 1, NULL, NULL, &result), 0);
    assert_int_equal(result.examples, 2);
    pm_model_free(model);
    remove_tree(dir);
}

/* A tokenizer for a model whose logits are all zero: greedy decoding picks token 0, which this
 * tokenizer reads as "7" (or as end of text), so the outputs are known. */
static int64_t encode_bytes(const tokenizer *self, const char *text, size_t length, int32_t *tokens,
                            size_t capacity) {
    (void)self;
    for (size_t i = 0; i < length && i < capacity; i++) tokens[i] = (unsigned char)text[i];
    return (int64_t)length;
}

static size_t decode_seven(const tokenizer *self, int32_t token, char *out, size_t capacity) {
    (void)self;
    if (capacity < 1 || token < 0 || token >= VOCAB) return 0;
    out[0] = token == 0 ? '7' : (char)token;
    return 1;
}

/* A model whose logits are all equal (lm_head zeroed): greedy decoding chooses token 0. */
static pm_model *uniform_model(void) {
    pm_model *model = tiny_model(CONTEXT);
    const pm_param *head = pm_model_find_param(model, "lm_head.weight");
    memset(pm_model_weights(model) + head->offset, 0, sizeof(float) * head->count);
    return model;
}

static void test_gsm8k_exact_match(void **state) {
    (void)state;
    char dir[] = "/tmp/probmoe_eval_XXXXXX";
    make_temp_dir(dir);
    char data[256], out[256];
    snprintf(data, sizeof data, "%s/test.jsonl", dir);
    snprintf(out, sizeof out, "%s/out.jsonl", dir);
    write_text(data, "{\"question\": \"q1\", \"answer\": \"#### 777\"}\n"
                     "{\"question\": \"q2\", \"answer\": \"#### 5\"}\n"
                     "{\"question\": \"q3\", \"answer\": \"#### 777.0\"}\n");
    pm_model *model = uniform_model();
    tokenizer sevens = {"sevens", VOCAB, -1, 7, encode_bytes, decode_seven, NULL, NULL, NULL, false};
    eval_gsm8k_result result;
    assert_int_equal(eval_gsm8k(model, &sevens, data, CHAT_PLAIN, -1, 3, 1, out, NULL, &result), 0);
    assert_int_equal(result.correct, 2);
    assert_close(result.exact_match, 2.0 / 3.0, 1e-12, 0, "exact match", 0);
    assert_close(result.answer_loss, log(VOCAB), 1e-5, 0, "uniform loss", 0);
    FILE *f = fopen(out, "r");
    char line[4096];
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    cJSON *rec = cJSON_Parse(line);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(rec, "generated")), "777");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(rec, "predicted")), "777");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(rec, "correct")));
    cJSON_Delete(rec);

    sevens.eos_token = 0; /* now the model stops at once: no text, no number */
    assert_int_equal(eval_gsm8k(model, &sevens, data, CHAT_PLAIN, 1, 3, 1, out, NULL, &result), 0);
    assert_int_equal(result.correct, 0);
    f = fopen(out, "r");
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    rec = cJSON_Parse(line);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(rec, "generated")), "");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(rec, "predicted")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(rec, "correct")));
    assert_int_equal(cJSON_GetObjectItem(rec, "answer_tokens")->valueint, 10); /* " #### 777" + eos */
    cJSON_Delete(rec);
    pm_model_free(model);
    remove_tree(dir);
}

/* Bytes, with "<|im_start|>" and "<|im_end|>" as the special tokens 1 and 0 (bytes 0 and 1
 * never occur in the text) and eos 2: a model whose logits are all equal chooses token 0. */
static int64_t encode_chat(const tokenizer *self, const char *text, size_t length, int32_t *tokens,
                           size_t capacity) {
    (void)self;
    size_t count = 0;
    for (size_t i = 0; i < length; count++) {
        int32_t id = (unsigned char)text[i];
        size_t taken = 1;
        if (length - i >= 10 && memcmp(text + i, "<|im_end|>", 10) == 0) id = 0, taken = 10;
        else if (length - i >= 12 && memcmp(text + i, "<|im_start|>", 12) == 0) id = 1, taken = 12;
        if (count < capacity) tokens[count] = id;
        i += taken;
    }
    return (int64_t)count;
}

/* The chat format's end of turn stops decoding: with chatml the first token chosen, 0, is
 * <|im_end|> and nothing is generated; plain goes on ("777"). The answer's tokens end with
 * <|im_end|> and no eos (chatml) or with eos (plain). */
static void test_gsm8k_chat_format_stops(void **state) {
    (void)state;
    char dir[] = "/tmp/probmoe_eval_XXXXXX";
    make_temp_dir(dir);
    char data[256], out[256];
    snprintf(data, sizeof data, "%s/test.jsonl", dir);
    snprintf(out, sizeof out, "%s/out.jsonl", dir);
    write_text(data, "{\"question\": \"q1\", \"answer\": \"#### 777\"}\n");
    pm_model *model = uniform_model();
    tokenizer chat = {"chat", VOCAB, 2, 8, encode_chat, decode_seven, NULL, NULL, NULL, false};
    const struct {
        chat_format format;
        const char *generated;
        int answer_tokens;
    } cases[] = {{CHAT_PLAIN, "777", 10 /* " #### 777" + eos */}, {CHAT_CHATML, "", 9 /* "#### 777<|im_end|>" */}};
    for (int c = 0; c < 2; c++) {
        eval_gsm8k_result result;
        assert_int_equal(eval_gsm8k(model, &chat, data, cases[c].format, -1, 3, 1, out, NULL, &result), 0);
        FILE *f = fopen(out, "r");
        char line[4096];
        assert_non_null(fgets(line, sizeof line, f));
        fclose(f);
        cJSON *rec = cJSON_Parse(line);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(rec, "generated")), cases[c].generated);
        assert_int_equal(cJSON_GetObjectItem(rec, "answer_tokens")->valueint, cases[c].answer_tokens);
        cJSON_Delete(rec);
    }
    /* a tokenizer without the format's special tokens is refused by name */
    expect_error(eval_gsm8k(model, tokenizer_bytes(), data, CHAT_CHATML, -1, 3, 1, NULL, NULL, &(eval_gsm8k_result){0}),
                 "<|im_start|>");
    pm_model_free(model);
    remove_tree(dir);
}

static void test_gsm8k_errors(void **state) {
    (void)state;
    char dir[] = "/tmp/probmoe_eval_XXXXXX";
    make_temp_dir(dir);
    char data[256], empty[256];
    snprintf(data, sizeof data, "%s/test.jsonl", dir);
    snprintf(empty, sizeof empty, "%s/empty.jsonl", dir);
    write_text(data, gsm8k_lines);
    write_text(empty, "");
    pm_model *model = tiny_model(CONTEXT);
    eval_gsm8k_result result;
    expect_error(eval_gsm8k(model, tokenizer_bytes(), data, CHAT_PLAIN, 0, 4, 1, NULL, NULL, &result), "limit is 0");
    assert_true(eval_gsm8k(model, tokenizer_bytes(), empty, CHAT_PLAIN, -1, 4, 1, NULL, NULL, &result) < 0);
    expect_error(eval_gsm8k(model, tokenizer_bytes(), "/tmp/probmoe_eval_missing.jsonl", CHAT_PLAIN, -1, 4, 1, NULL, NULL, &result),
                 "probmoe_eval_missing.jsonl");
    expect_error(eval_gsm8k(model, tokenizer_bytes(), data, CHAT_PLAIN, -1, CONTEXT, 1, NULL, NULL, &result), "max_new");
    expect_error(eval_gsm8k(model, tokenizer_bytes(), data, CHAT_PLAIN, -1, 4, 2, NULL, NULL, &result), "made for 1 per forward");
    expect_error(eval_gsm8k(model, tokenizer_bytes(), data, CHAT_PLAIN, -1, 4, 0, NULL, NULL, &result), "give 1 to 1024");
    pm_model_free(model);
    remove_tree(dir);
}

/* A tiny model of the given router with buffers for `rows` rows; the same seed each time, so
 * a fresh copy starts from the same (uncalibrated, for softmoe with tau -1) router state. */
static pm_model *tiny_router_model(pm_router_kind kind, int rows, int max_seq) {
    pm_model_config cfg = tiny_config();
    cfg.router = pm_router_config_default(kind, cfg.num_experts, cfg.experts_per_token);
    if (kind == PM_ROUTER_SOFTMOE) cfg.router.tau = -1.0f; /* calibrated by the first batch routed */
    pm_model *model = pm_model_create(&cfg, rows, max_seq);
    assert_non_null(model);
    pm_model_init_weights(model, 23);
    return model;
}

/* Batches of 2, 3, 4 and 8 rows (none divides the 11 rows; 8 leaves a partial batch) give the
 * loss of one row at a time, for every router. */
static void test_shards_batched(void **state) {
    (void)state;
    enum { S = 12, ROWS = 11, COUNT = S * ROWS + 5 };
    char dir[] = "/tmp/probmoe_eval_XXXXXX";
    make_temp_dir(dir);
    int32_t tokens[COUNT];
    write_val_shard(dir, tokens, COUNT, tokenizer_bytes()->vocab_hash);
    const pm_router_kind kinds[] = {PM_ROUTER_PROBMOE, PM_ROUTER_TOPK, PM_ROUTER_SOFTMOE};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        pm_model *model = tiny_router_model(kinds[k], 1, S);
        eval_loss_result one, some;
        assert_int_equal(eval_shards(model, tokenizer_bytes(), dir, 0, S, 1, &one), 0);
        assert_int_equal(eval_shards(model, tokenizer_bytes(), dir, 7, S, 1, &some), 0);
        pm_model_free(model);
        const int batches[] = {2, 3, 4, 8};
        for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
            model = tiny_router_model(kinds[k], batches[b], S);
            eval_loss_result all, first7;
            assert_int_equal(eval_shards(model, tokenizer_bytes(), dir, 0, S, batches[b], &all), 0);
            assert_int_equal(eval_shards(model, tokenizer_bytes(), dir, 7, S, batches[b], &first7), 0);
            assert_int_equal(all.batches, ROWS);
            assert_int_equal(all.tokens, (long)ROWS * S);
            assert_int_equal(first7.batches, 7);
            assert_close(all.loss, one.loss, 1e-6, 0, pm_router_kind_name(kinds[k]), batches[b]);
            assert_close(first7.loss, some.loss, 1e-6, 0, pm_router_kind_name(kinds[k]), batches[b]);
            pm_model_free(model);
        }
    }
    remove_tree(dir);
}

/* Byte tokens with a chosen end-of-text byte, so that greedy rows stop at different steps. */
static int64_t encode_plain(const tokenizer *self, const char *text, size_t length, int32_t *tokens,
                            size_t capacity) {
    (void)self;
    for (size_t i = 0; i < length && i < capacity; i++) tokens[i] = (unsigned char)text[i];
    return (int64_t)length;
}

static size_t decode_plain(const tokenizer *self, int32_t token, char *out, size_t capacity) {
    (void)self;
    if (capacity < 1 || token < 0 || token >= VOCAB) return 0;
    out[0] = (char)token;
    return 1;
}

enum { BATCH_EXAMPLES = 7, BATCH_NEW = 12 };

/* The JSONL records of one evaluation: generated text and answer loss of each example. */
typedef struct {
    char generated[BATCH_EXAMPLES][BATCH_NEW * 6 + 1]; /* cleaned: a byte may become U+FFFD */
    double loss[BATCH_EXAMPLES];
    eval_gsm8k_result result;
} gsm8k_outputs;

static void run_gsm8k(pm_router_kind kind, int batch, const tokenizer *tok, const char *data, const char *out,
                      gsm8k_outputs *got) {
    pm_model *model = tiny_router_model(kind, batch, CONTEXT);
    assert_int_equal(eval_gsm8k(model, tok, data, CHAT_PLAIN, -1, BATCH_NEW, batch, out, NULL, &got->result), 0);
    pm_model_free(model);
    assert_int_equal(got->result.examples, BATCH_EXAMPLES);
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    char line[8192];
    for (int i = 0; i < BATCH_EXAMPLES; i++) {
        assert_non_null(fgets(line, sizeof line, f));
        cJSON *rec = cJSON_Parse(line);
        assert_non_null(rec);
        assert_int_equal(cJSON_GetObjectItem(rec, "index")->valueint, i); /* in the file's order */
        snprintf(got->generated[i], sizeof got->generated[i], "%s",
                 cJSON_GetStringValue(cJSON_GetObjectItem(rec, "generated")));
        got->loss[i] = cJSON_GetObjectItem(rec, "answer_loss")->valuedouble;
        cJSON_Delete(rec);
    }
    assert_null(fgets(line, sizeof line, f));
    fclose(f);
}

/* GSM8K with 2, 3, 4 and 7 examples per forward pass and decoding step: prompts of different
 * lengths, rows stopping at the end-of-text byte at different steps (others run to max_new)
 * and taking the next prompt; the texts are exactly those of one example at a time, and the
 * losses agree, for three routers (softmoe from an uncalibrated tau). */
static void test_gsm8k_batched(void **state) {
    (void)state;
    char dir[] = "/tmp/probmoe_eval_XXXXXX";
    make_temp_dir(dir);
    char data[256], out[256];
    snprintf(data, sizeof data, "%s/test.jsonl", dir);
    snprintf(out, sizeof out, "%s/out.jsonl", dir);
    write_text(data, "{\"question\": \"1+1?\", \"answer\": \"#### 2\"}\n"
                     "{\"question\": \"A farmer has 12 cows and buys 30 more, then sells 7. How many cows?\", "
                     "\"answer\": \"12+30=42\\n42-7=35\\n#### 35\"}\n"
                     "{\"question\": \"Half of 10?\", \"answer\": \"10/2=5\\n#### 5\"}\n"
                     "{\"question\": \"Sam reads 4 pages a day for 6 days. Pages?\", "
                     "\"answer\": \"4*6=24\\n#### 24\"}\n"
                     "{\"question\": \"9-3?\", \"answer\": \"#### 6\"}\n"
                     "{\"question\": \"Ann has 3 red and 5 blue balls. How many balls?\", \"answer\": \"#### 8\"}\n"
                     "{\"question\": \"2*7?\", \"answer\": \"2*7=14\\n#### 14\"}\n");
    const pm_router_kind kinds[] = {PM_ROUTER_PROBMOE, PM_ROUTER_TOPK, PM_ROUTER_SOFTMOE};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        const char *name = pm_router_kind_name(kinds[k]);
        /* without an end-of-text token every row runs to max_new; then the byte that stops
         * some rows early but not all becomes end of text */
        tokenizer plain = {"plain", VOCAB, -1, 5, encode_plain, decode_plain, NULL, NULL, NULL, false};
        static gsm8k_outputs full, one, batched;
        run_gsm8k(kinds[k], 1, &plain, data, out, &full);
        int stop = -1;
        for (int c = 1; c < 255 && stop < 0; c++) {
            int stopped = 0;
            for (int i = 0; i < BATCH_EXAMPLES; i++) stopped += strchr(full.generated[i], c) != NULL;
            if (stopped >= 2 && stopped < BATCH_EXAMPLES) stop = c;
        }
        if (stop < 0) fail_msg("%s: no byte ends some outputs early and not others", name);
        plain.eos_token = stop;
        run_gsm8k(kinds[k], 1, &plain, data, out, &one);
        int early = 0;
        for (int i = 0; i < BATCH_EXAMPLES; i++) early += strlen(one.generated[i]) < strlen(full.generated[i]);
        assert_true(early >= 2 && early < BATCH_EXAMPLES);
        const int batches[] = {2, 3, 4, BATCH_EXAMPLES};
        for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
            run_gsm8k(kinds[k], batches[b], &plain, data, out, &batched);
            for (int i = 0; i < BATCH_EXAMPLES; i++) {
                if (strcmp(batched.generated[i], one.generated[i]) != 0)
                    fail_msg("%s, batch %d, example %d: '%s', alone '%s'", name, batches[b], i, batched.generated[i],
                             one.generated[i]);
                assert_close(batched.loss[i], one.loss[i], 1e-6, 0, name, i);
            }
            assert_int_equal(batched.result.correct, one.result.correct);
            assert_int_equal(batched.result.answer_tokens, one.result.answer_tokens);
            assert_close(batched.result.answer_loss, one.result.answer_loss, 1e-6, 0, name, batches[b]);
        }
    }
    remove_tree(dir);
}

static void test_last_number(void **state) {
    (void)state;
    const struct {
        const char *text, *number;
    } cases[] = {
        {"The answer is 18.", "18"},     {"costs $1,234.50 in total", "1234.50"}, {"-5 degrees", "-5"},
        {"10-4", "4"},                  {"3, 4", "4"},                          {"2+3=5\n#### 5\nmore 6", "6"},
        {"x = (-2)", "-2"},             {"#### 72", "72"},                      {"0.5 and .25", "25"},
    };
    char out[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!eval_last_number(cases[i].text, out, sizeof out)) fail_msg("no number in '%s'", cases[i].text);
        assert_string_equal(out, cases[i].number);
    }
    assert_false(eval_last_number("no digits here", out, sizeof out));
    assert_false(eval_last_number("123456", out, 4)); /* does not fit */
    char predicted[16];
    assert_true(eval_score_answer("so 18.00 in all", "18", predicted, sizeof predicted));
    assert_string_equal(predicted, "18.00");
    assert_true(eval_score_answer("1,000 #### 1,000", "1000", NULL, 0));
    assert_false(eval_score_answer("17 apples", "18", predicted, sizeof predicted));
    assert_false(eval_score_answer("none", "18", predicted, sizeof predicted));
    assert_string_equal(predicted, "");
}

static void test_clean_text(void **state) {
    (void)state;
    char *clean = eval_clean_text("a\xC3\xA9z\xC3", 5); /* é, then a cut-off sequence */
    assert_string_equal(clean, "a\xC3\xA9z\xEF\xBF\xBD");
    free(clean);
    clean = eval_clean_text("x\0y\xED\xA0\x80", 6); /* NUL and a surrogate */
    assert_string_equal(clean, "x\xEF\xBF\xBDy\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
    free(clean);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shards_loss),        cmocka_unit_test(test_shards_errors),
        cmocka_unit_test(test_load_model),         cmocka_unit_test(test_gsm8k_loss_and_outputs),
        cmocka_unit_test(test_gsm8k_exact_match),  cmocka_unit_test(test_gsm8k_errors),
        cmocka_unit_test(test_gsm8k_chat_format_stops),
        cmocka_unit_test(test_shards_batched),     cmocka_unit_test(test_gsm8k_batched),
        cmocka_unit_test(test_last_number),        cmocka_unit_test(test_clean_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
