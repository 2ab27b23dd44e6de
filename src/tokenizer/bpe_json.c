/*
 * Reads a Hugging Face tokenizer.json holding a BPE model, and the stages around it: the
 * normalizer, the pre-tokenizer, the added tokens and the decoder (each in its own file).
 * Only what the encoder reproduces exactly is accepted; any other component or option is
 * refused by name. Byte-level (a ByteLevel pre-tokenizer: GPT-2, Qwen, Llama-3, DeepSeek) and
 * SentencePiece-style vocabularies (Llama-2, Mistral, Mixtral: Metaspace or Prepend/Replace
 * normalizers, byte fallback) are both read here.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_internal.h"
#include "tokenizer/decoder.h"
#include "tokenizer/json_util.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"

static int read_model_options(const char *file, const cJSON *model, bpe_options *o) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "BPE") == 0))
        return pm_fail(PM_ERR_ARG, "%s: model type %s is not supported; only BPE models are", file,
                       cJSON_IsString(type) ? type->valuestring : "(not a string)");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return pm_fail(PM_ERR_ARG, "%s: model.dropout is set; BPE dropout makes encoding random and is not "
                       "supported", file);
    const char *affixes[2] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && v->valuestring[0] == '\0'))
            return pm_fail(PM_ERR_ARG, "%s: model.%s is set; subword affixes are not supported", file, affixes[i]);
    }
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (unk && !cJSON_IsNull(unk) && !cJSON_IsString(unk))
        return pm_fail(PM_ERR_ARG, "%s: model.unk_token must be a string or null", file);
    o->unk_token = cJSON_IsString(unk) ? unk->valuestring : NULL;
    int status = json_bool(file, model, "byte_fallback", "model", false, &o->byte_fallback);
    if (!status) status = json_bool(file, model, "fuse_unk", "model", false, &o->fuse_unk);
    if (!status) status = json_bool(file, model, "ignore_merges", "model", false, &o->ignore_merges);
    return status;
}

/* What runs after the model: ids are never changed here, so only processors that add special
 * tokens around a sequence (not applied by encode) or only adjust offsets are accepted. */
static int check_post_processor(const char *file, const cJSON *p, int depth) {
    if (!p || cJSON_IsNull(p)) return PM_OK;
    const char *type = json_type_of(p);
    if (strcmp(type, "ByteLevel") == 0 || strcmp(type, "TemplateProcessing") == 0) return PM_OK;
    if (strcmp(type, "Sequence") == 0 && depth < 4) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "processors");
        for (const cJSON *item = cJSON_IsArray(list) ? list->child : NULL; item; item = item->next) {
            const int status = check_post_processor(file, item, depth + 1);
            if (status) return status;
        }
        return PM_OK;
    }
    return pm_fail(PM_ERR_ARG, "%s: post_processor type %s is not supported (supported: ByteLevel, TemplateProcessing, "
                   "Sequence)", file, type);
}

static int check_unused(const char *file, const cJSON *root) {
    const char *fields[2] = {"truncation", "padding"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, fields[i]);
        if (v && !cJSON_IsNull(v))
            return pm_fail(PM_ERR_ARG, "%s: \"%s\" is set; it changes the ids of a text and is not supported (set it "
                           "to null)", file, fields[i]);
    }
    return check_post_processor(file, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), 0);
}

/* Reads an id: a JSON number that is a non-negative integer (range is checked later). */
static int json_id(const char *file, const char *what, const char *name, const cJSON *v, int64_t *id) {
    *id = cJSON_IsNumber(v) ? bpe_id_of_number(v->valuedouble) : -1;
    if (*id >= 0) return PM_OK;
    char ex[48];
    return pm_fail(PM_ERR_ARG, "%s: %s '%s' has id %s; ids must be integers from 0 to the vocabulary size - 1",
                   file, what, bpe_excerpt(name, strlen(name), ex),
                   cJSON_IsNumber(v) ? "out of range or not an integer" : "that is not a number");
}

/* The added tokens: their ids into the builder, their contents and flags into the matcher
 * (a normalized token's content is normalized as the text will be). */
