/* Numbers in text: the one syntax of probmoe's text inputs (route's logits) and of its
 * command-line flags. The text is given by pointer and length and need not end in a NUL.
 *
 * Accepted: decimal numbers, [+-] digits [. digits] [e [+-] digits] (".5" and "5." too).
 * Refused, each with its own reason: hexadecimal ("0x1p-3": strtof reads it, but a logit or a
 * flag written that way is far more likely a mistake than a wish), nan and inf (not finite),
 * magnitudes beyond the type (a float above 3.4e38 would become inf), spaces, and anything
 * after the number. A float too small for its type (1e-50) rounds to 0 or a subnormal, as
 * strtof does; that loses nothing a logit or a flag could mean. */
#ifndef PM_CORE_NUMBER_H
#define PM_CORE_NUMBER_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    NUMBER_OK = 0,
    NUMBER_EMPTY,     /* no characters */
    NUMBER_SYNTAX,    /* not a decimal number */
    NUMBER_HEX,       /* 0x...: hexadecimal */
    NUMBER_NONFINITE, /* nan, inf, infinity (any case, either sign) */
    NUMBER_RANGE,     /* beyond the type: |x| > FLT_MAX (float), DBL_MAX (double), or int64 */
    NUMBER_TOO_LONG,  /* NUMBER_MAX_CHARS characters or more */
} number_status;

/* Longest text accepted for one number, exclusive; 127 characters hold any float or double
 * digit string anyone writes. */
enum { NUMBER_MAX_CHARS = 128 };

number_status number_parse_float(const char *text, size_t length, float *value);
number_status number_parse_double(const char *text, size_t length, double *value);
/* A whole number: [+-] digits (no exponent, no fraction). */
number_status number_parse_int64(const char *text, size_t length, int64_t *value);

/* What is wrong, to follow the quoted text in a message: "is not a number", "is not finite", ... */
const char *number_status_reason(number_status status);

#endif
