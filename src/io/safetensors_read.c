/*
 * safetensors reader. The whole file is read into one buffer (fread rather than mmap: a
 * file truncated by another process while mapped would fault, a copy cannot), then the
 * header is checked completely before any tensor is exposed. The acceptance rules follow
 * the reference implementation: tensors must tile the data section exactly (sorted by
 * offset, each starts where the previous ends, the last ends at the end of the file).
 */
#define _POSIX_C_SOURCE 200809L

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/bf16.h"
#include "core/error.h"
#include "core/utf8.h"
#include "io/safetensors.h"
#include "io/safetensors_internal.h"

/* The reference implementation's bound: a header is metadata, never bulk data. */
#define ST_MAX_HEADER 100000000u

struct st_file {
    char *path;
    unsigned char *bytes; /* the whole file */
    size_t size;
    const unsigned char *data; /* the data section, bytes + 8 + header length */
    size_t data_size;
    cJSON *header;          /* owns the tensor names and metadata strings */
    const cJSON *metadata;  /* the "__metadata__" object, or NULL */
    st_tensor *tensors;     /* in header order */
    int count;
    const st_tensor **by_name; /* sorted by name, for st_find */
};

/* ------------------------------------------------------------ file access */

static int read_whole_file(st_file *file) {
    const char *path = file->path;
    FILE *f = fopen(path, "rb");
    if (!f) return pm_fail(PM_ERR_ARG, "%s: cannot open: %s", path, strerror(errno));
    struct stat info;
    int rc = PM_OK;
    if (fstat(fileno(f), &info) != 0) {
        rc = pm_fail(PM_ERR_ARG, "%s: cannot stat: %s", path, strerror(errno));
    } else if (!S_ISREG(info.st_mode)) {
        rc = pm_fail(PM_ERR_ARG, "%s: not a regular file", path);
    } else if (info.st_size < 0 || (uintmax_t)info.st_size >= SIZE_MAX) {
        rc = pm_fail(PM_ERR_ARG, "%s: file too large to read on this platform", path);
    } else {
        file->size = (size_t)info.st_size;
        file->bytes = malloc(file->size ? file->size : 1);
        if (!file->bytes) {
            rc = pm_fail(PM_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, file->size);
        } else if (fread(file->bytes, 1, file->size, f) != file->size) {
            rc = ferror(f) ? pm_fail(PM_ERR_ARG, "%s: read error: %s", path, strerror(errno))
                           : pm_fail(PM_ERR_ARG, "%s: file shrank while being read", path);
        }
    }
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------ header checks */

/* A JSON number that is an integer in [0, 2^53]; false for anything else. */
static bool json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return false;
    double v = item->valuedouble;
    if (!(v >= 0.0 && v <= (double)ST_MAX_JSON_INT) || v != floor(v)) return false;
    *out = (uint64_t)v;
    return true;
}

