/* Token shards: the header alone, then the whole shard (tokens checked against the header's
 * vocabulary). */
#include "data/shards.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("train.bin", data, size);
    shard_header header;
    if (shard_read_header(path, &header) < 0) return 0;
    token_shard shard;
    if (shard_read(path, header.vocab_hash, &shard) == 0) {
        if (shard.count != header.token_count) fuzz_fail("a shard's token count differs from its header", NULL);
        for (size_t i = 0; i < shard.count; i++)
            if (shard.tokens[i] < 0 || (uint32_t)shard.tokens[i] >= header.vocab_size)
                fuzz_fail("a token outside the vocabulary was accepted", path);
        shard_free(&shard);
    }
    return 0;
}
