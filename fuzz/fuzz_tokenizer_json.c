/* tokenizer.json (Hugging Face's format): loaded as `--tokenizer FILE` would be, then used. */
#include "fuzz_tokenizer_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tokenizer *tok = NULL;
    if (tokenizer_load(fuzz_write("tokenizer.json", data, size), &tok) < 0) return 0;
    fuzz_check_tokenizer(tok, data, size);
    tokenizer_free(tok);
    return 0;
}
