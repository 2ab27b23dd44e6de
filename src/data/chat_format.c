#define _POSIX_C_SOURCE 200809L
#include "data/chat_format.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

typedef struct {
    const char *name;
    const char *prompt, *completion; /* printf formats of the user's and the assistant's text */
    bool appends_eos;
    const char *markers[3];  /* special tokens the texts contain (NULL-terminated) */
    const char *end_marker;  /* the token ending the assistant's turn, or NULL: eos */
} format_spec;

static const format_spec specs[CHAT_FORMATS] = {
    [CHAT_PLAIN] = {"plain", "Answer the following question.\n\nQuestion: %s\nAnswer:", " %s", true, {NULL}, NULL},
    [CHAT_CHATML] = {"chatml", "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", "%s<|im_end|>", false,
                     {"<|im_start|>", "<|im_end|>", NULL}, "<|im_end|>"},
    [CHAT_LLAMA2] = {"llama2", "<s>[INST] %s [/INST]", " %s </s>", false, {"<s>", "</s>", NULL}, "</s>"},
    [CHAT_TULU] = {"tulu", "<|user|>\n%s\n<|assistant|>\n", "%s", true, {NULL}, NULL},
};

bool chat_format_parse(const char *name, chat_format *out) {
    for (int f = 0; f < CHAT_FORMATS; f++)
        if (strcmp(name, specs[f].name) == 0) {
            *out = (chat_format)f;
            return true;
        }
    return false;
}

const char *chat_format_name(chat_format format) {
    return format >= 0 && format < CHAT_FORMATS ? specs[format].name : "?";
}

const char *chat_format_list(void) { return "plain, chatml, llama2, tulu"; }

static char *format_text(const char *format, const char *text) {
    const int length = snprintf(NULL, 0, format, text);
    char *out = length >= 0 ? malloc((size_t)length + 1) : NULL;
    if (out) snprintf(out, (size_t)length + 1, format, text);
    return out;
}

int chat_format_render(chat_format format, const char *user, const char *assistant, char **prompt,
                       char **completion) {
    *prompt = format_text(specs[format].prompt, user);
    *completion = format_text(specs[format].completion, assistant);
    if (*prompt && *completion) return PM_OK;
    free(*prompt), free(*completion);
    *prompt = *completion = NULL;
    return pm_fail(PM_ERR_NOMEM, "out of memory rendering a %s exchange", specs[format].name);
}

bool chat_format_appends_eos(chat_format format) { return specs[format].appends_eos; }

/* The id of text when the tokenizer encodes it as one token, else -1. */
static int32_t single_token(const tokenizer *tok, const char *text) {
    int32_t ids[2];
    const int64_t count = tok->encode(tok, text, strlen(text), ids, 2);
    return count == 1 ? ids[0] : -1;
}

int chat_format_check(chat_format format, const tokenizer *tok) {
    const format_spec *spec = &specs[format];
    for (int m = 0; spec->markers[m]; m++)
        if (single_token(tok, spec->markers[m]) < 0)
            return pm_fail(PM_ERR_ARG, "--chat-format %s writes %s as a special token, but the tokenizer (%s) "
                           "has no such token; use the tokenizer of a model trained with this format (its "
                           "tokenizer.json lists it among added_tokens), or --chat-format plain or tulu",
                           spec->name, spec->markers[m], tok->name);
    if (spec->appends_eos && format != CHAT_PLAIN && tok->eos_token < 0)
        return pm_fail(PM_ERR_ARG, "--chat-format %s ends each answer with the tokenizer's end-of-text token, but "
                       "the tokenizer (%s) has none; use a tokenizer with an eos token or --chat-format plain",
                       spec->name, tok->name);
    return PM_OK;
}

int32_t chat_format_stop_token(chat_format format, const tokenizer *tok) {
    const format_spec *spec = &specs[format];
    return spec->end_marker ? single_token(tok, spec->end_marker) : tok->eos_token;
}
