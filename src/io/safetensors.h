/*
 * safetensors files: an 8-byte little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "string value", ...}}
 * then the data section; offsets are relative to the start of the data section.
 *
 * The reader validates everything before any tensor is used: header size (at most 100 MB
 * and within the file), UTF-8 JSON syntax, known dtypes, shapes (non-negative integers,
 * element count × dtype size equal to the byte range), unique names, string metadata
 * values, and the layout the reference implementation requires: sorted by offset, the
 * tensors tile the data section exactly (no overlap, no gap, no trailing bytes). A
 * truncated, corrupted or hostile file gives an error naming the file, the tensor and the
 * problem; it never reads out of bounds.
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
    const void *data;       /* points into the file's data section; maybe unaligned */
    size_t num_bytes;
} st_tensor;

typedef struct st_file st_file;

/* Opens and validates a file, reading all of it into memory. Returns 0 or a negative
 * pm_status (pm_last_error() says why). Tensors, names and metadata strings stay valid
 * until st_close. */
int st_open(st_file **out, const char *path);
void st_close(st_file *file);

int st_count(const st_file *file);
/* Tensors in header order (the order they were added, for files from st_writer); NULL if
 * index is out of range. */
const st_tensor *st_tensor_at(const st_file *file, int index);
/* NULL if the file has no tensor of that name. */
const st_tensor *st_find(const st_file *file, const char *name);
/* A metadata value, or NULL. */
const char *st_metadata(const st_file *file, const char *key);

/*
 * Copies tensor `name` into out (num_elements floats) as float32, converting F16/BF16
 * exactly (I32/I64 refused), after checking that its shape equals expected_shape[0..rank)
 * (NULL allowed for rank 0). Errors name the tensor and both shapes.
 */
int st_read_f32(const st_file *file, const char *name, const int64_t *expected_shape, int rank,
                float *out);
/* The same for int32 tensors: I32, or I64 whose values all fit in int32 (else an error
 * naming the first one that does not; out is then partly written). */
int st_read_i32(const st_file *file, const char *name, const int64_t *expected_shape, int rank,
                int32_t *out);

/* Writing: collect tensors, then write the file in one go (tensors in the order added,
 * back to back, the data section 8-byte aligned). Names must be non-empty, unique, valid
 * UTF-8 and not "__metadata__"; names and metadata are copied. A failed call changes
 * nothing. */
typedef struct st_writer st_writer;
st_writer *st_writer_create(void);
/* The writer keeps the data pointer (no copy): the data must stay valid and unchanged until
 * st_writer_write. It is raw little-endian bytes of the dtype (uint16 bits for F16/BF16). */
int st_writer_add(st_writer *writer, const char *name, st_dtype dtype, const int64_t *shape,
                  int rank, const void *data);
/* Adds float32 data stored as BF16: converted now into a buffer the writer owns (round to
 * nearest even, NaN kept NaN), so data need not outlive the call. */
int st_writer_add_bf16(st_writer *writer, const char *name, const int64_t *shape, int rank,
                       const float *data);
/* Sets a "__metadata__" entry, replacing an earlier value for the same key. */
int st_writer_set_metadata(st_writer *writer, const char *key, const char *value);
/* Writes the file (not atomically: a failure can leave a partial file). Reports open and
 * write errors (including a full disk, detected at fflush/fclose) naming the path. */
int st_writer_write(st_writer *writer, const char *path);
void st_writer_free(st_writer *writer);

#endif
