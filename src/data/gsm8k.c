#define _POSIX_C_SOURCE 200809L /* strdup */
#include "data/gsm8k.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/utf8.h"

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

/* The offset of the first NUL byte, byte that is not UTF-8, or escaped NUL (\u0000: cJSON would
 * cut the string there) in line, or length; *reason says which. */
static size_t find_bad_byte(const char *line, size_t length, char *reason, size_t reason_size) {
    const char *nul = memchr(line, '\0', length);
    size_t bad = utf8_invalid_at((const unsigned char *)line, nul ? (size_t)(nul - line) : length);
    if (nul && bad == (size_t)(nul - line)) {
        snprintf(reason, reason_size, "a NUL byte: the line is binary or corrupt");
        return bad;
    }
    if (bad < length) {
        snprintf(reason, reason_size, "byte 0x%02X is not UTF-8 (GSM8K files are UTF-8 JSON; re-encode the file, "
                 "e.g. iconv -t UTF-8)", (unsigned char)line[bad]);
        return bad;
    }
    for (size_t i = 0; i + 1 < length; i++) {
        if (line[i] != '\\') continue;
        if (line[i + 1] == 'u' && length - i >= 6 && memcmp(line + i + 2, "0000", 4) == 0) {
            snprintf(reason, reason_size, "an escaped NUL (\\u0000) in a string");
            return i;
        }
        i++; /* the escaped character */
    }
    return length;
}

/* One line (with its '\n') into *line, keeping at most GSM8K_MAX_LINE_BYTES + 1 of its bytes, so
 * that a file without newlines is not read into memory whole; *stored is what was kept. The
 * line's whole length, or -1 at the end of the file. */
static long long read_line(FILE *file, char **line, size_t *capacity, size_t *stored) {
    const size_t keep = (size_t)GSM8K_MAX_LINE_BYTES + 1;
    long long length = 0;
    *stored = 0;
    for (int c; (c = getc(file)) != EOF;) {
        if (*stored < keep) {
            if (*stored + 2 > *capacity) {
                size_t grown = *capacity ? 2 * *capacity : 256;
                if (grown > keep + 1) grown = keep + 1;
                char *bigger = realloc(*line, grown);
                if (!bigger) return -2;
                *line = bigger;
                *capacity = grown;
            }
            (*line)[(*stored)++] = (char)c;
        }
        length++;
        if (c == '\n') break;
    }
    if (*line) (*line)[*stored] = '\0';
    return length > 0 ? length : -1;
}

int gsm8k_parse_line(const char *line, size_t length, gsm8k_example *example, char *reason, size_t reason_size,
                     size_t *offset) {
    memset(example, 0, sizeof *example);
    if (length > GSM8K_MAX_LINE_BYTES) {
        snprintf(reason, reason_size, "a line of more than the %d bytes an example may have (GSM8K's are a few "
                 "hundred)", GSM8K_MAX_LINE_BYTES);
        *offset = GSM8K_MAX_LINE_BYTES;
        return 1;
    }
    *offset = find_bad_byte(line, length, reason, reason_size);
    if (*offset < length) return 1;
    *offset = 0; /* what follows is about the line as a whole */
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(line, length, &end, false);
    /* cJSON stops after the first value; anything but spacing after it is damage too */
    bool trailing = false;
    for (const char *c = end; root && c < line + length; c++) trailing |= !isspace((unsigned char)*c);
    if (!root || trailing) {
        cJSON_Delete(root);
        snprintf(reason, reason_size, "not valid JSON");
        return 1;
    }
    const cJSON *question = cJSON_GetObjectItemCaseSensitive(root, "question");
    const cJSON *answer = cJSON_GetObjectItemCaseSensitive(root, "answer");
    char final_answer[256];
    const char *problem = NULL;
    if (!cJSON_IsObject(root)) problem = "not a JSON object";
    else if (!cJSON_IsString(question)) problem = "no string field \"question\"";
    else if (!cJSON_IsString(answer)) problem = "no string field \"answer\"";
    else if (!strstr(answer->valuestring, "####")) problem = "the answer has no final \"#### <number>\"";
    else if (!gsm8k_extract_answer(answer->valuestring, final_answer, sizeof final_answer))
        problem = "nothing (or too much) after the answer's \"####\"";
    int result = 1;
    if (problem) {
        snprintf(reason, reason_size, "%s", problem);
    } else {
        example->question = strdup(question->valuestring);
        example->answer = strdup(answer->valuestring);
        example->final_answer = strdup(final_answer);
        result = PM_OK;
        if (example->question && example->answer)
            chat_format_render(CHAT_PLAIN, question->valuestring, answer->valuestring, &example->prompt,
                               &example->completion);
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

/* "path:line: reason, at byte B of the file (column C)" */
static void describe_line(char *out, size_t size, const char *path, int line_number, const char *reason,
                          long long line_start, size_t offset) {
    snprintf(out, size, "%s:%d: %s, at byte %lld of the file (column %zu)", path, line_number, reason,
             line_start + (long long)offset, offset + 1);
}

int gsm8k_load(const char *path, bool skip_bad_lines, gsm8k_set *set) {
    memset(set, 0, sizeof *set);
    FILE *file = fopen(path, "rb");
    if (!file) return pm_fail(PM_ERR_ARG, "cannot open the GSM8K file '%s': %s", path, strerror(errno));
    char *line = NULL;
    size_t line_capacity = 0;
    int capacity = 0, line_number = 0, status = PM_OK;
    long long line_start = 0; /* the line's offset in the file */
    long long length;
    size_t stored = 0;
    for (; status == PM_OK && (length = read_line(file, &line, &line_capacity, &stored)) >= 0; line_start += length) {
        line_number++;
        if (blank(line, stored)) continue;
        gsm8k_example example;
        char reason[160];
        size_t offset = 0;
        int parsed = gsm8k_parse_line(line, stored, &example, reason, sizeof reason, &offset);
        char where[700];
        if (parsed == 1) describe_line(where, sizeof where, path, line_number, reason, line_start, offset);
        if (parsed < 0) {
            status = parsed;
        } else if (parsed == 1 && !skip_bad_lines) {
            status = pm_fail(PM_ERR_ARG, "%s; fix the line or skip malformed lines", where);
        } else if (parsed == 1) {
            if (set->skipped++ == 0)
                describe_line(set->first_skipped, sizeof set->first_skipped, path, line_number, reason, line_start,
                              offset);
        } else {
            example.line = line_number;
            status = add_example(set, &capacity, &example);
            if (status < 0) free_example(&example);
        }
    }
    if (status == PM_OK && length == -2) status = pm_fail(PM_ERR_NOMEM, "out of memory reading '%s'", path);
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
    int status = sft_tokenize(out, texts, texts + set->count, set->count, tok, chat_format_appends_eos(set->format));
    free(texts);
    return status;
}

int gsm8k_set_chat_format(gsm8k_set *set, chat_format format) {
    for (int i = 0; i < set->count; i++) {
        gsm8k_example *example = &set->examples[i];
        char *prompt, *completion;
        int status = chat_format_render(format, example->question, example->answer, &prompt, &completion);
        if (status < 0) return status;
        free(example->prompt);
        free(example->completion);
        example->prompt = prompt;
        example->completion = completion;
    }
    set->format = format;
    return PM_OK;
}
