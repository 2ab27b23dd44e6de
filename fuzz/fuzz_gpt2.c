/* GPT-2's tokenizer files: encoder.json and vocab.bpe, the input's two parts (FUZZ_SEPARATOR
 * between them), loaded from a directory as `--tokenizer DIR` would. */
#include <stdio.h>

#include "fuzz_tokenizer_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *merges;
    size_t encoder_size, merges_size;
    fuzz_split(data, size, &merges, &encoder_size, &merges_size);
    fuzz_write("encoder.json", data, encoder_size);
    fuzz_write("vocab.bpe", merges, merges_size);
    tokenizer *tok = NULL;
    if (tokenizer_load(fuzz_dir(), &tok) < 0) return 0;
    fuzz_check_tokenizer(tok, data, size);
    tokenizer_free(tok);
    return 0;
}
