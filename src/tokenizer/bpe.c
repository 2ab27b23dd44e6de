/*
 * The byte-level BPE tokenizer: tokenizer_load and the encoder. Encoding splits out added
 * tokens written literally (leftmost, then longest), pre-tokenizes the text between them with
 * GPT-2's regex, and merges each piece's bytes by rank. Natural text repeats its pieces, so a
 * small cache of piece -> tokens answers most of them without merging.
 *
 * Thread safety: the model is read-only; everything mutable (the PCRE2 matcher, the cache,
 * scratch arrays) lives in a worker, and each encode call borrows a worker from a pool. The
 * pool grows to the number of threads that ever encode at once, so steady-state calls
 * allocate nothing.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/utf8.h"
#include "tokenizer/bpe_internal.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

/* A direct-mapped cache: 16k entries of 60 bytes, about 1 MB per worker. Pieces up to 22
 * bytes (nearly all words) are cached; the slot is simply overwritten on a collision. */
enum { CACHE_SLOTS = 1 << 14, CACHE_PIECE_MAX = 22, CACHE_TOKENS_MAX = 8 };
/* Merging a piece takes about 40 bytes of scratch per byte; a worker keeps it between calls
 * only for pieces up to this many bytes. */
enum { KEEP_SCRATCH_MAX = 1 << 16 };

typedef struct {
    uint32_t check; /* high bits of the piece's hash, to skip most mismatches cheaply */
    uint8_t length; /* 0: empty slot (pieces are never empty) */
    uint8_t count;
    char piece[CACHE_PIECE_MAX];
    int32_t ids[CACHE_TOKENS_MAX];
} cache_entry;

typedef struct worker {
    struct worker *next_idle;
    pretokenizer *pre;
    cache_entry *cache;
    int32_t *ids; /* the current piece's symbols */
    size_t ids_capacity;
    bpe_scratch scratch;
} worker;

typedef struct {
    tokenizer base;
    bpe_model *model;
    pthread_mutex_t lock; /* guards idle */
    worker *idle;
} bpe_tokenizer;

static void worker_free(worker *w) {
    if (!w) return;
    pretokenizer_free(w->pre);
    free(w->cache);
    free(w->ids);
    bpe_scratch_free(&w->scratch);
    free(w);
}

static int worker_create(worker **out) {
    worker *w = calloc(1, sizeof *w);
    if (w) w->cache = calloc(CACHE_SLOTS, sizeof *w->cache);
    if (!w || !w->cache) {
        worker_free(w);
        return pm_fail(PM_ERR_NOMEM, "bpe: out of memory for an encoder");
    }
    const int status = pretokenizer_create(&w->pre);
    if (status) {
        worker_free(w);
        return status;
    }
    *out = w;
    return PM_OK;
}

static int acquire(bpe_tokenizer *t, worker **out) {
    pthread_mutex_lock(&t->lock);
    worker *w = t->idle;
    if (w) t->idle = w->next_idle;
    pthread_mutex_unlock(&t->lock);
    if (w) {
        *out = w;
        return PM_OK;
    }
    return worker_create(out);
}

static void release(bpe_tokenizer *t, worker *w) {
    pthread_mutex_lock(&t->lock);
    w->next_idle = t->idle;
    t->idle = w;
    pthread_mutex_unlock(&t->lock);
}

typedef struct {
    const bpe_model *model;
    worker *w;
    const char *text; /* the whole text, for offsets in messages */
    int32_t *tokens;
    size_t capacity, count;
} encode_state;

static inline void emit(encode_state *s, int32_t id) {
    if (s->count < s->capacity) s->tokens[s->count] = id;
    s->count++;
}

