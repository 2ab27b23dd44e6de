#define _POSIX_C_SOURCE 200809L /* fsync, fileno */
/* Writes a learned vocabulary as a Hugging Face tokenizer.json (GPT-2's byte-level settings),
 * laid out as the tokenizers library does (two-space indent), one vocabulary entry and one
 * merge per line. Written to path.tmp, synced, then renamed over path: a reader sees the old
 * file or the whole new one, never a part. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "tokenizer/bpe_train_internal.h"
#include "tokenizer/byte_unicode.h"

static const char header[] =
    "{\n"
    "  \"version\": \"1.0\",\n"
    "  \"truncation\": null,\n"
    "  \"padding\": null,\n"
    "  \"added_tokens\": [\n"
    "    {\n"
    "      \"id\": %d,\n"
    "      \"content\": \"" BPE_TRAIN_EOS "\",\n"
    "      \"single_word\": false,\n"
    "      \"lstrip\": false,\n"
    "      \"rstrip\": false,\n"
    "      \"normalized\": false,\n"
    "      \"special\": true\n"
    "    }\n"
    "  ],\n"
    "  \"normalizer\": null,\n"
    "  \"pre_tokenizer\": {\n"
    "    \"type\": \"ByteLevel\",\n"
    "    \"add_prefix_space\": false,\n"
    "    \"trim_offsets\": true,\n"
    "    \"use_regex\": true\n"
    "  },\n"
    "  \"post_processor\": {\n"
    "    \"type\": \"ByteLevel\",\n"
    "    \"add_prefix_space\": true,\n"
    "    \"trim_offsets\": false,\n"
    "    \"use_regex\": true\n"
    "  },\n"
    "  \"decoder\": {\n"
    "    \"type\": \"ByteLevel\",\n"
    "    \"add_prefix_space\": true,\n"
    "    \"trim_offsets\": true,\n"
    "    \"use_regex\": true\n"
    "  },\n"
    "  \"model\": {\n"
    "    \"type\": \"BPE\",\n"
    "    \"dropout\": null,\n"
    "    \"unk_token\": null,\n"
    "    \"continuing_subword_prefix\": null,\n"
    "    \"end_of_word_suffix\": null,\n"
    "    \"fuse_unk\": false,\n"
    "    \"byte_fallback\": false,\n"
    "    \"vocab\": {\n";

/* Each byte's character as it appears inside a JSON string: the mapped character's UTF-8,
 * with '"' and '\' escaped (the map sends every control byte above U+00FF, so nothing else
 * needs escaping). */
typedef struct {
    char text[256][3];
    uint8_t length[256];
} byte_strings;

static void make_byte_strings(byte_strings *table) {
    for (int b = 0; b < 256; b++) {
        if (b == '"' || b == '\\') {
            table->text[b][0] = '\\';
            table->text[b][1] = (char)b;
            table->length[b] = 2;
        } else {
            table->length[b] = (uint8_t)byte_to_utf8((uint8_t)b, table->text[b]);
        }
    }
}

static void put_token(FILE *out, const byte_strings *table, const bpe_train_vocab *vocab, int32_t token) {
    const uint8_t *bytes = vocab->token_bytes + vocab->token_start[token];
    for (int i = 0; i < vocab->token_length[token]; i++) fwrite(table->text[bytes[i]], 1, table->length[bytes[i]], out);
}

static void write_json(FILE *out, const bpe_train_vocab *vocab) {
    byte_strings table;
    make_byte_strings(&table);
    fprintf(out, header, vocab->token_count);
    for (int32_t t = 0; t < vocab->token_count; t++) {
        fputs("      \"", out);
        put_token(out, &table, vocab, t);
        fprintf(out, "\": %d,\n", t);
    }
    /* Listed in the model's vocabulary too, as GPT-2's tokenizer.json does, so a lookup by
     * string finds it either way. */
    fprintf(out, "      \"%s\": %d\n    },\n    \"merges\": [", BPE_TRAIN_EOS, vocab->token_count);
    for (int m = 0; m < vocab->merge_count; m++) {
        fputs(m ? ",\n      \"" : "\n      \"", out);
        put_token(out, &table, vocab, vocab->merges[m][0]);
        fputc(' ', out);
        put_token(out, &table, vocab, vocab->merges[m][1]);
        fputc('"', out);
    }
    fputs(vocab->merge_count ? "\n    ]\n  }\n}\n" : "]\n  }\n}\n", out);
}

int bpe_train_write_json(const bpe_train_vocab *vocab, const char *path) {
    const size_t length = strlen(path);
    char *temporary = malloc(length + 5);
    if (!temporary) return pm_fail(PM_ERR_NOMEM, "out of memory");
    memcpy(temporary, path, length);
    memcpy(temporary + length, ".tmp", 5);
    FILE *out = fopen(temporary, "wb");
    if (!out) {
        const int status = pm_fail(PM_ERR_ARG, "cannot write '%s': %s", temporary, strerror(errno));
        free(temporary);
        return status;
    }
    errno = 0;
    write_json(out, vocab);
    /* A write error sticks in the stream; flushing and syncing make a full disk show here. */
    int error = 0;
    if (ferror(out)) error = errno ? errno : EIO;
    else if (fflush(out) != 0 || fsync(fileno(out)) != 0) error = errno;
    if (fclose(out) != 0 && !error) error = errno;
    if (!error && rename(temporary, path) != 0) error = errno;
    int status = PM_OK;
    if (error) {
        status = pm_fail(PM_ERR_ARG, "cannot write '%s': %s", path, strerror(error));
        remove(temporary);
    }
    free(temporary);
    return status;
}
