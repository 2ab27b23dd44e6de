/*
 * Writes the seed corpora, fuzz/corpus/<parser>/, from the project's own writers, so that the
 * seeds are valid files of today's formats: `build-fuzz/fuzz/fuzz_write_seeds fuzz/corpus`.
 * (The logits seeds are text written here too.) Rerun it when a format changes.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/arith.h"
#include "data/shards.h"
#include "fuzz_input.h"
#include "tiny_model.h"
#include "io/checkpoint.h"
#include "io/checkpoint_internal.h"
#include "io/safetensors.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/byte_unicode.h"
#include "train/train_state.h"

static const char *root;

static void check(int status, const char *what) {
    if (status < 0) {
        fprintf(stderr, "write_seeds: %s: %s\n", what, pm_last_error());
        exit(1);
    }
}

static const char *seed_path(const char *parser, const char *name) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, parser);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/%s/%s", root, parser, name);
    return path;
}

static void write_seed(const char *parser, const char *name, const void *data, size_t size) {
    const char *path = seed_path(parser, name);
    FILE *file = fopen(path, "wb");
    if (!file || fwrite(data, 1, size, file) != size || fclose(file) != 0) {
        perror(path);
        exit(1);
    }
}

static void write_text_seed(const char *parser, const char *name, const char *text) {
    write_seed(parser, name, text, strlen(text));
}

/* Appends a whole file's bytes to a seed (for seeds made of files our writers produce). */
static void copy_seed(const char *parser, const char *name, const char *from) {
    char *text = NULL;
    check(ckpt_read_text(from, (size_t)16 << 20, &text), from);
    write_text_seed(parser, name, text);
    free(text);
}

static void safetensors_seeds(void) {
    const float f[6] = {1, -2, 0.5f, 3, 1e-3f, -7};
    const int32_t i32[3] = {7, -1, 40000};
    const int64_t i64[2] = {5, -3};
    const int64_t shape23[2] = {2, 3}, shape3[1] = {3}, shape2[1] = {2};
    st_writer *w = st_writer_create();
    check(st_writer_add(w, "model.embed_tokens.weight", ST_F32, shape23, 2, f), "add");
    check(st_writer_add(w, "ids", ST_I32, shape3, 1, i32), "add");
    check(st_writer_add(w, "steps", ST_I64, shape2, 1, i64), "add");
    check(st_writer_set_metadata(w, "format", "pt"), "metadata");
    check(st_writer_write(w, seed_path("safetensors", "mixed.safetensors")), "write");
    st_writer_free(w);
    w = st_writer_create();
    check(st_writer_add_bf16(w, "lm_head.weight", shape23, 2, f), "add");
    check(st_writer_add(w, "scalar", ST_F32, NULL, 0, f), "add");
    check(st_writer_write(w, seed_path("safetensors", "bf16.safetensors")), "write");
    st_writer_free(w);
}

