/*
 * safetensors writer. Tensors are laid out back to back in the order added (the tiling the
 * reader requires); the header JSON is generated here rather than by cJSON so that
 * offsets are always printed as exact integers, and it is padded with spaces so the data
 * section starts 8-byte aligned.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bf16.h"
#include "core/error.h"
#include "core/utf8.h"
#include "io/safetensors.h"
#include "io/safetensors_internal.h"

typedef struct {
    char *name;
    st_dtype dtype;
    int rank;
    int64_t shape[ST_MAX_RANK];
    size_t num_bytes;
    const void *data; /* the caller's, or owned */
    void *owned;      /* converted copy (BF16), freed with the writer */
} st_entry;

struct st_writer {
    st_entry *entries;
    int count, capacity;
    size_t data_bytes; /* sum of num_bytes */
    char **meta; /* key, value, key, value, ... */
    int meta_count, meta_capacity;
};

static char *copy_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *out = malloc(n);
    if (out) memcpy(out, s, n);
    return out;
}

static bool valid_utf8(const char *s) {
    size_t n = strlen(s);
    return utf8_invalid_at((const unsigned char *)s, n) == n;
}

st_writer *st_writer_create(void) {
    st_writer *writer = calloc(1, sizeof *writer);
    if (!writer) pm_fail(PM_ERR_NOMEM, "st_writer_create: out of memory");
    return writer;
}

void st_writer_free(st_writer *writer) {
    if (!writer) return;
    for (int i = 0; i < writer->count; i++) {
        free(writer->entries[i].name);
        free(writer->entries[i].owned);
    }
    for (int i = 0; i < 2 * writer->meta_count; i++) free(writer->meta[i]);
    free(writer->entries);
    free(writer->meta);
    free(writer);
}

/* Checks a new tensor's name, dtype and shape; *num_bytes gets its byte count. */
static int check_tensor(const st_writer *writer, const char *fn, const char *name,
                        st_dtype dtype, const int64_t *shape, int rank, const void *data,
                        size_t *num_bytes) {
    if (!writer) return pm_fail(PM_ERR_ARG, "%s: writer is NULL", fn);
    if (!name || !name[0]) return pm_fail(PM_ERR_ARG, "%s: tensor name is NULL or empty", fn);
    if (strcmp(name, "__metadata__") == 0)
        return pm_fail(PM_ERR_ARG, "%s: \"__metadata__\" is reserved, not a tensor name", fn);
    if (!valid_utf8(name))
        return pm_fail(PM_ERR_ARG, "%s: tensor name " ST_NAME_FMT " is not valid UTF-8", fn,
                       name);
    for (int i = 0; i < writer->count; i++)
        if (strcmp(writer->entries[i].name, name) == 0)
            return pm_fail(PM_ERR_ARG, "%s: tensor " ST_NAME_FMT " was already added", fn, name);
    if ((unsigned)dtype >= ST_DTYPE_COUNT)
        return pm_fail(PM_ERR_ARG, "%s: tensor " ST_NAME_FMT ": invalid dtype %d", fn, name,
                       (int)dtype);
    if (rank < 0 || rank > ST_MAX_RANK)
        return pm_fail(PM_ERR_ARG, "%s: tensor " ST_NAME_FMT ": rank %d is outside 0..%d", fn,
                       name, rank, ST_MAX_RANK);
    if (rank > 0 && !shape)
        return pm_fail(PM_ERR_ARG, "%s: tensor " ST_NAME_FMT ": shape is NULL", fn, name);
    bool empty = false;
    for (int i = 0; i < rank; i++) {
        /* The reader accepts dimensions up to 2^53 (exact in JSON); so does the writer. */
        if (shape[i] < 0 || (uint64_t)shape[i] > ST_MAX_JSON_INT)
            return pm_fail(PM_ERR_ARG,
                           "%s: tensor " ST_NAME_FMT ": shape[%d] = %" PRId64 " is out of range",
                           fn, name, i, shape[i]);
        empty = empty || shape[i] == 0;
    }
    size_t bytes = empty ? 0 : st_dtype_size(dtype);
    for (int i = 0; i < rank && !empty; i++) {
        if (bytes > SIZE_MAX / (uint64_t)shape[i])
            return pm_fail(PM_ERR_ARG, "%s: tensor " ST_NAME_FMT ": size overflows", fn, name);
        bytes *= (size_t)shape[i];
    }
    if (bytes > SIZE_MAX - writer->data_bytes || bytes > ST_MAX_JSON_INT - writer->data_bytes)
        return pm_fail(PM_ERR_ARG, "%s: tensor " ST_NAME_FMT ": total size overflows", fn,
                       name);
    if (bytes > 0 && !data)
        return pm_fail(PM_ERR_ARG, "%s: tensor " ST_NAME_FMT ": data is NULL", fn, name);
    *num_bytes = bytes;
    return PM_OK;
}

