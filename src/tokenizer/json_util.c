#define _POSIX_C_SOURCE 200809L
#include "tokenizer/json_util.h"

#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"

const char *json_type_of(const cJSON *object) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(object, "type");
    return cJSON_IsString(t) ? t->valuestring : "(no type)";
}

bool json_has_type(const cJSON *object, const char *type) {
    return strcmp(json_type_of(object), type) == 0;
}

bool json_unset(const cJSON *object, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(object, key);
    return !v || cJSON_IsNull(v) || cJSON_IsFalse(v);
}

int json_bool(const char *file, const cJSON *object, const char *key, const char *what, bool fallback, bool *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!v || cJSON_IsNull(v)) {
        *out = fallback;
        return PM_OK;
    }
    if (!cJSON_IsBool(v)) return pm_fail(PM_ERR_ARG, "%s: %s: \"%s\" must be true or false", file, what, key);
    *out = cJSON_IsTrue(v);
    return PM_OK;
}

int json_copy_string(const char *file, const cJSON *object, const char *key, const char *what, char **out,
                     size_t *length) {
    *out = NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!cJSON_IsString(v)) return pm_fail(PM_ERR_ARG, "%s: %s has no string \"%s\"", file, what, key);
    if (!json_valid_utf8(v->valuestring))
        return pm_fail(PM_ERR_ARG, "%s: %s: \"%s\" is not valid UTF-8", file, what, key);
    *out = strdup(v->valuestring);
    if (!*out) return pm_fail(PM_ERR_NOMEM, "out of memory loading %s", file);
    *length = strlen(*out);
    return PM_OK;
}

int json_pattern(const char *file, const cJSON *object, const char *what, char **pattern, size_t *length, bool *regex) {
    *pattern = NULL;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(object, "pattern");
    if (!cJSON_IsObject(p))
        return pm_fail(PM_ERR_ARG, "%s: %s has no \"pattern\" object ({\"String\": ...} or {\"Regex\": ...})", file, what);
    if (cJSON_GetObjectItemCaseSensitive(p, "String")) {
        if (regex) *regex = false;
        return json_copy_string(file, p, "String", what, pattern, length);
    }
    if (cJSON_GetObjectItemCaseSensitive(p, "Regex")) {
        if (!regex) return pm_fail(PM_ERR_ARG, "%s: %s with a Regex pattern is not supported (only String)", file, what);
        *regex = true;
        return json_copy_string(file, p, "Regex", what, pattern, length);
    }
    return pm_fail(PM_ERR_ARG, "%s: %s: the pattern must be {\"String\": ...} or {\"Regex\": ...}", file, what);
}

int json_string_pattern(const char *file, const cJSON *object, const char *what, char **pattern, size_t *length) {
    return json_pattern(file, object, what, pattern, length, NULL);
}

bool json_valid_utf8(const char *text) {
    const size_t length = strlen(text);
    return utf8_invalid_at((const unsigned char *)text, length) == length;
}
