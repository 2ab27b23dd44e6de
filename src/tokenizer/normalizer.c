#define _GNU_SOURCE /* memmem */
/* The normalizers of normalizer.h. Unicode normalization is utf8proc's; Prepend and Replace
 * follow Hugging Face's definitions: Prepend adds its text to a non-empty stretch, Replace
 * substitutes every non-overlapping occurrence, left to right. */
#include "tokenizer/normalizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <utf8proc.h>

#include "tokenizer/json_util.h"
#include "tokenizer/nfc_boundary.h"

typedef enum { NORMALIZE_UNICODE, NORMALIZE_PREPEND, NORMALIZE_REPLACE } step_kind;

typedef struct {
    step_kind kind;
    utf8proc_option_t unicode; /* NORMALIZE_UNICODE: utf8proc's options for the form */
    char *pattern, *content;   /* Replace: pattern -> content; Prepend: content */
    size_t pattern_length, content_length;
} step;

struct normalizer {
    step *steps;
    int count;
};

void normalizer_free(normalizer *n) {
    if (!n) return;
    for (int i = 0; i < n->count; i++) {
        free(n->steps[i].pattern);
        free(n->steps[i].content);
    }
    free(n->steps);
    free(n);
}

static int add_step(const char *file, normalizer *n, step s) {
    step *grown = realloc(n->steps, (size_t)(n->count + 1) * sizeof *grown);
    if (!grown) {
        free(s.pattern);
        free(s.content);
        return pm_fail(PM_ERR_NOMEM, "out of memory loading %s", file);
    }
    n->steps = grown;
    n->steps[n->count++] = s;
    return PM_OK;
}

static int add_from_json(const char *file, const cJSON *json, normalizer *n, int depth) {
    const char *type = json_type_of(json);
    if (depth > 8) return pm_fail(PM_ERR_ARG, "%s: normalizer Sequences are nested too deeply", file);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(json, "normalizers");
        if (!cJSON_IsArray(list))
            return pm_fail(PM_ERR_ARG, "%s: the Sequence normalizer has no \"normalizers\" array", file);
        for (const cJSON *item = list->child; item; item = item->next) {
            const int status = add_from_json(file, item, n, depth + 1);
            if (status) return status;
        }
        return PM_OK;
    }
    static const struct {
        const char *name;
        utf8proc_option_t options;
    } forms[] = {{"NFC", UTF8PROC_STABLE | UTF8PROC_COMPOSE},
                 {"NFD", UTF8PROC_STABLE | UTF8PROC_DECOMPOSE},
                 {"NFKC", UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT},
                 {"NFKD", UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT}};
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++)
        if (strcmp(type, forms[i].name) == 0) return add_step(file, n, (step){.kind = NORMALIZE_UNICODE, .unicode = forms[i].options});
    if (strcmp(type, "Prepend") == 0) {
        step s = {.kind = NORMALIZE_PREPEND};
        int status = json_copy_string(file, json, "prepend", "the Prepend normalizer", &s.content, &s.content_length);
        return status ? status : add_step(file, n, s);
    }
    if (strcmp(type, "Replace") == 0) {
        step s = {.kind = NORMALIZE_REPLACE};
        int status = json_string_pattern(file, json, "the Replace normalizer", &s.pattern, &s.pattern_length);
        if (!status) status = json_copy_string(file, json, "content", "the Replace normalizer", &s.content, &s.content_length);
        if (!status && s.pattern_length == 0)
            status = pm_fail(PM_ERR_ARG, "%s: the Replace normalizer's pattern is empty", file);
        if (status) {
            free(s.pattern);
            free(s.content);
            return status;
        }
        return add_step(file, n, s);
    }
    return pm_fail(PM_ERR_ARG, "%s: normalizer type %s is not supported (supported: NFC, NFD, NFKC, NFKD, Prepend, Replace "
                   "with a String pattern, Sequence)", file, type);
}

int normalizer_from_json(const char *file, const void *json, normalizer **out) {
    *out = NULL;
    const cJSON *item = json;
    if (!item || cJSON_IsNull(item)) return PM_OK;
    if (!cJSON_IsObject(item)) return pm_fail(PM_ERR_ARG, "%s: \"normalizer\" must be an object or null", file);
    normalizer *n = calloc(1, sizeof *n);
    if (!n) return pm_fail(PM_ERR_NOMEM, "out of memory loading %s", file);
    const int status = add_from_json(file, item, n, 0);
    if (status || n->count == 0) {
        normalizer_free(n);
        return status;
    }
    *out = n;
    return PM_OK;
}

static bool ascii(const char *text, size_t length) {
    for (size_t i = 0; i < length; i++)
        if ((unsigned char)text[i] >= 0x80) return false;
    return true;
}

