#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pretokenize.h"

#include <pcre2.h>
#include <stdlib.h>

#include "core/error.h"

const char pretokenize_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

struct pretokenizer {
    pcre2_code *code;
    pcre2_match_data *match;
};

int pretokenizer_create(pretokenizer **out) {
    *out = NULL;
    pretokenizer *pre = calloc(1, sizeof *pre);
    if (!pre) return pm_fail(PM_ERR_NOMEM, "pretokenizer: out of memory");
    int error;
    PCRE2_SIZE offset;
    pre->code = pcre2_compile((PCRE2_SPTR)pretokenize_gpt2_pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &error,
                              &offset, NULL);
    if (!pre->code) {
        free(pre);
        return pm_fail(PM_ERR_STATE, "pretokenizer: PCRE2 rejected the GPT-2 pattern (error %d at %zu); is "
                       "libpcre2 built with Unicode support?", error, (size_t)offset);
    }
    pcre2_jit_compile(pre->code, PCRE2_JIT_COMPLETE); /* optional: falls back to the interpreter */
    pre->match = pcre2_match_data_create_from_pattern(pre->code, NULL);
    if (!pre->match) {
        pretokenizer_free(pre);
        return pm_fail(PM_ERR_NOMEM, "pretokenizer: out of memory");
    }
    *out = pre;
    return PM_OK;
}

void pretokenizer_free(pretokenizer *pre) {
    if (!pre) return;
    pcre2_match_data_free(pre->match);
    pcre2_code_free(pre->code);
    free(pre);
}

int pretokenize(pretokenizer *pre, const char *text, size_t length, pretokenize_piece piece, void *user) {
    size_t at = 0;
    uint32_t options = 0;
    while (at < length) {
        int found = pcre2_match(pre->code, (PCRE2_SPTR)text, length, at, options, pre->match, NULL);
        if (found == PCRE2_ERROR_NOMATCH) break; /* cannot happen: \s+ and the classes cover all */
        if (found < 0) {
            if (found <= PCRE2_ERROR_UTF8_ERR1 && found >= PCRE2_ERROR_UTF8_ERR21)
                return pm_fail(PM_ERR_ARG, "the text is not valid UTF-8 near byte %zu; convert it to UTF-8 first",
                               (size_t)pcre2_get_startchar(pre->match));
            return pm_fail(PM_ERR_STATE, "pretokenizer: PCRE2 match error %d at byte %zu", found, at);
        }
        const PCRE2_SIZE *span = pcre2_get_ovector_pointer(pre->match);
        if (span[1] == span[0]) break;
        int status = piece(user, text + span[0], span[1] - span[0]);
        if (status) return status;
        at = span[1];
        options = PCRE2_NO_UTF_CHECK; /* the whole subject was checked on the first call */
    }
    return PM_OK;
}