static int add_added_tokens(const char *file, const cJSON *root, const normalizer *norm, bpe_builder *b,
                            added_tokens *added) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!list || cJSON_IsNull(list)) return PM_OK;
    if (!cJSON_IsArray(list)) return pm_fail(PM_ERR_ARG, "%s: added_tokens must be an array", file);
    text_buffer normalized = {0};
    normalizer_scratch scratch = {0};
    int status = PM_OK;
    size_t index = 0;
    for (const cJSON *t = list->child; t && !status; t = t->next, index++) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(t, "content");
        if (!cJSON_IsString(content) || !json_valid_utf8(content->valuestring)) {
            /* (an invalid one could match inside a character of the text) */
            status = pm_fail(PM_ERR_ARG, "%s: added_tokens[%zu] has no UTF-8 string \"content\"", file, index);
            break;
        }
        char what[64];
        snprintf(what, sizeof what, "added_tokens[%zu]", index);
        added_token token = {.content = content->valuestring, .length = (uint32_t)strlen(content->valuestring)};
        int64_t id = -1;
        status = json_id(file, "added token", content->valuestring, cJSON_GetObjectItemCaseSensitive(t, "id"), &id);
        if (!status) status = json_bool(file, t, "special", what, false, &token.special);
        if (!status) status = json_bool(file, t, "normalized", what, false, &token.normalized);
        if (!status) status = json_bool(file, t, "lstrip", what, false, &token.lstrip);
        if (!status) status = json_bool(file, t, "rstrip", what, false, &token.rstrip);
        if (!status) status = json_bool(file, t, "single_word", what, false, &token.single_word);
        if (!status) status = bpe_builder_add_added(b, token.content, token.length, id);
        if (status) break;
        token.id = (int32_t)id;
        if (token.normalized && norm) {
            status = normalize(norm, token.content, token.length, &normalized, &scratch);
            if (status) break;
            token.content = normalized.data;
            token.length = (uint32_t)normalized.length;
        }
        status = added_tokens_add(added, &token);
    }
    text_buffer_free(&normalized);
    normalizer_scratch_free(&scratch);
    return status ? status : added_tokens_finish(added);
}

static int add_vocab(const char *file, const cJSON *model, bpe_builder *b) {
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab))
        return pm_fail(PM_ERR_ARG, "%s: model.vocab must be an object mapping token strings to ids", file);
    for (const cJSON *t = vocab->child; t; t = t->next) {
        int64_t id = -1;
        int status = json_id(file, "token", t->string, t, &id);
        if (!status) status = bpe_builder_add_token(b, t->string, strlen(t->string), id);
        if (status) return status;
    }
    return bpe_builder_end_vocab(b);
}

static int add_merges(const char *file, const cJSON *model, bpe_builder *b) {
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges)) return pm_fail(PM_ERR_ARG, "%s: model.merges must be an array", file);
    size_t index = 0;
    for (const cJSON *m = merges->child; m; m = m->next, index++) {
        /* Two spellings: "left right" (older files) and ["left", "right"] (newer ones). */
        const char *left = NULL, *right = NULL;
        size_t left_length = 0, right_length = 0;
        if (cJSON_IsString(m)) {
            const char *space = strchr(m->valuestring, ' ');
            if (space && !strchr(space + 1, ' ')) {
                left = m->valuestring;
                left_length = (size_t)(space - left);
                right = space + 1;
                right_length = strlen(right);
            }
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                   cJSON_IsString(m->child->next)) {
            left = m->child->valuestring;
            right = m->child->next->valuestring;
            left_length = strlen(left);
            right_length = strlen(right);
        }
        if (!left || left_length == 0 || right_length == 0)
            return pm_fail(PM_ERR_ARG, "%s: model.merges[%zu] must be a string \"left right\" or a pair "
                           "[\"left\", \"right\"] of non-empty tokens", file, index);
        char where[40];
        snprintf(where, sizeof where, "merges[%zu]", index);
        const int status = bpe_builder_add_merge(b, left, left_length, right, right_length, where);
        if (status) return status;
    }
    return PM_OK;
}

