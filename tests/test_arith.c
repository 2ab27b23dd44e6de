/* The arithmetic word problems of `probmoe data arith`: every answer carries out its question's
 * steps and is right; the files load as GSM8K with the counts asked for; no question repeats,
 * within a file or across the two; the same seed gives the same bytes; the step counts cover
 * the range asked for; the number of distinct problems is counted exactly; bad settings are
 * refused by name and write nothing. */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/arith.h"
#include "data/gsm8k.h"
#include "data_fixtures.h"

static const char *file_in(const char *dir, const char *name) {
    static char paths[4][600];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, sizeof paths[0], "%s/%s", scratch(dir), name);
    return path;
}

/* The defaults with other file sizes. */
static arith_options sized_options(int train_count, int test_count) {
    arith_options options = arith_options_default();
    options.train_count = train_count;
    options.test_count = test_count;
    return options;
}

static void write_problems(const char *dir, const arith_options *options, arith_stats *stats) {
    if (arith_write(scratch(dir), options, stats) != PM_OK) fail_msg("arith_write: %s", pm_last_error());
}

static void load(const char *dir, const char *name, gsm8k_set *set) {
    /* skipping bad lines so that a malformed one is counted rather than stopping the load */
    if (gsm8k_load(file_in(dir, name), true, set) != PM_OK) fail_msg("gsm8k_load: %s", pm_last_error());
    assert_int_equal(set->skipped, 0);
}

/* The numbers of text in order, and how many there are. */
static int numbers_in(const char *text, long *numbers, int capacity) {
    int count = 0;
    for (const char *c = text; *c;) {
        if (!isdigit((unsigned char)*c)) {
            c++;
            continue;
        }
        char *end;
        long value = strtol(c, &end, 10);
        assert_true(count < capacity);
        numbers[count++] = value;
        c = end;
    }
    return count;
}

/* Which operation a step's sentence asks for, from its words alone. */
static char operation_of(const char *sentence) {
    if (strstr(sentence, " more")) return '+';
    if (strstr(sentence, "gives away") || strstr(sentence, "loses")) return '-';
    if (strstr(sentence, "times as many") || strstr(sentence, "multiplies them by")) return '*';
    fail_msg("no operation in '%s'", sentence);
    return 0;
}

/*
 * Checks one problem and returns its number of steps: the question is "X has N things.", one
 * sentence per step, then "How many things does X have now?"; answer line i is "a op b = c"
 * with op the one sentence i names, b its number, a the previous result (first: N), c right;
 * the last line is "#### c" with c the last result, and gsm8k's extraction reads it.
 */
static int check_problem(const gsm8k_example *example, int max_operand) {
    const char *question = example->question;
    char sentences[ARITH_MAX_STEPS + 2][256];
    int sentence_count = 0;
    for (const char *start = question; *start;) {
        const char *end = strpbrk(start, ".?");
        assert_non_null(end);
        assert_true(sentence_count < ARITH_MAX_STEPS + 2);
        snprintf(sentences[sentence_count++], sizeof sentences[0], "%.*s", (int)(end - start), start);
        start = end[1] == ' ' ? end + 2 : end + 1;
    }
    const int steps = sentence_count - 2;
    assert_true(steps >= 1);
    assert_non_null(strstr(sentences[0], " has "));
    assert_true(strncmp(sentences[sentence_count - 1], "How many ", 9) == 0);
    long numbers[ARITH_MAX_STEPS + 1];
    assert_int_equal(numbers_in(question, numbers, ARITH_MAX_STEPS + 1), steps + 1);
    assert_true(numbers[0] >= 1 && numbers[0] <= max_operand);

    long value = numbers[0];
    const char *line = example->answer;
    for (int step = 0; step < steps; step++) {
        long a, b, c;
        char op, written[128];
        assert_int_equal(sscanf(line, "%ld %c %ld = %ld", &a, &op, &b, &c), 4);
        /* exactly "a op b = c" and a newline */
        const int length = snprintf(written, sizeof written, "%ld %c %ld = %ld\n", a, op, b, c);
        if (strncmp(line, written, (size_t)length) != 0)
            fail_msg("step line '%.*s' is not '%s'", length, line, written);
        assert_int_equal(a, value);
        assert_int_equal(b, numbers[step + 1]);
        assert_true(b >= (op == '*' ? 2 : 1) && b <= max_operand);
        assert_int_equal(op, operation_of(sentences[step + 1]));
        const long want = op == '+' ? a + b : op == '-' ? a - b : a * b;
        assert_int_equal(c, want);
        assert_true(c >= 0);
        if (op == '*') assert_true(a <= max_operand); /* both factors are operands */
        value = c;
        line += length;
    }
    char final[64], last[64];
    snprintf(last, sizeof last, "#### %ld", value);
    assert_string_equal(line, last);
    assert_true(gsm8k_extract_answer(example->answer, final, sizeof final));
    snprintf(last, sizeof last, "%ld", value);
    assert_string_equal(final, last);
    assert_string_equal(example->final_answer, last);
    assert_true(gsm8k_answers_match(final, last));
    return steps;
}

