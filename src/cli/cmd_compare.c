/* probmoe compare: every router on the same model, data and budget; report.md with tables. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/run_lock.h"
#include "experiments/compare.h"
#include "probmoe.h"

static const char compare_usage[] =
    "usage: probmoe compare [--preset quick|standard|paper] [options]\n"
    "\n"
    "Trains the same MoE with each router and compares them. Protocol finetune (the default, the\n"
    "ProbMoE paper's): per seed one backbone is pre-trained on Tiny Shakespeare with top-k (a BPE\n"
    "vocabulary learned once), then each router is fine-tuned from it on a generated arithmetic\n"
    "task (probmoe data arith) with the same data order. Evaluation: held-out text, arithmetic\n"
    "exact match and answer loss, GSM8K answer loss, routing analytics; step time and peak\n"
    "memory are measured side by side. report.md says claim by claim what held. Finished stages\n"
    "are reused when the command runs again; an interrupted training resumes.\n"
    "\n"
    "  --preset NAME         quick (about 25 minutes on 2 cores, the default), standard (at most\n"
    "                        90 minutes) or paper (longer); each with 3 seeds\n"
    "  --protocol NAME       finetune (default) or scratch (each router pre-trained on its own)\n"
    "  --routers A,B,...     routers to compare (default: every router but the ablations, and\n"
    "                        topk-lb = topk with the Switch loss 0.01); the ablations\n"
    "                        topk-marginal and sample-softmax may be listed too\n"
    "  --freeze-router       fine-tune with the routing parameters frozen (the official code's\n"
    "                        frozen-gate baseline)\n"
    "  --seeds N             seeds per router\n"
    "  --out DIR             where runs and the report go\n"
    "  --pretrain-steps N --finetune-steps N   the training budget\n"
    "  --arith-train N --arith-test N --arith-max-steps N --arith-max-operand N   the task\n"
    "  --arith-limit N --max-new N --gsm8k-limit N   the evaluation\n"
    "  --measure-reps N --measure-steps N   the side-by-side timing\n"
    "  --groups G --max-groups M   every router's analytics count the groups of E/G experts\n"
    "                        a token spans; probmoe-group (list it in --routers) keeps them\n"
    "                        within M (default: probmoe-group's defaults for the model)\n";

/* Options that take a whole number, and where it goes. */
static int *int_target(compare_options *opt, const char *arg) {
    const struct { const char *name; int *target; } ints[] = {
        {"--seeds", &opt->seeds}, {"--arith-train", &opt->arith.train_count},
        {"--arith-test", &opt->arith.test_count}, {"--arith-max-steps", &opt->arith.max_steps},
        {"--arith-max-operand", &opt->arith.max_operand}, {"--arith-limit", &opt->arith_limit},
        {"--max-new", &opt->arith_max_new}, {"--gsm8k-limit", &opt->gsm8k_limit},
        {"--measure-reps", &opt->measure_reps}, {"--measure-steps", &opt->measure_steps},
        {"--groups", &opt->groups}, {"--max-groups", &opt->max_groups}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (strcmp(arg, ints[i].name) == 0) return ints[i].target;
    return NULL;
}

int cmd_compare(int argc, char **argv) {
    const char *preset = "quick";
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--preset") == 0) preset = argv[i + 1];
    compare_options opt;
    if (compare_preset(preset, &opt) < 0) {
        fprintf(stderr, "probmoe compare: %s\n", pm_last_error());
        return 2;
    }
    static char routers[1024];
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0) {
            fputs(compare_usage, stdout);
            printf("\nrouters: topk-lb, %s\n", pm_router_kind_list());
            return 0;
        }
        if (strcmp(arg, "--freeze-router") == 0) {
            opt.freeze_router = true;
            continue;
        }
        if (!value) {
            fprintf(stderr, "probmoe compare: %s needs a value\n\n%s", arg, compare_usage);
            return 2;
        }
        /* the syntax here, the ranges (which depend on each other and on the preset) in
         * compare_check, which names the flags */
        int number = 0, *target = int_target(&opt, arg);
        if ((target || strcmp(arg, "--pretrain-steps") == 0 || strcmp(arg, "--finetune-steps") == 0) &&
            !parse_int_flag(arg, value, -2147483647 - 1, 2147483647, &number))
            return 2;
        if (target) {
            *target = number;
        } else if (strcmp(arg, "--preset") == 0) {
        } else if (strcmp(arg, "--out") == 0) {
            opt.out_dir = value;
        } else if (strcmp(arg, "--protocol") == 0) {
            if (compare_parse_protocol(value, &opt.protocol) < 0) {
                fprintf(stderr, "probmoe compare: %s\n", pm_last_error());
                return 2;
            }
        } else if (strcmp(arg, "--routers") == 0) {
            snprintf(routers, sizeof routers, "%s", value);
            opt.router_count = 0;
            for (char *name = strtok(routers, ","); name; name = strtok(NULL, ",")) {
                if (opt.router_count == COMPARE_MAX_ROUTERS) {
                    fprintf(stderr, "probmoe compare: at most %d routers\n", COMPARE_MAX_ROUTERS);
                    return 2;
                }
                opt.routers[opt.router_count++] = name;
            }
        } else if (strcmp(arg, "--pretrain-steps") == 0) {
            opt.pretrain_steps = number;
        } else if (strcmp(arg, "--finetune-steps") == 0) {
            opt.finetune_steps = number;
        } else {
            fprintf(stderr, "probmoe compare: unknown option '%s'\n\n%s", arg, compare_usage);
            return 2;
        }
        i++;
    }
    if (compare_check(&opt) < 0) { /* bad settings: a usage error */
        fprintf(stderr, "probmoe compare: %s\n", pm_last_error());
        return 2;
    }
    /* a compare already writing there is refused before the data sets are fetched */
    if (run_lock_check(opt.out_dir) < 0) {
        fprintf(stderr, "probmoe compare: %s\n", pm_last_error());
        return 1;
    }
    /* the data sets, checked and fetched when missing by the repository's script */
    static char text[4096], gsm8k_test[4096];
    if (!cli_fetch("probmoe compare", "fetch_data.sh", "tinyshakespeare", text, sizeof text) ||
        !cli_fetch("probmoe compare", "fetch_data.sh", "gsm8k-test", gsm8k_test, sizeof gsm8k_test))
        return 1;
    opt.text_path = text;
    opt.gsm8k_test = gsm8k_test;
    if (compare_run(&opt) < 0) {
        fprintf(stderr, "probmoe compare: %s\n", pm_last_error());
        return 1;
    }
    return 0;
}
