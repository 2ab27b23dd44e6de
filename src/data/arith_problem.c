/* The word-problem templates: drawing a problem, and counting the distinct problems they can
 * make, both from the same table of operations and the same rule for the operands allowed. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"
#include "data/arith_internal.h"

typedef struct {
    const char *name, *subject, *pronoun; /* "Tom", "He", "he" */
} person;

static const person people[] = {
    {"Tom", "He", "he"}, {"Anna", "She", "she"}, {"Ben", "He", "he"},  {"Mia", "She", "she"},
    {"Sam", "He", "he"}, {"Lily", "She", "she"}, {"Max", "He", "he"}, {"Emma", "She", "she"},
};

static const struct {
    const char *one, *many;
} objects[] = {
    {"apple", "apples"}, {"book", "books"},   {"coin", "coins"},     {"card", "cards"},
    {"pen", "pens"},     {"stamp", "stamps"}, {"cookie", "cookies"}, {"marble", "marbles"},
};

enum { PEOPLE = sizeof people / sizeof people[0], OBJECTS = sizeof objects / sizeof objects[0] };
enum { ADD, SUBTRACT, MULTIPLY, OPERATIONS };
enum { PHRASINGS = 2 };

typedef struct {
    char symbol;                       /* in the answer's step line */
    const char *phrases[PHRASINGS][2]; /* the words before and after the operand */
} operation;

/* Every phrasing differs from the others wherever the operand stands, so distinct choices make
 * distinct questions (which the count relies on). */
static const operation operations[OPERATIONS] = {
    [ADD] = {'+', {{"buys ", " more"}, {"finds ", " more"}}},
    [SUBTRACT] = {'-', {{"gives away ", ""}, {"loses ", ""}}},
    [MULTIPLY] = {'*', {{"ends up with ", " times as many"}, {"multiplies them by ", ""}}},
};

/* The operands op allows at the running value: low..high, none when high < low. Results stay
 * whole and at least 0, and a product needs both factors in 1..max_operand. */
static void operand_range(int op, long value, int max_operand, int *low, int *high) {
    *low = op == MULTIPLY ? 2 : 1;
    if (op == ADD) *high = max_operand;
    else if (op == SUBTRACT) *high = value < max_operand ? (int)value : max_operand;
    else *high = value >= 1 && value <= max_operand ? max_operand : 0;
}

static long apply(int op, long value, int operand) {
    return op == ADD ? value + operand : op == SUBTRACT ? value - operand : value * operand;
}

static int uniform_int(pm_rng *rng, int low, int high) {
    return low + (int)(pm_rng_uniform(rng) * (double)(high - low + 1));
}

typedef struct {
    char *text;
    size_t length;
} text_buffer;

/* Appends to a buffer of ARITH_TEXT_BYTES, which no question or answer fills. */
static void append(text_buffer *buffer, const char *format, ...) PM_PRINTF(2, 3);
static void append(text_buffer *buffer, const char *format, ...) {
    va_list args;
    va_start(args, format);
    int written = vsnprintf(buffer->text + buffer->length, ARITH_TEXT_BYTES - buffer->length, format, args);
    va_end(args);
    if (written > 0) buffer->length += (size_t)written;
    if (buffer->length >= ARITH_TEXT_BYTES) buffer->length = ARITH_TEXT_BYTES - 1;
}