/* Describes a JSON value for an error message: its number, or its type. */
static const char *json_describe(const cJSON *item, char *buf, size_t size) {
    if (cJSON_IsNumber(item)) {
        snprintf(buf, size, "%.17g", item->valuedouble);
        return buf;
    }
    if (cJSON_IsString(item)) return "a string";
    if (cJSON_IsArray(item)) return "an array";
    if (cJSON_IsObject(item)) return "an object";
    if (cJSON_IsBool(item)) return "a boolean";
    return "null";
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int parse_metadata(st_file *file, const cJSON *meta) {
    const char *path = file->path;
    if (file->metadata)
        return pm_fail(PM_ERR_ARG, "%s: the header has two \"__metadata__\" entries", path);
    if (!cJSON_IsObject(meta))
        return pm_fail(PM_ERR_ARG, "%s: \"__metadata__\" is not an object of strings", path);
    int count = 0;
    for (const cJSON *kv = meta->child; kv; kv = kv->next, count++)
        if (!cJSON_IsString(kv))
            return pm_fail(PM_ERR_ARG,
                           "%s: metadata value for key " ST_NAME_FMT
                           " is not a string (metadata values must be strings)",
                           path, kv->string);
    /* Duplicate keys by sorting, so a hostile header with many keys stays O(n log n). */
    const char **keys = malloc(((size_t)count + 1) * sizeof *keys);
    if (!keys) return pm_fail(PM_ERR_NOMEM, "%s: out of memory for the metadata", path);
    int i = 0;
    for (const cJSON *kv = meta->child; kv; kv = kv->next) keys[i++] = kv->string;
    qsort(keys, (size_t)count, sizeof *keys, compare_strings);
    int rc = PM_OK;
    for (i = 1; i < count && rc == PM_OK; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0)
            rc = pm_fail(PM_ERR_ARG, "%s: metadata key " ST_NAME_FMT " appears twice", path,
                         keys[i]);
    free(keys);
    file->metadata = meta;
    return rc;
}

static int parse_dtype(const st_file *file, const char *name, const cJSON *item,
                       st_dtype *out) {
    if (!cJSON_IsString(item))
        return pm_fail(PM_ERR_ARG, "%s: tensor " ST_NAME_FMT ": \"dtype\" is not a string",
                       file->path, name);
    for (int d = 0; d < ST_DTYPE_COUNT; d++)
        if (strcmp(item->valuestring, st_dtype_name((st_dtype)d)) == 0) {
            *out = (st_dtype)d;
            return PM_OK;
        }
    return pm_fail(PM_ERR_ARG,
                   "%s: tensor " ST_NAME_FMT ": unsupported dtype \"%.40s\" (probmoe reads "
                   "F32, F16, BF16, I32 and I64; convert the checkpoint to one of these)",
                   file->path, name, item->valuestring);
}

/* Fills t's dtype, shape and element count; *begin, *end get the data_offsets. */
static int parse_tensor(st_file *file, const cJSON *entry, st_tensor *t, uint64_t *begin,
                        uint64_t *end) {
    const char *path = file->path, *name = entry->string;
    char desc[40];
    if (!cJSON_IsObject(entry))
        return pm_fail(PM_ERR_ARG, "%s: tensor " ST_NAME_FMT ": entry is %s, not an object",
                       path, name, json_describe(entry, desc, sizeof desc));
    /* Look the fields up by hand: a repeated field would be ambiguous, so it is an error. */
    static const char *const fields[3] = {"dtype", "shape", "data_offsets"};
    const cJSON *found[3] = {NULL, NULL, NULL};
    for (const cJSON *field = entry->child; field; field = field->next)
        for (int i = 0; i < 3; i++)
            if (strcmp(field->string, fields[i]) == 0) {
                if (found[i])
                    return pm_fail(PM_ERR_ARG, "%s: tensor " ST_NAME_FMT ": \"%s\" appears twice",
                                   path, name, fields[i]);
                found[i] = field;
            }
    for (int i = 0; i < 3; i++)
        if (!found[i])
            return pm_fail(PM_ERR_ARG, "%s: tensor " ST_NAME_FMT ": missing \"%s\"", path, name,
                           fields[i]);

    t->name = name;
    int rc = parse_dtype(file, name, found[0], &t->dtype);
    if (rc) return rc;

    const cJSON *shape = found[1];
    if (!cJSON_IsArray(shape))
        return pm_fail(PM_ERR_ARG, "%s: tensor " ST_NAME_FMT ": \"shape\" is %s, not an array",
                       path, name, json_describe(shape, desc, sizeof desc));
    int rank = cJSON_GetArraySize(shape);
    if (rank > ST_MAX_RANK)
        return pm_fail(PM_ERR_ARG, "%s: tensor " ST_NAME_FMT ": rank %d exceeds the maximum %d",
                       path, name, rank, ST_MAX_RANK);
    t->rank = rank;
    bool empty = false;
    int i = 0;
    for (const cJSON *dim = shape->child; dim; dim = dim->next, i++) {
        uint64_t v;
        if (!json_uint(dim, &v))
            return pm_fail(PM_ERR_ARG,
                           "%s: tensor " ST_NAME_FMT
                           ": shape[%d] is %s, not a non-negative integer",
                           path, name, i, json_describe(dim, desc, sizeof desc));
        t->shape[i] = (int64_t)v;
        empty = empty || v == 0;
    }
    /* A zero dimension makes the tensor empty however large the others are. */
    uint64_t elements = empty ? 0 : 1;
    bool overflow = false;
    for (int j = 0; j < rank && !empty && !overflow; j++) {
        uint64_t v = (uint64_t)t->shape[j];
        overflow = elements > UINT64_MAX / v;
        elements *= overflow ? 1 : v;
    }
    size_t esize = st_dtype_size(t->dtype);
    if (overflow || elements > SIZE_MAX / esize)
        return pm_fail(PM_ERR_ARG, "%s: tensor " ST_NAME_FMT ": element count overflows", path,
                       name);
    t->num_elements = (size_t)elements;
    t->num_bytes = t->num_elements * esize;

    const cJSON *offsets = found[2];
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        !json_uint(offsets->child, begin) || !json_uint(offsets->child->next, end))
        return pm_fail(PM_ERR_ARG,
                       "%s: tensor " ST_NAME_FMT
                       ": \"data_offsets\" must be two non-negative integers [begin, end]",
                       path, name);
    if (*begin > *end)
        return pm_fail(PM_ERR_ARG,
                       "%s: tensor " ST_NAME_FMT ": data_offsets [%" PRIu64 ", %" PRIu64
                       "] has begin > end",
                       path, name, *begin, *end);
    if (*end > file->data_size)
        return pm_fail(PM_ERR_ARG,
                       "%s: tensor " ST_NAME_FMT ": data_offsets [%" PRIu64 ", %" PRIu64
                       "] ends past the end of the %zu-byte data section (file truncated?)",
                       path, name, *begin, *end, file->data_size);
    if (*end - *begin != t->num_bytes)
        return pm_fail(PM_ERR_ARG,
                       "%s: tensor " ST_NAME_FMT ": %zu %s elements need %zu bytes but "
                       "data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64
                       " (shape and byte count mismatch)",
                       path, name, t->num_elements, st_dtype_name(t->dtype), t->num_bytes,
                       *begin, *end, *end - *begin);
    t->data = file->data + *begin;
    return PM_OK;
}

