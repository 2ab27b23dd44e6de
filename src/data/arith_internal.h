/* Between arith.c (options, distinct problems, files) and arith_problem.c (the templates:
 * drawing one problem, counting how many there are). */
#ifndef PM_DATA_ARITH_INTERNAL_H
#define PM_DATA_ARITH_INTERNAL_H

#include "data/arith.h"
#include "probmoe.h"

enum { ARITH_TEXT_BYTES = 512 }; /* more than the longest question or answer the templates make */

typedef struct {
    char question[ARITH_TEXT_BYTES];
    char answer[ARITH_TEXT_BYTES];
    int steps;
} arith_problem;

/* Draws one problem: its number of steps uniformly in [min_steps, max_steps], a person, an
 * object and the starting number, then per step an operation uniformly among those allowed at
 * the running value, a phrasing and an operand. The options must be valid. */
void arith_draw(const arith_options *options, pm_rng *rng, arith_problem *out);

#endif