static void test_answers_are_right(void **state) {
    (void)state;
    arith_options options = sized_options(3000, 300);
    options.max_steps = 3;
    arith_stats stats;
    write_problems("right", &options, &stats);
    const char *names[2] = {"train.jsonl", "test.jsonl"};
    const int counts[2] = {3000, 300};
    int steps_seen[ARITH_MAX_STEPS + 1] = {0};
    for (int f = 0; f < 2; f++) {
        gsm8k_set set;
        load("right", names[f], &set);
        assert_int_equal(set.count, counts[f]);
        for (int i = 0; i < set.count; i++) steps_seen[check_problem(&set.examples[i], options.max_operand)]++;
        gsm8k_free(&set);
    }
    for (int s = 0; s <= ARITH_MAX_STEPS; s++) assert_int_equal(steps_seen[s], stats.steps_count[s]);
}

/* With a larger max_operand the numbers and products grow past one digit, and stay right. */
static void test_large_operands(void **state) {
    (void)state;
    arith_options options = sized_options(500, 50);
    options.max_steps = 3;
    options.max_operand = ARITH_MAX_OPERAND;
    write_problems("large", &options, NULL);
    gsm8k_set set;
    load("large", "train.jsonl", &set);
    assert_int_equal(set.count, 500);
    long largest = 0;
    for (int i = 0; i < set.count; i++) {
        check_problem(&set.examples[i], options.max_operand);
        const long answer = strtol(set.examples[i].final_answer, NULL, 10);
        if (answer > largest) largest = answer;
    }
    assert_true(largest > 1000000); /* some products of two large operands */
    gsm8k_free(&set);
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void test_no_question_repeats(void **state) {
    (void)state;
    arith_options options = sized_options(5000, 500);
    options.max_steps = 1; /* the smallest space (25,344 problems), where repeats are likeliest */
    write_problems("distinct", &options, NULL);
    gsm8k_set train, test;
    load("distinct", "train.jsonl", &train);
    load("distinct", "test.jsonl", &test);
    const int total = train.count + test.count;
    const char **questions = malloc(sizeof(char *) * (size_t)total);
    assert_non_null(questions);
    for (int i = 0; i < train.count; i++) questions[i] = train.examples[i].question;
    for (int i = 0; i < test.count; i++) questions[train.count + i] = test.examples[i].question;
    qsort(questions, (size_t)total, sizeof(char *), compare_strings);
    for (int i = 1; i < total; i++)
        if (strcmp(questions[i - 1], questions[i]) == 0) fail_msg("'%s' appears twice", questions[i]);
    free(questions);
    gsm8k_free(&train);
    gsm8k_free(&test);
}

static bool same_bytes(const char *path_a, const char *path_b) {
    size_t length_a, length_b;
    char *a = read_all(path_a, &length_a), *b = read_all(path_b, &length_b);
    const bool same = length_a == length_b && memcmp(a, b, length_a) == 0;
    free(a);
    free(b);
    return same;
}

static void test_seed_decides_the_files(void **state) {
    (void)state;
    arith_options options = sized_options(400, 40);
    write_problems("seed1a", &options, NULL);
    write_problems("seed1b", &options, NULL);
    options.seed = 2;
    write_problems("seed2", &options, NULL);
    for (int f = 0; f < 2; f++) {
        const char *name = f ? "test.jsonl" : "train.jsonl";
        assert_true(same_bytes(file_in("seed1a", name), file_in("seed1b", name)));
        assert_false(same_bytes(file_in("seed1a", name), file_in("seed2", name)));
    }
    /* the test file does not depend on the training count; more training problems extend the
     * training file */
    options.seed = 1;
    options.train_count = 800;
    write_problems("seed1long", &options, NULL);
    assert_true(same_bytes(file_in("seed1a", "test.jsonl"), file_in("seed1long", "test.jsonl")));
    size_t short_length, long_length;
    char *short_train = read_all(file_in("seed1a", "train.jsonl"), &short_length);
    char *long_train = read_all(file_in("seed1long", "train.jsonl"), &long_length);
    assert_true(long_length > short_length);
    assert_memory_equal(short_train, long_train, short_length);
    free(short_train);
    free(long_train);
}

static void test_steps_cover_the_range(void **state) {
    (void)state;
    const int ranges[][2] = {{1, 1}, {2, 3}, {1, 3}, {3, 3}, {1, 2}};
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        arith_options options = sized_options(600, 60);
        options.min_steps = ranges[r][0];
        options.max_steps = ranges[r][1];
        char dir[32];
        snprintf(dir, sizeof dir, "steps%zu", r);
        write_problems(dir, &options, NULL);
        int seen[ARITH_MAX_STEPS + 1] = {0};
        for (int f = 0; f < 2; f++) {
            gsm8k_set set;
            load(dir, f ? "test.jsonl" : "train.jsonl", &set);
            for (int i = 0; i < set.count; i++) seen[check_problem(&set.examples[i], options.max_operand)]++;
            gsm8k_free(&set);
        }
        for (int s = 1; s <= ARITH_MAX_STEPS; s++) {
            const bool in_range = s >= options.min_steps && s <= options.max_steps;
            if (in_range && seen[s] == 0)
                fail_msg("steps %d..%d: no problem of %d steps", ranges[r][0], ranges[r][1], s);
            if (!in_range && seen[s] > 0)
                fail_msg("steps %d..%d: %d problems of %d steps", ranges[r][0], ranges[r][1], seen[s], s);
        }
    }
}

