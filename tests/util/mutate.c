#include "mutate.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probmoe.h"

typedef struct {
    mutant_visit visit;
    void *user;
    long count;
    bool stopped;
} visitor;

static void emit(visitor *v, mutant *m) {
    if (v->stopped) return;
    v->count++;
    if (!v->visit(v->user, m)) v->stopped = true;
}

/* base with [at, at+removed) replaced by insert */
static void emit_spliced(visitor *v, const char *base, size_t size, size_t at, size_t removed, const char *insert,
                         size_t insert_size, mutant *m) {
    char *data = malloc(size - removed + insert_size + 1);
    memcpy(data, base, at);
    memcpy(data + at, insert, insert_size);
    memcpy(data + at + insert_size, base + at + removed, size - at - removed);
    data[size - removed + insert_size] = '\0';
    m->data = data;
    m->size = size - removed + insert_size;
    emit(v, m);
    free(data);
}

static void truncations(visitor *v, const char *base, size_t size) {
    enum { CUTS = 24 };
    for (int i = 0; i < CUTS; i++) {
        size_t cut = i < 3 ? (size_t)i : (size_t)((double)size * (i - 2) / (CUTS - 2));
        if (cut >= size) cut = size - 1;
        mutant m = {.kind = "truncated"};
        snprintf(m.what, sizeof m.what, "truncated to %zu of %zu bytes", cut, size);
        emit_spliced(v, base, size, cut, size - cut, "", 0, &m);
    }
}

static void bit_flips(visitor *v, const char *base, size_t size) {
    pm_rng rng;
    pm_rng_init(&rng, size, 7);
    char *data = malloc(size);
    for (int i = 0; i < 96; i++) {
        memcpy(data, base, size);
        size_t at = pm_rng_u32(&rng) % size;
        int bit = (int)(pm_rng_u32(&rng) % 8);
        data[at] ^= (char)(1 << bit);
        mutant m = {.data = data, .size = size, .kind = "bit flip"};
        snprintf(m.what, sizeof m.what, "byte %zu bit %d flipped", at, bit);
        emit(v, &m);
    }
    free(data);
}

static void binary_extremes(visitor *v, const char *base, size_t size, const binary_field *fields, int count) {
    const uint64_t extremes[] = {0, 1, 0x7fffffffu, 0x80000000u, 0xffffffffu, 0x7fffffffffffffffull,
                                 0xffffffffffffffffull, (uint64_t)size, (uint64_t)size + 1};
    char *data = malloc(size);
    for (int f = 0; f < count; f++)
        for (size_t e = 0; e < sizeof extremes / sizeof extremes[0]; e++) {
            if (fields[f].offset + (size_t)fields[f].width > size) continue;
            memcpy(data, base, size);
            for (int b = 0; b < fields[f].width; b++) data[fields[f].offset + b] = (char)(extremes[e] >> (8 * b));
            mutant m = {.data = data, .size = size, .kind = "extreme"};
            snprintf(m.what, sizeof m.what, "%d bytes at offset %zu := %llu", fields[f].width, fields[f].offset,
                     (unsigned long long)extremes[e]);
            emit(v, &m);
        }
    free(data);
}

/* The end of the JSON scalar (number, literal or string) starting at text[i]. */
static size_t scalar_end(const char *text, size_t size, size_t i) {
    if (text[i] == '"') {
        for (i++; i < size && text[i] != '"'; i++)
            if (text[i] == '\\') i++;
        return i < size ? i + 1 : size;
    }
    while (i < size && !strchr(",]}\n\r\t ", text[i])) i++;
    return i;
}

/* The key of the member whose value starts at `at` (after "key":), or "" for array items. */
static void key_before(const char *text, size_t at, char *key, size_t capacity) {
    key[0] = '\0';
    size_t i = at;
    while (i > 0 && strchr(" \t\r\n", text[i - 1])) i--;
    if (i == 0 || text[i - 1] != ':') return;
    i--;
    while (i > 0 && text[i - 1] != '"') i--; /* closing quote of the key */
    if (i == 0) return;
    size_t end = --i, start = end;
    while (start > 0 && text[start - 1] != '"') start--;
    size_t n = end - start < capacity - 1 ? end - start : capacity - 1;
    memcpy(key, text + start, n);
    key[n] = '\0';
}

static void json_values(visitor *v, const char *base, size_t size) {
    static const struct {
        const char *text, *kind;
        bool valid;
    } replacements[] = {
        {"0", "extreme", true},          {"-1", "extreme", true},
        {"2147483648", "extreme", true}, {"-9223372036854775809", "extreme", true},
        {"1e308", "extreme", true},      {"1.5", "extreme", true},
        {"1e999", "non-finite", true},   {"NaN", "non-finite", false},
        {"Infinity", "non-finite", false}, {"\"x\"", "wrong type", true},
        {"[]", "wrong type", true},      {"{}", "wrong type", true},
        {"null", "wrong type", true},    {"true", "wrong type", true},
        {"\"\\ud800\"", "invalid UTF-8", false}, {"\"\xff\xfe\"", "invalid UTF-8", false},
    };
    bool in_string = false;
    for (size_t i = 0; i < size && !v->stopped; i++) {
        if (in_string) {
            if (base[i] == '\\') i++;
            else if (base[i] == '"') in_string = false;
            continue;
        }
        /* a value starts after ':' '[' or ',' (skipping blanks); strings that are keys do not */
        size_t j = i;
        if (!strchr(":[,", base[i])) {
            if (base[i] == '"') in_string = true;
            continue;
        }
        for (j = i + 1; j < size && strchr(" \t\r\n", base[j]); j++) {}
        if (j >= size || strchr("{[", base[j])) continue;
        size_t end = scalar_end(base, size, j);
        if (base[j] == '"') {
            size_t k = end;
            while (k < size && strchr(" \t\r\n", base[k])) k++;
            if (k < size && base[k] == ':') continue; /* a key */
        }
        char key[64];
        key_before(base, j, key, sizeof key);
        for (size_t r = 0; r < sizeof replacements / sizeof replacements[0]; r++) {
            mutant m = {.kind = replacements[r].kind, .json_valid = replacements[r].valid};
            snprintf(m.field, sizeof m.field, "%s", key);
            snprintf(m.what, sizeof m.what, "value of \"%s\" at byte %zu := %s", key, j, replacements[r].text);
            emit_spliced(v, base, size, j, end - j, replacements[r].text, strlen(replacements[r].text), &m);
        }
        i = end - 1;
    }
}

static void invalid_utf8(visitor *v, const char *base, size_t size) {
    static const char *const sequences[] = {"\xff", "\xc0\x80", "\xed\xa0\x80", "\xe2\x82", "\0"};
    for (int s = 0; s < 5; s++)
        for (int i = 1; i <= 6; i++) {
            size_t at = size * (size_t)i / 7;
            mutant m = {.kind = "invalid UTF-8"};
            snprintf(m.what, sizeof m.what, "%s inserted at byte %zu", s == 4 ? "a NUL byte" : "an invalid UTF-8 sequence",
                     at);
            emit_spliced(v, base, size, at, 0, sequences[s], s == 4 ? 1 : strlen(sequences[s]), &m);
        }
}

long mutate_each(const char *base, size_t size, bool json, const binary_field *fields, int field_count,
                 mutant_visit visit, void *user) {
    visitor v = {visit, user, 0, false};
    truncations(&v, base, size);
    bit_flips(&v, base, size);
    binary_extremes(&v, base, size, fields, field_count);
    if (json) json_values(&v, base, size);
    invalid_utf8(&v, base, size);
    return v.count;
}