/* Appends utf8proc's normal form of text[0..length) to out. */
static int append_form(utf8proc_option_t options, const char *text, size_t length, text_buffer *out,
                       normalizer_scratch *scratch) {
    for (;;) {
        const utf8proc_ssize_t n = utf8proc_decompose((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)length,
                                                      scratch->codepoints, (utf8proc_ssize_t)scratch->codepoint_capacity,
                                                      options);
        if (n < 0)
            return pm_fail(PM_ERR_ARG, "normalizer: utf8proc refused the text: %s", utf8proc_errmsg(n));
        if ((size_t)n <= scratch->codepoint_capacity) {
            const utf8proc_ssize_t count = utf8proc_normalize_utf32(scratch->codepoints, n, options);
            if (count < 0) return pm_fail(PM_ERR_ARG, "normalizer: utf8proc failed: %s", utf8proc_errmsg(count));
            int status = text_buffer_reserve(out, 4 * (size_t)count);
            if (status) return status;
            for (utf8proc_ssize_t i = 0; i < count; i++)
                out->length += (size_t)utf8proc_encode_char(scratch->codepoints[i], (utf8proc_uint8_t *)out->data + out->length);
            return PM_OK;
        }
        int32_t *grown = realloc(scratch->codepoints, (size_t)n * sizeof *grown);
        if (!grown) return pm_fail(PM_ERR_NOMEM, "normalizer: out of memory for %zu bytes of text", length);
        scratch->codepoints = grown;
        scratch->codepoint_capacity = (size_t)n;
    }
}

/* The code point at text[at] (valid UTF-8) and its byte count. */
static size_t next_codepoint(const char *text, size_t length, size_t at, int32_t *cp) {
    utf8proc_int32_t c = -1;
    const utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)text + at, (utf8proc_ssize_t)(length - at), &c);
    *cp = c;
    return n > 0 ? (size_t)n : 1;
}

/* NFC by stretches (nfc_boundary.h): inert code points are copied, utf8proc composes the
 * stretches from the inert code point before each other one to the next inert one. */
static int nfc(const char *text, size_t length, text_buffer *out, normalizer_scratch *scratch) {
    size_t copied = 0, last_inert = 0;
    for (size_t at = 0; at < length;) {
        int32_t cp;
        size_t n = next_codepoint(text, length, at, &cp);
        if (nfc_inert(cp)) {
            last_inert = at;
            at += n;
            continue;
        }
        size_t end = at + n;
        for (size_t m; end < length; end += m) {
            m = next_codepoint(text, length, end, &cp);
            if (nfc_inert(cp)) break;
        }
        int status = text_buffer_append(out, text + copied, last_inert - copied);
        if (!status) status = append_form(UTF8PROC_STABLE | UTF8PROC_COMPOSE, text + last_inert, end - last_inert, out, scratch);
        if (status) return status;
        copied = last_inert = at = end;
    }
    return text_buffer_append(out, text + copied, length - copied);
}

static int unicode_form(utf8proc_option_t options, const char *text, size_t length, text_buffer *out,
                        normalizer_scratch *scratch) {
    out->length = 0;
    if (ascii(text, length)) return text_buffer_append(out, text, length);
    if (options == (UTF8PROC_STABLE | UTF8PROC_COMPOSE)) return nfc(text, length, out, scratch);
    return append_form(options, text, length, out, scratch);
}

static int replace_all(const step *s, const char *text, size_t length, text_buffer *out) {
    out->length = 0;
    size_t at = 0;
    while (at < length) {
        const char *found = length - at >= s->pattern_length ? memmem(text + at, length - at, s->pattern, s->pattern_length) : NULL;
        const size_t end = found ? (size_t)(found - text) : length;
        int status = text_buffer_append(out, text + at, end - at);
        if (!status && found) status = text_buffer_append(out, s->content, s->content_length);
        if (status) return status;
        at = found ? end + s->pattern_length : length;
    }
    return PM_OK;
}

int normalize(const normalizer *n, const char *text, size_t length, text_buffer *out, normalizer_scratch *scratch) {
    /* Each step reads the previous result and writes the other buffer; the last writes out. */
    text_buffer *target = n->count % 2 ? out : &scratch->swap, *other = n->count % 2 ? &scratch->swap : out;
    for (int i = 0; i < n->count; i++) {
        const step *s = &n->steps[i];
        int status = PM_OK;
        switch (s->kind) {
        case NORMALIZE_UNICODE:
            status = unicode_form(s->unicode, text, length, target, scratch);
            break;
        case NORMALIZE_PREPEND:
            target->length = 0;
            if (length) status = text_buffer_append(target, s->content, s->content_length);
            if (!status) status = text_buffer_append(target, text, length);
            break;
        case NORMALIZE_REPLACE:
            status = replace_all(s, text, length, target);
            break;
        }
        if (status) return status;
        text = target->data;
        length = target->length;
        text_buffer *swap = target;
        target = other;
        other = swap;
    }
    return PM_OK;
}

void normalizer_scratch_free(normalizer_scratch *scratch) {
    text_buffer_free(&scratch->swap);
    free(scratch->codepoints);
    memset(scratch, 0, sizeof *scratch);
}
