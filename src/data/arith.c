#define _POSIX_C_SOURCE 200809L /* access, rmdir, unlink */
/* arith_write: checks the settings, draws distinct problems (test first, then training) and
 * writes both JSONL files only when all of them are there (see arith.h). */
#include "data/arith.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/string_set.h"
#include "data/arith_internal.h"

/* pm_rng stream of the problems (apart from other users' streams); draw i uses substream i */
#define ARITH_STREAM 0xA817000000000000ull

enum { PATH_BYTES = 4096, FILES = 2 };
static const char *const file_names[FILES] = {"test.jsonl", "train.jsonl"}; /* in drawing order */

arith_options arith_options_default(void) {
    return (arith_options){.seed = 1, .train_count = 20000, .test_count = 500, .min_steps = 1, .max_steps = 2,
                           .max_operand = 9};
}

int arith_check_options(const arith_options *o) {
    if (o->train_count < 1 || o->train_count > ARITH_MAX_COUNT)
        return pm_fail(PM_ERR_ARG, "train_count (--train) is %d; ask for 1 to %d training problems", o->train_count,
                       ARITH_MAX_COUNT);
    if (o->test_count < 1 || o->test_count > ARITH_MAX_COUNT)
        return pm_fail(PM_ERR_ARG, "test_count (--test) is %d; ask for 1 to %d test problems", o->test_count,
                       ARITH_MAX_COUNT);
    if (o->min_steps < 1 || o->min_steps > ARITH_MAX_STEPS)
        return pm_fail(PM_ERR_ARG, "min_steps (--min-steps) is %d; a problem has 1 to %d steps", o->min_steps,
                       ARITH_MAX_STEPS);
    if (o->max_steps < 1 || o->max_steps > ARITH_MAX_STEPS)
        return pm_fail(PM_ERR_ARG, "max_steps (--max-steps) is %d; the templates chain 1 to %d steps", o->max_steps,
                       ARITH_MAX_STEPS);
    if (o->min_steps > o->max_steps)
        return pm_fail(PM_ERR_ARG, "min_steps (--min-steps) %d is above max_steps (--max-steps) %d; make the "
                       "minimum at most the maximum", o->min_steps, o->max_steps);
    if (o->max_operand < 2 || o->max_operand > ARITH_MAX_OPERAND)
        return pm_fail(PM_ERR_ARG, "max_operand (--max-operand) is %d; give 2 to %d (with 1 nothing can be "
                       "multiplied, and %d already gives products of 8 digits)", o->max_operand,
                       ARITH_MAX_OPERAND, ARITH_MAX_OPERAND);
    const double possible = arith_distinct_problems(o);
    if (possible < 0) return (int)possible;
    if (possible < (double)o->train_count + o->test_count) {
        char steps[32];
        if (o->min_steps == o->max_steps)
            snprintf(steps, sizeof steps, "%d step%s", o->min_steps, o->min_steps > 1 ? "s" : "");
        else
            snprintf(steps, sizeof steps, "%d to %d steps", o->min_steps, o->max_steps);
        return pm_fail(PM_ERR_ARG, "%d training + %d test problems asked for, but %s with operands 1 to %d allow at "
                       "most %.0f distinct problems; ask for fewer (--train, --test) or allow more (raise "
                       "--max-operand or --max-steps)", o->train_count, o->test_count, steps, o->max_operand,
                       possible);
    }
    return PM_OK;
}

typedef struct {
    char *question, *answer; /* one allocation, question first */
    int steps;
} stored_problem;

typedef struct {
    stored_problem *problems; /* the test problems, then the training ones */
    int count;
    long long draws;
} problem_list;

static void free_problems(problem_list *list) {
    for (int i = 0; i < list->count; i++) free(list->problems[i].question);
    free(list->problems);
    memset(list, 0, sizeof *list);
}

static int store(const arith_problem *drawn, stored_problem *out) {
    const size_t question = strlen(drawn->question) + 1, answer = strlen(drawn->answer) + 1;
    out->question = malloc(question + answer);
    if (!out->question) return pm_fail(PM_ERR_NOMEM, "out of memory storing arithmetic problems");
    memcpy(out->question, drawn->question, question);
    out->answer = out->question + question;
    memcpy(out->answer, drawn->answer, answer);
    out->steps = drawn->steps;
    return PM_OK;
}

/* Draws until train + test distinct questions are found. Rare problems make the last ones slow
 * to find when nearly every possible problem is asked for, so the draws are bounded. */