/* The ways to go on from value for `steps` steps, counted by plain recursion from arith.h's
 * rules: + and - with 1..M (never below 0), * with 2..M while the value is in 1..M; two
 * phrasings per operation. */
static double brute_force_ways(long value, int steps, int max_operand) {
    if (steps == 0) return 1.0;
    double ways = 0.0;
    for (int b = 1; b <= max_operand; b++) {
        ways += 2.0 * brute_force_ways(value + b, steps - 1, max_operand);
        if (b <= value) ways += 2.0 * brute_force_ways(value - b, steps - 1, max_operand);
        if (b >= 2 && value >= 1 && value <= max_operand)
            ways += 2.0 * brute_force_ways(value * b, steps - 1, max_operand);
    }
    return ways;
}

static void test_distinct_count(void **state) {
    (void)state;
    for (int max_operand = 2; max_operand <= 5; max_operand++)
        for (int min_steps = 1; min_steps <= ARITH_MAX_STEPS; min_steps++)
            for (int max_steps = min_steps; max_steps <= ARITH_MAX_STEPS; max_steps++) {
                arith_options options = arith_options_default();
                options.min_steps = min_steps;
                options.max_steps = max_steps;
                options.max_operand = max_operand;
                double want = 0.0;
                for (int s = min_steps; s <= max_steps; s++)
                    for (int start = 1; start <= max_operand; start++)
                        want += 8.0 * 8.0 * brute_force_ways(start, s, max_operand); /* people × objects */
                assert_true(arith_distinct_problems(&options) == want);
            }

    /* One step with operands 1..2 makes 1152 problems: all of them can be drawn, one more is
     * refused with the count. */
    arith_options options = sized_options(1000, 152);
    options.max_steps = 1;
    options.max_operand = 2;
    arith_stats stats;
    write_problems("all", &options, &stats);
    assert_true(stats.distinct_possible == 1152.0);
    gsm8k_set train, test;
    load("all", "train.jsonl", &train);
    load("all", "test.jsonl", &test);
    assert_int_equal(train.count + test.count, 1152);
    gsm8k_free(&train);
    gsm8k_free(&test);
    options.test_count = 153;
    assert_int_equal(arith_write(scratch("all-plus-one"), &options, NULL), PM_ERR_ARG);
    assert_non_null(strstr(pm_last_error(), "at most 1152 distinct problems"));
    struct stat info;
    assert_int_not_equal(stat(scratch("all-plus-one"), &info), 0);
}

