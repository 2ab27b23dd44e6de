/*
 * Hostile inputs over every format the tool reads, generated from valid files (the fuzzing
 * seeds in fuzz/corpus, written by the project's own writers) by tests/util/mutate.c:
 * truncations, bit flips, extreme binary fields, every JSON value replaced by extremes, wrong
 * types and non-finite numbers, invalid UTF-8 and NUL bytes. Run under the sanitizers by
 * `make test`, so any memory error fails it. Each variant must load or be refused with a
 * message that names the file, names the JSON field that was replaced (when the replacement
 * is valid JSON) and says what to do.
 */
#define _GNU_SOURCE /* mkdtemp, memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/error.h"
#include "data/gsm8k.h"
#include "data/shards.h"
#include "io/checkpoint.h"
#include "io/checkpoint_internal.h"
#include "io/safetensors.h"
#include "mutate.h"
#include "tiny_model.h"
#include "route/logits_text.h"
#include "tokenizer/tokenizer.h"
#include "train/train_state.h"

#define SEEDS FIXTURE_DIR "/../../fuzz/corpus"

static char work[64];

/* A message tells the user what to do: it states the requirement or the next step. */
static bool says_what_to_do(const char *message) {
    /* requirements and imperatives only: a message that merely says what is wrong fails */
    static const char *const advice[] = {"must", "should", "need", "expected", "give", "use ", "prepare", "make ",
                                         "remove", "resume", "save", "write", "regenerate", "again", "check",
                                         "fix", "set ", "lower", "raise", "allowed", "at most", "at least",
                                         "one of", "separate", "replace", "copy", "download", "choose", "add "};
    for (size_t i = 0; i < sizeof advice / sizeof advice[0]; i++)
        if (strstr(message, advice[i])) return true;
    return false;
}

typedef struct {
    const char *format, *path; /* the file the variant is written to */
    const char *named;         /* what messages must name: path's file name, or this */
    int (*load)(const char *path);
    long variants, refused, unhelpful;
} format_run;

static bool check_variant(void *user, const mutant *m) {
    format_run *run = user;
    FILE *file = fopen(run->path, "wb");
    assert_non_null(file);
    assert_int_equal(fwrite(m->data, 1, m->size, file), m->size);
    fclose(file);
    run->variants++;
    pm_clear_error();
    if (run->load(run->path) == 0) return true;
    run->refused++;
    const char *message = pm_last_error();
    const char *name = run->named ? run->named : strrchr(run->path, '/') + 1;
    bool ok = strstr(message, name) && says_what_to_do(message);
    /* (keys with escapes are quoted unescaped in messages) */
    if (ok && m->field[0] && m->json_valid && !strchr(m->field, '\\'))
        ok = strstr(message, m->field) != NULL;
    if (!ok && run->unhelpful++ < 8)
        print_message("%s: %s (%s): unhelpful message: %s\n", run->format, m->what, m->kind, message);
    if (!ok && getenv("HOSTILE_LOG")) {
        FILE *log = fopen(getenv("HOSTILE_LOG"), "a");
        fprintf(log, "%s\t%s\t%s\n", run->format, m->field, message);
        fclose(log);
    }
    return true;
}

/* seed: a path below fuzz/corpus, or an absolute path */
static char *read_seed(const char *seed, size_t *size) {
    char path[512], *text = NULL;
    snprintf(path, sizeof path, "%s%s%s", seed[0] == '/' ? "" : SEEDS, seed[0] == '/' ? "" : "/", seed);
    if (ckpt_read_text(path, (size_t)1 << 24, &text) < 0) fail_msg("%s", pm_last_error());
    struct stat info;
    assert_int_equal(stat(path, &info), 0);
    *size = (size_t)info.st_size;
    return text;
}

static void run_format_named(const char *format, const char *seed, const char *file_name, const char *named,
                             int (*load)(const char *), bool json, const binary_field *fields, int field_count) {
    size_t size;
    char *base = read_seed(seed, &size), path[256];
    snprintf(path, sizeof path, "%s/%s", work, file_name);
    format_run run = {format, path, named, load, 0, 0, 0};
    mutate_each(base, size, json, fields, field_count, check_variant, &run);
    print_message("%-16s %5ld variants, %5ld refused, %ld unhelpful messages\n", format, run.variants, run.refused,
                  run.unhelpful);
    free(base);
    assert_int_equal(run.unhelpful, 0);
    assert_true(run.refused > 0);
}

