/* Flag values: one number syntax (core/number.h) and a range for every flag, with messages
 * that name the command, the flag, the value and what it may be. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/number.h"

static const char *command = "probmoe";

void cli_set_command(const char *name) { command = name; }
const char *cli_command(void) { return command; }

/* "a whole number from 1 to 1024" */
static const char *describe_int_range(long long min, long long max, char *out, size_t size) {
    snprintf(out, size, "a whole number from %lld to %lld", min, max);
    return out;
}

static const char *describe_float_range(flag_range range, char *out, size_t size) {
    const bool low = isfinite(range.min), high = isfinite(range.max);
    if (!low && !high) snprintf(out, size, "a finite number");
    else if (!high) snprintf(out, size, "a finite number %s %g", range.min_open ? ">" : ">=", range.min);
    else if (!low) snprintf(out, size, "a finite number %s %g", range.max_open ? "<" : "<=", range.max);
    else
        snprintf(out, size, "a number in %c%g, %g%c", range.min_open ? '(' : '[', range.min, range.max,
                 range.max_open ? ')' : ']');
    return out;
}

/* The quoted value and what is wrong with it: "--lr 'nan' is not finite; give ..." */
static bool refuse(const char *name, const char *text, const char *reason, const char *wanted) {
    fprintf(stderr, "%s: %s '%s' %s; give %s\n", command, name, text, reason, wanted);
    return false;
}

bool parse_long_flag(const char *name, const char *text, long long min, long long max, long long *value) {
    char wanted[96];
    describe_int_range(min, max, wanted, sizeof wanted);
    if (!text) return refuse(name, "", "is missing", wanted);
    int64_t parsed = 0;
    number_status status = number_parse_int64(text, strlen(text), &parsed);
    if (status == NUMBER_SYNTAX) {
        /* 2e6 and 1.0 are whole numbers too (steps, tokens); 2.5 is not */
        double real = 0.0;
        const number_status as_real = number_parse_double(text, strlen(text), &real);
        if (as_real == NUMBER_OK) {
            if (real != floor(real)) return refuse(name, text, "is not a whole number", wanted);
            if (!(fabs(real) <= (double)FLAG_MAX_COUNT)) return refuse(name, text, "is out of range", wanted);
            parsed = (int64_t)real;
            status = NUMBER_OK;
        } else if (as_real == NUMBER_RANGE) {
            status = NUMBER_RANGE;
        }
    }
    if (status != NUMBER_OK) return refuse(name, text, number_status_reason(status), wanted);
    if (parsed < min || parsed > max) return refuse(name, text, "is out of range", wanted);
    *value = parsed;
    return true;
}

bool parse_int_flag(const char *name, const char *text, int min, int max, int *value) {
    long long parsed;
    if (!parse_long_flag(name, text, min, max, &parsed)) return false;
    *value = (int)parsed;
    return true;
}

bool parse_double_flag(const char *name, const char *text, flag_range range, double *value) {
    char wanted[96];
    describe_float_range(range, wanted, sizeof wanted);
    if (!text) return refuse(name, "", "is missing", wanted);
    double parsed = 0.0;
    const number_status status = number_parse_double(text, strlen(text), &parsed);
    if (status != NUMBER_OK) return refuse(name, text, number_status_reason(status), wanted);
    const bool below = range.min_open ? !(parsed > range.min) : !(parsed >= range.min);
    const bool above = range.max_open ? !(parsed < range.max) : !(parsed <= range.max);
    if (below || above) return refuse(name, text, "is out of range", wanted);
    *value = parsed;
    return true;
}

bool parse_float_flag(const char *name, const char *text, flag_range range, float *value) {
    double parsed;
    if (!parse_double_flag(name, text, range, &parsed)) return false;
    /* within the range but beyond float: refused rather than made infinite */
    if (fabs(parsed) > 3.4028234663852886e38) {
        char wanted[96];
        return refuse(name, text, "overflows a float", describe_float_range(range, wanted, sizeof wanted));
    }
    *value = (float)parsed;
    return true;
}
