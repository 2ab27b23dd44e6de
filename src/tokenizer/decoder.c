/* The decoders of decoder.h, each step as Hugging Face defines it on a list of token strings;
 * steps before Fuse act on each token, Strip after Fuse on the joined text. */
#define _GNU_SOURCE /* memmem */
#include "tokenizer/decoder.h"

#include <cjson/cJSON.h>
#include <stdio.h>

#include "tokenizer/json_util.h"
#include "tokenizer/tokenizer.h"

typedef enum { DECODE_REPLACE, DECODE_BYTE_FALLBACK, DECODE_METASPACE, DECODE_STRIP } step_kind;

enum { DECODE_TEXT_MAX = 8 }; /* bytes of a Replace pattern, content or replacement character */

typedef struct {
    step_kind kind;
    char pattern[DECODE_TEXT_MAX], content[DECODE_TEXT_MAX]; /* Replace; Metaspace's replacement in pattern */
    size_t pattern_length, content_length;
    bool prepend;              /* Metaspace: prepend_scheme is not never */
    char strip;                /* Strip: the ASCII character stripped */
    int strip_start, strip_stop;
} step;

struct decoder {
    step steps[8]; /* before Fuse */
    int count;
    bool fused;
    char strip; /* Strip after Fuse */
    int strip_start, strip_stop;
};

void decoder_free(decoder *d) {
    free(d);
}

static int short_string(const char *file, const cJSON *object, const char *key, const char *what, char *out,
                        size_t *length) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!cJSON_IsString(v) || !json_valid_utf8(v->valuestring))
        return pm_fail(PM_ERR_ARG, "%s: the %s decoder has no UTF-8 string \"%s\"", file, what, key);
    *length = strlen(v->valuestring);
    if (*length >= DECODE_TEXT_MAX)
        return pm_fail(PM_ERR_ARG, "%s: the %s decoder's \"%s\" is longer than %d bytes", file, what, key,
                       DECODE_TEXT_MAX - 1);
    memcpy(out, v->valuestring, *length);
    return PM_OK;
}

static int parse_strip(const char *file, const cJSON *json, step *s) {
    s->kind = DECODE_STRIP;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(json, "content");
    const cJSON *start = cJSON_GetObjectItemCaseSensitive(json, "start");
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(json, "stop");
    if (!cJSON_IsString(content) || strlen(content->valuestring) != 1 || (unsigned char)content->valuestring[0] >= 0x80 ||
        !cJSON_IsNumber(start) || !cJSON_IsNumber(stop) || start->valuedouble < 0 || stop->valuedouble < 0 ||
        start->valuedouble > 1000 || stop->valuedouble > 1000)
        return pm_fail(PM_ERR_ARG, "%s: the Strip decoder needs an ASCII \"content\" character and counts \"start\" "
                       "and \"stop\" from 0 to 1000", file);
    s->strip = content->valuestring[0];
    s->strip_start = (int)start->valuedouble;
    s->strip_stop = (int)stop->valuedouble;
    return PM_OK;
}

static int parse_step(const char *file, const cJSON *json, bool byte_level, decoder *d) {
    const char *type = json_type_of(json);
    if (strcmp(type, "ByteLevel") == 0) {
        if (!byte_level)
            return pm_fail(PM_ERR_ARG, "%s: the ByteLevel decoder needs a byte-level vocabulary (a ByteLevel "
                           "pre-tokenizer)", file);
        return PM_OK; /* byte-level tokens are stored as their bytes */
    }
    if (byte_level)
        return pm_fail(PM_ERR_ARG, "%s: decoder type %s is not supported with a byte-level vocabulary (only ByteLevel)",
                       file, type);
    if (d->fused) {
        if (strcmp(type, "Strip") != 0 || d->strip_start || d->strip_stop)
            return pm_fail(PM_ERR_ARG, "%s: decoder type %s after Fuse is not supported (only one Strip)", file, type);
        step s = {0};
        const int status = parse_strip(file, json, &s);
        d->strip = s.strip;
        d->strip_start = s.strip_start;
        d->strip_stop = s.strip_stop;
        return status;
    }
    if (strcmp(type, "Fuse") == 0) {
        d->fused = true;
        return PM_OK;
    }
    if (d->count == (int)(sizeof d->steps / sizeof *d->steps))
        return pm_fail(PM_ERR_ARG, "%s: the decoder has more steps than supported", file);
    step *s = &d->steps[d->count++];
    memset(s, 0, sizeof *s);
    if (strcmp(type, "ByteFallback") == 0) {
        s->kind = DECODE_BYTE_FALLBACK;
        return PM_OK;
    }
    if (strcmp(type, "Strip") == 0) return parse_strip(file, json, s);
    if (strcmp(type, "Replace") == 0) {
        s->kind = DECODE_REPLACE;
        char *pattern = NULL;
        size_t length = 0;
        int status = json_string_pattern(file, json, "the Replace decoder", &pattern, &length);
        if (!status && (length == 0 || length >= DECODE_TEXT_MAX))
            status = pm_fail(PM_ERR_ARG, "%s: the Replace decoder's pattern must have 1 to %d bytes", file, DECODE_TEXT_MAX - 1);
        if (!status) {
            memcpy(s->pattern, pattern, length);
            s->pattern_length = length;
        }
        free(pattern);
        if (!status) status = short_string(file, json, "content", "Replace", s->content, &s->content_length);
        /* Decoding then never lengthens a token, which bounds the work buffers. */
        if (!status && s->content_length > s->pattern_length)
            status = pm_fail(PM_ERR_ARG, "%s: a Replace decoder whose content is longer than its pattern is not "
                             "supported", file);
        return status;
    }
    if (strcmp(type, "Metaspace") == 0) {
        s->kind = DECODE_METASPACE;
        int status = short_string(file, json, "replacement", "Metaspace", s->pattern, &s->pattern_length);
        if (!status && s->pattern_length == 0) status = pm_fail(PM_ERR_ARG, "%s: the Metaspace decoder's replacement is empty", file);
        if (status) return status;
        const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(json, "prepend_scheme");
        if (cJSON_IsString(scheme)) {
            if (strcmp(scheme->valuestring, "always") && strcmp(scheme->valuestring, "first") &&
                strcmp(scheme->valuestring, "never"))
                return pm_fail(PM_ERR_ARG, "%s: Metaspace prepend_scheme '%s' is not always, first or never", file,
                               scheme->valuestring);
            s->prepend = strcmp(scheme->valuestring, "never") != 0;
            return PM_OK;
        }
        return json_bool(file, json, "add_prefix_space", "the Metaspace decoder", true, &s->prepend);
    }
    return pm_fail(PM_ERR_ARG, "%s: decoder type %s is not supported (supported: ByteLevel; Replace, ByteFallback, "
                   "Metaspace, Fuse, Strip)", file, type);
}

