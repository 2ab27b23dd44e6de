/* The added-token matcher of added_tokens.h. Each pass keeps its tokens sorted by first byte,
 * longest first within a byte, so a position is tried only against tokens that can start
 * there. Word and whitespace characters are Unicode's (utf8proc categories; White_Space). */
#include "tokenizer/added_tokens.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/error.h"

typedef struct {
    int32_t *order;      /* indices into tokens, by (first byte, length descending) */
    int32_t count;
    int32_t first[257];  /* order[first[b] .. first[b + 1]) start with byte b */
} pass;

struct added_tokens {
    added_token *tokens;
    int32_t count, capacity;
    pass passes[2]; /* [0] raw text, [1] normalized */
};

added_tokens *added_tokens_create(void) {
    return calloc(1, sizeof(added_tokens));
}

void added_tokens_free(added_tokens *a) {
    if (!a) return;
    for (int32_t i = 0; i < a->count; i++) free(a->tokens[i].content);
    free(a->tokens);
    free(a->passes[0].order);
    free(a->passes[1].order);
    free(a);
}

int added_tokens_add(added_tokens *a, const added_token *token) {
    if (a->count == a->capacity) {
        const int32_t capacity = a->capacity ? 2 * a->capacity : 32;
        added_token *grown = realloc(a->tokens, (size_t)capacity * sizeof *grown);
        if (!grown) return pm_fail(PM_ERR_NOMEM, "added tokens: out of memory");
        a->tokens = grown;
        a->capacity = capacity;
    }
    added_token t = *token;
    t.content = malloc(token->length + 1);
    if (!t.content) return pm_fail(PM_ERR_NOMEM, "added tokens: out of memory");
    memcpy(t.content, token->content, token->length);
    t.content[token->length] = '\0';
    a->tokens[a->count++] = t;
    return PM_OK;
}

int32_t added_tokens_count(const added_tokens *a) {
    return a ? a->count : 0;
}

added_token *added_tokens_at(added_tokens *a, int32_t index) {
    return &a->tokens[index];
}

const added_token *added_tokens_get(const added_tokens *a, int32_t index) {
    return &a->tokens[index];
}

typedef struct {
    unsigned char first_byte;
    uint32_t length;
    int32_t id, index;
} sort_key;

static int by_first_byte_longest(const void *x, const void *y) {
    const sort_key *a = x, *b = y;
    if (a->first_byte != b->first_byte) return a->first_byte < b->first_byte ? -1 : 1;
    if (a->length != b->length) return a->length > b->length ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

int added_tokens_finish(added_tokens *a) {
    sort_key *keys = malloc(((size_t)a->count + 1) * sizeof *keys);
    if (!keys) return pm_fail(PM_ERR_NOMEM, "added tokens: out of memory");
    for (int p = 0; p < 2; p++) {
        pass *ps = &a->passes[p];
        free(ps->order);
        ps->order = malloc(((size_t)a->count + 1) * sizeof *ps->order);
        if (!ps->order) {
            free(keys);
            return pm_fail(PM_ERR_NOMEM, "added tokens: out of memory");
        }
        ps->count = 0;
        for (int32_t i = 0; i < a->count; i++) {
            const added_token *t = &a->tokens[i];
            if (t->normalized == (p == 1) && t->length > 0)
                keys[ps->count++] = (sort_key){(unsigned char)t->content[0], t->length, t->id, i};
        }
        qsort(keys, (size_t)ps->count, sizeof *keys, by_first_byte_longest);
        int32_t k = 0;
        for (int b = 0; b <= 256; b++) {
            while (k < ps->count && keys[k].first_byte < b) k++;
            ps->first[b] = k;
        }
        for (int32_t i = 0; i < ps->count; i++) ps->order[i] = keys[i].index;
    }
    free(keys);
    return PM_OK;
}

bool added_tokens_any(const added_tokens *a, bool normalized) {
    return a && a->passes[normalized].count > 0;
}

static bool is_white_space(utf8proc_int32_t c) { /* Unicode's White_Space property */
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static bool is_word(utf8proc_int32_t c) { /* \w: letters, marks, decimal digits, connector punctuation */
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return c == 0x200C || c == 0x200D; /* Join_Control */
    }
}

/* The character before text[at] (at > 0). */
static utf8proc_int32_t char_before(const char *text, size_t at, size_t *start) {
    size_t s = at - 1;
    while (s > 0 && ((unsigned char)text[s] & 0xC0) == 0x80) s--;
    utf8proc_int32_t c = -1;
    utf8proc_iterate((const utf8proc_uint8_t *)text + s, (utf8proc_ssize_t)(at - s), &c);
    if (start) *start = s;
    return c;
}

static utf8proc_int32_t char_at(const char *text, size_t length, size_t at, size_t *bytes) {
    utf8proc_int32_t c = -1;
    const utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)text + at, (utf8proc_ssize_t)(length - at), &c);
    *bytes = n > 0 ? (size_t)n : 1;
    return c;
}

/* The longest token of the pass that starts at text[at], or NULL. */
static const added_token *longest_at(const added_tokens *a, const pass *ps, const char *text, size_t length, size_t at) {
    const unsigned char b = (unsigned char)text[at];
    for (int32_t k = ps->first[b]; k < ps->first[b + 1]; k++) {
        const added_token *t = &a->tokens[ps->order[k]];
        if (t->length <= length - at && memcmp(t->content, text + at, t->length) == 0) return t;
    }
    return NULL;
}

bool added_tokens_next(const added_tokens *a, bool normalized, const char *text, size_t length, size_t from,
                       size_t taken_until, added_match *m) {
    if (!a) return false;
    const pass *ps = &a->passes[normalized];
    if (ps->count == 0) return false;
    for (size_t at = from; at < length;) {
        const unsigned char b = (unsigned char)text[at];
        const added_token *t = ps->first[b] < ps->first[b + 1] ? longest_at(a, ps, text, length, at) : NULL;
        if (!t) {
            at++;
            continue;
        }
        size_t start = at, end = at + t->length, bytes;
        if (t->single_word && ((start > 0 && is_word(char_before(text, start, NULL))) ||
                               (end < length && is_word(char_at(text, length, end, &bytes))))) {
            at = end; /* a rejected match is skipped whole, as a find-all iterator does */
            continue;
        }
        if (t->lstrip)
            for (size_t s; start > taken_until && is_white_space(char_before(text, start, &s));) start = s;
        if (t->rstrip)
            while (end < length && is_white_space(char_at(text, length, end, &bytes))) end += bytes;
        *m = (added_match){start, end, t};
        return true;
    }
    return false;
}
