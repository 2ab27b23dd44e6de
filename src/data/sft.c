#include "data/sft.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

typedef struct {
    sft_tokens *data;
    size_t count, capacity;
} stream;

static int reserve(stream *s, size_t extra) {
    if (s->count + extra <= s->capacity) return PM_OK;
    size_t grown = s->capacity ? s->capacity : 1 << 16;
    while (grown < s->count + extra) grown *= 2;
    int32_t *tokens = realloc(s->data->tokens, sizeof(int32_t) * grown);
    if (tokens) s->data->tokens = tokens;
    uint8_t *mask = realloc(s->data->loss_mask, grown);
    if (mask) s->data->loss_mask = mask;
    if (!tokens || !mask) return pm_fail(PM_ERR_NOMEM, "out of memory tokenizing examples (%zu tokens)", grown);
    s->capacity = grown;
    return PM_OK;
}

/* Appends the tokens of text with the given mask value. */
static int append_text(stream *s, const tokenizer *tok, const char *text, uint8_t mask, int example,
                       const char *part) {
    const size_t length = strlen(text);
    int64_t needed = tok->encode(tok, text, length, NULL, 0);
    int status = needed < 0 ? (int)needed : reserve(s, (size_t)needed);
    if (status == PM_OK) needed = tok->encode(tok, text, length, s->data->tokens + s->count, (size_t)needed);
    if (needed < 0) {
        char message[1024]; /* pm_fail rewrites the buffer pm_last_error points to */
        snprintf(message, sizeof message, "%s", pm_last_error());
        return pm_fail((pm_status)needed, "example %d's %s: %s", example + 1, part, message);
    }
    if (status < 0) return status;
    memset(s->data->loss_mask + s->count, mask, (size_t)needed);
    s->count += (size_t)needed;
    return PM_OK;
}

int sft_tokenize(sft_tokens *out, const char *const *prompts, const char *const *completions, int count,
                 const tokenizer *tok, bool append_eos) {
    memset(out, 0, sizeof *out);
    if (count < 1) return pm_fail(PM_ERR_ARG, "no examples to tokenize");
    out->offsets = malloc(sizeof(size_t) * ((size_t)count + 1));
    if (!out->offsets) return pm_fail(PM_ERR_NOMEM, "out of memory tokenizing examples");
    out->count = count;
    out->pad_token = tok->eos_token >= 0 ? tok->eos_token : 0;
    stream s = {out, 0, 0};
    int status = PM_OK;
    for (int i = 0; i < count && status == PM_OK; i++) {
        out->offsets[i] = s.count;
        status = append_text(&s, tok, prompts[i], 0, i, "prompt");
        if (status == PM_OK) status = append_text(&s, tok, completions[i], 1, i, "completion");
        if (status == PM_OK && append_eos && tok->eos_token >= 0) status = reserve(&s, 1);
        if (status == PM_OK && append_eos && tok->eos_token >= 0) {
            s.data->tokens[s.count] = tok->eos_token;
            s.data->loss_mask[s.count++] = 1;
        }
    }
    out->offsets[count] = s.count;
    if (status < 0) sft_tokens_free(out);
    return status;
}

void sft_tokens_free(sft_tokens *data) {
    free(data->tokens);
    free(data->loss_mask);
    free(data->offsets);
    memset(data, 0, sizeof *data);
}

/* SFT_PAD: which part of each example a row can show. */
static int plan_padded_rows(sft_rows *rows) {
    const sft_tokens *data = rows->data;
    const size_t window = (size_t)rows->seq_len + 1;
    rows->starts = malloc(sizeof(size_t) * (size_t)data->count);
    rows->ends = malloc(sizeof(size_t) * (size_t)data->count);
    if (!rows->starts || !rows->ends) return pm_fail(PM_ERR_NOMEM, "out of memory building rows");
    for (int i = 0; i < data->count; i++) {
        size_t start = data->offsets[i], end = data->offsets[i + 1];
        size_t completion = 0;
        for (size_t p = start; p < end; p++) completion += data->loss_mask[p];
        if (end - start > window) {
            /* the first answer token's target needs the token before it as an input */
            if (completion + 1 > window) {
                rows->dropped++;
                continue;
            }
            start = end - window;
            rows->truncated++;
        }
        rows->starts[rows->row_count] = start;
        rows->ends[rows->row_count++] = end;
    }
    return PM_OK;
}

int sft_rows_init(sft_rows *rows, const sft_tokens *data, sft_layout layout, int seq_len) {
    memset(rows, 0, sizeof *rows);
    if (seq_len < 1) return pm_fail(PM_ERR_ARG, "the sequence length is %d; it must be at least 1", seq_len);
    rows->data = data;
    rows->layout = layout;
    rows->seq_len = seq_len;
    int status = PM_OK;
    const size_t total = data->offsets[data->count];
    if (layout == SFT_PACK) rows->row_count = total >= 2 ? (total - 2) / (size_t)seq_len + 1 : 0;
    else status = plan_padded_rows(rows);
    if (status == PM_OK && rows->row_count == 0)
        status = pm_fail(PM_ERR_ARG, "no training rows: %s", layout == SFT_PACK
                         ? "the examples hold fewer than 2 tokens"
                         : "every example's answer is longer than the sequence length; use a longer --seq");
    if (status < 0) sft_rows_free(rows);
    return status;
}

void sft_rows_fill(const sft_rows *rows, size_t row, int32_t *inputs, int32_t *targets) {
    const sft_tokens *data = rows->data;
    size_t start, end;
    if (rows->layout == SFT_PACK) {
        start = row * (size_t)rows->seq_len;
        end = data->offsets[data->count];
    } else {
        start = rows->starts[row];
        end = rows->ends[row];
    }
    for (int j = 0; j < rows->seq_len; j++) {
        size_t p = start + (size_t)j;
        inputs[j] = p < end ? data->tokens[p] : data->pad_token;
        targets[j] = p + 1 < end && data->loss_mask[p + 1] ? data->tokens[p + 1] : -1;
    }
}

void sft_rows_free(sft_rows *rows) {
    free(rows->starts);
    free(rows->ends);
    memset(rows, 0, sizeof *rows);
}
