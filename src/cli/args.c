#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"

bool parse_int_option(const char *name, const char *text, int *value) {
    char *end = NULL;
    errno = 0;
    long parsed = text ? strtol(text, &end, 10) : 0;
    if (!text || *end != '\0' || end == text || errno || parsed < -2147483647L || parsed > 2147483647L) {
        fprintf(stderr, "probmoe: %s needs a whole number, got '%s'\n", name, text ? text : "");
        return false;
    }
    *value = (int)parsed;
    return true;
}

bool parse_float_option(const char *name, const char *text, float *value) {
    char *end = NULL;
    errno = 0;
    float parsed = text ? strtof(text, &end) : 0.0f;
    if (!text || *end != '\0' || end == text || errno) {
        fprintf(stderr, "probmoe: %s needs a number, got '%s'\n", name, text ? text : "");
        return false;
    }
    *value = parsed;
    return true;
}
