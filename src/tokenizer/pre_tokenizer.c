/*
 * The pre-tokenizers of pre_tokenizer.h, with Hugging Face's semantics: a step cuts each piece
 * that the previous step produced (so a regex sees one piece as its whole subject, and a
 * lookahead stops at the piece's end); empty pieces are dropped. Split's behaviors decide
 * where a match goes (HF's SplitDelimiterBehavior): Removed drops it, Isolated keeps it alone,
 * MergedWithPrevious/Next glue it to the neighbouring non-match, Contiguous joins runs of
 * matches; invert swaps matches and gaps. Metaspace replaces spaces with its replacement,
 * prepends one and, with split, cuts before each replacement.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pre_tokenizer.h"

#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/json_util.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/text_buffer.h"

typedef enum { STEP_SPLIT, STEP_METASPACE } step_kind;
typedef enum { REMOVED, ISOLATED, MERGED_WITH_PREVIOUS, MERGED_WITH_NEXT, CONTIGUOUS } split_behavior;
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } prepend_scheme;

typedef struct {
    step_kind kind;
    pcre2_code *code; /* Split */
    bool jit;         /* code is JIT-compiled: matched through PCRE2's fast path */
    split_behavior behavior;
    bool invert;
    char replacement[8]; /* Metaspace: its UTF-8 */
    size_t replacement_length;
    prepend_scheme prepend;
    bool split;
} step;

struct pre_tokenizer {
    step *steps;
    int count;
};

/* A stretch of a piece: [start, end), and whether the pattern matched it. */
typedef struct {
    size_t start, end;
    bool match;
} segment;

typedef struct {
    pcre2_match_data *match;
    segment *segments;
    size_t segment_capacity;
    text_buffer buffer; /* Metaspace's rewritten piece */
} step_state;

struct pre_tokenizer_state {
    step_state *steps;
    int count;
    pcre2_match_context *context;
    pcre2_jit_stack *jit_stack;
};

void pre_tokenizer_free(pre_tokenizer *p) {
    if (!p) return;
    for (int i = 0; i < p->count; i++) pcre2_code_free(p->steps[i].code);
    free(p->steps);
    free(p);
}

static int compile(const char *file, const char *pattern, size_t length, bool literal, pcre2_code **out, bool *jit) {
    int error;
    PCRE2_SIZE offset;
    const uint32_t options = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    *out = pcre2_compile((PCRE2_SPTR)pattern, length, options, &error, &offset, NULL);
    if (!*out) {
        PCRE2_UCHAR message[160];
        pcre2_get_error_message(error, message, sizeof message);
        return pm_fail(PM_ERR_ARG, "%s: the Split pattern does not compile (PCRE2: %s, at offset %zu)", file,
                       (const char *)message, (size_t)offset);
    }
    *jit = pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE) == 0; /* optional: else the interpreter matches */
    return PM_OK;
}

static int add_step(const char *file, pre_tokenizer *p, step s) {
    step *grown = realloc(p->steps, (size_t)(p->count + 1) * sizeof *grown);
    if (!grown) {
        pcre2_code_free(s.code);
        return pm_fail(PM_ERR_NOMEM, "out of memory loading %s", file);
    }
    p->steps = grown;
    p->steps[p->count++] = s;
    return PM_OK;
}

