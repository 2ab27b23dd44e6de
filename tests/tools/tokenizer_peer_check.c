/* Compares probmoe's tokenizer with the peer's output (tests/peer/peer_tokenize.mjs) line by
 * line: identical ids, identical decoded text, and decode(encode(x)) == x on every line where
 * the tokenizer must give the text back (--round-trip: all lines for a lossless tokenizer; nfc:
 * lines already in NFC; plain: lines without U+2581 or an added token's text, for
 * SentencePiece-style ones). Prints the first mismatches and a summary; exit 1 on any mismatch.
 *   tokenizer_peer_check TOKENIZER_JSON CORPUS_JSONL PEER_JSONL [--round-trip all|nfc|plain|none]
 *                        [--min-lines N] */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/error.h"
#include "tokenizer/bpe_internal.h"
#include "tokenizer/tokenizer.h"

/* The next line of text[*at..length) (without its '\n'), or NULL at the end. */
static char *next_line(char *text, size_t length, size_t *at) {
    if (*at >= length) return NULL;
    char *line = text + *at, *end = memchr(line, '\n', length - *at);
    if (!end) end = text + length;
    *end = '\0';
    *at = (size_t)(end - text) + 1;
    return line;
}

static bool is_nfc(const char *text, size_t length) {
    utf8proc_uint8_t *nfc = NULL;
    const utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)length, &nfc,
                                            UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    const bool same = n == (utf8proc_ssize_t)length && memcmp(nfc, text, length) == 0;
    free(nfc);
    return same;
}