static void run_format(const char *format, const char *seed, const char *file_name, int (*load)(const char *),
                       bool json, const binary_field *fields, int field_count) {
    run_format_named(format, seed, file_name, NULL, load, json, fields, field_count);
}

/* ------------------------------------------------------------------ the loaders */

static int load_config(const char *path) {
    pm_model_config cfg;
    return pm_model_config_load(&cfg, path);
}

static int load_safetensors(const char *path) {
    st_file *file = NULL;
    int status = st_open(&file, path);
    for (int i = 0; status == 0 && i < st_count(file); i++) {
        const st_tensor *t = st_tensor_at(file, i);
        if (t->dtype == ST_I32 || t->dtype == ST_I64) continue;
        float *out = malloc(t->num_elements * sizeof(float) + 1);
        status = st_read_f32(file, t->name, t->shape, t->rank, out);
        free(out);
    }
    st_close(file);
    return status;
}

static int load_tokenizer(const char *path) {
    tokenizer *tok = NULL;
    int status = tokenizer_load(path, &tok);
    if (status == 0) tokenizer_free(tok);
    return status;
}

/* GPT-2's pair: the variant holds encoder.json, a "--8<--" line, vocab.bpe (as the seed). */
static int load_gpt2(const char *path) {
    char *text = NULL, dir[256], file[300];
    if (ckpt_read_text(path, (size_t)1 << 24, &text) < 0) fail_msg("%s", pm_last_error());
    struct stat info;
    assert_int_equal(stat(path, &info), 0);
    const size_t size = (size_t)info.st_size;
    static const char separator[] = "\n--8<--\n";
    const char *cut = memmem(text, size, separator, sizeof separator - 1);
    const size_t encoder_size = cut ? (size_t)(cut - text) : size;
    snprintf(dir, sizeof dir, "%s/gpt2", work);
    mkdir(dir, 0777);
    snprintf(file, sizeof file, "%s/encoder.json", dir);
    FILE *out = fopen(file, "wb");
    fwrite(text, 1, encoder_size, out);
    fclose(out);
    snprintf(file, sizeof file, "%s/vocab.bpe", dir);
    out = fopen(file, "wb");
    if (cut) fwrite(cut + sizeof separator - 1, 1, size - encoder_size - (sizeof separator - 1), out);
    fclose(out);
    free(text);
    return load_tokenizer(dir);
}

static int load_shard(const char *path) {
    token_shard shard;
    shard_header header;
    int status = shard_read_header(path, &header);
    if (status == 0) status = shard_read(path, 0x1234abcdULL, &shard);
    if (status == 0) shard_free(&shard);
    return status;
}

static int load_jsonl(const char *path) {
    gsm8k_set set;
    int status = gsm8k_load(path, false, &set);
    if (status == 0) gsm8k_free(&set);
    return status;
}

static int load_trainer_state(const char *path) {
    char *text = NULL;
    int status = ckpt_read_text(path, (size_t)1 << 24, &text);
    train_options opt = train_options_default();
    train_history history = {0};
    train_state_paths paths;
    long step;
    if (status == 0) status = train_state_from_json(text, path, &opt, &step, &history, &paths);
    train_history_free(&history);
    free(text);
    return status;
}

static int load_logits(const char *path) {
    char *text = NULL;
    struct stat info;
    assert_int_equal(stat(path, &info), 0);
    float *values = NULL;
    int rows, experts;
    int status = ckpt_read_text(path, (size_t)1 << 24, &text);
    if (status == 0) status = logits_text_parse(text, (size_t)info.st_size, path, &values, &rows, &experts);
    free(values);
    free(text);
    return status;
}

static char model_dir[128];

static int load_model_dir(const char *path) {
    (void)path;
    pm_model *model = checkpoint_load_model(model_dir, 1, 8, false);
    pm_model_free(model);
    return model ? 0 : -1;
}

/* ------------------------------------------------------------------ the tests */

