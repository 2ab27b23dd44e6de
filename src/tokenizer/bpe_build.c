/*
 * Builds a bpe_model from a loader's entries, checking everything a broken or hand-edited
 * file can get wrong (unknown merge parts, duplicate or out-of-range ids, strings outside
 * GPT-2's byte alphabet) and naming the file and the entry, so a bad file is an error message
 * rather than a wrong encoding or a crash later.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/utf8.h"
#include "tokenizer/bpe_internal.h"
#include "tokenizer/byte_unicode.h"

typedef struct {
    size_t key, bytes;            /* offsets into the arena: the string as written, its bytes */
    uint32_t key_length, byte_length;
    int32_t id;
    bool added;
} entry;

typedef struct {
    int32_t left, right, merged;
} merge;

struct bpe_builder {
    char *file;
    bool byte_level;
    char *arena; /* key strings and token bytes */
    size_t arena_length, arena_capacity;
    entry *entries; /* added tokens first, then vocabulary entries not equal to one */
    size_t count, capacity, added_count;
    size_t token_count; /* distinct tokens, after bpe_builder_end_vocab */
    int32_t *map; /* key string -> entry index, open addressing, -1 empty */
    size_t map_mask;
    int32_t *entry_of_id; /* after bpe_builder_end_vocab */
    merge *merges;
    size_t merge_count, merge_capacity;
    char *scratch; /* a token's bytes; a merge's left + right */
    size_t scratch_capacity;
};

