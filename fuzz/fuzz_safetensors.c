/* safetensors files (header, tensors, metadata): st_open, then every tensor read back as
 * float32 with its own shape, as the model loader does. */
#include <stdlib.h>

#include "fuzz_input.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file *file = NULL;
    if (st_open(&file, fuzz_write("model.safetensors", data, size)) < 0) return 0;
    st_metadata(file, "format");
    for (int i = 0; i < st_count(file); i++) {
        const st_tensor *tensor = st_tensor_at(file, i);
        if (st_find(file, tensor->name) != tensor) fuzz_fail("st_find does not find a listed tensor", tensor->name);
        /* the data lies inside the file, so a valid file never asks for more than its size */
        if (tensor->num_bytes > size) fuzz_fail("a tensor larger than the file was accepted", tensor->name);
        float *values = malloc(tensor->num_elements * sizeof(float) + 1);
        int32_t *ints = malloc(tensor->num_elements * sizeof(int32_t) + 1);
        st_read_f32(file, tensor->name, tensor->shape, tensor->rank, values);
        st_read_i32(file, tensor->name, tensor->shape, tensor->rank, ints);
        free(values);
        free(ints);
    }
    st_close(file);
    return 0;
}
