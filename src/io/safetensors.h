/*
 * safetensors files: an 8-byte little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "string value", ...}}
 * then the data section; offsets are relative to the start of the data section.
 *
 * The reader validates everything before any tensor is used: header size bound, JSON
 * syntax, known dtypes, shapes (non-negative, product matching the byte range), offsets
 * inside the file, no overlapping tensors, no gap or trailing bytes claims that point
 * outside. A truncated, corrupted or hostile file gives an error naming the file, the
 * tensor and the problem; it never reads out of bounds.
 */
#ifndef PM_IO_SAFETENSORS_H
#define PM_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { ST_F32, ST_F16, ST_BF16, ST_I32, ST_I64, ST_DTYPE_COUNT } st_dtype;

#define ST_MAX_RANK 8

typedef struct {
    const char *name;
    st_dtype dtype;
    int rank;
    int64_t shape[ST_MAX_RANK];
    size_t num_elements;
    const void *data;       /* points into the file's data section */
    size_t num_bytes;
} st_tensor;

typedef struct st_file st_file;

/* Opens and validates a file. Returns 0 or a negative pm_status (pm_last_error() says why). */
int st_open(st_file **out, const char *path);
void st_close(st_file *file);

int st_count(const st_file *file);
const st_tensor *st_tensor_at(const st_file *file, int index);
/* NULL if the file has no tensor of that name. */
const st_tensor *st_find(const st_file *file, const char *name);
/* A metadata value, or NULL. */
const char *st_metadata(const st_file *file, const char *key);

/*
 * Copies tensor `name` into out as float32 (converting F16/BF16; I32 refused), checking
 * that its shape equals expected_shape[0..rank). Errors name the tensor and both shapes.
 */
int st_read_f32(const st_file *file, const char *name, const int64_t *expected_shape, int rank,
                float *out);
/* The same for int32 tensors. */
int st_read_i32(const st_file *file, const char *name, const int64_t *expected_shape, int rank,
                int32_t *out);

/* Writing: collect tensors, then write the file in one go (tensors in the order added). */
typedef struct st_writer st_writer;
st_writer *st_writer_create(void);
/* data is copied when the file is written, so it must stay valid until st_writer_write. */
int st_writer_add(st_writer *writer, const char *name, st_dtype dtype, const int64_t *shape,
                  int rank, const void *data);
/* Adds float32 data stored as BF16 (round to nearest even). */
int st_writer_add_bf16(st_writer *writer, const char *name, const int64_t *shape, int rank,
                       const float *data);
int st_writer_set_metadata(st_writer *writer, const char *key, const char *value);
int st_writer_write(st_writer *writer, const char *path);
void st_writer_free(st_writer *writer);

#endif