static int draw_distinct(const arith_options *o, double possible, problem_list *list) {
    memset(list, 0, sizeof *list);
    const int wanted = o->test_count + o->train_count;
    const long long max_draws = 100LL * wanted + 100000; /* < 2^32 substreams */
    string_set seen;
    list->problems = calloc((size_t)wanted, sizeof *list->problems);
    int status = list->problems ? string_set_init(&seen, (size_t)wanted)
                                : pm_fail(PM_ERR_NOMEM, "out of memory for %d problems", wanted);
    if (status < 0) {
        free(list->problems);
        list->problems = NULL;
        return status;
    }
    pm_rng base, rng;
    pm_rng_init(&base, o->seed, ARITH_STREAM);
    arith_problem drawn;
    while (status == PM_OK && list->count < wanted && list->draws < max_draws) {
        pm_rng_substream(&base, (uint32_t)list->draws++, &rng);
        arith_draw(o, &rng, &drawn);
        stored_problem *slot = &list->problems[list->count];
        status = store(&drawn, slot);
        int added = status == PM_OK ? string_set_add(&seen, slot->question) : 0;
        if (added < 0) status = added;
        if (added == 1) list->count++;
        else free(slot->question); /* a duplicate, or after an error */
    }
    string_set_free(&seen);
    if (status == PM_OK && list->count < wanted)
        status = pm_fail(PM_ERR_ARG, "found only %d distinct problems in %lld draws of the %d asked for: these "
                         "settings allow %.0f, but some are rarely drawn; ask for fewer (--train, --test) or allow "
                         "more (raise --max-operand or --max-steps)", list->count, list->draws, wanted, possible);
    if (status < 0) free_problems(list);
    return status;
}

static int join(char *out, const char *dir, const char *name) {
    if (snprintf(out, PATH_BYTES, "%s/%s", dir, name) >= PATH_BYTES)
        return pm_fail(PM_ERR_ARG, "the path '%s/%s' is too long", dir, name);
    return PM_OK;
}

/* One {"question", "answer"} object a line; cJSON escapes the strings. */
static int write_lines(atomic_file *out, const stored_problem *problems, int count) {
    for (int i = 0; i < count; i++) {
        cJSON *object = cJSON_CreateObject();
        char *line = NULL;
        if (object && cJSON_AddStringToObject(object, "question", problems[i].question) &&
            cJSON_AddStringToObject(object, "answer", problems[i].answer))
            line = cJSON_PrintUnformatted(object);
        cJSON_Delete(object);
        if (!line) return pm_fail(PM_ERR_NOMEM, "out of memory writing '%s'", out->final_path);
        const bool written = fputs(line, out->file) >= 0 && fputc('\n', out->file) != EOF;
        free(line);
        if (!written) return pm_fail(PM_ERR_ARG, "cannot write '%s': %s", out->final_path, strerror(errno));
    }
    return PM_OK;
}

/* Writes both files to temporary names, then renames them into place; if the second rename
 * fails the first new file is removed too, so the directory never pairs files of two runs. */
static int write_files(char paths[FILES][PATH_BYTES], const problem_list *list, int test_count) {
    atomic_file files[FILES];
    const stored_problem *first[FILES] = {list->problems, list->problems + test_count};
    const int counts[FILES] = {test_count, list->count - test_count};
    int status = PM_OK, open_count = 0;
    for (; open_count < FILES && status == PM_OK; open_count++) {
        status = atomic_file_open(&files[open_count], paths[open_count]);
        if (status < 0) break;
        status = write_lines(&files[open_count], first[open_count], counts[open_count]);
    }
    for (int i = 0; i < open_count && status < 0; i++) atomic_file_abort(&files[i]);
    for (int i = 0; i < FILES && status == PM_OK; i++) {
        status = atomic_file_commit(&files[i]);
        if (status < 0) {
            for (int j = i + 1; j < FILES; j++) atomic_file_abort(&files[j]);
            for (int j = 0; j < i; j++) unlink(paths[j]);
        }
    }
    return status;
}

int arith_write(const char *out_dir, const arith_options *options, arith_stats *stats) {
    if (!out_dir || !*out_dir) return pm_fail(PM_ERR_ARG, "no output directory given for the arithmetic problems");
    int status = arith_check_options(options);
    char paths[FILES][PATH_BYTES];
    for (int i = 0; i < FILES && status == PM_OK; i++) {
        status = join(paths[i], out_dir, file_names[i]);
        if (status == PM_OK && !options->overwrite && access(paths[i], F_OK) == 0)
            status = pm_fail(PM_ERR_ARG, "'%s' already exists; choose another directory or replace it (--force)",
                             paths[i]);
    }
    if (status < 0) return status;
    const double possible = arith_distinct_problems(options);
    problem_list list;
    status = draw_distinct(options, possible, &list);
    if (status < 0) return status;

    struct stat info;
    const bool existed = stat(out_dir, &info) == 0;
    status = ensure_directory(out_dir);
    if (status == PM_OK) status = write_files(paths, &list, options->test_count);
    if (status < 0 && !existed) rmdir(out_dir); /* only succeeds if empty: never removes data */
    if (status == PM_OK && stats) {
        memset(stats, 0, sizeof *stats);
        for (int i = 0; i < list.count; i++) stats->steps_count[list.problems[i].steps]++;
        stats->draws = list.draws;
        stats->distinct_possible = possible;
    }
    free_problems(&list);
    return status;
}
