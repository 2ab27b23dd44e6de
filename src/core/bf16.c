#include "core/bf16.h"

void bf16_from_floats(uint16_t *restrict out, const float *restrict in, size_t count) {
    for (size_t i = 0; i < count; i++) out[i] = bf16_from_float(in[i]);
}

