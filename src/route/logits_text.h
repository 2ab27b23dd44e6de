/*
 * Router logits as text, the input of `probmoe route`: one token a line, its E logits
 * separated by one comma (spaces or tabs around it allowed) or by runs of spaces or tabs.
 * Blank lines (spaces and tabs only) are skipped; a line may end in "\r\n". Every number is
 * decimal (core/number.h: no hexadecimal, no nan or inf, nothing beyond float range).
 *
 * Refused, each with a message naming the input, the line (and column) and what to do: NUL
 * bytes anywhere, empty fields ("1,,2", a comma at the start or end of a line), anything that
 * is not such a number, a line with another count of logits than the first, more than
 * LOGITS_TEXT_MAX_EXPERTS logits on a line, more than LOGITS_TEXT_MAX_VALUES in all, text
 * longer than LOGITS_TEXT_MAX_BYTES, and text without a single logit.
 */
#ifndef PM_ROUTE_LOGITS_TEXT_H
#define PM_ROUTE_LOGITS_TEXT_H

#include <stddef.h>

#include "probmoe.h"

enum {
    LOGITS_TEXT_MAX_EXPERTS = 4096,    /* the model config's bound on num_experts */
    LOGITS_TEXT_MAX_VALUES = 1 << 24,  /* 64 MiB of floats */
};
/* Longest text: 256 MiB, well above the longest spelling of LOGITS_TEXT_MAX_VALUES logits
 * anyone writes (16 bytes each). */
#define LOGITS_TEXT_MAX_BYTES ((size_t)1 << 28)

/*
 * Parses text[0 .. length) (it need not end in a NUL, and nothing at or past length is
 * read). name is the input's name for messages ("standard input", a path). On success
 * *values is a malloc'ed (*rows, *num_experts) array the caller frees, *rows >= 1 and
 * 1 <= *num_experts <= LOGITS_TEXT_MAX_EXPERTS. On failure returns a negative pm_status with
 * pm_last_error() set, *values is NULL and *rows and *num_experts are 0.
 */
pm_status logits_text_parse(const char *text, size_t length, const char *name, float **values, int *rows,
                            int *num_experts);

#endif
