/* GSM8K per-example output: one JSON object a line, valid UTF-8 even when a byte-level model
 * stops in the middle of a character (JSON readers reject invalid UTF-8). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "eval/eval_internal.h"

/* Bytes of the valid UTF-8 sequence at p, or 0 (overlong forms, surrogates and code points
 * above U+10FFFF are invalid). Reads no further than the first byte that disqualifies it, so
 * the terminating NUL stops it. */
static size_t utf8_sequence(const unsigned char *p) {
    const unsigned char c = p[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned char low = 0x80, high = 0xBF; /* the range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) low = 0xA0;  /* overlong */
        if (c == 0xED) high = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) low = 0x90;  /* overlong */
        if (c == 0xF4) high = 0x8F; /* above U+10FFFF */
    } else
        return 0;
    if (p[1] < low || p[1] > high) return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return n;
}

char *eval_clean_text(const char *text, size_t length) {
    static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */
    char *out = malloc(3 * length + 1), *w = out;
    if (!out) return NULL;
    /* a copy with a terminator, so a sequence cut at length reads as invalid, not past it */
    unsigned char *in = malloc(length + 1);
    if (!in) {
        free(out);
        return NULL;
    }
    memcpy(in, text, length);
    in[length] = 0;
    for (size_t i = 0; i < length;) {
        size_t n = in[i] ? utf8_sequence(in + i) : 0;
        if (n == 0) {
            memcpy(w, replacement, 3);
            w += 3;
            i++;
        } else {
            memcpy(w, in + i, n);
            w += n;
            i += n;
        }
    }
    *w = '\0';
    free(in);
    return out;
}

int eval_write_record(FILE *out, const char *path, const eval_gsm8k_record *record) {
    cJSON *root = cJSON_CreateObject();
    bool ok = root && cJSON_AddNumberToObject(root, "index", record->index) &&
              cJSON_AddNumberToObject(root, "line", record->line) &&
              cJSON_AddStringToObject(root, "prompt", record->prompt) &&
              cJSON_AddStringToObject(root, "generated", record->generated) &&
              (record->predicted[0] ? cJSON_AddStringToObject(root, "predicted", record->predicted) != NULL
                                    : cJSON_AddNullToObject(root, "predicted") != NULL) &&
              cJSON_AddStringToObject(root, "gold", record->gold) &&
              cJSON_AddBoolToObject(root, "correct", record->correct) &&
              cJSON_AddNumberToObject(root, "answer_loss", record->answer_loss) &&
              cJSON_AddNumberToObject(root, "answer_tokens", (double)record->answer_tokens);
    char *line = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!line) return pm_fail(PM_ERR_NOMEM, "out of memory writing %s", path);
    /* flushed per example, so the file shows progress and survives an interrupted run */
    int status = fprintf(out, "%s\n", line) < 0 || fflush(out) != 0
                     ? pm_fail(PM_ERR_STATE, "could not write %s (disk full?)", path)
                     : PM_OK;
    free(line);
    return status;
}
