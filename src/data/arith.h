/*
 * Arithmetic word problems, generated from a seed, as a fine-tuning task small models can learn
 * (what `probmoe data arith` writes). GSM8K is far beyond a 2-layer model; these problems have
 * the same file format, so gsm8k_load, fine-tuning and exact-match evaluation take them as they
 * are. A problem, with its answer showing one line per operation:
 *
 *   question  "Tom has 7 apples. He buys 5 more. Then he gives away 3. How many apples does Tom
 *              have now?"
 *   answer    "7 + 5 = 12\n12 - 3 = 9\n#### 9"
 *
 * The starting number and every operand are in 1..max_operand. Each step adds, subtracts (never
 * below 0) or multiplies (by 2..max_operand, only while the running value is at most
 * max_operand, so no number exceeds max_operand·(max_operand + 2)). Sentences come from a small
 * fixed set of templates: 8 people, 8 kinds of object, 2 phrasings per operation.
 */
#ifndef PM_DATA_ARITH_H
#define PM_DATA_ARITH_H

#include <stdbool.h>
#include <stdint.h>

enum {
    ARITH_MAX_STEPS = 3,       /* operations a problem can have */
    ARITH_MAX_OPERAND = 10000, /* keeps every number well inside an int */
    ARITH_MAX_COUNT = 1000000, /* problems per file (they are held in memory) */
};

typedef struct {
    uint64_t seed;
    int train_count, test_count; /* problems per file, 1..ARITH_MAX_COUNT */
    int min_steps, max_steps;    /* operations per problem, 1 <= min <= max <= ARITH_MAX_STEPS */
    int max_operand;             /* 2..ARITH_MAX_OPERAND */
    bool overwrite;              /* replace train.jsonl and test.jsonl already in the directory */
} arith_options;

typedef struct {
    int steps_count[ARITH_MAX_STEPS + 1]; /* problems (both files) with each number of steps */
    long long draws;                      /* problems drawn, duplicates included */
    double distinct_possible;             /* how many distinct problems the settings allow */
} arith_stats;

/* The defaults of `probmoe data arith`: 20000 training and 500 test problems of 1 or 2 steps
 * with operands 1..9 (one digit each, so each number is a token or two for a small BPE
 * vocabulary), seed 1. */
arith_options arith_options_default(void);

/* How many distinct questions the steps range and max_operand allow: a double, as it can exceed
 * 2^63 (exact for small settings, where it matters). The options must be in range; a negative
 * pm_status if memory runs out. */
double arith_distinct_problems(const arith_options *options);

/* Checks every setting, and that the settings allow train_count + test_count distinct
 * problems. 0, or PM_ERR_ARG with a message naming the setting and what to change. */
int arith_check_options(const arith_options *options);

/*
 * Generates train_count + test_count distinct problems and writes out_dir/train.jsonl and
 * out_dir/test.jsonl (created with its parents if needed), one {"question", "answer"} object a
 * line. The test problems are drawn first, so the test file depends only on the seed, the test
 * count and the problem settings; the training problems are the next distinct ones, none equal
 * to a test question. The same options give byte-identical files. Nothing is written on any
 * error: bad options, files already there without overwrite, or too few distinct problems
 * found (the message says how many the settings allow). stats may be NULL. 0 or a negative
 * pm_status.
 */
int arith_write(const char *out_dir, const arith_options *options, arith_stats *stats);

#endif