static void model_seeds(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/model", fuzz_dir());
    pm_model_config cfg = tiny_model_config(PM_ROUTER_PROBMOE);
    pm_model *model = pm_model_create(&cfg, 1, 8);
    checkpoint_options options = {.shard_bytes = 4096};
    check(model ? checkpoint_save(model, NULL, dir, &options) : -1, "save");
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    copy_seed("index", "model.safetensors.index.json", path);
    pm_model_free(model);

    const pm_router_kind kinds[] = {PM_ROUTER_TOPK, PM_ROUTER_PROBMOE, PM_ROUTER_PROBMOE_DYN, PM_ROUTER_DENSEMIXER,
                                    PM_ROUTER_SOFTMOE};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        cfg.router = pm_router_config_default(kinds[i], cfg.num_experts, cfg.experts_per_token);
        char *json = pm_model_config_to_json(&cfg), name[64];
        snprintf(name, sizeof name, "config-%s.json", pm_router_kind_name(kinds[i]));
        write_text_seed("config", name, json);
        free(json);
    }
    /* a Hugging Face OLMoE config, without probmoe's own fields */
    write_text_seed("config", "olmoe.json",
                    "{\"architectures\": [\"OlmoeForCausalLM\"], \"model_type\": \"olmoe\", \"vocab_size\": 50304, "
                    "\"hidden_size\": 2048, \"intermediate_size\": 1024, \"num_hidden_layers\": 16, "
                    "\"num_attention_heads\": 16, \"num_key_value_heads\": 16, \"num_experts\": 64, "
                    "\"num_experts_per_tok\": 8, \"max_position_embeddings\": 4096, \"rope_theta\": 10000.0, "
                    "\"rms_norm_eps\": 1e-05, \"router_aux_loss_coef\": 0.01, \"tie_word_embeddings\": false, "
                    "\"norm_topk_prob\": false, \"output_router_logits\": false}\n");
    /* Hugging Face configs of the other families (Qwen1.5-MoE-A2.7B's and Mixtral-8x7B's fields,
     * with newer configs' head_dim) */
    write_text_seed("config", "qwen2_moe.json",
                    "{\"architectures\": [\"Qwen2MoeForCausalLM\"], \"model_type\": \"qwen2_moe\", "
                    "\"vocab_size\": 151936, \"hidden_size\": 2048, \"intermediate_size\": 5632, "
                    "\"moe_intermediate_size\": 1408, \"shared_expert_intermediate_size\": 5632, "
                    "\"num_hidden_layers\": 24, \"num_attention_heads\": 16, \"num_key_value_heads\": 16, "
                    "\"num_experts\": 60, \"num_experts_per_tok\": 4, \"decoder_sparse_step\": 1, "
                    "\"mlp_only_layers\": [], \"norm_topk_prob\": false, \"max_position_embeddings\": 8192, "
                    "\"rope_theta\": 1000000.0, \"rope_scaling\": null, \"rms_norm_eps\": 1e-06, "
                    "\"use_sliding_window\": false, \"sliding_window\": 32768, \"max_window_layers\": 21, "
                    "\"attention_dropout\": 0.0, \"hidden_act\": \"silu\", \"router_aux_loss_coef\": 0.001, "
                    "\"tie_word_embeddings\": false, \"output_router_logits\": false, "
                    "\"initializer_range\": 0.02}\n");
    /* the same family with dense MLP layers among the MoE layers */
    write_text_seed("config", "qwen2_moe_dense.json",
                    "{\"model_type\": \"qwen2_moe\", \"vocab_size\": 64, \"hidden_size\": 16, "
                    "\"intermediate_size\": 24, \"moe_intermediate_size\": 12, "
                    "\"shared_expert_intermediate_size\": 10, \"num_hidden_layers\": 6, "
                    "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"num_experts\": 4, "
                    "\"num_experts_per_tok\": 2, \"decoder_sparse_step\": 2, \"mlp_only_layers\": [3, 9], "
                    "\"tie_word_embeddings\": true}\n");
    write_text_seed("config", "mixtral.json",
                    "{\"architectures\": [\"MixtralForCausalLM\"], \"model_type\": \"mixtral\", "
                    "\"vocab_size\": 32000, \"hidden_size\": 4096, \"intermediate_size\": 14336, "
                    "\"num_hidden_layers\": 32, \"num_attention_heads\": 32, \"num_key_value_heads\": 8, "
                    "\"head_dim\": 128, \"num_local_experts\": 8, \"num_experts_per_tok\": 2, \"max_position_embeddings\": 32768, "
                    "\"rope_theta\": 1000000.0, \"rms_norm_eps\": 1e-05, \"sliding_window\": null, "
                    "\"attention_dropout\": 0.0, \"hidden_act\": \"silu\", \"router_aux_loss_coef\": 0.02, "
                    "\"router_jitter_noise\": 0.0, \"tie_word_embeddings\": false, \"output_router_logits\": false, "
                    "\"initializer_range\": 0.02}\n");
}

