/* probmoe data arith: writes generated arithmetic word problems in GSM8K's format (data/arith.h). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "data/arith.h"

const char data_arith_usage[] =
    "usage: probmoe data arith --out DIR [options]\n"
    "\n"
    "Writes DIR/train.jsonl and DIR/test.jsonl: arithmetic word problems in GSM8K's format, for\n"
    "train --gsm8k and eval --gsm8k. Each answer shows one line per step and ends with the result:\n"
    "  Tom has 7 apples. He buys 5 more. Then he gives away 3. How many apples does Tom have now?\n"
    "  7 + 5 = 12 / 12 - 3 = 9 / #### 9\n"
    "Every problem is distinct, none is in both files, and the same options give the same files.\n"
    "\n"
    "  --out DIR          where the files go (created if needed)\n"
    "  --train N          training problems (default 20000)\n"
    "  --test N           test problems (default 500)\n"
    "  --seed S           (default 1)\n"
    "  --min-steps A      fewest steps (+, - or *) per problem, 1 to 3 (default 1)\n"
    "  --max-steps B      most steps per problem, A to 3 (default 2)\n"
    "  --max-operand M    numbers in the questions are 1 to M, 2 <= M <= 10000 (default 9)\n"
    "  --force            replace train.jsonl and test.jsonl already in DIR\n";

/* Returns 0, -1 after printing help, or the exit code to stop with. */
static int parse_arith_options(int argc, char **argv, const char **out_dir, arith_options *opt) {
    *opt = arith_options_default();
    *out_dir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0) {
            fputs(data_arith_usage, stdout);
            return -1;
        }
        if (strcmp(arg, "--force") == 0) {
            opt->overwrite = true;
            continue;
        }
        const struct {
            const char *name;
            int *target;
        } numbers[] = {{"--train", &opt->train_count},     {"--test", &opt->test_count},
                       {"--min-steps", &opt->min_steps},   {"--max-steps", &opt->max_steps},
                       {"--max-operand", &opt->max_operand}};
        int *target = NULL;
        for (size_t n = 0; n < sizeof numbers / sizeof numbers[0]; n++)
            if (strcmp(arg, numbers[n].name) == 0) target = numbers[n].target;
        if (!target && strcmp(arg, "--out") != 0 && strcmp(arg, "--seed") != 0) {
            fprintf(stderr, "probmoe data arith: unknown option '%s'\n\n%s", arg, data_arith_usage);
            return 2;
        }
        if (!value) {
            fprintf(stderr, "probmoe data arith: %s needs a value\n", arg);
            return 2;
        }
        i++;
        if (strcmp(arg, "--out") == 0) {
            *out_dir = value;
            continue;
        }
        /* the syntax here, the ranges in arith_check_options, which names the flags */
        if (target) {
            if (!parse_int_flag(arg, value, -2147483647 - 1, 2147483647, target)) return 2;
            continue;
        }
        int seed; /* --seed */
        if (!parse_int_flag(arg, value, 0, 2147483647, &seed)) return 2;
        opt->seed = (uint64_t)seed;
    }
    if (!*out_dir) {
        fprintf(stderr, "probmoe data arith: give the output directory with --out DIR\n");
        return 2;
    }
    return 0;
}

int cmd_data_arith(int argc, char **argv) {
    const char *out_dir;
    arith_options opt;
    int code = parse_arith_options(argc, argv, &out_dir, &opt);
    if (code != 0) return code < 0 ? 0 : code;
    if (arith_check_options(&opt) < 0) {
        fprintf(stderr, "probmoe data arith: %s\n", pm_last_error());
        return 2;
    }
    arith_stats stats;
    if (arith_write(out_dir, &opt, &stats) < 0) {
        fprintf(stderr, "probmoe data arith: %s\n", pm_last_error());
        return 1;
    }
    printf("wrote %s/train.jsonl (%d problems) and %s/test.jsonl (%d problems); seed %llu, operands 1 to %d\n",
           out_dir, opt.train_count, out_dir, opt.test_count, (unsigned long long)opt.seed, opt.max_operand);
    printf("steps:");
    for (int s = opt.min_steps; s <= opt.max_steps; s++) printf(" %d: %d problems%s", s, stats.steps_count[s],
                                                               s < opt.max_steps ? "," : "\n");
    /* the possible count can have 20 digits; beyond 12 its order of magnitude says enough */
    printf("%lld draws for %d distinct problems, of %.*g these settings allow\n", stats.draws,
           opt.train_count + opt.test_count, stats.distinct_possible < 1e12 ? 12 : 3, stats.distinct_possible);
    return 0;
}
