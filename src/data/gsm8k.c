#define _POSIX_C_SOURCE 200809L /* getline, strdup */
#include "data/gsm8k.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static const char prompt_format[] = "Answer the following question.\n\nQuestion: %s\nAnswer:";

bool gsm8k_extract_answer(const char *text, char *out, size_t capacity) {
    const char *marker = strstr(text, "####");
    if (!marker || capacity == 0) return false;
    const char *start = marker + 4, *end = start;
    while (*end && *end != '\n') end++;
    while (start < end && isspace((unsigned char)*start)) start++;
    while (end > start && isspace((unsigned char)end[-1])) end--;
    size_t length = 0;
    for (const char *c = start; c < end; c++) {
        if (*c == ',') continue; /* thousands separators: "1,234" is 1234 */
        if (length + 1 >= capacity) return false;
        out[length++] = *c;
    }
    out[length] = '\0';
    return length > 0;
}

/* Writes a decimal number canonically (no sign for zero or '+', no leading zeros, no trailing
 * fractional zeros); false if text is not [+-]digits[.digits]. */
static bool canonical_number(const char *text, char *out, size_t capacity) {
    const char *c = text;
    bool negative = false;
    if (*c == '+' || *c == '-') negative = *c++ == '-';
    const char *int_start = c;
    while (isdigit((unsigned char)*c)) c++;
    const char *int_end = c, *frac_start = c, *frac_end = c;
    if (*c == '.') {
        frac_start = ++c;
        while (isdigit((unsigned char)*c)) c++;
        frac_end = c;
    }
    if (*c != '\0' || (int_end == int_start && frac_end == frac_start)) return false;
    while (int_start < int_end - 1 && *int_start == '0') int_start++;
    while (frac_end > frac_start && frac_end[-1] == '0') frac_end--;
    bool zero = frac_end == frac_start && (int_end == int_start || (int_end - int_start == 1 && *int_start == '0'));
    int written = snprintf(out, capacity, "%s%.*s%s%.*s", negative && !zero ? "-" : "",
                           int_end == int_start ? 1 : (int)(int_end - int_start),
                           int_end == int_start ? "0" : int_start, frac_end > frac_start ? "." : "",
                           (int)(frac_end - frac_start), frac_start);
    return written >= 0 && (size_t)written < capacity;
}

bool gsm8k_answers_match(const char *predicted, const char *reference) {
    char a[128], b[128];
    if (canonical_number(predicted, a, sizeof a) && canonical_number(reference, b, sizeof b))
        return strcmp(a, b) == 0;
    return strcmp(predicted, reference) == 0;
}

static void free_example(gsm8k_example *example) {
    free(example->question);
    free(example->answer);
    free(example->prompt);
    free(example->completion);
    free(example->final_answer);
    memset(example, 0, sizeof *example);
}

static char *format_text(const char *format, const char *value) {
    int length = snprintf(NULL, 0, format, value);
    char *text = length >= 0 ? malloc((size_t)length + 1) : NULL;
    if (text) snprintf(text, (size_t)length + 1, format, value);
    return text;
}

/* Parses one line into example. Returns 0, a negative pm_status for out of memory, or 1 with
 * reason set when the line is malformed. */
static int parse_line(const char *line, size_t length, gsm8k_example *example, const char **reason) {
    memset(example, 0, sizeof *example);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(line, length, &end, false);
    /* cJSON stops after the first value; anything but spacing after it is damage too */
    bool trailing = false;
    for (const char *c = end; root && c < line + length; c++) trailing |= !isspace((unsigned char)*c);
    if (!root || trailing) {
        cJSON_Delete(root);
        *reason = "not valid JSON";
        return 1;
    }
    const cJSON *question = cJSON_GetObjectItemCaseSensitive(root, "question");
    const cJSON *answer = cJSON_GetObjectItemCaseSensitive(root, "answer");
    char final_answer[256];
    int result = 1;
    if (!cJSON_IsObject(root)) *reason = "not a JSON object";
    else if (!cJSON_IsString(question)) *reason = "no string field \"question\"";
    else if (!cJSON_IsString(answer)) *reason = "no string field \"answer\"";
    else if (!strstr(answer->valuestring, "####")) *reason = "the answer has no final \"#### <number>\"";
    else if (!gsm8k_extract_answer(answer->valuestring, final_answer, sizeof final_answer))
        *reason = "nothing (or too much) after the answer's \"####\"";
    else {
        example->question = strdup(question->valuestring);
        example->answer = strdup(answer->valuestring);
        example->final_answer = strdup(final_answer);
        example->prompt = format_text(prompt_format, question->valuestring);
        example->completion = format_text(" %s", answer->valuestring);
        result = PM_OK;
        if (!example->question || !example->answer || !example->final_answer || !example->prompt ||
            !example->completion) {
            free_example(example);
            result = pm_fail(PM_ERR_NOMEM, "out of memory reading GSM8K");
        }
    }
    cJSON_Delete(root);
    return result;
}