static uint64_t fnv1a(uint64_t h, const void *data, size_t length) {
    const uint8_t *p = data;
    for (size_t i = 0; i < length; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}
#define FNV_OFFSET 0xCBF29CE484222325ull

const char *bpe_excerpt(const char *text, size_t length, char out[48]) {
    size_t n = length > 40 ? 40 : length;
    while (n < length && n > 0 && ((uint8_t)text[n] & 0xC0) == 0x80) n--; /* whole characters */
    for (size_t i = 0; i < n; i++) out[i] = (uint8_t)text[i] < 0x20 ? '?' : text[i];
    strcpy(out + n, n < length ? "..." : "");
    return out;
}

int bpe_read_file(const char *path, char **text, size_t *length) {
    *text = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return pm_fail(PM_ERR_ARG, "cannot open %s: %s", path, strerror(errno));
    size_t capacity = 1 << 16, n = 0;
    char *buffer = malloc(capacity);
    while (buffer) {
        n += fread(buffer + n, 1, capacity - n, f);
        if (n < capacity) break; /* end of file or an error; room for the NUL remains */
        char *grown = realloc(buffer, capacity * 2);
        if (!grown) free(buffer);
        buffer = grown;
        capacity *= 2;
    }
    const int failed = ferror(f);
    fclose(f);
    if (!buffer) return pm_fail(PM_ERR_NOMEM, "out of memory reading %s", path);
    if (failed) {
        free(buffer);
        return pm_fail(PM_ERR_ARG, "cannot read %s", path);
    }
    buffer[n] = '\0';
    *text = buffer;
    *length = n;
    return PM_OK;
}

bpe_builder *bpe_builder_create(const char *file, bool byte_level) {
    bpe_builder *b = calloc(1, sizeof *b);
    if (b) b->file = strdup(file);
    if (b) b->byte_level = byte_level;
    if (!b || !b->file) {
        free(b);
        pm_fail(PM_ERR_NOMEM, "out of memory loading %s", file);
        return NULL;
    }
    return b;
}

void bpe_builder_free(bpe_builder *b) {
    if (!b) return;
    free(b->file);
    free(b->arena);
    free(b->entries);
    free(b->map);
    free(b->entry_of_id);
    free(b->merges);
    free(b->scratch);
    free(b);
}

int bpe_builder_rename(bpe_builder *b, const char *file) {
    char *copy = strdup(file);
    if (!copy) return pm_fail(PM_ERR_NOMEM, "out of memory loading %s", file);
    free(b->file);
    b->file = copy;
    return PM_OK;
}

static int out_of_memory(const bpe_builder *b) {
    return pm_fail(PM_ERR_NOMEM, "out of memory loading %s", b->file);
}

/* Grows *array (of element size `size`) to hold at least `needed` elements. */
static int grow(void **array, size_t *capacity, size_t needed, size_t size) {
    if (needed <= *capacity) return 0;
    size_t c = *capacity ? *capacity : 64;
    while (c < needed) c *= 2;
    void *grown = realloc(*array, c * size);
    if (!grown) return -1;
    *array = grown;
    *capacity = c;
    return 0;
}

/* Reserves length bytes in the arena; returns their offset or SIZE_MAX. */
static size_t arena_reserve(bpe_builder *b, size_t length) {
    if (grow((void **)&b->arena, &b->arena_capacity, b->arena_length + length, 1)) return SIZE_MAX;
    const size_t at = b->arena_length;
    b->arena_length += length;
    return at;
}

/* The entry whose key is text[0..length), or -1; *slot gets the map slot to insert at. */
static int32_t find_key(const bpe_builder *b, const char *text, size_t length, size_t *slot) {
    if (!b->map) return -1;
    size_t s = (size_t)fnv1a(FNV_OFFSET, text, length) & b->map_mask;
    for (; b->map[s] >= 0; s = (s + 1) & b->map_mask) {
        const entry *e = &b->entries[b->map[s]];
        if (e->key_length == length && memcmp(b->arena + e->key, text, length) == 0) break;
    }
    if (slot) *slot = s;
    return b->map[s];
}

/* Keeps the map at most half full, rehashing every entry when it grows. */
static int map_make_room(bpe_builder *b) {
    if (b->map && 2 * (b->count + 1) <= b->map_mask + 1) return 0;
    const size_t slots = b->map ? 2 * (b->map_mask + 1) : 1024;
    free(b->map);
    b->map = malloc(slots * sizeof *b->map);
    if (!b->map) return -1;
    memset(b->map, 0xFF, slots * sizeof *b->map);
    b->map_mask = slots - 1;
    for (size_t i = 0; i < b->count; i++) {
        size_t slot;
        find_key(b, b->arena + b->entries[i].key, b->entries[i].key_length, &slot);
        b->map[slot] = (int32_t)i;
    }
    return 0;
}

/* Appends an entry with key text and the given bytes (copied); slot from find_key. */
static int append_entry(bpe_builder *b, const char *text, size_t length, const uint8_t *bytes,
                        size_t byte_length, int64_t id, bool added) {
    if (map_make_room(b) || grow((void **)&b->entries, &b->capacity, b->count + 1, sizeof *b->entries))
        return out_of_memory(b);
    const size_t key = arena_reserve(b, length + byte_length);
    if (key == SIZE_MAX) return out_of_memory(b);
    memcpy(b->arena + key, text, length);
    memcpy(b->arena + key + length, bytes, byte_length);
    size_t slot = 0;
    find_key(b, text, length, &slot);
    b->map[slot] = (int32_t)b->count;
    b->entries[b->count++] = (entry){key, key + length, (uint32_t)length, (uint32_t)byte_length, (int32_t)id, added};
    return PM_OK;
}

static int check_id(const bpe_builder *b, const char *what, const char *text, size_t length, int64_t id) {
    char ex[48];
    if (id < 0 || id > INT32_MAX - 1)
        return pm_fail(PM_ERR_ARG, "%s: %s '%s' has id %lld; ids must be integers from 0 to the vocabulary size - 1",
                       b->file, what, bpe_excerpt(text, length, ex), (long long)id);
    if (length == 0)
        return pm_fail(PM_ERR_ARG, "%s: %s with id %lld is the empty string", b->file, what, (long long)id);
    return PM_OK;
}

int bpe_builder_add_added(bpe_builder *b, const char *content, size_t length, int64_t id) {
    char ex[48];
    int status = check_id(b, "added token", content, length, id);
    if (status) return status;
    if (length > TOKENIZER_MAX_TOKEN_BYTES)
        return pm_fail(PM_ERR_ARG, "%s: added token '%s' (id %lld) is longer than %d bytes", b->file,
                       bpe_excerpt(content, length, ex), (long long)id, TOKENIZER_MAX_TOKEN_BYTES);
    const int32_t same = find_key(b, content, length, NULL);
    if (same >= 0) {
        if (b->entries[same].id == id) return PM_OK; /* listed twice, consistently */
        return pm_fail(PM_ERR_ARG, "%s: added token '%s' is listed with ids %d and %lld", b->file,
                       bpe_excerpt(content, length, ex), b->entries[same].id, (long long)id);
    }
    status = append_entry(b, content, length, (const uint8_t *)content, length, id, true);
    b->added_count = b->count;
    return status;
}

int bpe_builder_add_token(bpe_builder *b, const char *text, size_t length, int64_t id) {
    char ex[48];
    int status = check_id(b, "token", text, length, id);
    if (status) return status;
    const int32_t same = find_key(b, text, length, NULL);
    if (same >= 0) {
        const entry *e = &b->entries[same];
        /* Hugging Face lists added tokens in the vocabulary too, under their raw text. */
        if (e->added && e->id == id) return PM_OK;
        if (e->added)
            return pm_fail(PM_ERR_ARG, "%s: token '%s' has id %lld in the vocabulary but id %d in added_tokens (its content)",
                           b->file, bpe_excerpt(text, length, ex), (long long)id, e->id);
        return pm_fail(PM_ERR_ARG, "%s: token '%s' appears twice in the vocabulary (ids %d and %lld)", b->file,
                       bpe_excerpt(text, length, ex), e->id, (long long)id);
    }
    if (!b->byte_level) { /* SentencePiece-style: the token is its text */
        if (utf8_invalid_at((const unsigned char *)text, length) < length)
            return pm_fail(PM_ERR_ARG, "%s: token with id %lld is not valid UTF-8", b->file, (long long)id);
        if (length > TOKENIZER_MAX_TOKEN_BYTES)
            return pm_fail(PM_ERR_ARG, "%s: token '%s' (id %lld) is longer than %d bytes", b->file,
                           bpe_excerpt(text, length, ex), (long long)id, TOKENIZER_MAX_TOKEN_BYTES);
        return append_entry(b, text, length, (const uint8_t *)text, length, id, false);
    }
    /* Every mapped character is at least one UTF-8 byte, so length bytes are enough. */
    if (grow((void **)&b->scratch, &b->scratch_capacity, length, 1)) return out_of_memory(b);
    uint8_t *bytes = (uint8_t *)b->scratch;
    const long n = utf8_to_bytes(text, length, bytes, length);
    if (n < 0)
        return pm_fail(PM_ERR_ARG, "%s: token '%s' (id %lld) is not a byte-level BPE string: a character is not one "
                       "of GPT-2's 256 byte characters", b->file, bpe_excerpt(text, length, ex), (long long)id);
    if (n > TOKENIZER_MAX_TOKEN_BYTES)
        return pm_fail(PM_ERR_ARG, "%s: token '%s' (id %lld) is longer than %d bytes", b->file,
                       bpe_excerpt(text, length, ex), (long long)id, TOKENIZER_MAX_TOKEN_BYTES);
    return append_entry(b, text, length, bytes, (size_t)n, id, false);
}

/* Whether entries x and y are one added token listed twice: under its raw text in
 * added_tokens and under its byte-mapped spelling in the vocabulary, with the same id. */
static bool same_added_token(const bpe_builder *b, const entry *x, const entry *y) {
    return x->added != y->added && x->byte_length == y->byte_length &&
           memcmp(b->arena + x->bytes, b->arena + y->bytes, x->byte_length) == 0;
}

int bpe_builder_end_vocab(bpe_builder *b) {
    char ex[48], ex2[48];
    if (b->count == 0) return pm_fail(PM_ERR_ARG, "%s: the vocabulary is empty", b->file);
    b->entry_of_id = malloc(b->count * sizeof *b->entry_of_id);
    if (!b->entry_of_id) return out_of_memory(b);
    memset(b->entry_of_id, 0xFF, b->count * sizeof *b->entry_of_id);
    size_t tokens = b->count;
    for (size_t i = 0; i < b->count; i++) {
        const entry *e = &b->entries[i];
        const char *key = b->arena + e->key;
        if ((size_t)e->id >= b->count)
            return pm_fail(PM_ERR_ARG, "%s: token '%s' has id %d, outside 0..%zu (the file has %zu tokens; ids must "
                           "be unique and run 0..%zu)", b->file, bpe_excerpt(key, e->key_length, ex), e->id,
                           b->count - 1, b->count, b->count - 1);
        const int32_t other = b->entry_of_id[e->id];
        if (other >= 0 && same_added_token(b, e, &b->entries[other])) {
            if (e->added) b->entry_of_id[e->id] = (int32_t)i; /* the added entry stands for both */
            tokens--;
            continue;
        }
        if (other >= 0) {
            const entry *o = &b->entries[other];
            if (o->added != e->added) { /* one of them is an added token's content */
                const entry *added = o->added ? o : e, *vocab = o->added ? e : o;
                return pm_fail(PM_ERR_ARG, "%s: duplicate id %d: the added token with content '%s' and the vocabulary's "
                               "token '%s' both have it", b->file, e->id,
                               bpe_excerpt(b->arena + added->key, added->key_length, ex2),
                               bpe_excerpt(b->arena + vocab->key, vocab->key_length, ex));
            }
            return pm_fail(PM_ERR_ARG, "%s: duplicate id %d: tokens '%s' and '%s' both have it", b->file, e->id,
                           bpe_excerpt(b->arena + o->key, o->key_length, ex2), bpe_excerpt(key, e->key_length, ex));
        }
        b->entry_of_id[e->id] = (int32_t)i;
    }
    /* Unique ids below `tokens` are exactly 0..tokens-1: an id past that leaves a gap. */
    for (size_t id = tokens; id < b->count; id++)
        if (b->entry_of_id[id] >= 0) {
            const entry *e = &b->entries[b->entry_of_id[id]];
            return pm_fail(PM_ERR_ARG, "%s: token '%s' has id %d, outside 0..%zu (the file has %zu tokens; ids must "
                           "be unique and run 0..%zu)", b->file, bpe_excerpt(b->arena + e->key, e->key_length, ex),
                           e->id, tokens - 1, tokens, tokens - 1);
        }
    b->token_count = tokens;
    return PM_OK;
}

int bpe_builder_add_merge(bpe_builder *b, const char *left, size_t left_length, const char *right,
                          size_t right_length, const char *where) {
    char ex[48], ex2[48], ex3[48];
    const int32_t l = find_key(b, left, left_length, NULL), r = find_key(b, right, right_length, NULL);
    const char *missing = l < 0 ? left : r < 0 ? right : NULL;
    if (missing)
        return pm_fail(PM_ERR_ARG, "%s: merge '%s %s' (%s): '%s' is not in the vocabulary", b->file,
                       bpe_excerpt(left, left_length, ex), bpe_excerpt(right, right_length, ex2), where,
                       missing == left ? ex : ex2);
    if (grow((void **)&b->scratch, &b->scratch_capacity, left_length + right_length, 1)) return out_of_memory(b);
    memcpy(b->scratch, left, left_length);
    memcpy(b->scratch + left_length, right, right_length);
    const int32_t joined = find_key(b, b->scratch, left_length + right_length, NULL);
    if (joined < 0)
        return pm_fail(PM_ERR_ARG, "%s: merge '%s %s' (%s): the merged token '%s' is not in the vocabulary", b->file,
                       bpe_excerpt(left, left_length, ex), bpe_excerpt(right, right_length, ex2), where,
                       bpe_excerpt(b->scratch, left_length + right_length, ex3));
    if (grow((void **)&b->merges, &b->merge_capacity, b->merge_count + 1, sizeof *b->merges))
        return out_of_memory(b);
    b->merges[b->merge_count++] = (merge){b->entries[l].id, b->entries[r].id, b->entries[joined].id};
    return PM_OK;
}

int32_t bpe_builder_added_id(const bpe_builder *b, const char *content) {
    const int32_t e = find_key(b, content, strlen(content), NULL);
    return e >= 0 && b->entries[e].added ? b->entries[e].id : -1;
}

int32_t bpe_builder_token_id(const bpe_builder *b, const char *text, size_t length) {
    const int32_t e = find_key(b, text, length, NULL);
    return e >= 0 ? b->entries[e].id : -1;
}

void bpe_model_free(bpe_model *m) {
    if (!m) return;
    free(m->offset);
    free(m->bytes);
    free(m->pairs);
    free(m->char_token);
    free(m->whole.slots);
    free(m);
}

int32_t bpe_whole_token(const bpe_model *m, const uint8_t *text, size_t length) {
    size_t s = (size_t)fnv1a(FNV_OFFSET, text, length) & m->whole.mask;
    for (; m->whole.slots[s] >= 0; s = (s + 1) & m->whole.mask) {
        size_t n;
        const uint8_t *bytes = bpe_token_bytes(m, m->whole.slots[s], &n);
        if (n == length && memcmp(bytes, text, length) == 0) return m->whole.slots[s];
    }
    return -1;
}

static size_t power_of_two_at_least(size_t n) {
    size_t p = 16;
    while (p < n) p *= 2;
    return p;
}

/* Token bytes in id order and the single-byte tokens. */
static int build_tokens(const bpe_builder *b, bpe_model *m) {
    m->count = (int32_t)b->token_count;
    m->offset = malloc((b->token_count + 1) * sizeof *m->offset);
    m->bytes = malloc(b->arena_length + 1);
    if (!m->offset || !m->bytes) return out_of_memory(b);
    for (int i = 0; i < 256; i++) m->byte_token[i] = -1;
    uint32_t at = 0;
    for (int32_t id = 0; id < m->count; id++) {
        const entry *e = &b->entries[b->entry_of_id[id]];
        m->offset[id] = at;
        memcpy(m->bytes + at, b->arena + e->bytes, e->byte_length);
        if (!e->added && e->byte_length == 1) m->byte_token[m->bytes[at]] = id;
        at += e->byte_length;
    }
    m->offset[m->count] = at;
    return PM_OK;
}

static int build_pairs(const bpe_builder *b, bpe_model *m) {
    const size_t slots = power_of_two_at_least(2 * b->merge_count);
    m->pairs = malloc(slots * sizeof *m->pairs);
    if (!m->pairs) return out_of_memory(b);
    for (size_t i = 0; i < slots; i++) m->pairs[i] = (bpe_pair){BPE_NO_PAIR, BPE_NO_RANK, -1};
    m->pair_mask = (uint32_t)(slots - 1);
    m->merge_count = (int32_t)b->merge_count;
    for (size_t i = 0; i < b->merge_count; i++) {
        const merge *g = &b->merges[i];
        const uint64_t key = (uint64_t)(uint32_t)g->left << 32 | (uint32_t)g->right;
        uint32_t s = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & m->pair_mask;
        while (m->pairs[s].key != BPE_NO_PAIR && m->pairs[s].key != key) s = (s + 1) & m->pair_mask;
        /* A repeated pair keeps its last rank, as GPT-2's dict and Hugging Face's map do. */
        m->pairs[s] = (bpe_pair){key, (int32_t)i, g->merged};
    }
    return PM_OK;
}

static int build_whole(const bpe_builder *b, bpe_model *m) {
    const size_t slots = power_of_two_at_least(2 * b->token_count);
    m->whole.slots = malloc(slots * sizeof *m->whole.slots);
    if (!m->whole.slots) return out_of_memory(b);
    memset(m->whole.slots, 0xFF, slots * sizeof *m->whole.slots);
    m->whole.mask = (uint32_t)(slots - 1);
    for (int32_t id = 0; id < m->count; id++) {
        if (b->entries[b->entry_of_id[id]].added) continue;
        size_t n;
        const uint8_t *bytes = bpe_token_bytes(m, id, &n);
        size_t s = (size_t)fnv1a(FNV_OFFSET, bytes, n) & m->whole.mask;
        while (m->whole.slots[s] >= 0) s = (s + 1) & m->whole.mask;
        m->whole.slots[s] = id;
    }
    return PM_OK;
}

/* FNV-1a over what decides the encoding: each token's bytes and whether it is split out
 * literally, then the merges in rank order. File format and token spelling do not enter. */
static uint64_t model_hash(const bpe_builder *b, const bpe_model *m) {
    uint64_t h = FNV_OFFSET;
    const uint32_t header[2] = {(uint32_t)m->count, (uint32_t)b->merge_count};
    h = fnv1a(h, header, sizeof header);
    for (int32_t id = 0; id < m->count; id++) {
        size_t n;
        const uint8_t *bytes = bpe_token_bytes(m, id, &n);
        const uint32_t length = (uint32_t)n;
        const uint8_t added = b->entries[b->entry_of_id[id]].added;
        h = fnv1a(h, &length, sizeof length);
        h = fnv1a(h, bytes, n);
        h = fnv1a(h, &added, 1);
    }
    for (size_t i = 0; i < b->merge_count; i++) {
        const int32_t pair[2] = {b->merges[i].left, b->merges[i].right};
        h = fnv1a(h, pair, sizeof pair);
    }
    if (!b->byte_level) { /* the same bytes, encoded another way */
        h = fnv1a(h, "text tokens", 11);
        h = fnv1a(h, m->byte_fallback, sizeof m->byte_fallback);
        h = fnv1a(h, &m->unk, sizeof m->unk);
        h = fnv1a(h, &m->fuse_unk, sizeof m->fuse_unk);
    }
    return h;
}

/* SentencePiece-style: the token of each single character (BMP in a table, the rest through
 * the string map), the byte-fallback tokens and the unknown token. */
static int build_characters(const bpe_builder *b, const bpe_options *o, bpe_model *m) {
    m->char_token = malloc(0x10000 * sizeof *m->char_token);
    if (!m->char_token) return out_of_memory(b);
    memset(m->char_token, 0xFF, 0x10000 * sizeof *m->char_token);
    for (int32_t id = 0; id < m->count; id++) {
        if (b->entries[b->entry_of_id[id]].added) continue;
        size_t n;
        const uint8_t *s = bpe_token_bytes(m, id, &n);
        uint32_t cp = 0x10000;
        if (n == 1) cp = s[0];
        else if (n == 2 && s[0] >= 0xC0) cp = (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
        else if (n == 3 && s[0] >= 0xE0) cp = (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
        if (cp < 0x10000) m->char_token[cp] = id;
    }
    if (o->byte_fallback)
        for (int byte = 0; byte < 256; byte++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", byte);
            m->byte_fallback[byte] = bpe_builder_token_id(b, name, 6);
        }
    if (o->unk_token) {
        m->unk = bpe_builder_token_id(b, o->unk_token, strlen(o->unk_token));
        if (m->unk < 0) {
            char ex[48];
            return pm_fail(PM_ERR_ARG, "%s: the unknown token '%s' (model.unk_token) is not in the vocabulary", b->file,
                           bpe_excerpt(o->unk_token, strlen(o->unk_token), ex));
        }
    }
    m->fuse_unk = o->fuse_unk;
    m->cut_before_meta = true;
    for (int32_t id = 0; id < m->count && m->cut_before_meta; id++) {
        size_t n;
        const uint8_t *s = bpe_token_bytes(m, id, &n);
        for (size_t i = 1; i + 3 <= n && m->cut_before_meta; i++)
            if (memcmp(s + i, BPE_META, 3) == 0 && (i < 3 || memcmp(s + i - 3, BPE_META, 3) != 0)) m->cut_before_meta = false;
    }
    return PM_OK;
}

int bpe_builder_finish(bpe_builder *b, const bpe_options *options, bpe_model **out) {
    *out = NULL;
    if (!b->entry_of_id) return pm_fail(PM_ERR_STATE, "bpe: the vocabulary of %s was not ended", b->file);
    bpe_model *m = calloc(1, sizeof *m);
    if (!m) return out_of_memory(b);
    m->byte_level = b->byte_level;
    m->unk = -1;
    for (int i = 0; i < 256; i++) m->byte_fallback[i] = -1;
    int status = build_tokens(b, m);
    if (!status) status = build_pairs(b, m);
    if (!status && (options->ignore_merges || !b->byte_level)) status = build_whole(b, m);
    if (!status && !b->byte_level) status = build_characters(b, options, m);
    if (status) {
        bpe_model_free(m);
        return status;
    }
    m->ignore_merges = options->ignore_merges;
    m->eos = -1;
    m->hash = model_hash(b, m);
    *out = m;
    return PM_OK;
}
