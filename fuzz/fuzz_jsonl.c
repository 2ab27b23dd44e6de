/* GSM8K JSONL (also the format `probmoe data arith` writes): strict and skipping bad lines,
 * then tokenized byte by byte as fine-tuning does. */
#include "data/gsm8k.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("train.jsonl", data, size);
    for (int skip = 0; skip <= 1; skip++) {
        gsm8k_set set;
        if (gsm8k_load(path, skip, &set) < 0) continue;
        for (int i = 0; i < set.count; i++)
            if (!set.examples[i].final_answer[0]) fuzz_fail("an example without a final answer", path);
        sft_tokens tokens;
        if (gsm8k_tokenize(&set, tokenizer_bytes(), &tokens) == 0) sft_tokens_free(&tokens);
        gsm8k_free(&set);
    }
    return 0;
}
