/* probmoe compare: presets, checks and the order of the stages (compare.h). */
#include "experiments/compare.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/run_lock.h"
#include "experiments/compare_internal.h"

int compare_preset(const char *name, compare_options *opt) {
    memset(opt, 0, sizeof *opt);
    const bool quick = strcmp(name, "quick") == 0, standard = strcmp(name, "standard") == 0;
    if (!quick && !standard && strcmp(name, "paper") != 0)
        return pm_fail(PM_ERR_ARG, "compare: unknown preset '%s'; choose quick, standard or paper", name);
    opt->preset = quick ? "quick" : standard ? "standard" : "paper";
    opt->out_dir = quick ? "runs/compare-quick" : standard ? "runs/compare-standard" : "runs/compare-paper";
    /* every router of the table but the opt-in ones (the ablation hybrids, probmoe-group), and
     * topk with the Switch loss */
    for (int kind = 0; kind < pm_router_kind_count() && opt->router_count < COMPARE_MAX_ROUTERS - 1; kind++) {
        if (pm_router_is_opt_in(kind)) continue;
        opt->routers[opt->router_count++] = pm_router_kind_name(kind);
        if (kind == PM_ROUTER_TOPK) opt->routers[opt->router_count++] = "topk-lb";
    }
    opt->seeds = 3;
    opt->protocol = COMPARE_FINETUNE;
    opt->model = pm_model_config_default();
    if (quick || standard) {
        opt->model.num_layers = quick ? 2 : 4;
        opt->model.hidden_size = 128;
        opt->model.num_heads = opt->model.num_kv_heads = 4;
        opt->model.intermediate_size = 256;
    }
    opt->model.max_position_embeddings = 512;
    opt->vocab_size = quick || standard ? 2048 : 4096;
    opt->arith = arith_options_default();
    opt->pretrain_steps = quick ? 1000 : standard ? 2000 : 6000;
    /* sized so that topk learns the task: quick's reaches 33% exact match on seed 1 (600
     * steps gave 19%), 16 problems a step 73% */
    opt->finetune_steps = quick ? 1000 : standard ? 800 : 3000;
    opt->batch = 8;
    opt->seq = 128;
    opt->finetune_batch = quick ? 8 : 16;
    opt->finetune_seq = 96;
    opt->lr = 3e-3f;
    opt->finetune_lr = 2e-3f;
    opt->eval_batches = quick ? 32 : 64;
    opt->arith_limit = quick ? 200 : 500;
    opt->arith_max_new = 40;
    opt->gsm8k_limit = quick ? 100 : 300;
    opt->save_interval = 500;
    opt->measure_reps = 3;
    opt->measure_steps = quick ? 10 : 20;
    return PM_OK;
}

int compare_parse_protocol(const char *name, compare_protocol *out) {
    if (name && strcmp(name, "finetune") == 0) *out = COMPARE_FINETUNE;
    else if (name && strcmp(name, "scratch") == 0) *out = COMPARE_SCRATCH;
    else
        return pm_fail(PM_ERR_ARG, "compare: unknown protocol '%s'; choose finetune (one top-k backbone, each "
                       "router fine-tuned from it) or scratch (each router pre-trained on its own)",
                       name ? name : "(none)");
    return PM_OK;
}

const char *compare_protocol_name(compare_protocol protocol) {
    return protocol == COMPARE_FINETUNE ? "finetune" : "scratch";
}

/* Finished stages are reused only under the same settings: the first run records them in
 * settings.json and later runs must match (routers and seeds may be added). */
static int check_settings(const compare_options *opt) {
    const pm_model_config *m = &opt->model;
    const arith_options *a = &opt->arith;
    char settings[2048], path[COMPARE_PATH + 16], existing[2048] = "";
    snprintf(settings, sizeof settings,
             "{\"protocol\": \"%s\", \"freeze_router\": %s, \"layers\": %d, \"hidden\": %d, \"heads\": %d, "
             "\"kv_heads\": %d, \"experts\": %d, \"k\": %d, \"intermediate\": %d, \"max_positions\": %d, "
             "\"vocab\": %d, \"pretrain_steps\": %ld, \"finetune_steps\": %ld, \"batch\": %d, \"seq\": %d, "
             "\"finetune_batch\": %d, \"finetune_seq\": %d, \"lr\": %g, \"finetune_lr\": %g, \"eval_batches\": %d, "
             "\"arith\": [%llu, %d, %d, %d, %d, %d], \"arith_limit\": %d, \"arith_max_new\": %d, "
             "\"gsm8k_limit\": %d, \"measure\": [%d, %d]}\n",
             compare_protocol_name(opt->protocol), opt->freeze_router ? "true" : "false", m->num_layers,
             m->hidden_size, m->num_heads, m->num_kv_heads, m->num_experts, m->experts_per_token,
             m->intermediate_size, m->max_position_embeddings, opt->vocab_size, opt->pretrain_steps,
             opt->finetune_steps, opt->batch, opt->seq, opt->finetune_batch, opt->finetune_seq, (double)opt->lr,
             (double)opt->finetune_lr, opt->eval_batches, (unsigned long long)a->seed, a->train_count,
             a->test_count, a->min_steps, a->max_steps, a->max_operand, opt->arith_limit, opt->arith_max_new,
             opt->gsm8k_limit, opt->measure_reps, opt->measure_steps);
    /* the groups only when given, so that directories made before the flags existed still match */
    if (opt->groups > 0 || opt->max_groups > 0) {
        int groups, max_groups;
        compare_groups(opt, &groups, &max_groups);
        const size_t end = strlen(settings) - 2; /* before "}\n" */
        snprintf(settings + end, sizeof settings - end, ", \"groups\": [%d, %d]}\n", groups, max_groups);
    }
    snprintf(path, sizeof path, "%s/settings.json", opt->out_dir);
    FILE *file = fopen(path, "r");
    if (!file) return compare_write_text(path, settings);
    size_t got = fread(existing, 1, sizeof existing - 1, file);
    fclose(file);
    existing[got] = '\0';
    if (strcmp(existing, settings) != 0)
        return pm_fail(PM_ERR_ARG, "compare: %s holds runs made with other settings (%s); use another --out to "
                       "keep both", opt->out_dir, path);
    return PM_OK;
}

