/* Small readers of tokenizer.json items shared by the component parsers; each error message
 * names the file and the component. */
#ifndef PM_TOKENIZER_JSON_UTIL_H
#define PM_TOKENIZER_JSON_UTIL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

/* The "type" of a component, or "(no type)". */
const char *json_type_of(const cJSON *object);
bool json_has_type(const cJSON *object, const char *type);
/* Absent, null or false. */
bool json_unset(const cJSON *object, const char *key);
/* A boolean field: its value, or fallback when absent or null; an error if it is not a boolean. */
int json_bool(const char *file, const cJSON *object, const char *key, const char *what, bool fallback, bool *out);
/* Copies the string field key of object (malloc'd, NUL-terminated; *length without the NUL). */
int json_copy_string(const char *file, const cJSON *object, const char *key, const char *what, char **out,
                     size_t *length);
/* The "pattern" of Split, Replace: {"String": s} or {"Regex": r}. regex may be NULL when only
 * String patterns are supported (then a Regex is refused). */
int json_pattern(const char *file, const cJSON *object, const char *what, char **pattern, size_t *length, bool *regex);
/* Whether a string from the file is valid UTF-8 (cJSON does not check). */
bool json_valid_utf8(const char *text);
/* A String pattern only. */
int json_string_pattern(const char *file, const cJSON *object, const char *what, char **pattern, size_t *length);

#endif