static bool blank(const char *line, size_t length) {
    for (size_t i = 0; i < length; i++)
        if (!isspace((unsigned char)line[i])) return false;
    return true;
}

static int add_example(gsm8k_set *set, int *capacity, const gsm8k_example *example) {
    if (set->count == *capacity) {
        int grown = *capacity ? 2 * *capacity : 1024;
        gsm8k_example *examples = realloc(set->examples, sizeof(gsm8k_example) * (size_t)grown);
        if (!examples) return pm_fail(PM_ERR_NOMEM, "out of memory reading GSM8K");
        set->examples = examples;
        *capacity = grown;
    }
    set->examples[set->count++] = *example;
    return PM_OK;
}

int gsm8k_load(const char *path, bool skip_bad_lines, gsm8k_set *set) {
    memset(set, 0, sizeof *set);
    FILE *file = fopen(path, "rb");
    if (!file) return pm_fail(PM_ERR_ARG, "cannot open the GSM8K file '%s': %s", path, strerror(errno));
    char *line = NULL;
    size_t line_capacity = 0;
    int capacity = 0, line_number = 0, status = PM_OK;
    ssize_t length;
    while (status == PM_OK && (length = getline(&line, &line_capacity, file)) >= 0) {
        line_number++;
        if (blank(line, (size_t)length)) continue;
        gsm8k_example example;
        const char *reason = NULL;
        int parsed = parse_line(line, (size_t)length, &example, &reason);
        if (parsed < 0) {
            status = parsed;
        } else if (parsed == 1 && !skip_bad_lines) {
            status = pm_fail(PM_ERR_ARG, "%s:%d: %s; fix the line or skip malformed lines", path, line_number,
                             reason);
        } else if (parsed == 1) {
            if (set->skipped++ == 0)
                snprintf(set->first_skipped, sizeof set->first_skipped, "%s:%d: %s", path, line_number, reason);
        } else {
            example.line = line_number;
            status = add_example(set, &capacity, &example);
            if (status < 0) free_example(&example);
        }
    }
    if (status == PM_OK && ferror(file))
        status = pm_fail(PM_ERR_ARG, "cannot read '%s' after line %d: %s", path, line_number, strerror(errno));
    free(line);
    fclose(file);
    if (status == PM_OK && set->count == 0)
        status = pm_fail(PM_ERR_ARG, "'%s' holds no GSM8K examples: it needs one {\"question\": ..., \"answer\": "
                         "\"... #### N\"} object per line%s%s", path,
                         set->skipped ? "; the first malformed line: " : "", set->first_skipped);
    if (status < 0) gsm8k_free(set);
    return status;
}

void gsm8k_free(gsm8k_set *set) {
    for (int i = 0; i < set->count; i++) free_example(&set->examples[i]);
    free(set->examples);
    memset(set, 0, sizeof *set);
}

int gsm8k_tokenize(const gsm8k_set *set, const tokenizer *tok, sft_tokens *out) {
    memset(out, 0, sizeof *out);
    const char **texts = malloc(sizeof(char *) * 2 * (size_t)(set->count ? set->count : 1));
    if (!texts) return pm_fail(PM_ERR_NOMEM, "out of memory tokenizing GSM8K");
    for (int i = 0; i < set->count; i++) {
        texts[i] = set->examples[i].prompt;
        texts[set->count + i] = set->examples[i].completion;
    }
    int status = sft_tokenize(out, texts, texts + set->count, set->count, tok);
    free(texts);
    return status;
}
