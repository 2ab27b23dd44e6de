#include "route/logits_text.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/number.h"

typedef struct {
    const char *name;
    float *values;
    size_t count, capacity;
    int rows, num_experts, first_line;
} parser;

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

/* Up to 40 bytes of a field, printable ASCII kept and everything else as \xNN, for messages. */
static const char *quote(const char *field, size_t length, char out[200]) {
    size_t used = 0;
    const size_t shown = length < 40 ? length : 40;
    for (size_t i = 0; i < shown; i++) {
        const unsigned char c = (unsigned char)field[i];
        if (c >= 0x20 && c < 0x7F && c != '\'') out[used++] = (char)c;
        else used += (size_t)snprintf(out + used, 8, "\\x%02X", c);
    }
    if (shown < length) memcpy(out + used, "...", 3), used += 3;
    out[used] = '\0';
    return out;
}

static int push(parser *p, float value) {
    if (p->count == LOGITS_TEXT_MAX_VALUES)
        return pm_fail(PM_ERR_ARG, "%s holds more than %d logits; route fewer tokens at a time (split the input)",
                       p->name, LOGITS_TEXT_MAX_VALUES);
    if (p->count == p->capacity) {
        size_t grown = p->capacity ? 2 * p->capacity : 256;
        if (grown > LOGITS_TEXT_MAX_VALUES) grown = LOGITS_TEXT_MAX_VALUES;
        float *values = realloc(p->values, grown * sizeof(float));
        if (!values) return pm_fail(PM_ERR_NOMEM, "out of memory reading the logits of %s", p->name);
        p->values = values;
        p->capacity = grown;
    }
    p->values[p->count++] = value;
    return PM_OK;
}

static int bad_number(const parser *p, int line, size_t column, const char *field, size_t length,
                      number_status status) {
    char shown[200];
    quote(field, length, shown);
    switch (status) {
    case NUMBER_HEX:
        return pm_fail(PM_ERR_ARG, "%s line %d, column %zu: '%s' is a hexadecimal number; write logits in decimal "
                       "(such as 0.125 or -3e-2)", p->name, line, column, shown);
    case NUMBER_NONFINITE:
        return pm_fail(PM_ERR_NONFINITE, "%s line %d, column %zu: '%s' is not finite; every logit must be a "
                       "finite number (NaN or infinite logits mean the model that wrote them diverged)",
                       p->name, line, column, shown);
    case NUMBER_RANGE:
        return pm_fail(PM_ERR_NONFINITE, "%s line %d, column %zu: '%s' overflows a float (largest magnitude "
                       "3.4e38); give finite logits", p->name, line, column, shown);
    case NUMBER_TOO_LONG:
        return pm_fail(PM_ERR_ARG, "%s line %d, column %zu: a field of %zu characters ('%s') is too long for a "
                       "number (at most %d)", p->name, line, column, length, shown, NUMBER_MAX_CHARS - 1);
    default:
        return pm_fail(PM_ERR_ARG, "%s line %d, column %zu: '%s' is not a number; give decimal numbers such "
                       "as -1.25 or 3e-2, separated by spaces or commas", p->name, line, column, shown);
    }
}

static int empty_field(const parser *p, int line, size_t column) {
    return pm_fail(PM_ERR_ARG, "%s line %d, column %zu: an empty field (two commas, or a comma at the start or end "
                   "of the line); separate the logits by one comma or by spaces", p->name, line, column);
}

/* One line without its end of line: a blank line, or the logits of one token. */
static int parse_line(parser *p, const char *line, size_t length, int line_number) {
    size_t i = 0;
    while (i < length && is_blank(line[i])) i++;
    if (i == length) return PM_OK;
    int count = 0;
    for (;;) {
        /* a field starts here */
        if (i == length || line[i] == ',') return empty_field(p, line_number, i + 1);
        const size_t start = i;
        while (i < length && !is_blank(line[i]) && line[i] != ',') i++;
        float value = 0.0f;
        const number_status status = number_parse_float(line + start, i - start, &value);
        if (status != NUMBER_OK) return bad_number(p, line_number, start + 1, line + start, i - start, status);
        if (count == LOGITS_TEXT_MAX_EXPERTS)
            return pm_fail(PM_ERR_ARG, "%s line %d has more than %d logits; a router has at most %d experts "
                           "(num_experts)", p->name, line_number, LOGITS_TEXT_MAX_EXPERTS, LOGITS_TEXT_MAX_EXPERTS);
        int pushed = push(p, value);
        if (pushed < 0) return pushed;
        count++;
        /* a separator: a comma with optional blanks around it, or blanks alone */
        while (i < length && is_blank(line[i])) i++;
        if (i == length) break;
        if (line[i] == ',') {
            i++;
            while (i < length && is_blank(line[i])) i++;
            if (i == length) return empty_field(p, line_number, i);
        }
    }
    if (p->num_experts == 0) {
        p->num_experts = count;
        p->first_line = line_number;
    } else if (count != p->num_experts) {
        return pm_fail(PM_ERR_ARG, "%s line %d has %d logits, the first token (line %d) had %d; every line needs one "
                       "logit per expert", p->name, line_number, count, p->first_line, p->num_experts);
    }
    p->rows++;
    return PM_OK;
}

/* The line and column of byte offset in text, for messages. */
static void locate(const char *text, size_t offset, int *line, size_t *column) {
    size_t line_start = 0;
    *line = 1;
    for (size_t i = 0; i < offset; i++)
        if (text[i] == '\n') (*line)++, line_start = i + 1;
    *column = offset - line_start + 1;
}

pm_status logits_text_parse(const char *text, size_t length, const char *name, float **values, int *rows,
                            int *num_experts) {
    if (!values || !rows || !num_experts) return pm_fail(PM_ERR_ARG, "logits_text_parse: an output is NULL");
    *values = NULL;
    *rows = *num_experts = 0;
    if (!name) name = "the logits";
    if (!text && length > 0) return pm_fail(PM_ERR_ARG, "logits_text_parse: text is NULL");
    if (length > LOGITS_TEXT_MAX_BYTES)
        return pm_fail(PM_ERR_ARG, "%s is %zu bytes, more than the %zu bytes route reads; route fewer tokens at a "
                       "time (split the input)", name, length, LOGITS_TEXT_MAX_BYTES);
    const char *nul = length ? memchr(text, '\0', length) : NULL;
    if (nul) {
        int line;
        size_t column;
        locate(text, (size_t)(nul - text), &line, &column);
        return pm_fail(PM_ERR_ARG, "%s line %d, column %zu: a NUL byte; the input is binary or corrupt (give text: "
                       "one token a line, its logits separated by spaces or commas)", name, line, column);
    }
    parser p = {name, NULL, 0, 0, 0, 0, 0};
    int status = PM_OK, line_number = 0;
    for (size_t start = 0; status == PM_OK && start < length;) {
        const char *newline = memchr(text + start, '\n', length - start);
        const size_t end = newline ? (size_t)(newline - text) : length;
        size_t stop = end;
        if (stop > start && text[stop - 1] == '\r') stop--; /* CRLF */
        status = parse_line(&p, text + start, stop - start, ++line_number);
        start = newline ? end + 1 : length;
    }
    if (status == PM_OK && p.rows == 0)
        status = pm_fail(PM_ERR_ARG, "%s holds no logits; give one token a line, its logits (one per expert) "
                         "separated by spaces or commas", name);
    if (status < 0) {
        free(p.values);
        return status;
    }
    *values = p.values;
    *rows = p.rows;
    *num_experts = p.num_experts;
    return PM_OK;
}