/* Appends an entry (name copied); on failure nothing changes and owned is not taken. */
static int append_entry(st_writer *writer, const char *fn, const char *name, st_dtype dtype,
                        const int64_t *shape, int rank, const void *data, void *owned,
                        size_t num_bytes) {
    if (writer->count == writer->capacity) {
        int capacity = writer->capacity ? 2 * writer->capacity : 16;
        st_entry *grown = realloc(writer->entries, (size_t)capacity * sizeof *grown);
        if (!grown) return pm_fail(PM_ERR_NOMEM, "%s: out of memory adding " ST_NAME_FMT, fn, name);
        writer->entries = grown;
        writer->capacity = capacity;
    }
    st_entry *e = &writer->entries[writer->count];
    memset(e, 0, sizeof *e);
    e->name = copy_string(name);
    if (!e->name) return pm_fail(PM_ERR_NOMEM, "%s: out of memory adding " ST_NAME_FMT, fn, name);
    e->dtype = dtype;
    e->rank = rank;
    for (int i = 0; i < rank; i++) e->shape[i] = shape[i];
    e->num_bytes = num_bytes;
    e->data = data;
    e->owned = owned;
    writer->count++;
    writer->data_bytes += num_bytes;
    return PM_OK;
}

int st_writer_add(st_writer *writer, const char *name, st_dtype dtype, const int64_t *shape,
                  int rank, const void *data) {
    size_t bytes = 0;
    int rc = check_tensor(writer, "st_writer_add", name, dtype, shape, rank, data, &bytes);
    if (rc) return rc;
    return append_entry(writer, "st_writer_add", name, dtype, shape, rank, data, NULL, bytes);
}

int st_writer_add_bf16(st_writer *writer, const char *name, const int64_t *shape, int rank,
                       const float *data) {
    const char *fn = "st_writer_add_bf16";
    size_t bytes = 0;
    int rc = check_tensor(writer, fn, name, ST_BF16, shape, rank, data, &bytes);
    if (rc) return rc;
    uint16_t *converted = NULL;
    if (bytes > 0) {
        converted = malloc(bytes);
        if (!converted)
            return pm_fail(PM_ERR_NOMEM, "%s: out of memory converting " ST_NAME_FMT, fn, name);
        bf16_from_floats(converted, data, bytes / 2);
    }
    rc = append_entry(writer, fn, name, ST_BF16, shape, rank, converted, converted, bytes);
    if (rc) free(converted);
    return rc;
}

int st_writer_set_metadata(st_writer *writer, const char *key, const char *value) {
    const char *fn = "st_writer_set_metadata";
    if (!writer) return pm_fail(PM_ERR_ARG, "%s: writer is NULL", fn);
    if (!key || !value) return pm_fail(PM_ERR_ARG, "%s: key or value is NULL", fn);
    if (!valid_utf8(key) || !valid_utf8(value))
        return pm_fail(PM_ERR_ARG, "%s: key " ST_NAME_FMT " or its value is not valid UTF-8", fn,
                       key);
    char *copy = copy_string(value);
    if (!copy) return pm_fail(PM_ERR_NOMEM, "%s: out of memory", fn);
    for (int i = 0; i < writer->meta_count; i++)
        if (strcmp(writer->meta[2 * i], key) == 0) { /* replace */
            free(writer->meta[2 * i + 1]);
            writer->meta[2 * i + 1] = copy;
            return PM_OK;
        }
    if (writer->meta_count == writer->meta_capacity) {
        int capacity = writer->meta_capacity ? 2 * writer->meta_capacity : 8;
        char **grown = realloc(writer->meta, 2 * (size_t)capacity * sizeof *grown);
        if (!grown) {
            free(copy);
            return pm_fail(PM_ERR_NOMEM, "%s: out of memory", fn);
        }
        writer->meta = grown;
        writer->meta_capacity = capacity;
    }
    char *key_copy = copy_string(key);
    if (!key_copy) {
        free(copy);
        return pm_fail(PM_ERR_NOMEM, "%s: out of memory", fn);
    }
    writer->meta[2 * writer->meta_count] = key_copy;
    writer->meta[2 * writer->meta_count + 1] = copy;
    writer->meta_count++;
    return PM_OK;
}

