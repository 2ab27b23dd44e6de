/*
 * BPE internals shared by the loaders (tokenizer.json, encoder.json + vocab.bpe), the merge
 * loop and the encoder. A loader feeds a bpe_builder (added tokens, then the vocabulary, then
 * merges in rank order); the builder validates every entry and produces an immutable bpe_model
 * that any number of threads may read at once. Two kinds of vocabulary: byte-level (GPT-2's
 * byte alphabet; a piece starts as its bytes) and SentencePiece-style (tokens are text; a
 * piece starts as its characters, and a character outside the vocabulary becomes its
 * byte-fallback tokens <0xNN> or the unknown token).
 */
#ifndef PM_TOKENIZER_BPE_INTERNAL_H
#define PM_TOKENIZER_BPE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

/* One merge rule as stored: the pair (left, right) becomes merged; lower rank merges first. */
typedef struct {
    uint64_t key; /* left << 32 | right; BPE_NO_PAIR marks an empty slot */
    int32_t rank;
    int32_t merged;
} bpe_pair;

#define BPE_NO_PAIR UINT64_MAX
#define BPE_META "\xE2\x96\x81" /* U+2581, SentencePiece's space */
#define BPE_NO_RANK INT32_MAX

/* An open-addressing map from a byte string to a token id (used for ignore_merges). */
typedef struct {
    int32_t *slots; /* token ids, -1 for empty */
    uint32_t mask;
} bpe_string_map;

typedef struct bpe_model {
    int32_t count;    /* tokens, ids 0..count-1 */
    uint32_t *offset; /* token i's bytes are bytes[offset[i] .. offset[i+1]) */
    uint8_t *bytes;
    int32_t byte_token[256]; /* the single-byte token of each byte, -1 if the vocabulary lacks it */
    bpe_pair *pairs;         /* hash table of merges, pair_mask + 1 slots */
    uint32_t pair_mask;
    int32_t merge_count;
    bool ignore_merges;         /* HF option: a piece that is a whole token is emitted as is */
    bpe_string_map whole;       /* token string -> id, for ignore_merges and characters */
    bool byte_level;            /* token bytes are raw bytes; otherwise the vocabulary's text */
    int32_t *char_token;        /* SentencePiece-style: the token of each BMP character, or -1 */
    int32_t byte_fallback[256]; /* the token <0xNN> of each byte, or -1 (no byte fallback) */
    int32_t unk;                /* the unknown token, or -1 */
    bool fuse_unk;              /* consecutive unknown characters give one unknown token */
    /* No token has SentencePiece's meta symbol U+2581 right after another character, so no
     * merge crosses the start of a run of them: a piece may be cut there, into words that
     * repeat (and are cached), without changing the result. */
    bool cut_before_meta;
    int32_t eos;
    uint64_t hash;
} bpe_model;

/* Token id's bytes and length. */
static inline const uint8_t *bpe_token_bytes(const bpe_model *m, int32_t id, size_t *length) {
    *length = m->offset[id + 1] - m->offset[id];
    return m->bytes + m->offset[id];
}

/* Looks up the merge of (left, right): its rank (BPE_NO_RANK if none) and merged token. */
static inline int32_t bpe_pair_rank(const bpe_model *m, int32_t left, int32_t right, int32_t *merged) {
    const uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    /* Fibonacci hashing spreads the structured (left, right) keys over the table. */
    uint32_t slot = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & m->pair_mask;
    for (;;) {
        const bpe_pair *p = &m->pairs[slot];
        if (p->key == key) {
            *merged = p->merged;
            return p->rank;
        }
        if (p->key == BPE_NO_PAIR) return BPE_NO_RANK;
        slot = (slot + 1) & m->pair_mask;
    }
}

/* The id of the token whose bytes are exactly text[0..length), or -1 (needs m->whole). */
int32_t bpe_whole_token(const bpe_model *m, const uint8_t *text, size_t length);

void bpe_model_free(bpe_model *m);

/* ------------------------------------------------------------------ building */

typedef struct bpe_builder bpe_builder;

/* file names the source in every error message; byte_level: vocabulary strings are in GPT-2's
 * byte alphabet (else taken as text). NULL when out of memory (error set). */
bpe_builder *bpe_builder_create(const char *file, bool byte_level);
void bpe_builder_free(bpe_builder *b);
/* Changes the file later messages name (GPT-2 keeps the merges in a second file). */
int bpe_builder_rename(bpe_builder *b, const char *file);
/* An added token: content is its literal text (raw UTF-8, not byte-mapped). Add these first.
 * Special or not, an added token is split out of the text literally, as Hugging Face does. */