/* Whether text holds U+2581 or the content of one of the file's added tokens. */
static bool has_meta_or_added(const cJSON *added, const char *text) {
    if (strstr(text, "\xe2\x96\x81")) return true;
    for (const cJSON *t = added ? added->child : NULL; t; t = t->next) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(t, "content");
        if (cJSON_IsString(content) && content->valuestring[0] && strstr(text, content->valuestring)) return true;
    }
    return false;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: tokenizer_peer_check TOKENIZER_JSON CORPUS_JSONL PEER_JSONL [--round-trip all|nfc|none] "
                "[--min-lines N]\n");
        return 2;
    }
    const char *round_trip = "all";
    long min_lines = 0;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--round-trip") == 0) round_trip = argv[i + 1];
        else if (strcmp(argv[i], "--min-lines") == 0) min_lines = atol(argv[i + 1]);
    }
    tokenizer *tok = NULL;
    char *corpus, *peer;
    size_t corpus_length, peer_length;
    if (tokenizer_load(argv[1], &tok) || bpe_read_file(argv[2], &corpus, &corpus_length) ||
        bpe_read_file(argv[3], &peer, &peer_length)) {
        fprintf(stderr, "tokenizer_peer_check: %s\n", pm_last_error());
        return 1;
    }
    cJSON *tokenizer_json = NULL;
    if (strcmp(round_trip, "plain") == 0) {
        char *json;
        size_t json_length;
        if (bpe_read_file(argv[1], &json, &json_length) || !(tokenizer_json = cJSON_Parse(json))) {
            fprintf(stderr, "tokenizer_peer_check: cannot read the added tokens of %s\n", argv[1]);
            return 1;
        }
        free(json);
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(tokenizer_json, "added_tokens");
    size_t corpus_at = 0, peer_at = 0;
    long lines = 0, id_mismatches = 0, text_mismatches = 0, round_trip_checked = 0, round_trip_failures = 0;
    long long tokens_total = 0;
    int32_t *ids = NULL;
    size_t ids_capacity = 0;
    char *decoded = NULL;
    size_t decoded_capacity = 0;
    for (char *line; (line = next_line(corpus, corpus_length, &corpus_at));) {
        char *peer_line = next_line(peer, peer_length, &peer_at);
        if (line[0] == '\0') continue;
        cJSON *text_json = cJSON_Parse(line), *peer_json = peer_line ? cJSON_Parse(peer_line) : NULL;
        const cJSON *peer_ids = cJSON_GetObjectItemCaseSensitive(peer_json, "ids");
        const cJSON *peer_text = cJSON_GetObjectItemCaseSensitive(peer_json, "text");
        if (!cJSON_IsString(text_json) || !cJSON_IsArray(peer_ids) || !cJSON_IsString(peer_text)) {
            fprintf(stderr, "tokenizer_peer_check: line %ld of the corpus or the peer's output is not as expected\n",
                    lines + 1);
            return 1;
        }
        lines++;
        const char *text = text_json->valuestring;
        const size_t length = strlen(text);
        const int64_t n = tok->encode(tok, text, length, ids, ids_capacity);
        if (n < 0) {
            fprintf(stderr, "line %ld: encode failed: %s\n", lines, pm_last_error());
            return 1;
        }
        if ((size_t)n > ids_capacity) {
            ids_capacity = (size_t)n * 2;
            ids = realloc(ids, ids_capacity * sizeof *ids);
            tok->encode(tok, text, length, ids, ids_capacity);
        }
        tokens_total += n;
        bool same = cJSON_GetArraySize(peer_ids) == n;
        for (int64_t i = 0; same && i < n; i++) same = cJSON_GetArrayItem(peer_ids, (int)i)->valueint == ids[i];
        if (!same && ++id_mismatches <= 5) {
            char *ours = malloc(16 * (size_t)n + 16);
            size_t used = 0;
            for (int64_t i = 0; i < n; i++) used += (size_t)sprintf(ours + used, "%s%d", i ? "," : "", ids[i]);
            ours[used] = '\0';
            char *theirs = cJSON_PrintUnformatted(peer_ids);
            fprintf(stderr, "line %ld: ids differ\n  text: %s\n  ours: [%s]\n  peer: %s\n", lines, line, ours, theirs);
            free(ours);
            free(theirs);
        }
        const int64_t bytes = tokenizer_decode(tok, ids, (size_t)n, decoded, decoded_capacity);
        if (bytes < 0) {
            fprintf(stderr, "line %ld: decode failed: %s\n", lines, pm_last_error());
            return 1;
        }
        if ((size_t)bytes + 1 > decoded_capacity) {
            decoded_capacity = (size_t)bytes * 2 + 1;
            decoded = realloc(decoded, decoded_capacity);
            tokenizer_decode(tok, ids, (size_t)n, decoded, decoded_capacity);
        }
        decoded[bytes] = '\0';
        if (same && strcmp(decoded, peer_text->valuestring) != 0 && ++text_mismatches <= 5)
            fprintf(stderr, "line %ld: decoded text differs\n  ours: %s\n  peer: %s\n", lines, decoded, peer_text->valuestring);
        if (strcmp(round_trip, "all") == 0 || (strcmp(round_trip, "nfc") == 0 && is_nfc(text, length)) ||
            (strcmp(round_trip, "plain") == 0 && !has_meta_or_added(added, text))) {
            round_trip_checked++;
            if (((size_t)bytes != length || memcmp(decoded, text, length) != 0) && ++round_trip_failures <= 5)
                fprintf(stderr, "line %ld: decode(encode(x)) != x\n  x:    %s\n  back: %s\n", lines, text, decoded);
        }
        cJSON_Delete(text_json);
        cJSON_Delete(peer_json);
    }
    printf("%s: %ld lines, %lld tokens: %ld with other ids than the peer, %ld decoded otherwise; "
           "decode(encode(x)) == x checked on %ld lines, %ld failed\n", argv[1], lines, tokens_total, id_mismatches,
           text_mismatches, round_trip_checked, round_trip_failures);
    if (lines < min_lines) {
        fprintf(stderr, "tokenizer_peer_check: only %ld lines, expected at least %ld\n", lines, min_lines);
        return 1;
    }
    cJSON_Delete(tokenizer_json);
    free(ids);
    free(decoded);
    free(corpus);
    free(peer);
    tokenizer_free(tok);
    return id_mismatches || text_mismatches || round_trip_failures ? 1 : 0;
}