static void test_config(void **state) {
    (void)state;
    run_format("config.json", "config/config-probmoe.json", "config.json", load_config, true, NULL, 0);
    run_format("config.json (HF)", "config/olmoe.json", "config.json", load_config, true, NULL, 0);
    run_format("qwen2_moe config", "config/qwen2_moe.json", "config.json", load_config, true, NULL, 0);
    run_format("mixtral config", "config/mixtral.json", "config.json", load_config, true, NULL, 0);
}

static void test_safetensors(void **state) {
    (void)state;
    const binary_field header_length = {0, 8};
    run_format("safetensors", "safetensors/mixed.safetensors", "model.safetensors", load_safetensors, false,
               &header_length, 1);
    run_format("safetensors bf16", "safetensors/bf16.safetensors", "model.safetensors", load_safetensors, false,
               &header_length, 1);
}

/* The index of a model saved in shards: OLMoE's in F32, and a Qwen2-MoE's (shared expert, biases,
 * tied embedding) in BF16. */
static void test_index(void **state) {
    (void)state;
    for (int family = 0; family < 2; family++) {
        snprintf(model_dir, sizeof model_dir, "%s/model", work);
        pm_model_config cfg = family ? tiny_family_config(PM_ARCH_QWEN2_MOE, PM_ROUTER_PROBMOE)
                                     : tiny_model_config(PM_ROUTER_PROBMOE);
        pm_model *model = pm_model_create(&cfg, 1, 8);
        checkpoint_options options = {.bf16 = family == 1, .shard_bytes = 4096};
        assert_int_equal(checkpoint_save(model, NULL, model_dir, &options), 0);
        pm_model_free(model);
        /* the base is the index just saved (the fuzz seed's model is another) */
        char index[192];
        snprintf(index, sizeof index, "%s/model.safetensors.index.json", model_dir);
        run_format(family ? "qwen2_moe index" : "shard index", index, "model/model.safetensors.index.json",
                   load_model_dir, true, NULL, 0);
    }
}

static void test_tokenizers(void **state) {
    (void)state;
    run_format("tokenizer.json", "tokenizer_json/trained.json", "tokenizer.json", load_tokenizer, true, NULL, 0);
    run_format("tokenizer.json SP", "tokenizer_json/sentencepiece.json", "tokenizer.json", load_tokenizer, true, NULL, 0);
    run_format("tokenizer.json NFC", "tokenizer_json/split_nfc.json", "tokenizer.json", load_tokenizer, true, NULL, 0);
    run_format_named("GPT-2 files", "gpt2/small", "gpt2-pair", "/gpt2/", load_gpt2, true, NULL, 0);
}

static void test_data(void **state) {
    (void)state;
    const binary_field shard_fields[] = {{8, 4}, {12, 4}, {16, 8}, {24, 4}, {32, 8}};
    run_format("token shard", "shard/narrow.bin", "train.bin", load_shard, false, shard_fields, 5);
    run_format("GSM8K JSONL", "jsonl/gsm8k-style.jsonl", "train.jsonl", load_jsonl, true, NULL, 0);
    run_format("arith JSONL", "jsonl/arith.jsonl", "train.jsonl", load_jsonl, true, NULL, 0);
    run_format("trainer state", "trainer_state/trainer_state.json", "trainer_state.json", load_trainer_state, true,
               NULL, 0);
    run_format("router logits", "logits/spaces.txt", "logits.txt", load_logits, false, NULL, 0);
    run_format("router logits,", "logits/commas.txt", "logits.txt", load_logits, false, NULL, 0);
}

static int make_work(void **state) {
    (void)state;
    snprintf(work, sizeof work, "/tmp/probmoe_hostile_XXXXXX");
    return mkdtemp(work) ? 0 : -1;
}

static int remove_work(void **state) {
    (void)state;
    char command[128];
    snprintf(command, sizeof command, "rm -rf %s", work);
    return system(command) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),  cmocka_unit_test(test_safetensors), cmocka_unit_test(test_index),
        cmocka_unit_test(test_tokenizers), cmocka_unit_test(test_data),
    };
    return cmocka_run_group_tests(tests, make_work, remove_work);
}
