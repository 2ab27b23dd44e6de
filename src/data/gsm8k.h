/*
 * GSM8K (grade-school math word problems) as supervised examples.
 *
 * Input: JSONL, one {"question": ..., "answer": "... #### 72"} object a line (blank lines are
 * ignored). Each example becomes, in the plain chat format (chat_format.h; another with
 * gsm8k_set_chat_format)
 *   prompt     "Answer the following question.\n\nQuestion: {question}\nAnswer:"
 *   completion " {answer}"   (the tokenizer's eos token is appended when tokenizing, sft.h)
 * and keeps the final answer, the text after "####" trimmed and without commas ("1,234" →
 * "1234"), for exact-match evaluation.
 */
#ifndef PM_DATA_GSM8K_H
#define PM_DATA_GSM8K_H

#include <stdbool.h>
#include <stddef.h>

#include "data/chat_format.h"
#include "data/sft.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    char *question, *answer; /* as in the file */
    char *prompt, *completion;
    char *final_answer;      /* e.g. "72", "-5", "0.25" */
    int line;                /* 1-based line number in the file */
} gsm8k_example;

typedef struct {
    gsm8k_example *examples;
    int count;
    chat_format format;      /* of every example's prompt and completion (plain when loaded) */
    int skipped;             /* malformed lines skipped (skip_bad_lines) */
    char first_skipped[512]; /* "file:line: what is wrong" for the first of them, or "" */
} gsm8k_set;

/* The longest line read (1 MiB); GSM8K's lines are a few hundred bytes. Keeps every
 * example's length in tokens far inside an int. */
enum { GSM8K_MAX_LINE_BYTES = 1 << 20 };

/*
 * Reads a GSM8K JSONL file. A malformed line (longer than GSM8K_MAX_LINE_BYTES, a NUL byte, a byte that is not UTF-8, an
 * escaped NUL \u0000, not JSON, no string "question" or "answer", no "####" or nothing after
 * it) is either an error naming the file, line, byte offset in the file and what to do
 * (skip_bad_lines false) or skipped and counted (true). A missing file, or one without a
 * single good example, is an error. 0 or a negative pm_status; set is zeroed on failure.
 */
int gsm8k_load(const char *path, bool skip_bad_lines, gsm8k_set *set);

/*
 * One line of such a file (its end of line may be included) into example. Returns 0; 1 when
 * the line is malformed, with reason (reason_size bytes) saying why and *offset the offset in
 * the line of the offending byte (0 when the line as a whole is at fault); or a negative
 * pm_status (out of memory). Reads nothing at or past line + length: line need not end in a
 * NUL.
 */
int gsm8k_parse_line(const char *line, size_t length, gsm8k_example *example, char *reason, size_t reason_size,
                     size_t *offset);
void gsm8k_free(gsm8k_set *set);

/* Renders every example's prompt and completion again in format (chat_format.h; the user's
 * turn is the question, the assistant's the answer). 0 or PM_ERR_NOMEM. */
int gsm8k_set_chat_format(gsm8k_set *set, chat_format format);

/* Tokenizes every example (prompt, completion, + eos where the format appends it) with the
 * loss mask on the completion. */
int gsm8k_tokenize(const gsm8k_set *set, const tokenizer *tok, sft_tokens *out);

/*
 * The final answer in text: what follows the first "####" up to the end of that line,
 * trimmed, commas removed. Works on reference answers and on generated completions (which
 * may go on after the answer line). false when there is no "####", nothing after it, or it
 * does not fit in capacity bytes.
 */
bool gsm8k_extract_answer(const char *text, char *out, size_t capacity);

/* Exact match of two final answers, after writing numbers canonically (so "18.00" and "18",
 * "+3" and "3", "007" and "7" match); text that is not a number must match exactly. */
bool gsm8k_answers_match(const char *predicted, const char *reference);

#endif