int bpe_builder_add_added(bpe_builder *b, const char *content, size_t length, int64_t id);
/* A vocabulary entry: text is the byte-mapped string as written in the file. */
int bpe_builder_add_token(bpe_builder *b, const char *text, size_t length, int64_t id);
/* Ends the vocabulary: checks that ids are unique and run 0..count-1. */
int bpe_builder_end_vocab(bpe_builder *b);
/* The next merge (rank = the number added before it); where says e.g. "line 7" for messages. */
int bpe_builder_add_merge(bpe_builder *b, const char *left, size_t left_length, const char *right,
                          size_t right_length, const char *where);
/* The model's options beyond its tokens and merges (tokenizer.json's "model"). */
typedef struct {
    bool ignore_merges;
    bool byte_fallback; /* SentencePiece-style only */
    const char *unk_token; /* NULL for none */
    bool fuse_unk;
} bpe_options;
/* Finishes the model (free the builder after); its eos is -1 until the loader sets it. */
int bpe_builder_finish(bpe_builder *b, const bpe_options *options, bpe_model **out);
/* The id of an added token with this content, or -1 (to choose eos_token). */
int32_t bpe_builder_added_id(const bpe_builder *b, const char *content);
/* The id of the token (added or in the vocabulary) written `text` in the file, or -1. */
int32_t bpe_builder_token_id(const bpe_builder *b, const char *text, size_t length);

/* Loaders: they fill a builder and finish it, and set up the stages around the model. */
struct normalizer;
struct pre_tokenizer;
struct added_tokens;
struct decoder;
typedef struct {
    bpe_model *model;
    struct normalizer *normalizer;     /* NULL: none */
    struct pre_tokenizer *pre;         /* NULL: a stretch is one piece */
    struct added_tokens *added;        /* never NULL once loaded */
    struct decoder *decoder;           /* NULL: tokens decode to their bytes */
} bpe_pipeline;
void bpe_pipeline_free(bpe_pipeline *p);
/* Appended to the message when a tokenizer file was read but its contents are refused. */
#define BPE_FILE_ADVICE "use the tokenizer files the model was trained with, or train one with `probmoe tokenizer train`"
int bpe_load_tokenizer_json(const char *file, bpe_pipeline *out);
int bpe_load_gpt2(const char *encoder_json, const char *vocab_bpe, bpe_pipeline *out);
/* The GPT-2 file loader's model alone (tests of the merge loops). */
int bpe_load_gpt2_model(const char *encoder_json, const char *vocab_bpe, bpe_model **out);
/* An id read as a JSON number: the integer, or -1 if it is negative, fractional or too big. */
static inline int64_t bpe_id_of_number(double v) {
    return v >= 0 && v < 2147483647.0 && (double)(int64_t)v == v ? (int64_t)v : -1;
}
/* Parses JSON text (a cJSON *, as void * to keep cJSON out of this header); error names the
 * file and the byte offset where parsing stopped. */
int bpe_parse_json(const char *file, const char *text, size_t length, void **root);
/* Reads a whole file (NUL-terminated for convenience); error names the file. */
int bpe_read_file(const char *path, char **text, size_t *length);
/* Copies up to 40 bytes of a token into out (for messages), marking truncation with "...". */
const char *bpe_excerpt(const char *text, size_t length, char out[48]);

/* ------------------------------------------------------------------ merging */

/* SentencePiece-style symbols of a piece (valid UTF-8) into ids (room for length): one per
 * character, a character outside the vocabulary as its byte-fallback tokens, else the
 * unknown token (consecutive ones fused if fuse_unk). The count, or a negative pm_status
 * when a character has no token at all. */
int64_t bpe_character_symbols(const bpe_model *m, const uint8_t *p, size_t length, int32_t *ids);

/* Scratch space for merging one piece; grows to the longest piece seen. */
typedef struct {
    size_t capacity;
    int32_t *rank, *merged, *next, *prev;
    struct bpe_heap_entry *heap;
} bpe_scratch;

/* Pieces longer than this use the heap; shorter ones the quadratic scan, which is faster. */
enum { BPE_SCAN_MAX = 64 };

/* Applies the merges to the symbols ids[0..n) in rank order (leftmost first among equal
 * ranks, as GPT-2 and Hugging Face do), in place; returns the new count. */
size_t bpe_merge_scan(const bpe_model *m, int32_t *ids, size_t n, bpe_scratch *s);
size_t bpe_merge_heap(const bpe_model *m, int32_t *ids, size_t n, bpe_scratch *s);
/* 0 or PM_ERR_NOMEM: makes room for a piece of n symbols. */
int bpe_scratch_reserve(bpe_scratch *s, size_t n);
void bpe_scratch_free(bpe_scratch *s);

#endif
