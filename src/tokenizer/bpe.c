/*
 * The BPE tokenizer: tokenizer_load and the encoder. Encoding follows Hugging Face's pipeline:
 * added tokens with normalized false are cut out of the raw text; each stretch between them is
 * normalized, the normalized added tokens are cut out of it, the rest is pre-tokenized into
 * pieces, and each piece's symbols (bytes, or characters with byte fallback) are merged by
 * rank. Natural text repeats its pieces, so a small cache of piece -> tokens answers most of
 * them without merging.
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
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_internal.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"
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
    pre_tokenizer_state *pre;
    text_buffer normalized;
    normalizer_scratch normalizer_scratch;
    cache_entry *cache;
    int32_t *ids; /* the current piece's symbols */
    size_t ids_capacity;
    bpe_scratch scratch;
} worker;

typedef struct {
    tokenizer base;
    bpe_pipeline pipeline;
    bpe_model *model; /* pipeline.model */
    pthread_mutex_t lock; /* guards idle */
    worker *idle;
} bpe_tokenizer;

static void worker_free(worker *w) {
    if (!w) return;
    pre_tokenizer_state_free(w->pre);
    text_buffer_free(&w->normalized);
    normalizer_scratch_free(&w->normalizer_scratch);
    free(w->cache);
    free(w->ids);
    bpe_scratch_free(&w->scratch);
    free(w);
}

static int worker_create(const bpe_tokenizer *t, worker **out) {
    worker *w = calloc(1, sizeof *w);
    if (w) w->cache = calloc(CACHE_SLOTS, sizeof *w->cache);
    if (!w || !w->cache) {
        worker_free(w);
        return pm_fail(PM_ERR_NOMEM, "bpe: out of memory for an encoder");
    }
    const int status = pre_tokenizer_state_create(t->pipeline.pre, &w->pre);
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
    return worker_create(t, out);
}

static void release(bpe_tokenizer *t, worker *w) {
    pthread_mutex_lock(&t->lock);
    w->next_idle = t->idle;
    t->idle = w;
    pthread_mutex_unlock(&t->lock);
}

