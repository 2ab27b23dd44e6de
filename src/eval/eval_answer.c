/* Scoring a generated GSM8K answer: the last number in the output against the reference. A
 * model fine-tuned on GSM8K ends with "#### N", but a weaker one may not write the marker, so
 * the last number is the more forgiving reading (as lm-evaluation-harness's flexible match). */
#include <ctype.h>
#include <string.h>

#include "data/gsm8k.h"
#include "eval/eval.h"

bool eval_last_number(const char *text, char *out, size_t capacity) {
    const char *start = NULL, *end = NULL;
    for (const char *p = text; *p;) {
        if (!isdigit((unsigned char)*p)) {
            p++;
            continue;
        }
        const char *s = p;
        /* a minus sign, unless it joins two words or numbers ("10-4" is not -4) */
        if (s > text && s[-1] == '-' && (s - 1 == text || !isalnum((unsigned char)s[-2]))) s--;
        /* commas only between digits, so "3, 4" is two numbers and "1,234" one */
        while (isdigit((unsigned char)*p) || (*p == ',' && isdigit((unsigned char)p[1]))) p++;
        /* a decimal point only with digits after it: "18." ends a sentence */
        if (*p == '.' && isdigit((unsigned char)p[1]))
            for (p++; isdigit((unsigned char)*p);) p++;
        start = s;
        end = p;
    }
    if (!start || capacity == 0) return false;
    size_t length = 0;
    for (const char *c = start; c < end; c++) {
        if (*c == ',') continue;
        if (length + 1 >= capacity) return false;
        out[length++] = *c;
    }
    out[length] = '\0';
    return true;
}

bool eval_score_answer(const char *generated, const char *reference, char *predicted, size_t capacity) {
    char number[128];
    bool found = eval_last_number(generated, number, sizeof number);
    if (predicted && capacity > 0) {
        size_t n = found ? strlen(number) : 0;
        if (n >= capacity) n = capacity - 1;
        memcpy(predicted, number, n);
        predicted[n] = '\0';
    }
    return found && gsm8k_answers_match(number, reference);
}
