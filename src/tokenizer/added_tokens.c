/* The added-token matcher of added_tokens.h. Each pass keeps its tokens in a byte trie, so a
 * position costs a walk as long as the longest token that starts like the text there, however
 * many tokens share a prefix (DeepSeek has 800 that begin "<｜"). Word and whitespace
 * characters are Unicode's (utf8proc categories; White_Space). */
#include "tokenizer/added_tokens.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/error.h"

/* A trie node: the byte leading to it, its first child and next sibling (-1: none), and the
 * token that ends here (-1: none). */
typedef struct {
    int32_t child, sibling, token;
    uint8_t byte;
} trie_node;

typedef struct {
    trie_node *nodes;
    int32_t count, capacity;
    int32_t root_child[256]; /* the root's children, by byte */
    bool any;
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
    free(a->passes[0].nodes);
    free(a->passes[1].nodes);
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

bool added_tokens_strip_whitespace(const added_tokens *a) {
    for (int32_t i = 0; a && i < a->count; i++)
        if (a->tokens[i].lstrip || a->tokens[i].rstrip) return true;
    return false;
}

static int32_t new_node(pass *ps, uint8_t byte) {
    if (ps->count == ps->capacity) {
        const int32_t capacity = ps->capacity ? 2 * ps->capacity : 256;
        trie_node *grown = realloc(ps->nodes, (size_t)capacity * sizeof *grown);
        if (!grown) return -1;
        ps->nodes = grown;
        ps->capacity = capacity;
    }
    ps->nodes[ps->count] = (trie_node){-1, -1, -1, byte};
    return ps->count++;
}

/* Inserts token index's content (the builder has refused one content under two ids). */
static int insert(pass *ps, const added_token *t, int32_t index) {
    int32_t *link = &ps->root_child[(uint8_t)t->content[0]], node = *link;
    if (node < 0 && (node = *link = new_node(ps, (uint8_t)t->content[0])) < 0) return -1;
    for (uint32_t k = 1; k < t->length; k++) {
        const uint8_t byte = (uint8_t)t->content[k];
        int32_t child = ps->nodes[node].child, previous = -1;
        while (child >= 0 && ps->nodes[child].byte != byte) {
            previous = child;
            child = ps->nodes[child].sibling;
        }
        if (child < 0) {
            if ((child = new_node(ps, byte)) < 0) return -1;
            if (previous < 0) ps->nodes[node].child = child;
            else ps->nodes[previous].sibling = child;
        }
        node = child;
    }
    if (ps->nodes[node].token < 0) ps->nodes[node].token = index;
    return 0;
}

int added_tokens_finish(added_tokens *a) {
    for (int p = 0; p < 2; p++) {
        pass *ps = &a->passes[p];
        free(ps->nodes);
        memset(ps, 0, sizeof *ps);
        for (int b = 0; b < 256; b++) ps->root_child[b] = -1;
        for (int32_t i = 0; i < a->count; i++) {
            const added_token *t = &a->tokens[i];
            if (t->normalized != (p == 1) || t->length == 0) continue;
            if (insert(ps, t, i)) return pm_fail(PM_ERR_NOMEM, "added tokens: out of memory");
            ps->any = true;
        }
    }
    return PM_OK;
}

static bool is_white_space(utf8proc_int32_t c) { /* Unicode's White_Space property */
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static bool is_word(utf8proc_int32_t c) { /* \w: letters, marks, digits, letter numbers, connector punctuation */
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
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
    int32_t node = ps->root_child[(uint8_t)text[at]], found = -1;
    for (size_t k = at + 1; node >= 0;) {
        if (ps->nodes[node].token >= 0) found = ps->nodes[node].token;
        if (k == length) break;
        const uint8_t byte = (uint8_t)text[k++];
        for (node = ps->nodes[node].child; node >= 0 && ps->nodes[node].byte != byte; node = ps->nodes[node].sibling) {}
    }
    return found >= 0 ? &a->tokens[found] : NULL;
}

bool added_tokens_next(const added_tokens *a, bool normalized, const char *text, size_t length, size_t from,
                       size_t taken_until, added_match *m) {
    if (!a) return false;
    const pass *ps = &a->passes[normalized];
    if (!ps->any) return false;
    for (size_t at = from; at < length;) {
        const added_token *t = ps->root_child[(uint8_t)text[at]] >= 0 ? longest_at(a, ps, text, length, at) : NULL;
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