int decoder_from_json(const char *file, const void *json, bool byte_level, decoder **out) {
    *out = NULL;
    const cJSON *item = json;
    if (!item || cJSON_IsNull(item)) {
        if (byte_level) return PM_OK;
        /* Without a decoder Hugging Face joins tokens with spaces, which is not text. */
        return pm_fail(PM_ERR_ARG, "%s: there is no decoder; only byte-level vocabularies may go without one", file);
    }
    decoder *d = calloc(1, sizeof *d);
    if (!d) return pm_fail(PM_ERR_NOMEM, "out of memory loading %s", file);
    int status = PM_OK;
    if (json_has_type(item, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(item, "decoders");
        if (!cJSON_IsArray(list)) status = pm_fail(PM_ERR_ARG, "%s: the Sequence decoder has no \"decoders\" array", file);
        for (const cJSON *item_step = cJSON_IsArray(list) ? list->child : NULL; item_step && !status; item_step = item_step->next)
            status = json_has_type(item_step, "Sequence")
                         ? pm_fail(PM_ERR_ARG, "%s: a Sequence decoder inside a Sequence is not supported", file)
                         : parse_step(file, item_step, byte_level, d);
    } else {
        status = parse_step(file, item, byte_level, d);
    }
    if (status || (d->count == 0 && !d->strip_start && !d->strip_stop)) {
        decoder_free(d);
        return status;
    }
    *out = d;
    return PM_OK;
}

/* The byte of a byte-fallback token <0xNN> (either case of hex digits), or -1. */
static int fallback_byte(const char *token, size_t length) {
    if (length != 6 || memcmp(token, "<0x", 3) != 0 || token[5] != '>') return -1;
    int value = 0;
    for (int i = 3; i < 5; i++) {
        const char c = token[i];
        const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (digit < 0) return -1;
        value = value * 16 + digit;
    }
    return value;
}

/* Replaces every pattern in in[0..n) with content, into out; returns the new length. */
static size_t replace(const char *in, size_t n, const char *pattern, size_t pattern_length, const char *content,
                      size_t content_length, char *out) {
    size_t used = 0;
    for (size_t at = 0; at < n;) {
        const char *found = n - at >= pattern_length ? memmem(in + at, n - at, pattern, pattern_length) : NULL;
        const size_t end = found ? (size_t)(found - in) : n;
        memcpy(out + used, in + at, end - at);
        used += end - at;
        if (!found) break;
        memcpy(out + used, content, content_length);
        used += content_length;
        at = end + pattern_length;
    }
    return used;
}

size_t decoder_token(const decoder *d, const char *token, size_t length, bool first, char *out) {
    if (length > TOKENIZER_MAX_TOKEN_BYTES) length = TOKENIZER_MAX_TOKEN_BYTES; /* the builder refuses longer */
    if (!d) {
        memcpy(out, token, length);
        return length;
    }
    char buffers[2][TOKENIZER_MAX_TOKEN_BYTES];
    const char *text = token;
    size_t n = length;
    int which = 0;
    for (int i = 0; i < d->count; i++) {
        const step *s = &d->steps[i];
        char *target = buffers[which];
        switch (s->kind) {
        case DECODE_REPLACE:
            n = replace(text, n, s->pattern, s->pattern_length, s->content, s->content_length, target);
            break;
        case DECODE_METASPACE:
            n = replace(text, n, s->pattern, s->pattern_length, " ", first && s->prepend ? 0 : 1, target);
            break;
        case DECODE_BYTE_FALLBACK: {
            const int byte = fallback_byte(text, n);
            if (byte < 0) continue;
            target[0] = (char)byte;
            n = 1;
            break;
        }
        case DECODE_STRIP: {
            size_t from = 0, to = n;
            for (int k = 0; k < s->strip_start && from < to && text[from] == s->strip; k++) from++;
            for (int k = 0; k < s->strip_stop && to > from && text[to - 1] == s->strip; k++) to--;
            memmove(target, text + from, to - from);
            n = to - from;
            break;
        }
        }
        text = target;
        which ^= 1;
    }
    memcpy(out, text, n);
    return n;
}

void decoder_finish(const decoder *d, text_buffer *out, size_t start) {
    if (!d || !d->fused || out->length <= start) return;
    char *text = out->data + start;
    size_t n = out->length - start, from = 0;
    for (int k = 0; k < d->strip_start && from < n && text[from] == d->strip; k++) from++;
    for (int k = 0; k < d->strip_stop && n > from && text[n - 1] == d->strip; k++) n--;
    memmove(text, text + from, n - from);
    out->length = start + n - from;
}