/* ------------------------------------------------------------ header JSON */

typedef struct {
    char *text;
    size_t len, capacity;
    bool failed; /* out of memory: later appends do nothing */
} st_buffer;

static void append(st_buffer *b, const char *s, size_t n) {
    if (b->failed) return;
    if (n + 1 > b->capacity - b->len) {
        size_t capacity = b->capacity ? b->capacity : 256;
        while (n + 1 > capacity - b->len) capacity *= 2;
        char *grown = realloc(b->text, capacity);
        if (!grown) {
            b->failed = true;
            return;
        }
        b->text = grown;
        b->capacity = capacity;
    }
    memcpy(b->text + b->len, s, n);
    b->len += n;
    b->text[b->len] = '\0';
}

static void append_str(st_buffer *b, const char *s) { append(b, s, strlen(s)); }

static void append_u64(st_buffer *b, uint64_t v) {
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, v);
    append(b, digits, (size_t)n);
}

/* A JSON string literal: quotes, backslashes and control characters escaped, UTF-8 kept. */
static void append_json_string(st_buffer *b, const char *s) {
    append(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            append(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            append(b, esc, 6);
        } else {
            append(b, p, 1);
        }
    }
    append(b, "\"", 1);
}

static void build_header(const st_writer *writer, st_buffer *b) {
    append_str(b, "{");
    if (writer->meta_count > 0) {
        append_str(b, "\"__metadata__\":{");
        for (int i = 0; i < writer->meta_count; i++) {
            if (i) append_str(b, ",");
            append_json_string(b, writer->meta[2 * i]);
            append_str(b, ":");
            append_json_string(b, writer->meta[2 * i + 1]);
        }
        append_str(b, "}");
    }
    uint64_t offset = 0;
    for (int i = 0; i < writer->count; i++) {
        const st_entry *e = &writer->entries[i];
        if (i || writer->meta_count > 0) append_str(b, ",");
        append_json_string(b, e->name);
        append_str(b, ":{\"dtype\":\"");
        append_str(b, st_dtype_name(e->dtype));
        append_str(b, "\",\"shape\":[");
        for (int d = 0; d < e->rank; d++) {
            if (d) append_str(b, ",");
            append_u64(b, (uint64_t)e->shape[d]);
        }
        append_str(b, "],\"data_offsets\":[");
        append_u64(b, offset);
        append_str(b, ",");
        offset += e->num_bytes;
        append_u64(b, offset);
        append_str(b, "]}");
    }
    append_str(b, "}");
    /* 8 + header length is a multiple of 8, so the data section is 8-byte aligned. */
    while (!b->failed && b->len % 8 != 0) append_str(b, " ");
}

int st_writer_write(st_writer *writer, const char *path) {
    if (!writer) return pm_fail(PM_ERR_ARG, "st_writer_write: writer is NULL");
    if (!path) return pm_fail(PM_ERR_ARG, "st_writer_write: path is NULL");
    st_buffer header = {0};
    build_header(writer, &header);
    if (header.failed) {
        free(header.text);
        return pm_fail(PM_ERR_NOMEM, "%s: out of memory building the header", path);
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        int err = errno;
        free(header.text);
        return pm_fail(PM_ERR_ARG, "%s: cannot create: %s", path, strerror(err));
    }
    unsigned char length[8];
    for (int i = 0; i < 8; i++) length[i] = (unsigned char)((uint64_t)header.len >> 8 * i);
    bool ok = fwrite(length, 1, 8, f) == 8 && fwrite(header.text, 1, header.len, f) == header.len;
    for (int i = 0; ok && i < writer->count; i++) {
        const st_entry *e = &writer->entries[i];
        ok = e->num_bytes == 0 || fwrite(e->data, 1, e->num_bytes, f) == e->num_bytes;
    }
    /* Buffered write errors (a full disk) often surface only at fflush or fclose. */
    ok = ok && fflush(f) == 0 && !ferror(f);
    int err = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        err = errno;
    }
    free(header.text);
    if (!ok)
        return pm_fail(PM_ERR_ARG, "%s: write failed: %s (disk full or unwritable?)", path,
                       strerror(err));
    return PM_OK;
}