static void tokenizer_seeds(void) {
    static const char text_corpus[] = "the cat sat on the mat. The theory of the thing: 12 + 30 = 42.\n"
                                      "  indented\tlines and h\xc3\xa9llo w\xc3\xb6rld \xf0\x9f\x98\x80 emoji\n";
    const char *corpus = fuzz_write("corpus.txt", text_corpus, sizeof text_corpus - 1);
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", fuzz_dir());
    check(bpe_train(&corpus, 1, 290, path, NULL), "bpe_train");
    copy_seed("tokenizer_json", "trained.json", path);

    /* GPT-2's two files: every byte, three merges, the end-of-text token */
    size_t size = 0, capacity = 1 << 16;
    char *text = malloc(capacity);
    size += (size_t)snprintf(text + size, capacity - size, "{");
    for (int b = 0; b < 256; b++) {
        char utf8[8];
        size_t n = byte_to_utf8((uint8_t)b, utf8);
        utf8[n] = '\0';
        const char *escape = utf8[0] == '"' || utf8[0] == '\\' ? "\\" : "";
        size += (size_t)snprintf(text + size, capacity - size, "\"%s%s\": %d, ", escape, utf8, b);
    }
    size += (size_t)snprintf(text + size, capacity - size,
                             "\"\xc4\xa0t\": 256, \"he\": 257, \"\xc4\xa0the\": 258, \"<|endoftext|>\": 259}"
                             FUZZ_SEPARATOR "#version: 0.2\n\xc4\xa0 t\nh e\n\xc4\xa0t he\n");
    write_seed("gpt2", "small", text, size);

    /* The other families' stages, small. SentencePiece-style as Llama-2: Prepend and Replace
     * normalizers, byte fallback, unk, its decoder. */
    size = (size_t)snprintf(text, capacity, "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": "
                            "true, \"normalized\": false, \"lstrip\": false, \"rstrip\": false, \"single_word\": "
                            "false}], \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": "
                            "\"Prepend\", \"prepend\": \"\xe2\x96\x81\"}, {\"type\": \"Replace\", \"pattern\": "
                            "{\"String\": \" \"}, \"content\": \"\xe2\x96\x81\"}]}, \"pre_tokenizer\": null, "
                            "\"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", "
                            "\"pattern\": {\"String\": \"\xe2\x96\x81\"}, \"content\": \" \"}, {\"type\": "
                            "\"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", "
                            "\"start\": 1, \"stop\": 0}]}, \"model\": {\"type\": \"BPE\", \"unk_token\": "
                            "\"<unk>\", \"fuse_unk\": true, \"byte_fallback\": true, \"vocab\": {\"<unk>\": 0, ");
    for (int b = 0; b < 256; b++) size += (size_t)snprintf(text + size, capacity - size, "\"<0x%02X>\": %d, ", b, 1 + b);
    size += (size_t)snprintf(text + size, capacity - size,
                             "\"\xe2\x96\x81\": 257, \"t\": 258, \"h\": 259, \"e\": 260, \"\xe2\x96\x81t\": 261, "
                             "\"he\": 262, \"\xe2\x96\x81the\": 263}, \"merges\": [\"\xe2\x96\x81 t\", \"h e\", "
                             "\"\xe2\x96\x81t he\"]}}");
    write_seed("tokenizer_json", "sentencepiece.json", text, size);
    /* Byte-level as Qwen and DeepSeek: NFC, a Sequence of Splits, added tokens with every flag. */
    size = (size_t)snprintf(text, capacity, "{\"added_tokens\": [{\"id\": 259, \"content\": \"<|x|>\", "
                            "\"special\": true, \"normalized\": false, \"lstrip\": true, \"rstrip\": true, "
                            "\"single_word\": false}, {\"id\": 260, \"content\": \"word\", \"special\": false, "
                            "\"normalized\": true, \"lstrip\": false, \"rstrip\": false, \"single_word\": true}], "
                            "\"normalizer\": {\"type\": \"NFC\"}, \"pre_tokenizer\": {\"type\": \"Sequence\", "
                            "\"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{N}{1,3}\"}, "
                            "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"Split\", \"pattern\": "
                            "{\"Regex\": \"(?i:'s|'t)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+| ?[^\\\\s\\\\p{L}"
                            "\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, "
                            "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", "
                            "\"add_prefix_space\": false, \"use_regex\": false}]}, \"decoder\": {\"type\": "
                            "\"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (int b = 0; b < 256; b++) {
        char utf8[8];
        size_t n = byte_to_utf8((uint8_t)b, utf8);
        utf8[n] = '\0';
        const char *escape = utf8[0] == '"' || utf8[0] == '\\' ? "\\" : "";
        size += (size_t)snprintf(text + size, capacity - size, "\"%s%s\": %d, ", escape, utf8, b);
    }
    size += (size_t)snprintf(text + size, capacity - size, "\"\xc4\xa0t\": 256, \"he\": 257, \"\xc4\xa0the\": 258}, "
                             "\"merges\": [\"\xc4\xa0 t\", \"h e\", \"\xc4\xa0t he\"]}}");
    write_seed("tokenizer_json", "split_nfc.json", text, size);
    free(text);
}