/* The end-of-text token: the first of these common names among the added tokens. */
static int32_t choose_eos(const bpe_builder *b) {
    const char *names[] = {"<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eos|>", "<｜end▁of▁sentence｜>"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const int32_t id = bpe_builder_added_id(b, names[i]);
        if (id >= 0) return id;
    }
    return -1;
}

/* The stages around the model; *byte_level tells which kind of vocabulary the file has. */
static int load_stages(const char *file, const cJSON *root, const bpe_options *options, bpe_pipeline *out,
                       bool *byte_level) {
    int status = normalizer_from_json(file, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), &out->normalizer);
    if (!status)
        status = pre_tokenizer_from_json(file, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), &out->pre,
                                         byte_level);
    if (!status && *byte_level && options->byte_fallback)
        status = pm_fail(PM_ERR_ARG, "%s: model.byte_fallback is set with a ByteLevel pre-tokenizer; byte fallback "
                         "belongs to SentencePiece-style vocabularies", file);
    if (!status && !*byte_level && options->ignore_merges)
        status = pm_fail(PM_ERR_ARG, "%s: model.ignore_merges is supported with byte-level vocabularies only", file);
    if (!status)
        status = decoder_from_json(file, cJSON_GetObjectItemCaseSensitive(root, "decoder"), *byte_level, &out->decoder);
    if (!status) status = check_unused(file, root);
    return status;
}

static int load_parsed(const char *file, const cJSON *root, bpe_pipeline *out) {
    if (!cJSON_IsObject(root)) return pm_fail(PM_ERR_ARG, "%s: expected a JSON object at the top level", file);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return pm_fail(PM_ERR_ARG, "%s: \"model\" is missing or not an object", file);
    bpe_options options = {0};
    bool byte_level = false;
    int status = read_model_options(file, model, &options);
    if (!status) status = load_stages(file, root, &options, out, &byte_level);
    if (status) return status;
    if (!(out->added = added_tokens_create())) return pm_fail(PM_ERR_NOMEM, "out of memory loading %s", file);
    bpe_builder *b = bpe_builder_create(file, byte_level);
    if (!b) return PM_ERR_NOMEM;
    status = add_added_tokens(file, root, out->normalizer, b, out->added);
    if (!status) status = add_vocab(file, model, b);
    if (!status) status = add_merges(file, model, b);
    if (!status) status = bpe_builder_finish(b, &options, &out->model);
    if (!status) out->model->eos = choose_eos(b);
    bpe_builder_free(b);
    return status;
}

int bpe_parse_json(const char *file, const char *text, size_t length, void **root) {
    const char *end = NULL;
    *root = cJSON_ParseWithLengthOpts(text, length, &end, false);
    if (*root) return PM_OK;
    const size_t at = end && end >= text && end <= text + length ? (size_t)(end - text) : length;
    return pm_fail(PM_ERR_ARG, "%s: not valid JSON near byte %zu of %zu%s; the file must be whole, valid JSON: "
                   "use an intact copy", file, at, length, at + 16 >= length ? " (is the file truncated?)" : "");
}

void bpe_pipeline_free(bpe_pipeline *p) {
    bpe_model_free(p->model);
    normalizer_free(p->normalizer);
    pre_tokenizer_free(p->pre);
    added_tokens_free(p->added);
    decoder_free(p->decoder);
    memset(p, 0, sizeof *p);
}

int bpe_load_tokenizer_json(const char *file, bpe_pipeline *out) {
    memset(out, 0, sizeof *out);
    char *text;
    size_t length;
    int status = bpe_read_file(file, &text, &length);
    if (status) return status;
    void *root;
    status = bpe_parse_json(file, text, length, &root);
    free(text);
    if (status) return status;
    status = load_parsed(file, root, out);
    cJSON_Delete(root);
    if (status) bpe_pipeline_free(out);
    if (status == PM_ERR_ARG) pm_fail(status, "%s; " BPE_FILE_ADVICE, pm_last_error());
    return status;
}