typedef struct {
    const bpe_model *model;
    const bpe_pipeline *pipeline;
    worker *w;
    const char *text; /* the whole text, for offsets in messages */
    size_t length;
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
    const char *byte = (const char *)at;
    if (byte >= s->text && byte < s->text + s->length) /* not in a normalized copy */
        return pm_fail(PM_ERR_ARG, "encode: the vocabulary has no token for byte 0x%02X (at byte %zu of the text)", *at,
                       (size_t)(byte - s->text));
    return pm_fail(PM_ERR_ARG, "encode: the vocabulary has no token for byte 0x%02X (in the normalized text)", *at);
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
    size_t symbols = length;
    if (m->byte_level) {
        for (size_t i = 0; i < length; i++) {
            ids[i] = m->byte_token[p[i]];
            if (ids[i] < 0) return missing_byte(s, p + i);
        }
    } else {
        const int64_t count = bpe_character_symbols(m, p, length, ids);
        if (count < 0) return (int)count;
        symbols = (size_t)count;
    }
    const size_t n = symbols <= BPE_SCAN_MAX ? bpe_merge_scan(m, ids, symbols, &w->scratch)
                                             : bpe_merge_heap(m, ids, symbols, &w->scratch);
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

/* One piece, merged as a whole. */
static int encode_word(encode_state *s, const char *start, size_t length) {
    const bpe_model *m = s->model;
    const uint8_t *p = (const uint8_t *)start;
    if (length == 1 && m->byte_level) {
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

/* The pre-tokenizer's callback: one piece of the text, cut before each run of U+2581 where
 * that is exact (cut_before_meta). */
static int encode_piece(void *user, const char *start, size_t length) {
    encode_state *s = user;
    if (!s->model->cut_before_meta || length < 4) return encode_word(s, start, length);
    size_t word = 0;
    for (size_t i = 1; i + 3 <= length; i++) {
        /* E2 only leads a character, so a match is at a character boundary. */
        if (memcmp(start + i, BPE_META, 3) != 0 || (i >= 3 && memcmp(start + i - 3, BPE_META, 3) == 0)) continue;
        const int status = encode_word(s, start + word, i - word);
        if (status) return status;
        word = i;
    }
    return encode_word(s, start + word, length - word);
}

/* A normalized stretch: the normalized added tokens cut out, the rest pre-tokenized. */
static int encode_normalized(encode_state *s, const char *text, size_t length, bool at_start) {
    const bpe_pipeline *p = s->pipeline;
    size_t at = 0;
    while (at < length) {
        added_match m;
        const bool found = added_tokens_next(p->added, true, text, length, at, at, &m);
        const size_t end = found ? m.start : length;
        if (end > at) {
            const int status = pre_tokenize_text(p->pre, s->w->pre, text + at, end - at, at_start && at == 0, encode_piece, s);
            if (status) return status;
        }
        if (!found) break;
        emit(s, m.token->id);
        at = m.end;
    }
    return PM_OK;
}

/* A stretch of the raw text between added tokens. */
static int encode_stretch(encode_state *s, const char *text, size_t length, bool at_start) {
    const bpe_pipeline *p = s->pipeline;
    if (!p->normalizer) return encode_normalized(s, text, length, at_start);
    worker *w = s->w;
    const int status = normalize(p->normalizer, text, length, &w->normalized, &w->normalizer_scratch);
    return status ? status : encode_normalized(s, w->normalized.data, w->normalized.length, at_start);
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
    encode_state s = {t->model, &t->pipeline, w, text, length, tokens, capacity, 0};
    size_t at = 0, taken = 0;
    while (at < length && !status) {
        added_match m;
        const bool found = added_tokens_next(t->pipeline.added, false, text, length, at, taken, &m);
        const size_t end = found ? m.start : length;
        if (end > at) status = encode_stretch(&s, text + at, end - at, at == 0);
        if (!found || status) break;
        emit(&s, m.token->id);
        at = taken = m.end;
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

/* One token's text as it stands inside a sequence (not first). */
static size_t decode_bpe(const tokenizer *self, int32_t token, char *out, size_t capacity) {
    const bpe_tokenizer *t = self->impl;
    const bpe_model *m = t->model;
    if (token < 0 || token >= m->count) return 0;
    size_t n;
    const uint8_t *bytes = bpe_token_bytes(m, token, &n);
    if (t->pipeline.decoder) {
        char buffer[TOKENIZER_MAX_TOKEN_BYTES];
        const size_t length = decoder_token(t->pipeline.decoder, (const char *)bytes, n, false, buffer);
        if (length > capacity) return 0;
        memcpy(out, buffer, length);
        return length;
    }
    if (n > capacity) return 0;
    memcpy(out, bytes, n);
    return n;
}

static int64_t decode_sequence_bpe(const tokenizer *self, const int32_t *tokens, size_t count, char *out,
                                   size_t capacity) {
    const bpe_tokenizer *t = self->impl;
    const bpe_model *m = t->model;
    text_buffer text = {0};
    int status = PM_OK;
    for (size_t i = 0; i < count && !status; i++) {
        if (tokens[i] < 0 || tokens[i] >= m->count) {
            status = pm_fail(PM_ERR_ARG, "decode: id %d is outside the vocabulary (0 to %d)", tokens[i], m->count - 1);
            break;
        }
        size_t n;
        const uint8_t *bytes = bpe_token_bytes(m, tokens[i], &n);
        status = text_buffer_reserve(&text, TOKENIZER_MAX_TOKEN_BYTES);
        if (!status) text.length += decoder_token(t->pipeline.decoder, (const char *)bytes, n, i == 0, text.data + text.length);
    }
    if (!status) decoder_finish(t->pipeline.decoder, &text, 0);
    const int64_t length = status ? status : (int64_t)text.length;
    if (!status && capacity && text.length) memcpy(out, text.data, text.length < capacity ? text.length : capacity);
    text_buffer_free(&text);
    return length;
}

static void destroy_bpe(tokenizer *self) {
    bpe_tokenizer *t = self->impl;
    while (t->idle) {
        worker *w = t->idle;
        t->idle = w->next_idle;
        worker_free(w);
    }
    pthread_mutex_destroy(&t->lock);
    bpe_pipeline_free(&t->pipeline);
    free(t);
}

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Loads the model from a file or a directory (tokenizer.json first, then GPT-2's pair). */
static int load_model(const char *path, bpe_pipeline *model) {
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
    bpe_pipeline pipeline;
    int status = load_model(path, &pipeline);
    if (status) return status;
    bpe_tokenizer *t = calloc(1, sizeof *t);
    if (!t || pthread_mutex_init(&t->lock, NULL) != 0) {
        free(t);
        bpe_pipeline_free(&pipeline);
        return pm_fail(PM_ERR_NOMEM, "out of memory loading %s", path);
    }
    t->pipeline = pipeline;
    const bpe_model *model = t->model = pipeline.model;
    /* Byte-level, no normalizer, no added token that swallows whitespace: every text's tokens
     * concatenate back to it. */
    const bool lossless = model->byte_level && !pipeline.normalizer && !pipeline.decoder &&
                          !added_tokens_strip_whitespace(pipeline.added);
    t->base = (tokenizer){"bpe", model->count, model->eos, model->hash, encode_bpe, decode_bpe, destroy_bpe, t,
                          decode_sequence_bpe, lossless};
    *out = &t->base;
    return PM_OK;
}