static void data_seeds(void) {
    int32_t tokens[12] = {1, 5, 9, 39, 0, 2, 2, 7, 11, 30, 3, 38};
    check(shard_write(seed_path("shard", "narrow.bin"), tokens, 12, 40, 0x1234abcdULL), "shard");
    tokens[3] = 69999;
    check(shard_write(seed_path("shard", "wide.bin"), tokens, 12, 70000, 0xfeedULL), "shard");

    write_text_seed("jsonl", "gsm8k-style.jsonl",
                    "{\"question\": \"Ann has 3 apples and buys 4 more. How many does she have?\", "
                    "\"answer\": \"She has 3 + 4 = <<3+4=7>>7 apples.\\n#### 7\"}\n"
                    "\n"
                    "{\"question\": \"A box holds 1,200 pens; 250 are sold. How many are left?\", "
                    "\"answer\": \"1200 - 250 = <<1200-250=950>>950\\n#### 950\"}\n");
    arith_options options = arith_options_default();
    options.train_count = 4;
    options.test_count = 2;
    options.max_steps = 3;
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/arith", fuzz_dir());
    check(arith_write(dir, &options, NULL), "arith");
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    copy_seed("jsonl", "arith.jsonl", path);

    train_options opt = train_options_default();
    opt.data_path = "data/prepared/tinyshakespeare";
    opt.tokenizer_path = "data/tokenizers/gpt2";
    opt.out_dir = "runs/seed";
    opt.steps = 20;
    opt.command_line = "probmoe train --data data/prepared/tinyshakespeare --steps 20";
    train_history history = {0};
    check(train_history_add(&history, 5, 3.5, 3.7), "history");
    check(train_history_add(&history, 10, 3.1, 0.0 / 0.0), "history");
    char *json = train_state_to_json(&opt, 10, &history);
    write_text_seed("trainer_state", "trainer_state.json", json);
    free(json);
    train_history_free(&history);

    write_text_seed("logits", "spaces.txt", "1.5 -0.25 3 0\n0 0 0 0\n-1e3 2e-2 7 1\n");
    write_text_seed("logits", "commas.txt", "0.1,0.2,0.3\r\n\n4, 5, 6\n");
}

int main(int argc, char **argv) {
    root = argc > 1 ? argv[1] : "fuzz/corpus";
    mkdir(root, 0777);
    safetensors_seeds();
    model_seeds();
    tokenizer_seeds();
    data_seeds();
    printf("seeds written to %s\n", root);
    return 0;
}