static int parse_split(const char *file, const cJSON *json, pre_tokenizer *p) {
    static const char *behaviors[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    step s = {.kind = STEP_SPLIT};
    const cJSON *behavior = cJSON_GetObjectItemCaseSensitive(json, "behavior");
    int found = -1;
    for (int i = 0; i < 5 && cJSON_IsString(behavior); i++)
        if (strcmp(behavior->valuestring, behaviors[i]) == 0) found = i;
    if (found < 0)
        return pm_fail(PM_ERR_ARG, "%s: the Split pre-tokenizer's behavior %s is not one of Removed, Isolated, "
                       "MergedWithPrevious, MergedWithNext, Contiguous", file,
                       cJSON_IsString(behavior) ? behavior->valuestring : "(missing)");
    s.behavior = (split_behavior)found;
    int status = json_bool(file, json, "invert", "the Split pre-tokenizer", false, &s.invert);
    char *pattern = NULL;
    size_t length = 0;
    bool regex = false;
    if (!status) status = json_pattern(file, json, "the Split pre-tokenizer", &pattern, &length, &regex);
    if (!status) status = compile(file, pattern, length, !regex, &s.code, &s.jit);
    free(pattern);
    return status ? status : add_step(file, p, s);
}

static size_t utf8_char_length(unsigned char lead) {
    return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

static int parse_metaspace(const char *file, const cJSON *json, pre_tokenizer *p) {
    step s = {.kind = STEP_METASPACE, .prepend = PREPEND_ALWAYS, .split = true};
    const cJSON *replacement = cJSON_GetObjectItemCaseSensitive(json, "replacement");
    /* one character: a cut before it is then always between characters */
    if (!cJSON_IsString(replacement) || !json_valid_utf8(replacement->valuestring) ||
        strlen(replacement->valuestring) == 0 || strlen(replacement->valuestring) > 4 ||
        utf8_char_length((unsigned char)replacement->valuestring[0]) != strlen(replacement->valuestring))
        return pm_fail(PM_ERR_ARG, "%s: the Metaspace pre-tokenizer needs a one-character \"replacement\"", file);
    s.replacement_length = strlen(replacement->valuestring);
    memcpy(s.replacement, replacement->valuestring, s.replacement_length);
    const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(json, "prepend_scheme");
    if (cJSON_IsString(scheme)) {
        if (strcmp(scheme->valuestring, "always") == 0) s.prepend = PREPEND_ALWAYS;
        else if (strcmp(scheme->valuestring, "first") == 0) s.prepend = PREPEND_FIRST;
        else if (strcmp(scheme->valuestring, "never") == 0) s.prepend = PREPEND_NEVER;
        else return pm_fail(PM_ERR_ARG, "%s: Metaspace prepend_scheme '%s' is not always, first or never", file,
                            scheme->valuestring);
    } else { /* older files: add_prefix_space */
        bool add_prefix_space = true;
        const int status = json_bool(file, json, "add_prefix_space", "the Metaspace pre-tokenizer", true, &add_prefix_space);
        if (status) return status;
        s.prepend = add_prefix_space ? PREPEND_ALWAYS : PREPEND_NEVER;
    }
    const int status = json_bool(file, json, "split", "the Metaspace pre-tokenizer", true, &s.split);
    return status ? status : add_step(file, p, s);
}

static int parse_byte_level(const char *file, const cJSON *json, pre_tokenizer *p) {
    if (!json_unset(json, "add_prefix_space"))
        return pm_fail(PM_ERR_ARG, "%s: the ByteLevel pre-tokenizer has add_prefix_space set; it inserts a space "
                       "into the text, which is not supported", file);
    bool use_regex = true;
    const int status = json_bool(file, json, "use_regex", "the ByteLevel pre-tokenizer", true, &use_regex);
    if (status || !use_regex) return status;
    step s = {.kind = STEP_SPLIT, .behavior = ISOLATED};
    const int compiled = compile(file, pretokenize_gpt2_pattern, strlen(pretokenize_gpt2_pattern), false, &s.code, &s.jit);
    return compiled ? compiled : add_step(file, p, s);
}

static int parse(const char *file, const cJSON *json, pre_tokenizer *p, bool *byte_level, int depth) {
    const char *type = json_type_of(json);
    if (depth > 8) return pm_fail(PM_ERR_ARG, "%s: pre_tokenizer Sequences are nested too deeply", file);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(json, "pretokenizers");
        if (!cJSON_IsArray(list))
            return pm_fail(PM_ERR_ARG, "%s: the Sequence pre-tokenizer has no \"pretokenizers\" array", file);
        for (const cJSON *item = list->child; item; item = item->next) {
            const int status = parse(file, item, p, byte_level, depth + 1);
            if (status) return status;
        }
        return PM_OK;
    }
    if (strcmp(type, "Split") == 0) return parse_split(file, json, p);
    if (strcmp(type, "Metaspace") == 0) return parse_metaspace(file, json, p);
    if (strcmp(type, "ByteLevel") == 0) {
        *byte_level = true;
        return parse_byte_level(file, json, p);
    }
    return pm_fail(PM_ERR_ARG, "%s: pre_tokenizer type %s is not supported (supported: Split, ByteLevel, Metaspace, "
                   "Sequence)", file, type);
}

int pre_tokenizer_from_json(const char *file, const void *json, pre_tokenizer **out, bool *byte_level) {
    *out = NULL;
    *byte_level = false;
    const cJSON *item = json;
    if (!item || cJSON_IsNull(item)) return PM_OK;
    if (!cJSON_IsObject(item)) return pm_fail(PM_ERR_ARG, "%s: \"pre_tokenizer\" must be an object or null", file);
    pre_tokenizer *p = calloc(1, sizeof *p);
    if (!p) return pm_fail(PM_ERR_NOMEM, "out of memory loading %s", file);
    const int status = parse(file, item, p, byte_level, 0);
    if (status || p->count == 0) {
        pre_tokenizer_free(p);
        return status;
    }
    *out = p;
    return PM_OK;
}

int pre_tokenizer_gpt2(pre_tokenizer **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return pm_fail(PM_ERR_NOMEM, "pre-tokenizer: out of memory");
    const int status = parse_byte_level("GPT-2", NULL, *out);
    if (status) {
        pre_tokenizer_free(*out);
        *out = NULL;
    }
    return status;
}

void pre_tokenizer_state_free(pre_tokenizer_state *s) {
    if (!s) return;
    for (int i = 0; i < s->count; i++) {
        pcre2_match_data_free(s->steps[i].match);
        free(s->steps[i].segments);
        text_buffer_free(&s->steps[i].buffer);
    }
    free(s->steps);
    pcre2_match_context_free(s->context);
    pcre2_jit_stack_free(s->jit_stack);
    free(s);
}

int pre_tokenizer_state_create(const pre_tokenizer *p, pre_tokenizer_state **out) {
    *out = NULL;
    pre_tokenizer_state *s = calloc(1, sizeof *s);
    if (!s) return pm_fail(PM_ERR_NOMEM, "pre-tokenizer: out of memory");
    s->count = p ? p->count : 0;
    s->steps = calloc((size_t)s->count + 1, sizeof *s->steps);
    /* JIT matching recurses on the machine stack by default (32 kB); long runs of one class
     * (a megabyte of spaces) need more, so each worker has a growable stack of its own. */
    s->context = pcre2_match_context_create(NULL);
    s->jit_stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
    bool ok = s->steps && s->context && s->jit_stack;
    if (ok) pcre2_jit_stack_assign(s->context, NULL, s->jit_stack);
    for (int i = 0; ok && i < s->count; i++)
        if (p->steps[i].code) ok = (s->steps[i].match = pcre2_match_data_create_from_pattern(p->steps[i].code, NULL));
    if (!ok) {
        pre_tokenizer_state_free(s);
        return pm_fail(PM_ERR_NOMEM, "pre-tokenizer: out of memory");
    }
    *out = s;
    return PM_OK;
}

static int push_segment(step_state *st, size_t *count, size_t start, size_t end, bool match) {
    if (*count == st->segment_capacity) {
        const size_t capacity = st->segment_capacity ? 2 * st->segment_capacity : 64;
        segment *grown = realloc(st->segments, capacity * sizeof *grown);
        if (!grown) return pm_fail(PM_ERR_NOMEM, "pre-tokenizer: out of memory");
        st->segments = grown;
        st->segment_capacity = capacity;
    }
    st->segments[(*count)++] = (segment){start, end, match};
    return PM_OK;
}

/* The matches and the gaps between them, in order, covering the text (HF's find_matches). */
static int find_segments(const step *sp, step_state *st, pcre2_match_context *context, const char *text,
                         size_t length, size_t *count) {
    *count = 0;
    size_t at = 0, previous_end = 0;
    while (at <= length) {
        /* (the text is valid UTF-8: checked once, where encoding starts) */
        const int found = sp->jit ? pcre2_jit_match(sp->code, (PCRE2_SPTR)text, length, at, 0, st->match, context)
                                  : pcre2_match(sp->code, (PCRE2_SPTR)text, length, at, PCRE2_NO_UTF_CHECK, st->match, context);
        if (found == PCRE2_ERROR_NOMATCH) break;
        if (found < 0) {
            PCRE2_UCHAR message[160];
            pcre2_get_error_message(found, message, sizeof message);
            return pm_fail(PM_ERR_STATE, "pre-tokenizer: PCRE2 failed on a piece of %zu bytes: %s", length,
                           (const char *)message);
        }
        const PCRE2_SIZE *span = pcre2_get_ovector_pointer(st->match);
        int status = PM_OK;
        if (span[0] > previous_end) status = push_segment(st, count, previous_end, span[0], false);
        if (!status) status = push_segment(st, count, span[0], span[1], true);
        if (status) return status;
        previous_end = span[1];
        /* An empty match moves on by one character, as a find-all iterator does. */
        at = span[1] > span[0] ? span[1] : span[1] + (span[1] < length ? utf8_char_length((unsigned char)text[span[1]]) : 1);
    }
    if (previous_end < length) return push_segment(st, count, previous_end, length, false);
    return PM_OK;
}

/* Applies a Split behavior to the segments in place (HF's SplitDelimiterBehavior); *count
 * shrinks to the pieces that remain. */
static void apply_behavior(split_behavior behavior, bool invert, segment *segs, size_t *count) {
    size_t n = 0;
    bool previous_match = false;
    for (size_t i = 0; i < *count; i++) {
        segment s = segs[i];
        if (invert) s.match = !s.match;
        switch (behavior) {
        case REMOVED:
            if (!s.match) segs[n++] = s;
            break;
        case ISOLATED:
            segs[n++] = s;
            break;
        case MERGED_WITH_PREVIOUS:
            if (s.match && !previous_match && n > 0) segs[n - 1].end = s.end;
            else segs[n++] = s;
            break;
        case CONTIGUOUS:
            if (s.match == previous_match && n > 0) segs[n - 1].end = s.end;
            else segs[n++] = s;
            break;
        case MERGED_WITH_NEXT: /* a match joins the non-match after it */
            if (n > 0 && segs[n - 1].match && !s.match) {
                segs[n - 1].end = s.end;
                segs[n - 1].match = false;
            } else {
                segs[n++] = s;
            }
            break;
        }
        previous_match = s.match;
    }
    *count = n;
}

static int run(const pre_tokenizer *p, pre_tokenizer_state *s, int index, const char *text, size_t length,
               bool at_start, pre_tokenizer_piece piece, void *user);

static int run_split(const pre_tokenizer *p, pre_tokenizer_state *s, int index, const char *text, size_t length,
                     bool at_start, pre_tokenizer_piece piece, void *user) {
    const step *sp = &p->steps[index];
    /* One character cannot be cut: every behavior but Removed gives it back whole. */
    if (sp->behavior != REMOVED && utf8_char_length((unsigned char)text[0]) == length)
        return run(p, s, index + 1, text, length, at_start, piece, user);
    step_state *st = &s->steps[index];
    size_t count = 0;
    int status = find_segments(sp, st, s->context, text, length, &count);
    if (status) return status;
    apply_behavior(sp->behavior, sp->invert, st->segments, &count);
    for (size_t i = 0; i < count; i++) {
        const segment g = st->segments[i];
        if (g.end == g.start) continue;
        status = run(p, s, index + 1, text + g.start, g.end - g.start, at_start && g.start == 0, piece, user);
        if (status) return status;
    }
    return PM_OK;
}

static int run_metaspace(const pre_tokenizer *p, pre_tokenizer_state *s, int index, const char *text, size_t length,
                         bool at_start, pre_tokenizer_piece piece, void *user) {
    const step *sp = &p->steps[index];
    text_buffer *b = &s->steps[index].buffer;
    b->length = 0;
    int status = PM_OK;
    const bool starts_with_replacement = length >= sp->replacement_length &&
                                         memcmp(text, sp->replacement, sp->replacement_length) == 0;
    const bool starts_with_space = length > 0 && text[0] == ' ';
    const bool prepend = !starts_with_replacement && !starts_with_space &&
                         (sp->prepend == PREPEND_ALWAYS || (sp->prepend == PREPEND_FIRST && at_start));
    /* A leading space becomes the replacement anyway, so it counts as already prepended. */
    if (prepend) status = text_buffer_append(b, sp->replacement, sp->replacement_length);
    for (size_t i = 0; i < length && !status; i++)
        status = text[i] == ' ' ? text_buffer_append(b, sp->replacement, sp->replacement_length)
                                : text_buffer_append(b, text + i, 1);
    if (status) return status;
    if (!sp->split) return run(p, s, index + 1, b->data, b->length, at_start, piece, user);
    /* MergedWithNext on the replacement: cut before each one. */
    size_t start = 0;
    for (size_t i = 1; i <= b->length; i++) {
        const bool cut = i == b->length || (b->length - i >= sp->replacement_length &&
                                            memcmp(b->data + i, sp->replacement, sp->replacement_length) == 0);
        if (!cut) continue;
        status = run(p, s, index + 1, b->data + start, i - start, at_start && start == 0, piece, user);
        if (status) return status;
        start = i;
    }
    return PM_OK;
}

static int run(const pre_tokenizer *p, pre_tokenizer_state *s, int index, const char *text, size_t length,
               bool at_start, pre_tokenizer_piece piece, void *user) {
    if (length == 0) return PM_OK;
    if (!p || index == p->count) return piece(user, text, length);
    return p->steps[index].kind == STEP_SPLIT ? run_split(p, s, index, text, length, at_start, piece, user)
                                              : run_metaspace(p, s, index, text, length, at_start, piece, user);
}

int pre_tokenize_text(const pre_tokenizer *p, pre_tokenizer_state *s, const char *text, size_t length, bool at_start,
                      pre_tokenizer_piece piece, void *user) {
    return run(p, s, 0, text, length, at_start, piece, user);
}
