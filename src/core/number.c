#include "core/number.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(long long) == sizeof(int64_t), "strtoll's range is int64's");

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

/* Whether text[0..length) equals word (lower case), ignoring case. */
static bool equals_word(const char *text, size_t length, const char *word) {
    if (length != strlen(word)) return false;
    for (size_t i = 0; i < length; i++)
        if (lower(text[i]) != word[i]) return false;
    return true;
}

/* [+-] (digits [. digits] | . digits) [(e|E) [+-] digits], the whole of text. */
static bool decimal_syntax(const char *text, size_t length) {
    size_t i = 0, digits = 0;
    if (i < length && (text[i] == '+' || text[i] == '-')) i++;
    while (i < length && is_digit(text[i])) i++, digits++;
    if (i < length && text[i] == '.') {
        i++;
        while (i < length && is_digit(text[i])) i++, digits++;
    }
    if (digits == 0) return false;
    if (i < length && (text[i] == 'e' || text[i] == 'E')) {
        i++;
        if (i < length && (text[i] == '+' || text[i] == '-')) i++;
        size_t exponent_digits = 0;
        while (i < length && is_digit(text[i])) i++, exponent_digits++;
        if (exponent_digits == 0) return false;
    }
    return i == length;
}

/* Why text is not a decimal number: hexadecimal, a non-finite word, or neither. */
static number_status classify_bad(const char *text, size_t length) {
    size_t i = length > 0 && (text[0] == '+' || text[0] == '-') ? 1 : 0;
    const char *rest = text + i;
    const size_t n = length - i;
    if (n >= 2 && rest[0] == '0' && lower(rest[1]) == 'x') return NUMBER_HEX;
    if (equals_word(rest, n, "nan") || equals_word(rest, n, "inf") || equals_word(rest, n, "infinity"))
        return NUMBER_NONFINITE;
    if (n >= 4 && equals_word(rest, 3, "nan") && rest[3] == '(') return NUMBER_NONFINITE; /* nan(payload) */
    return NUMBER_SYNTAX;
}

/* Checks the syntax and copies text into buffer with a NUL for strto*. */
static number_status prepare(const char *text, size_t length, bool whole, char buffer[NUMBER_MAX_CHARS]) {
    if (length == 0) return NUMBER_EMPTY;
    if (length >= NUMBER_MAX_CHARS) return NUMBER_TOO_LONG;
    bool ok;
    if (whole) {
        size_t i = text[0] == '+' || text[0] == '-' ? 1 : 0;
        ok = i < length;
        for (; ok && i < length; i++) ok = is_digit(text[i]);
    } else {
        ok = decimal_syntax(text, length);
    }
    if (!ok) return classify_bad(text, length);
    memcpy(buffer, text, length);
    buffer[length] = '\0';
    return NUMBER_OK;
}

number_status number_parse_double(const char *text, size_t length, double *value) {
    char buffer[NUMBER_MAX_CHARS];
    number_status status = prepare(text, length, false, buffer);
    if (status != NUMBER_OK) return status;
    char *end = NULL;
    errno = 0;
    const double parsed = strtod(buffer, &end);
    /* a locale whose decimal point is not '.' stops strtod early */
    if (end != buffer + length) return NUMBER_SYNTAX;
    if (errno == ERANGE && isinf(parsed)) return NUMBER_RANGE;
    *value = parsed;
    return NUMBER_OK;
}

number_status number_parse_float(const char *text, size_t length, float *value) {
    char buffer[NUMBER_MAX_CHARS];
    number_status status = prepare(text, length, false, buffer);
    if (status != NUMBER_OK) return status;
    char *end = NULL;
    errno = 0;
    const float parsed = strtof(buffer, &end);
    if (end != buffer + length) return NUMBER_SYNTAX;
    if (errno == ERANGE && isinf(parsed)) return NUMBER_RANGE;
    *value = parsed;
    return NUMBER_OK;
}

number_status number_parse_int64(const char *text, size_t length, int64_t *value) {
    char buffer[NUMBER_MAX_CHARS];
    number_status status = prepare(text, length, true, buffer);
    if (status != NUMBER_OK) return status;
    char *end = NULL;
    errno = 0;
    const long long parsed = strtoll(buffer, &end, 10);
    if (end != buffer + length) return NUMBER_SYNTAX;
    if (errno == ERANGE) return NUMBER_RANGE;
    *value = (int64_t)parsed;
    return NUMBER_OK;
}

const char *number_status_reason(number_status status) {
    switch (status) {
    case NUMBER_OK: return "is a number";
    case NUMBER_EMPTY: return "is empty";
    case NUMBER_SYNTAX: return "is not a number";
    case NUMBER_HEX: return "is hexadecimal (write numbers in decimal)";
    case NUMBER_NONFINITE: return "is not finite";
    case NUMBER_RANGE: return "is out of range";
    case NUMBER_TOO_LONG: return "is too long to be a number";
    }
    return "is not a number";
}
