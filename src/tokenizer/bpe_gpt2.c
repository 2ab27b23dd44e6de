/*
 * Reads OpenAI's original GPT-2 files: encoder.json (byte-mapped token string -> id) and
 * vocab.bpe (a "#version" line, then one "left right" merge per line, in rank order).
 * "<|endoftext|>" (id 50256 in GPT-2) is split out of text literally and is the eos token.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_internal.h"
#include "tokenizer/pre_tokenizer.h"

static const char end_of_text[] = "<|endoftext|>";

static int add_encoder(const char *file, const char *text, size_t length, bpe_builder *b) {
    void *parsed;
    int status = bpe_parse_json(file, text, length, &parsed);
    if (status) return status;
    cJSON *root = parsed;
    if (!cJSON_IsObject(root))
        status = pm_fail(PM_ERR_ARG, "%s: expected an object mapping token strings to ids", file);
    /* Added first, so that the vocabulary entry of the same name is recognised as it. */
    const cJSON *eot = cJSON_GetObjectItemCaseSensitive(root, end_of_text);
    if (!status && cJSON_IsNumber(eot))
        status = bpe_builder_add_added(b, end_of_text, strlen(end_of_text), bpe_id_of_number(eot->valuedouble));
    for (const cJSON *t = status ? NULL : root->child; t && !status; t = t->next) {
        const int64_t id = cJSON_IsNumber(t) ? bpe_id_of_number(t->valuedouble) : -1;
        if (id < 0) {
            char ex[48];
            status = pm_fail(PM_ERR_ARG, "%s: token '%s' has an id that is not a non-negative integer", file,
                             bpe_excerpt(t->string, strlen(t->string), ex));
        } else {
            status = bpe_builder_add_token(b, t->string, strlen(t->string), id);
        }
    }
    cJSON_Delete(root);
    return status ? status : bpe_builder_end_vocab(b);
}

static int add_merge_lines(const char *file, char *text, size_t length, bpe_builder *b) {
    size_t line = 0;
    for (char *at = text; at < text + length;) {
        char *end = memchr(at, '\n', (size_t)(text + length - at));
        if (!end) end = text + length;
        char *next = end + 1;
        line++;
        if (end > at && end[-1] == '\r') end--; /* '\r' is never part of a token ("č" stands for it) */
        const size_t n = (size_t)(end - at);
        const bool header = line == 1 && n >= 8 && memcmp(at, "#version", 8) == 0;
        if (n > 0 && !header) {
            const char *space = memchr(at, ' ', n);
            if (!space || space == at || space == end - 1 || memchr(space + 1, ' ', (size_t)(end - space - 1))) {
                char ex[48];
                return pm_fail(PM_ERR_ARG, "%s: line %zu ('%s') is not two tokens separated by one space", file,
                               line, bpe_excerpt(at, n, ex));
            }
            char where[32];
            snprintf(where, sizeof where, "line %zu", line);
            const int status = bpe_builder_add_merge(b, at, (size_t)(space - at), space + 1,
                                                     (size_t)(end - space - 1), where);
            if (status) return status;
        }
        at = next;
    }
    return PM_OK;
}

int bpe_load_gpt2_model(const char *encoder_json, const char *vocab_bpe, bpe_model **out) {
    *out = NULL;
    char *text;
    size_t length;
    int status = bpe_read_file(encoder_json, &text, &length);
    if (status) return status;
    bpe_builder *b = bpe_builder_create(encoder_json, true);
    if (!b) {
        free(text);
        return PM_ERR_NOMEM;
    }
    status = add_encoder(encoder_json, text, length, b);
    free(text);
    bool read_failed = false;
    if (!status) read_failed = (status = bpe_read_file(vocab_bpe, &text, &length)) != 0;
    if (!status) {
        status = bpe_builder_rename(b, vocab_bpe); /* messages about merges name vocab.bpe */
        if (!status) status = add_merge_lines(vocab_bpe, text, length, b);
        free(text);
    }
    const bpe_options options = {0};
    if (!status) status = bpe_builder_finish(b, &options, out);
    if (status == PM_ERR_ARG && !read_failed) pm_fail(status, "%s; " BPE_FILE_ADVICE, pm_last_error());
    if (!status) (*out)->eos = bpe_builder_added_id(b, end_of_text);
    bpe_builder_free(b);
    return status;
}

int bpe_load_gpt2(const char *encoder_json, const char *vocab_bpe, bpe_pipeline *out) {
    memset(out, 0, sizeof *out);
    int status = bpe_load_gpt2_model(encoder_json, vocab_bpe, &out->model);
    if (!status) status = pre_tokenizer_gpt2(&out->pre);
    if (!status && !(out->added = added_tokens_create())) status = pm_fail(PM_ERR_NOMEM, "out of memory loading %s", encoder_json);
    if (!status && out->model->eos >= 0) {
        const added_token eot = {out->model->eos, sizeof end_of_text - 1, (char *)end_of_text, true, false, false, false, false};
        status = added_tokens_add(out->added, &eot);
    }
    if (!status) status = added_tokens_finish(out->added);
    if (status) bpe_pipeline_free(out);
    return status;
}