static int compare_by_name(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

typedef struct {
    uint64_t begin, end;
    int index;
} st_range;

static int compare_ranges(const void *a, const void *b) {
    const st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Sorted by offset, each tensor must start where the previous one ends and the last must
 * end at the end of the file: no overlap, no unclaimed gap, no trailing bytes. */
static int check_layout(st_file *file, st_range *ranges) {
    const char *path = file->path;
    qsort(ranges, (size_t)file->count, sizeof *ranges, compare_ranges);
    uint64_t pos = 0;
    for (int i = 0; i < file->count; i++) {
        const st_range *r = &ranges[i];
        const char *name = file->tensors[r->index].name;
        if (r->begin < pos) {
            const st_range *p = &ranges[i - 1];
            return pm_fail(PM_ERR_ARG,
                           "%s: tensors " ST_NAME_FMT " (bytes %" PRIu64 "..%" PRIu64
                           ") and " ST_NAME_FMT " (bytes %" PRIu64 "..%" PRIu64 ") overlap",
                           path, file->tensors[p->index].name, p->begin, p->end, name,
                           r->begin, r->end);
        }
        if (r->begin > pos)
            return pm_fail(PM_ERR_ARG,
                           "%s: data bytes %" PRIu64 "..%" PRIu64
                           " belong to no tensor (gap before " ST_NAME_FMT ")",
                           path, pos, r->begin, name);
        pos = r->end;
    }
    if (pos != file->data_size)
        return pm_fail(PM_ERR_ARG,
                       "%s: the data section has %zu bytes but the tensors end at byte %" PRIu64
                       " (trailing bytes)",
                       path, file->data_size, pos);
    return PM_OK;
}

static int parse_header(st_file *file) {
    const char *path = file->path;
    if (file->size < 8)
        return pm_fail(PM_ERR_ARG,
                       "%s: file is %zu bytes, shorter than the 8-byte header length (truncated "
                       "or not a safetensors file)",
                       path, file->size);
    /* The messages never quote the file's bytes, not even as the number the first 8 make:
     * the file may be anything (a symbolic link's target, a secret), so they describe it. */
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | file->bytes[i];
    if (n > ST_MAX_HEADER)
        return pm_fail(PM_ERR_ARG,
                       "%s: not a safetensors file (or a corrupted one): a safetensors file starts "
                       "with the length of its JSON header, and the first 8 bytes of this %zu-byte "
                       "file give a length that exceeds the %u-byte limit",
                       path, file->size, ST_MAX_HEADER);
    if (n > file->size - 8 && (file->size == 8 || file->bytes[8] != '{'))
        return pm_fail(PM_ERR_ARG,
                       "%s: not a safetensors file: its first 8 bytes, read as the length of the "
                       "JSON header, give more than the %zu bytes that follow them, and no JSON "
                       "header starts after them",
                       path, file->size - 8);
    if (n > file->size - 8) /* a header begins: a safetensors file, cut short */
        return pm_fail(PM_ERR_ARG,
                       "%s: header length %" PRIu64 " but only %zu bytes follow (file "
                       "truncated?)",
                       path, n, file->size - 8);
    const unsigned char *text = file->bytes + 8;
    file->data = text + n;
    file->data_size = file->size - 8 - (size_t)n;

    if (n == 0 || text[0] != '{')
        return pm_fail(PM_ERR_ARG, "%s: header does not start with '{' (not a safetensors file?)",
                       path);
    size_t bad = utf8_invalid_at(text, (size_t)n);
    if (bad < n)
        return pm_fail(PM_ERR_ARG, "%s: header byte %zu is not valid UTF-8", path, bad);
    /* Raw control characters are invalid anywhere in JSON; rejecting them here also keeps a
     * NUL from cutting a name short inside cJSON. */
    for (size_t i = 0; i < n; i++)
        if (text[i] < 0x20 && text[i] != '\t' && text[i] != '\n' && text[i] != '\r')
            return pm_fail(PM_ERR_ARG, "%s: header byte %zu is a control character (invalid JSON)",
                           path, i);

    /* cJSON gets its own NUL-terminated copy, so no parser path can run past the header. */
    char *json = malloc((size_t)n + 1);
    if (!json) return pm_fail(PM_ERR_NOMEM, "%s: out of memory for the header", path);
    memcpy(json, text, (size_t)n);
    json[n] = '\0';
    const char *stop = NULL;
    file->header = cJSON_ParseWithLengthOpts(json, (size_t)n, &stop, 0);
    size_t stop_at = stop ? (size_t)(stop - json) : 0;
    bool trailing = false;
    for (size_t i = stop_at; file->header && i < n; i++)
        if (json[i] != ' ' && json[i] != '\t' && json[i] != '\n' && json[i] != '\r')
            trailing = true;
    free(json);
    if (!file->header)
        return pm_fail(PM_ERR_ARG, "%s: header is not valid JSON (error near byte %zu of %" PRIu64
                                   "; corrupted file?)",
                       path, stop_at, n);
    if (trailing)
        return pm_fail(PM_ERR_ARG, "%s: header has unexpected bytes after the JSON object at "
                                   "byte %zu",
                       path, stop_at);
    if (!cJSON_IsObject(file->header))
        return pm_fail(PM_ERR_ARG, "%s: header is not a JSON object", path);

    int entries = 0;
    for (const cJSON *e = file->header->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            int rc = parse_metadata(file, e);
            if (rc) return rc;
        } else {
            entries++;
        }
    }
    file->tensors = calloc((size_t)entries + 1, sizeof *file->tensors);
    file->by_name = calloc((size_t)entries + 1, sizeof *file->by_name);
    st_range *ranges = calloc((size_t)entries + 1, sizeof *ranges);
    if (!file->tensors || !file->by_name || !ranges) {
        free(ranges);
        return pm_fail(PM_ERR_NOMEM, "%s: out of memory for %d tensors", path, entries);
    }
    int rc = PM_OK;
    for (const cJSON *e = file->header->child; e && rc == PM_OK; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        int i = file->count++;
        rc = parse_tensor(file, e, &file->tensors[i], &ranges[i].begin, &ranges[i].end);
        ranges[i].index = i;
        file->by_name[i] = &file->tensors[i];
    }
    if (rc == PM_OK) {
        qsort(file->by_name, (size_t)file->count, sizeof *file->by_name, compare_by_name);
        for (int i = 1; i < file->count && rc == PM_OK; i++)
            if (strcmp(file->by_name[i - 1]->name, file->by_name[i]->name) == 0)
                rc = pm_fail(PM_ERR_ARG, "%s: tensor name " ST_NAME_FMT " appears twice", path,
                             file->by_name[i]->name);
    }
    if (rc == PM_OK) rc = check_layout(file, ranges);
    free(ranges);
    return rc;
}

int st_open(st_file **out, const char *path) {
    if (!out) return pm_fail(PM_ERR_ARG, "st_open: out is NULL");
    *out = NULL;
    if (!path) return pm_fail(PM_ERR_ARG, "st_open: path is NULL");
    st_file *file = calloc(1, sizeof *file);
    size_t len = strlen(path);
    if (file) file->path = malloc(len + 1);
    if (!file || !file->path) {
        free(file);
        return pm_fail(PM_ERR_NOMEM, "%s: out of memory opening the file", path);
    }
    memcpy(file->path, path, len + 1);
    int rc = read_whole_file(file);
    if (rc == PM_OK && (rc = parse_header(file)) == PM_ERR_ARG)
        pm_fail(rc, "%s; the file is damaged or not a safetensors file: save or download it again", pm_last_error());
    if (rc != PM_OK) {
        st_close(file);
        return rc;
    }
    *out = file;
    return PM_OK;
}

void st_close(st_file *file) {
    if (!file) return;
    cJSON_Delete(file->header);
    free(file->tensors);
    free(file->by_name);
    free(file->bytes);
    free(file->path);
    free(file);
}

/* ------------------------------------------------------------ lookups */

int st_count(const st_file *file) { return file ? file->count : 0; }

const st_tensor *st_tensor_at(const st_file *file, int index) {
    return file && index >= 0 && index < file->count ? &file->tensors[index] : NULL;
}

const st_tensor *st_find(const st_file *file, const char *name) {
    if (!file || !name) return NULL;
    int lo = 0, hi = file->count;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(file->by_name[mid]->name, name);
        if (c == 0) return file->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *st_metadata(const st_file *file, const char *key) {
    if (!file || !key || !file->metadata) return NULL;
    for (const cJSON *kv = file->metadata->child; kv; kv = kv->next)
        if (strcmp(kv->string, key) == 0) return kv->valuestring;
    return NULL;
}

/* ------------------------------------------------------------ conversion */

/* IEEE binary16 to binary32, exact for every input (subnormals, infinities, NaN payloads). */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x3FFu, bits;
    if (exponent == 0) {
        /* Zero or subnormal: mantissa·2^-24 is a normal float, computed exactly. */
        float v = (float)mantissa * 0x1p-24f;
        memcpy(&bits, &v, sizeof bits);
        bits |= sign;
    } else if (exponent == 31) {
        bits = sign | 0x7F800000u | mantissa << 13;
    } else {
        bits = sign | (exponent + 112) << 23 | mantissa << 13; /* rebias 15 -> 127 */
    }
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

static void format_shape(char *buf, size_t size, const int64_t *shape, int rank) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < rank && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
}

/* Finds the tensor and checks the requested shape; shared by the typed readers. */
static int find_checked(const st_file *file, const char *name, const int64_t *expected_shape,
                        int rank, const void *out, const char *fn, const st_tensor **found) {
    if (!file) return pm_fail(PM_ERR_ARG, "%s: file is NULL", fn);
    if (!name) return pm_fail(PM_ERR_ARG, "%s: %s: name is NULL", fn, file->path);
    if (rank < 0 || rank > ST_MAX_RANK)
        return pm_fail(PM_ERR_ARG, "%s: %s: tensor " ST_NAME_FMT ": rank %d is outside 0..%d",
                       fn, file->path, name, rank, ST_MAX_RANK);
    if (rank > 0 && !expected_shape)
        return pm_fail(PM_ERR_ARG, "%s: %s: tensor " ST_NAME_FMT ": expected_shape is NULL", fn,
                       file->path, name);
    const st_tensor *t = st_find(file, name);
    if (!t)
        return pm_fail(PM_ERR_ARG, "%s: no tensor named " ST_NAME_FMT " (the file has %d)",
                       file->path, name, file->count);
    bool same = t->rank == rank;
    for (int i = 0; same && i < rank; i++) same = t->shape[i] == expected_shape[i];
    if (!same) {
        char have[200], want[200];
        format_shape(have, sizeof have, t->shape, t->rank);
        format_shape(want, sizeof want, expected_shape, rank);
        return pm_fail(PM_ERR_ARG,
                       "%s: tensor " ST_NAME_FMT " has shape %s but %s was expected (does the "
                       "checkpoint match the model config?)",
                       file->path, name, have, want);
    }
    if (!out && t->num_elements > 0)
        return pm_fail(PM_ERR_ARG, "%s: %s: tensor " ST_NAME_FMT ": out is NULL", fn,
                       file->path, name);
    *found = t;
    return PM_OK;
}

int st_read_f32(const st_file *file, const char *name, const int64_t *expected_shape, int rank,
                float *out) {
    const st_tensor *t = NULL;
    int rc = find_checked(file, name, expected_shape, rank, out, "st_read_f32", &t);
    if (rc) return rc;
    /* Tensor data is only byte-aligned within the file: bytes are assembled, not cast. */
    const unsigned char *src = t->data;
    size_t n = t->num_elements;
    switch (t->dtype) {
    case ST_F32:
        if (n) memcpy(out, src, n * sizeof *out);
        return PM_OK;
    case ST_F16:
        for (size_t i = 0; i < n; i++)
            out[i] = f16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
        return PM_OK;
    case ST_BF16:
        for (size_t i = 0; i < n; i++)
            out[i] = bf16_to_float((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
        return PM_OK;
    default:
        return pm_fail(PM_ERR_ARG,
                       "%s: tensor " ST_NAME_FMT " is %s, not floating point (use st_read_i32)",
                       file->path, name, st_dtype_name(t->dtype));
    }
}

int st_read_i32(const st_file *file, const char *name, const int64_t *expected_shape, int rank,
                int32_t *out) {
    const st_tensor *t = NULL;
    int rc = find_checked(file, name, expected_shape, rank, out, "st_read_i32", &t);
    if (rc) return rc;
    const unsigned char *src = t->data;
    size_t n = t->num_elements;
    switch (t->dtype) {
    case ST_I32:
        if (n) memcpy(out, src, n * sizeof *out);
        return PM_OK;
    case ST_I64:
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, src + 8 * i, sizeof v);
            if (v < INT32_MIN || v > INT32_MAX)
                return pm_fail(PM_ERR_ARG,
                               "%s: tensor " ST_NAME_FMT ": I64 element %zu = %" PRId64
                               " does not fit in int32",
                               file->path, name, i, v);
            out[i] = (int32_t)v;
        }
        return PM_OK;
    default:
        return pm_fail(PM_ERR_ARG,
                       "%s: tensor " ST_NAME_FMT " is %s, not an integer tensor (use "
                       "st_read_f32)",
                       file->path, name, st_dtype_name(t->dtype));
    }
}
