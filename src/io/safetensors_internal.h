/* What the safetensors reader and writer share: dtype names and sizes, UTF-8 checking. */
#ifndef PM_IO_SAFETENSORS_INTERNAL_H
#define PM_IO_SAFETENSORS_INTERNAL_H

#include <stddef.h>

#include "io/safetensors.h"

/* Tensor bytes are stored little-endian and copied with memcpy: a big-endian host would
 * need byte swaps everywhere, so refuse to build rather than silently corrupt weights. */
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors I/O assumes a little-endian host"
#endif

/* Largest integer a JSON number (a double in cJSON) holds exactly: bound for shapes and
 * offsets so that no value is silently rounded. */
#define ST_MAX_JSON_INT ((uint64_t)1 << 53)

/* Longest tensor name quoted in an error message, so the problem itself still fits. */
#define ST_NAME_FMT "'%.120s'"

static inline const char *st_dtype_name(st_dtype dtype) {
    static const char *const names[ST_DTYPE_COUNT] = {"F32", "F16", "BF16", "I32", "I64"};
    return (unsigned)dtype < ST_DTYPE_COUNT ? names[dtype] : "?";
}

static inline size_t st_dtype_size(st_dtype dtype) {
    static const unsigned char sizes[ST_DTYPE_COUNT] = {4, 2, 2, 4, 8};
    return (unsigned)dtype < ST_DTYPE_COUNT ? sizes[dtype] : 0;
}

#endif
