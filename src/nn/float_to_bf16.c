/* The bf16 copies of weights and of the products' inputs (nn.h), with or without oneDNN. */
#include "core/bf16.h"
#include "nn/nn.h"

/* In blocks over the threads: the conversion is a pass over memory, like the products' inputs. */
void float_to_bf16(uint16_t *out, const float *in, size_t n) {
    enum { BLOCK = 1 << 14 };
    const size_t blocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) if (blocks > 4)
    for (size_t b = 0; b < blocks; b++) {
        const size_t first = b * BLOCK, count = n - first < BLOCK ? n - first : BLOCK;
        bf16_from_floats(out + first, in + first, count);
    }
}
