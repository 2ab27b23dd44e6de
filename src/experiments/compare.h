/*
 * probmoe compare: the same model trained with each router on the same data and token
 * budget — pre-training on a text corpus, fine-tuning on GSM8K train — then evaluated on
 * held-out text and GSM8K test, with routing analytics, summarised in report.md.
 *
 * Layout of out_dir:
 *   tokenizer.json, data/          the BPE vocabulary and token shards (made once)
 *   runs/<router>-seed<s>/         pretrain/, finetune/ (trainer output directories),
 *                                  eval.json, gsm8k_outputs.jsonl, routing/ (analytics)
 *   report.md, plots/
 * Every stage runs in a child process (its peak memory is measured) and leaves a result file
 * only when it succeeded, so running the command again reuses finished stages and resumes an
 * interrupted training from its last checkpoint.
 */
#ifndef PM_EXPERIMENTS_COMPARE_H
#define PM_EXPERIMENTS_COMPARE_H

#include "probmoe.h"

enum { COMPARE_MAX_ROUTERS = 16 };

typedef struct {
    const char *out_dir;
    const char *routers[COMPARE_MAX_ROUTERS]; /* router names, plus "topk-lb" (topk + Switch loss) */
    int router_count;
    int seeds;
    pm_model_config model;          /* the router part is set per run */
    const char *text_path;          /* the pre-training corpus (the caller locates the data) */
    int vocab_size;                 /* of the BPE vocabulary learned from it */
    const char *gsm8k_train, *gsm8k_test;
    long pretrain_steps, finetune_steps;
    int batch, seq, finetune_batch, finetune_seq;
    float lr, finetune_lr;
    int eval_batches, gsm8k_limit, max_new;
    long save_interval;
} compare_options;

/* The two presets: "quick" (about 10 minutes on 2 cores) and "paper" (a longer run). */
int compare_preset(const char *name, compare_options *opt);

/* Checks the options (routers, seeds, model) without touching the disk. 0 or a negative pm_status. */
int compare_check(const compare_options *opt);

/* Runs (or reuses) every stage, then writes report.md and the plots. 0 or a negative
 * pm_status naming the stage that failed. */
int compare_run(const compare_options *opt);

#endif
