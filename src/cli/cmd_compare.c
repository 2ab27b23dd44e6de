/* probmoe compare: every router on the same model, data and budget; report.md with tables. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "experiments/compare.h"
#include "probmoe.h"

static const char compare_usage[] =
    "usage: probmoe compare [--preset quick|paper] [options]\n"
    "\n"
    "Pre-trains the same MoE with each router on Tiny Shakespeare (a BPE vocabulary learned once),\n"
    "fine-tunes it on GSM8K train, evaluates held-out text and GSM8K test, and writes report.md.\n"
    "Finished stages are reused when the command runs again; an interrupted training resumes.\n"
    "\n"
    "  --preset NAME         quick (about 10 minutes on 2 cores, the default) or paper (longer)\n"
    "  --routers A,B,...     routers to compare (default: every router but the ablations, and\n"
    "                        topk-lb = topk with the Switch loss 0.01); see the list below\n"
    "  --seeds N             seeds per router\n"
    "  --out DIR             where runs and the report go\n"
    "  --pretrain-steps N --finetune-steps N --gsm8k-limit N --max-new N   the budget\n";

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
        int number = 0;
        if (strcmp(arg, "--help") == 0) {
            fputs(compare_usage, stdout);
            printf("\nrouters: topk-lb, %s\n", pm_router_kind_list());
            return 0;
        }
        if (!value) {
            fprintf(stderr, "probmoe compare: %s needs a value\n\n%s", arg, compare_usage);
            return 2;
        }
        bool is_number = strcmp(arg, "--seeds") == 0 || strcmp(arg, "--pretrain-steps") == 0 ||
                         strcmp(arg, "--finetune-steps") == 0 || strcmp(arg, "--gsm8k-limit") == 0 ||
                         strcmp(arg, "--max-new") == 0;
        if (is_number && !parse_int_option(arg, value, &number)) return 2;
        if (strcmp(arg, "--preset") == 0) {
        } else if (strcmp(arg, "--out") == 0) {
            opt.out_dir = value;
        } else if (strcmp(arg, "--routers") == 0) {
            snprintf(routers, sizeof routers, "%s", value);
            opt.router_count = 0;
            for (char *name = strtok(routers, ","); name && opt.router_count < COMPARE_MAX_ROUTERS;
                 name = strtok(NULL, ","))
                opt.routers[opt.router_count++] = name;
        } else if (strcmp(arg, "--seeds") == 0) {
            opt.seeds = number;
        } else if (strcmp(arg, "--pretrain-steps") == 0) {
            opt.pretrain_steps = number;
        } else if (strcmp(arg, "--finetune-steps") == 0) {
            opt.finetune_steps = number;
        } else if (strcmp(arg, "--gsm8k-limit") == 0) {
            opt.gsm8k_limit = number;
        } else if (strcmp(arg, "--max-new") == 0) {
            opt.max_new = number;
        } else {
            fprintf(stderr, "probmoe compare: unknown option '%s'\n\n%s", arg, compare_usage);
            return 2;
        }
        i++;
    }
    if (compare_check(&opt) < 0) {
        fprintf(stderr, "probmoe compare: %s\n", pm_last_error());
        return 1;
    }
    /* the data sets, checked and fetched when missing by the repository's script */
    static char text[4096], gsm8k_train[4096], gsm8k_test[4096];
    if (!cli_fetch("probmoe compare", "fetch_data.sh", "tinyshakespeare", text, sizeof text) ||
        !cli_fetch("probmoe compare", "fetch_data.sh", "gsm8k-train", gsm8k_train, sizeof gsm8k_train) ||
        !cli_fetch("probmoe compare", "fetch_data.sh", "gsm8k-test", gsm8k_test, sizeof gsm8k_test))
        return 1;
    opt.text_path = text;
    opt.gsm8k_train = gsm8k_train;
    opt.gsm8k_test = gsm8k_test;
    if (compare_run(&opt) < 0) {
        fprintf(stderr, "probmoe compare: %s\n", pm_last_error());
        return 1;
    }
    return 0;
}
