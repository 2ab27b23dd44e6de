/*
 * probmoe compare: the same model with each router on the same data and token budget,
 * evaluated on held-out text, an arithmetic task it can learn and GSM8K's answer loss, with
 * routing analytics, step time and peak memory measured side by side, and report.md saying
 * claim by claim what held.
 *
 * Two protocols:
 *  - finetune (the default, the ProbMoE paper's): per seed, one backbone is pre-trained once
 *    with conventional top-k; each router is then fine-tuned from those weights on the same
 *    data in the same order;
 *  - scratch: each router is pre-trained on its own, then fine-tuned.
 *
 * Layout of out_dir:
 *   tokenizer.json, data/           the BPE vocabulary and token shards of the text (made once)
 *   arith/                          the arithmetic task (train.jsonl, test.jsonl)
 *   runs/backbone-seed<s>/pretrain/ the top-k backbone (finetune protocol)
 *   runs/<router>-seed<s>/          pretrain/ (scratch protocol), finetune/, eval.json,
 *                                   arith_outputs.jsonl, routing/ (analytics)
 *   measure/<router>-rep<r>.json    step time and peak memory, routers alternating
 *   report.md, plots/
 * Every stage runs in a child process and leaves a result file only when it succeeded, so
 * running the command again reuses finished stages and resumes an interrupted training.
 * out_dir is locked while compare runs (core/run_lock.h), and each training locks its own
 * pretrain/ or finetune/ directory: a second compare there is refused.
 */
#ifndef PM_EXPERIMENTS_COMPARE_H
#define PM_EXPERIMENTS_COMPARE_H

#include "data/arith.h"
#include "probmoe.h"

enum { COMPARE_MAX_ROUTERS = 16, COMPARE_MAX_SEEDS = 64, COMPARE_MAX_OUT = 2048 };

typedef enum { COMPARE_FINETUNE, COMPARE_SCRATCH } compare_protocol;

typedef struct {
    const char *preset;
    const char *out_dir;
    const char *routers[COMPARE_MAX_ROUTERS]; /* router names, plus "topk-lb" (topk + Switch loss) */
    int router_count;
    int seeds;
    compare_protocol protocol;
    bool freeze_router;             /* fine-tune without updating the routing parameters */
    /* G: every router's analytics count the groups of E/G experts a token spans, and
     * probmoe-group routes within M of them; 0: probmoe-group's defaults for the model */
    int groups, max_groups;
    pm_model_config model;          /* the router part is set per run */
    const char *text_path;          /* the pre-training corpus (the caller locates the data) */
    int vocab_size;                 /* of the BPE vocabulary learned from it */
    const char *gsm8k_test;         /* GSM8K test: its answer loss */
    arith_options arith;            /* the fine-tuning task */
    long pretrain_steps, finetune_steps;
    int batch, seq, finetune_batch, finetune_seq;
    float lr, finetune_lr;
    int eval_batches, arith_limit, arith_max_new, gsm8k_limit;
    long save_interval;
    int measure_reps, measure_steps; /* side-by-side timing: repetitions, steps per repetition */
} compare_options;

/* The presets: "quick" (about 25 minutes on 2 cores), "standard" (at most 90 minutes) and
 * "paper" (longer); each with 3 seeds. */
int compare_preset(const char *name, compare_options *opt);

/* compare_protocol from "finetune" or "scratch". */
int compare_parse_protocol(const char *name, compare_protocol *out);
const char *compare_protocol_name(compare_protocol protocol);

/* Checks the options (routers, seeds, model, budget, task) without touching the disk. 0 or a
 * negative pm_status. */
int compare_check(const compare_options *opt);

/* Runs (or reuses) every stage, then writes report.md and the plots. 0 or a negative
 * pm_status naming the stage that failed. */
int compare_run(const compare_options *opt);

#endif
