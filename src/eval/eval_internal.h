/* What the evaluation files share: the per-example GSM8K record and its JSON form. */
#ifndef PM_EVAL_EVAL_INTERNAL_H
#define PM_EVAL_EVAL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct {
    int index, line;          /* 0-based example index; 1-based line of the JSONL file */
    const char *prompt, *generated, *predicted, *gold; /* predicted "" when there is none */
    bool correct;
    double answer_loss;       /* mean cross-entropy over the example's answer tokens */
    long answer_tokens;
} eval_gsm8k_record;

/* text[0..length) as a NUL-terminated string that is valid UTF-8: every byte that does not
 * start a valid sequence (RFC 3629), and every NUL, becomes U+FFFD. free() it; NULL on OOM. */
char *eval_clean_text(const char *text, size_t length);

/* Writes record as one JSON line (eval.h lists the fields). 0 or a negative pm_status. */
int eval_write_record(FILE *out, const char *path, const eval_gsm8k_record *record);

#endif
