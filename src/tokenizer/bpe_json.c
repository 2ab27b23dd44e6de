/*
 * Reads a Hugging Face tokenizer.json holding a byte-level BPE model. Only what this encoder
 * reproduces exactly is accepted: no normalizer (it would change the text, so decoding could
 * not give it back), the ByteLevel pre-tokenizer with GPT-2's regex and no prefix space, the
 * ByteLevel decoder, no dropout, no subword prefixes. Anything else is refused by name.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/bpe_internal.h"

static bool has_type(const cJSON *object, const char *type) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(object, "type");
    return cJSON_IsString(t) && strcmp(t->valuestring, type) == 0;
}

static const char *type_of(const cJSON *object) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(object, "type");
    return cJSON_IsString(t) ? t->valuestring : "(no type)";
}

/* Absent, null or false. */
static bool unset(const cJSON *object, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(object, key);
    return !v || cJSON_IsNull(v) || cJSON_IsFalse(v);
}

/* An item that does nothing: absent, null, or a Sequence whose list (under key) is empty. */
static bool no_op(const cJSON *item, const char *key) {
    if (!item || cJSON_IsNull(item)) return true;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(item, key);
    return has_type(item, "Sequence") && cJSON_IsArray(list) && cJSON_GetArraySize(list) == 0;
}

/* A ByteLevel pre-tokenizer that splits with GPT-2's regex and adds nothing to the text. */
static int check_byte_level(const char *file, const cJSON *p) {
    if (!has_type(p, "ByteLevel"))
        return pm_fail(PM_ERR_ARG, "%s: pre_tokenizer type %s is not supported; byte-level BPE needs the ByteLevel "
                       "pre-tokenizer", file, type_of(p));
    if (!unset(p, "add_prefix_space"))
        return pm_fail(PM_ERR_ARG, "%s: the ByteLevel pre-tokenizer has add_prefix_space set; it inserts a space "
                       "into the text, which this tokenizer does not do", file);
    const cJSON *regex = cJSON_GetObjectItemCaseSensitive(p, "use_regex");
    if (cJSON_IsFalse(regex))
        return pm_fail(PM_ERR_ARG, "%s: the ByteLevel pre-tokenizer has use_regex false; only GPT-2's regex "
                       "split is supported", file);
    return PM_OK;
}

static int check_pipeline(const char *file, const cJSON *root) {
    const cJSON *normalizer = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (!no_op(normalizer, "normalizers"))
        return pm_fail(PM_ERR_ARG, "%s: the normalizer (%s) would change the text before tokenizing, so decoding "
                       "could not give it back; only tokenizers without a normalizer are supported",
                       file, type_of(normalizer));
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (!pre || cJSON_IsNull(pre))
        return pm_fail(PM_ERR_ARG, "%s: there is no pre_tokenizer; byte-level BPE needs ByteLevel", file);
    if (has_type(pre, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers");
        if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) != 1)
            return pm_fail(PM_ERR_ARG, "%s: a Sequence pre_tokenizer is supported only when it holds just "
                           "ByteLevel", file);
        pre = cJSON_GetArrayItem(list, 0);
    }
    int status = check_byte_level(file, pre);
    if (status) return status;
    const cJSON *decoder = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (decoder && has_type(decoder, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(decoder, "decoders");
        decoder = cJSON_IsArray(list) && cJSON_GetArraySize(list) == 1 ? cJSON_GetArrayItem(list, 0) : NULL;
        if (!decoder) return pm_fail(PM_ERR_ARG, "%s: a Sequence decoder is supported only when it holds just "
                                     "ByteLevel", file);
    }
    if (decoder && !cJSON_IsNull(decoder) && !has_type(decoder, "ByteLevel"))
        return pm_fail(PM_ERR_ARG, "%s: decoder type %s is not supported; byte-level BPE needs the ByteLevel decoder",
                       file, type_of(decoder));
    return PM_OK;
}

static int check_model_options(const char *file, const cJSON *model) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "BPE") == 0))
        return pm_fail(PM_ERR_ARG, "%s: model type %s is not supported; only byte-level BPE models are", file,
                       cJSON_IsString(type) ? type->valuestring : "(not a string)");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return pm_fail(PM_ERR_ARG, "%s: model.dropout is set; BPE dropout makes encoding random and is not "
                       "supported", file);
    const char *affixes[2] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && v->valuestring[0] == '\0'))
            return pm_fail(PM_ERR_ARG, "%s: model.%s is set; byte-level BPE does not use it", file, affixes[i]);
    }
    if (!unset(model, "byte_fallback"))
        return pm_fail(PM_ERR_ARG, "%s: model.byte_fallback is set; that is SentencePiece-style BPE, not "
                       "byte-level", file);
    return PM_OK;
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

static int add_added_tokens(const char *file, const cJSON *root, bpe_builder *b) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!list || cJSON_IsNull(list)) return PM_OK;
    if (!cJSON_IsArray(list)) return pm_fail(PM_ERR_ARG, "%s: added_tokens must be an array", file);
    size_t index = 0;
    for (const cJSON *t = list->child; t; t = t->next, index++) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(t, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(t, "id");
        if (!cJSON_IsString(content))
            return pm_fail(PM_ERR_ARG, "%s: added_tokens[%zu] has no string \"content\"", file, index);
        if (!unset(t, "single_word") || !unset(t, "lstrip") || !unset(t, "rstrip")) {
            char ex[48];
            return pm_fail(PM_ERR_ARG, "%s: added token '%s' sets single_word, lstrip or rstrip; these change how "
                           "the text around it is split and are not supported", file,
                           bpe_excerpt(content->valuestring, strlen(content->valuestring), ex));
        }
        int64_t value = -1;
        int status = json_id(file, "added token", content->valuestring, id, &value);
        if (status) return status;
        status = bpe_builder_add_added(b, content->valuestring, strlen(content->valuestring), value);
        if (status) return status;
    }
    return PM_OK;
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
    const char *names[] = {"<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eos|>"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const int32_t id = bpe_builder_added_id(b, names[i]);
        if (id >= 0) return id;
    }
    return -1;
}

static int load_parsed(const char *file, const cJSON *root, bpe_model **out) {
    if (!cJSON_IsObject(root)) return pm_fail(PM_ERR_ARG, "%s: expected a JSON object at the top level", file);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return pm_fail(PM_ERR_ARG, "%s: \"model\" is missing or not an object", file);
    int status = check_model_options(file, model);
    if (!status) status = check_pipeline(file, root);
    if (status) return status;
    bpe_builder *b = bpe_builder_create(file);
    if (!b) return PM_ERR_NOMEM;
    status = add_added_tokens(file, root, b);
    if (!status) status = add_vocab(file, model, b);
    if (!status) status = add_merges(file, model, b);
    if (!status) status = bpe_builder_finish(b, !unset(model, "ignore_merges"), out);
    if (!status) (*out)->eos = choose_eos(b);
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

int bpe_load_tokenizer_json(const char *file, bpe_model **out) {
    *out = NULL;
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
    if (status == PM_ERR_ARG) pm_fail(status, "%s; " BPE_FILE_ADVICE, pm_last_error());
    return status;
}