void arith_draw(const arith_options *options, pm_rng *rng, arith_problem *out) {
    const int steps = uniform_int(rng, options->min_steps, options->max_steps);
    const person *who = &people[uniform_int(rng, 0, PEOPLE - 1)];
    const int object = uniform_int(rng, 0, OBJECTS - 1);
    long value = uniform_int(rng, 1, options->max_operand);
    text_buffer question = {out->question, 0}, answer = {out->answer, 0};
    out->question[0] = out->answer[0] = '\0';
    append(&question, "%s has %ld %s.", who->name, value, value == 1 ? objects[object].one : objects[object].many);
    for (int step = 0; step < steps; step++) {
        int allowed[OPERATIONS], allowed_count = 0, low, high;
        for (int op = 0; op < OPERATIONS; op++) {
            operand_range(op, value, options->max_operand, &low, &high);
            if (high >= low) allowed[allowed_count++] = op; /* ADD always is */
        }
        const int op = allowed[uniform_int(rng, 0, allowed_count - 1)];
        const char *const *phrase = operations[op].phrases[uniform_int(rng, 0, PHRASINGS - 1)];
        operand_range(op, value, options->max_operand, &low, &high);
        const int operand = uniform_int(rng, low, high);
        const long result = apply(op, value, operand);
        if (step == 0) append(&question, " %s %s%d%s.", who->subject, phrase[0], operand, phrase[1]);
        else append(&question, " Then %s %s%d%s.", who->pronoun, phrase[0], operand, phrase[1]);
        append(&answer, "%ld %c %d = %ld\n", value, operations[op].symbol, operand, result);
        value = result;
    }
    append(&question, " How many %s does %s have now?", objects[object].many, who->name);
    append(&answer, "#### %ld", value);
    out->steps = steps;
}

/*
 * Counting. F_r(v), the number of ways to go on for r more steps from the running value v, is
 * F_0 = 1 and F_r(v) = PHRASINGS · Σ over operations op and allowed operands b of F_{r-1}(v op b).
 * Above r·M (M = max_operand) every value of the next r steps stays above M, as a subtraction
 * takes at most M: no product is allowed and + and - take M operands each, so there
 * F_r(v) = (2·PHRASINGS·M)^r. Only v in 0..r·M needs a table.
 */
typedef struct {
    double *prefix; /* prefix[i] = Σ_{v < i} F_r(v), for i in 0..r·M + 1 */
    long last;      /* r·M, the last value tabulated */
    double tail;    /* F_r(v) for v > last */
} continuations;

static double continuation_sum(const continuations *f, long low, long high) {
    if (high < low) return 0.0;
    double sum = 0.0;
    if (low <= f->last) sum += f->prefix[(high < f->last ? high : f->last) + 1] - f->prefix[low];
    if (high > f->last) sum += (double)(high - (low > f->last ? low : f->last + 1) + 1) * f->tail;
    return sum;
}

/* F_r(v) for one v, from the table of F_{r-1}. */
static double continue_from(const continuations *next, long value, int max_operand) {
    double ways = 0.0;
    for (int op = 0; op < OPERATIONS; op++) {
        int low, high;
        operand_range(op, value, max_operand, &low, &high);
        if (op == ADD) ways += continuation_sum(next, value + low, value + high);
        else if (op == SUBTRACT) ways += continuation_sum(next, value - high, value - low);
        else
            for (int b = low; b <= high; b++) {
                if (value * b > next->last) { /* the remaining products are all in the tail */
                    ways += (double)(high - b + 1) * next->tail;
                    break;
                }
                ways += continuation_sum(next, value * b, value * b);
            }
    }
    return PHRASINGS * ways;
}

double arith_distinct_problems(const arith_options *options) {
    const int max_operand = options->max_operand;
    continuations f[ARITH_MAX_STEPS + 1] = {{0}};
    double total = 0.0;
    int r = 0;
    for (; r <= options->max_steps; r++) {
        f[r].last = (long)r * max_operand;
        f[r].tail = pow(2.0 * PHRASINGS * max_operand, r);
        f[r].prefix = malloc(sizeof(double) * (size_t)(f[r].last + 2));
        if (!f[r].prefix) break;
        f[r].prefix[0] = 0.0;
        for (long v = 0; v <= f[r].last; v++)
            f[r].prefix[v + 1] = f[r].prefix[v] + (r == 0 ? 1.0 : continue_from(&f[r - 1], v, max_operand));
        /* a problem starts at 1..M */
        if (r >= options->min_steps) total += continuation_sum(&f[r], 1, max_operand);
    }
    const bool complete = r > options->max_steps;
    for (int i = 0; i <= options->max_steps; i++) free(f[i].prefix);
    if (!complete) return pm_fail(PM_ERR_NOMEM, "out of memory counting arithmetic problems");
    return (double)PEOPLE * OBJECTS * total;
}
