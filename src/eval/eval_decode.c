/* Greedy decoding of many prompts through one multi-row generator. Every step feeds each busy
 * row one token, a prompt token or the one it chose last, so rows in their prompt and rows
 * generating share the step; a row that stops takes the next prompt at once, and the others
 * go on as they were (rows do not interact, pm_generator_feed_rows). */
#include <stdlib.h>

#include "core/error.h"
#include "eval/eval_internal.h"

/* One row's work: its prompt (-1: free), what of it is fed, and what it has generated. */
typedef struct {
    int prompt, fed, generated;
    int32_t last;        /* the token chosen last, fed in the next step */
    char *text;          /* max_new · TOKENIZER_MAX_TOKEN_BYTES bytes */
    size_t length;
} decode_row;

typedef struct {
    pm_generator *gen;
    const tokenizer *tok;
    int32_t stop_token;
    const eval_prompt *prompts;
    int count, max_new, vocab, next;
    decode_row *rows;
    int *step_rows;
    int32_t *step_tokens;
    float *logits;       /* (rows, vocab) */
    eval_decoded_fn decoded;
    void *user;
} decoder;

/* Gives free rows the next prompts; prompts with nothing to generate end at once. */
static int fill_rows(decoder *d) {
    const int R = pm_generator_rows(d->gen);
    for (int r = 0; r < R && d->next < d->count; r++) {
        decode_row *row = &d->rows[r];
        while (row->prompt < 0 && d->next < d->count) {
            const int p = d->next++;
            if (d->max_new == 0 || d->prompts[p].length == 0) {
                int status = d->decoded(d->user, p, "", 0);
                if (status < 0) return status;
                continue;
            }
            int status = pm_generator_reset_row(d->gen, r);
            if (status < 0) return status;
            row->prompt = p;
            row->fed = row->generated = 0;
            row->length = 0;
        }
    }
    return PM_OK;
}

/* Row i of the step saw its token: once its prompt is in, the next token is chosen. */
static int after_step(decoder *d, int i) {
    decode_row *row = &d->rows[d->step_rows[i]];
    const eval_prompt *prompt = &d->prompts[row->prompt];
    if (row->fed < prompt->length) row->fed++;
    if (row->fed < prompt->length) return PM_OK; /* still reading its prompt */
    const int32_t next = pm_sample_token(d->logits + (size_t)i * d->vocab, d->vocab, 0.0f, 1.0f, NULL);
    bool done = next == d->tok->eos_token || next == d->stop_token;
    if (!done) {
        row->length += d->tok->decode_token(d->tok, next, row->text + row->length, TOKENIZER_MAX_TOKEN_BYTES);
        row->last = next;
        done = ++row->generated == d->max_new;
    }
    if (!done) return PM_OK;
    const int p = row->prompt;
    row->prompt = -1;
    return d->decoded(d->user, p, row->text, row->length);
}

static int step(decoder *d) {
    const int R = pm_generator_rows(d->gen);
    int count = 0;
    bool wants_logits = false;
    for (int r = 0; r < R; r++) {
        const decode_row *row = &d->rows[r];
        if (row->prompt < 0) continue;
        const eval_prompt *prompt = &d->prompts[row->prompt];
        d->step_rows[count] = r;
        d->step_tokens[count++] = row->fed < prompt->length ? prompt->tokens[row->fed] : row->last;
        wants_logits |= row->fed + 1 >= prompt->length;
    }
    if (count == 0) return PM_OK;
    /* while every row is inside its prompt the logits go unread: skip them */
    int status = pm_generator_feed_rows(d->gen, d->step_rows, d->step_tokens, count, wants_logits ? d->logits : NULL);
    for (int i = 0; status == 0 && i < count; i++) status = after_step(d, i);
    return status;
}

static bool busy(const decoder *d) {
    for (int r = 0; r < pm_generator_rows(d->gen); r++)
        if (d->rows[r].prompt >= 0) return true;
    return false;
}

int eval_greedy_decode(pm_generator *gen, const tokenizer *tok, int32_t stop_token, int vocab,
                       const eval_prompt *prompts, int count, int max_new, eval_decoded_fn decoded, void *user) {
    const int R = pm_generator_rows(gen);
    decoder d = {gen, tok, stop_token, prompts, count, max_new, vocab, 0, calloc((size_t)R, sizeof(decode_row)),
                 malloc(sizeof(int) * R), malloc(sizeof(int32_t) * R), malloc(sizeof(float) * R * (size_t)vocab),
                 decoded, user};
    int status = d.rows && d.step_rows && d.step_tokens && d.logits ? PM_OK : PM_ERR_NOMEM;
    for (int r = 0; status == 0 && r < R; r++) {
        d.rows[r].prompt = -1;
        if (!(d.rows[r].text = malloc((size_t)max_new * TOKENIZER_MAX_TOKEN_BYTES + 1))) status = PM_ERR_NOMEM;
    }
    if (status < 0) status = pm_fail(PM_ERR_NOMEM, "greedy decoding: out of memory for %d rows", R);
    while (status == 0) {
        status = fill_rows(&d);
        if (status < 0 || !busy(&d)) break;
        status = step(&d);
    }
    for (int r = 0; d.rows && r < R; r++) free(d.rows[r].text);
    free(d.rows);
    free(d.step_rows);
    free(d.step_tokens);
    free(d.logits);
    return status;
}