static inline uint64_t piece_hash(const uint8_t *p, size_t length) {
    uint64_t h = 0xCBF29CE484222325ull; /* FNV-1a: pieces are a few bytes, so bytewise is fine */
    for (size_t i = 0; i < length; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

static int missing_byte(const encode_state *s, const uint8_t *at) {
    return pm_fail(PM_ERR_ARG, "encode: the vocabulary has no token for byte 0x%02X (at byte %zu of the text)", *at,
                   (size_t)((const char *)at - s->text));
}

/* Merges one piece from its bytes and emits its tokens; caches short results. */
static int merge_piece(encode_state *s, const uint8_t *p, size_t length, cache_entry *slot, uint32_t check) {
    const bpe_model *m = s->model;
    worker *w = s->w;
    if (length > INT32_MAX) /* symbol positions are int32 */
        return pm_fail(PM_ERR_ARG, "encode: a piece of %zu bytes without a break is too long", length);
    if (length > w->ids_capacity) {
        int32_t *grown = realloc(w->ids, length * sizeof *grown);
        if (!grown) return pm_fail(PM_ERR_NOMEM, "encode: out of memory for a piece of %zu bytes", length);
        w->ids = grown;
        w->ids_capacity = length;
    }
    const int status = bpe_scratch_reserve(&w->scratch, length);
    if (status) return status;
    int32_t *ids = w->ids;
    for (size_t i = 0; i < length; i++) {
        ids[i] = m->byte_token[p[i]];
        if (ids[i] < 0) return missing_byte(s, p + i);
    }
    const size_t n = length <= BPE_SCAN_MAX ? bpe_merge_scan(m, ids, length, &w->scratch)
                                            : bpe_merge_heap(m, ids, length, &w->scratch);
    for (size_t i = 0; i < n; i++) emit(s, ids[i]);
    if (slot && n <= CACHE_TOKENS_MAX) {
        slot->check = check;
        slot->length = (uint8_t)length;
        slot->count = (uint8_t)n;
        memcpy(slot->piece, p, length);
        memcpy(slot->ids, ids, n * sizeof *ids);
    }
    return PM_OK;
}

/* pretokenize's callback: one piece of the text. */
static int encode_piece(void *user, const char *start, size_t length) {
    encode_state *s = user;
    const bpe_model *m = s->model;
    const uint8_t *p = (const uint8_t *)start;
    if (length == 1) {
        const int32_t id = m->byte_token[p[0]];
        if (id < 0) return missing_byte(s, p);
        emit(s, id);
        return PM_OK;
    }
    if (m->ignore_merges) {
        const int32_t id = bpe_whole_token(m, p, length);
        if (id >= 0) {
            emit(s, id);
            return PM_OK;
        }
    }
    if (length > CACHE_PIECE_MAX) return merge_piece(s, p, length, NULL, 0);
    const uint64_t h = piece_hash(p, length);
    cache_entry *slot = &s->w->cache[h & (CACHE_SLOTS - 1)];
    const uint32_t check = (uint32_t)(h >> 32);
    if (slot->check == check && slot->length == length && memcmp(slot->piece, p, length) == 0) {
        for (int i = 0; i < slot->count; i++) emit(s, slot->ids[i]);
        return PM_OK;
    }
    return merge_piece(s, p, length, slot, check);
}

/* The first added token in text[from..length): its offset (length if none) and *found. */
static size_t find_added(const bpe_model *m, const uint8_t *text, size_t from, size_t length,
                         const bpe_added **found) {
    for (size_t i = from; i < length; i++) {
        if (!m->added_first_byte[text[i]]) continue;
        for (int32_t k = 0; k < m->added_count; k++) { /* longest first */
            const bpe_added *a = &m->added[k];
            if (a->length <= length - i && a->bytes[0] == text[i] && memcmp(a->bytes, text + i, a->length) == 0) {
                *found = a;
                return i;
            }
        }
    }
    return length;
}

static int64_t encode_bpe(const tokenizer *self, const char *text, size_t length, int32_t *tokens,
                          size_t capacity) {
    bpe_tokenizer *t = self->impl;
    if ((!text && length) || (!tokens && capacity))
        return pm_fail(PM_ERR_ARG, "encode: text or tokens is NULL with a non-zero length or capacity");
    const size_t bad = utf8_invalid_at((const unsigned char *)text, length);
    if (bad < length)
        return pm_fail(PM_ERR_ARG, "encode: the text is not valid UTF-8 at byte %zu; convert it to UTF-8 first", bad);
    worker *w = NULL;
    int status = acquire(t, &w);
    if (status) return status;
    encode_state s = {t->model, w, text, tokens, capacity, 0};
    const bpe_model *m = t->model;
    for (size_t at = 0; at < length && !status;) {
        const bpe_added *added = NULL;
        size_t next = m->added_count ? find_added(m, (const uint8_t *)text, at, length, &added) : length;
        if (next > at) status = pretokenize(w->pre, text + at, next - at, encode_piece, &s);
        if (added && !status) {
            emit(&s, added->id);
            next += added->length;
        }
        at = next;
    }
    if (w->ids_capacity > KEEP_SCRATCH_MAX) { /* a huge piece's scratch is not worth keeping */
        bpe_scratch_free(&w->scratch);
        free(w->ids);
        w->ids = NULL;
        w->ids_capacity = 0;
    }
    release(t, w);
    return status ? status : (int64_t)s.count;
}

static size_t decode_bpe(const tokenizer *self, int32_t token, char *out, size_t capacity) {
    const bpe_model *m = ((const bpe_tokenizer *)self->impl)->model;
    if (token < 0 || token >= m->count) return 0;
    size_t n;
    const uint8_t *bytes = bpe_token_bytes(m, token, &n);
    if (n > capacity) return 0;
    memcpy(out, bytes, n);
    return n;
}

static void destroy_bpe(tokenizer *self) {
    bpe_tokenizer *t = self->impl;
    while (t->idle) {
        worker *w = t->idle;
        t->idle = w->next_idle;
        worker_free(w);
    }
    pthread_mutex_destroy(&t->lock);
    bpe_model_free(t->model);
    free(t);
}

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Loads the model from a file or a directory (tokenizer.json first, then GPT-2's pair). */
static int load_model(const char *path, bpe_model **model) {
    struct stat st;
    if (stat(path, &st) != 0) return pm_fail(PM_ERR_ARG, "cannot open %s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return bpe_load_tokenizer_json(path, model);
    const size_t n = strlen(path);
    char *json = malloc(n + 16), *encoder = malloc(n + 16), *merges = malloc(n + 16);
    int status;
    if (!json || !encoder || !merges) {
        status = pm_fail(PM_ERR_NOMEM, "out of memory loading %s", path);
    } else {
        snprintf(json, n + 16, "%s/tokenizer.json", path);
        snprintf(encoder, n + 16, "%s/encoder.json", path);
        snprintf(merges, n + 16, "%s/vocab.bpe", path);
        if (is_file(json))
            status = bpe_load_tokenizer_json(json, model);
        else if (is_file(encoder) && is_file(merges))
            status = bpe_load_gpt2(encoder, merges, model);
        else
            status = pm_fail(PM_ERR_ARG, "%s: the directory holds neither tokenizer.json nor GPT-2's encoder.json "
                             "and vocab.bpe", path);
    }
    free(json);
    free(encoder);
    free(merges);
    return status;
}

int tokenizer_load(const char *path, tokenizer **out) {
    if (!out) return pm_fail(PM_ERR_ARG, "tokenizer_load: out is NULL");
    *out = NULL;
    if (!path) return pm_fail(PM_ERR_ARG, "tokenizer_load: path is NULL");
    bpe_model *model;
    int status = load_model(path, &model);
    if (status) return status;
    bpe_tokenizer *t = calloc(1, sizeof *t);
    if (!t || pthread_mutex_init(&t->lock, NULL) != 0) {
        free(t);
        bpe_model_free(model);
        return pm_fail(PM_ERR_NOMEM, "out of memory loading %s", path);
    }
    t->model = model;
    t->base = (tokenizer){"bpe", model->count, model->eos, model->hash, encode_bpe, decode_bpe, destroy_bpe, t};
    *out = &t->base;
    return PM_OK;
}