int compare_check(const compare_options *opt) {
    if (opt->router_count < 1) return pm_fail(PM_ERR_ARG, "compare: give at least one router (--routers)");
    if (opt->seeds < 1 || opt->seeds > COMPARE_MAX_SEEDS)
        return pm_fail(PM_ERR_ARG, "compare: --seeds %d; give 1 to %d seeds", opt->seeds, COMPARE_MAX_SEEDS);
    if (!opt->out_dir || strlen(opt->out_dir) > COMPARE_MAX_OUT)
        return pm_fail(PM_ERR_ARG, "compare: the output directory's name must have 1 to %d characters",
                       COMPARE_MAX_OUT);
    if (opt->pretrain_steps < 1 || opt->finetune_steps < 1 || opt->measure_reps < 1 || opt->measure_steps < 1)
        return pm_fail(PM_ERR_ARG, "compare: --pretrain-steps %ld, --finetune-steps %ld, --measure-reps %d and "
                       "--measure-steps %d; each must be at least 1", opt->pretrain_steps, opt->finetune_steps,
                       opt->measure_reps, opt->measure_steps);
    if (opt->arith_limit == 0 || opt->arith_limit < -1 || opt->gsm8k_limit == 0 || opt->gsm8k_limit < -1)
        return pm_fail(PM_ERR_ARG, "compare: --arith-limit %d and --gsm8k-limit %d; each must be at least 1 (or -1: "
                       "all)", opt->arith_limit, opt->gsm8k_limit);
    if (opt->arith_limit > opt->arith.test_count)
        return pm_fail(PM_ERR_ARG, "compare: --arith-limit %d exceeds the %d test problems of the task",
                       opt->arith_limit, opt->arith.test_count);
    int status = arith_check_options(&opt->arith);
    if (status < 0)
        return pm_fail(PM_ERR_ARG, "compare: the arithmetic task (flags --arith-train, --arith-test, "
                       "--arith-max-steps, --arith-max-operand): %s", pm_last_error());
    if (opt->arith_max_new < 1 || opt->arith_max_new >= opt->model.max_position_embeddings)
        return pm_fail(PM_ERR_ARG, "compare: --max-new %d; give 1 to %d", opt->arith_max_new,
                       opt->model.max_position_embeddings - 1);
    int groups, max_groups;
    compare_groups(opt, &groups, &max_groups);
    if (groups < 1 || opt->model.num_experts % groups != 0 || max_groups < 1 || max_groups > groups)
        return pm_fail(PM_ERR_ARG, "compare: --groups %d --max-groups %d; G must divide the %d experts and M be "
                       "1 to G", groups, max_groups, opt->model.num_experts);
    for (int r = 0; r < opt->router_count; r++) {
        pm_model_config model = opt->model;
        status = compare_router_config(opt, opt->routers[r], &model.router);
        if (status == 0) status = pm_model_config_check(&model);
        if (status < 0) return status;
        for (int q = 0; q < r; q++)
            if (strcmp(opt->routers[q], opt->routers[r]) == 0)
                return pm_fail(PM_ERR_ARG, "compare: the router '%s' is listed twice", opt->routers[r]);
    }
    return pm_model_config_check(&opt->model) < 0 ? PM_ERR_ARG : PM_OK;
}

int compare_run(const compare_options *opt) {
    int status = compare_check(opt);
    if (status == 0 && (!opt->text_path || !opt->gsm8k_test))
        status = pm_fail(PM_ERR_ARG, "compare: the text corpus and the GSM8K test path are needed");
    /* one compare at a time per directory; its trainings lock their own subdirectories */
    run_lock *lock = NULL;
    if (status == 0) status = run_lock_acquire(opt->out_dir, "probmoe compare", &lock);
    if (status == 0) status = check_settings(opt);
    if (status == 0) status = compare_prepare(opt);
    for (int seed = 1; status == 0 && seed <= opt->seeds; seed++) {
        if (opt->protocol == COMPARE_FINETUNE) status = compare_pretrain(opt, "topk", "backbone", seed);
        for (int r = 0; status == 0 && r < opt->router_count; r++) {
            const char *router = opt->routers[r];
            if (opt->protocol == COMPARE_SCRATCH) status = compare_pretrain(opt, router, router, seed);
            if (status == 0) status = compare_finetune(opt, router, seed);
            if (status == 0) status = compare_evaluate(opt, router, seed);
        }
    }
    if (status == 0) status = compare_measure(opt);
    if (status == 0) status = compare_write_report(opt);
    run_lock_release(lock);
    return status;
}