static void test_bad_settings_write_nothing(void **state) {
    (void)state;
    const struct {
        const char *setting, *message;
        int train_count, test_count, min_steps, max_steps, max_operand;
    } cases[] = {
        {"no training problems", "train_count", 0, 500, 1, 2, 9},
        {"no test problems", "test_count", 20000, 0, 1, 2, 9},
        {"too many training problems", "train_count", ARITH_MAX_COUNT + 1, 500, 1, 2, 9},
        {"zero steps", "min_steps", 20000, 500, 0, 2, 9},
        {"more steps than the templates chain", "max_steps", 20000, 500, 1, ARITH_MAX_STEPS + 1, 9},
        {"min above max", "min_steps (--min-steps) 3 is above max_steps (--max-steps) 2", 20000, 500, 3, 2, 9},
        {"operands of 1 only", "max_operand", 20000, 500, 1, 2, 1},
        {"operands so large products overflow", "max_operand", 20000, 500, 1, 2, 1000000},
        {"more problems than there are", "allow at most 1152 distinct problems", 100000, 500, 1, 1, 2},
    };
    assert_int_equal(mkdir(scratch("empty"), 0755), 0);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        arith_options options = sized_options(cases[c].train_count, cases[c].test_count);
        options.min_steps = cases[c].min_steps;
        options.max_steps = cases[c].max_steps;
        options.max_operand = cases[c].max_operand;
        assert_int_equal(arith_check_options(&options), PM_ERR_ARG);
        if (!strstr(pm_last_error(), cases[c].message))
            fail_msg("%s: '%s' lacks '%s'", cases[c].setting, pm_last_error(), cases[c].message);
        /* neither a new directory nor files in an existing one */
        assert_int_equal(arith_write(scratch("never"), &options, NULL), PM_ERR_ARG);
        assert_non_null(strstr(pm_last_error(), cases[c].message));
        struct stat info;
        assert_int_not_equal(stat(scratch("never"), &info), 0);
        assert_int_equal(arith_write(scratch("empty"), &options, NULL), PM_ERR_ARG);
        assert_int_equal(entry_count(scratch("empty")), 0);
    }
}

static void test_existing_files_need_overwrite(void **state) {
    (void)state;
    arith_options options = sized_options(50, 5);
    write_problems("kept", &options, NULL);
    options.seed = 9;
    write_problems("other", &options, NULL);
    assert_int_equal(arith_write(scratch("kept"), &options, NULL), PM_ERR_ARG);
    assert_non_null(strstr(pm_last_error(), "already exists"));
    assert_non_null(strstr(pm_last_error(), "--force"));
    assert_false(same_bytes(file_in("kept", "train.jsonl"), file_in("other", "train.jsonl"))); /* untouched */
    assert_int_equal(entry_count(scratch("kept")), 2); /* and no temporary file left */
    options.overwrite = true;
    write_problems("kept", &options, NULL);
    assert_true(same_bytes(file_in("kept", "train.jsonl"), file_in("other", "train.jsonl")));
    assert_true(same_bytes(file_in("kept", "test.jsonl"), file_in("other", "test.jsonl")));
    assert_int_equal(entry_count(scratch("kept")), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answers_are_right),
        cmocka_unit_test(test_large_operands),
        cmocka_unit_test(test_no_question_repeats),
        cmocka_unit_test(test_seed_decides_the_files),
        cmocka_unit_test(test_steps_cover_the_range),
        cmocka_unit_test(test_distinct_count),
        cmocka_unit_test(test_bad_settings_write_nothing),
        cmocka_unit_test(test_existing_files_need_overwrite),
    };
    return cmocka_run_group_tests(tests, make_scratch, remove_scratch);
}
