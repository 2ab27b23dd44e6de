/* Internals of probmoe compare shared by its stages, measurement and report. */
#ifndef PM_EXPERIMENTS_COMPARE_INTERNAL_H
#define PM_EXPERIMENTS_COMPARE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "experiments/compare.h"

enum { COMPARE_PATH = 4096 };

/* Where the inputs every stage reads live. */
typedef struct {
    char tokenizer[COMPARE_PATH], text_data[COMPARE_PATH];
    char arith_train[COMPARE_PATH], arith_test[COMPARE_PATH];
} compare_inputs;

void compare_inputs_of(const compare_options *opt, compare_inputs *in);

/* A stage's job, run in a child process by compare_in_child; *peak_mib gets the child's peak
 * memory (may be NULL). The parent never starts OpenMP or BLAS threads, so forking is safe. */
typedef int (*compare_job)(const compare_options *opt, const void *arg);
int compare_in_child(compare_job job, const compare_options *opt, const void *arg, const char *what,
                     double *peak_mib);

bool compare_exists(const char *path);
/* Appends `"key": value` (", " before all but the first) to a JSON object being built in
 * out; a value that is not finite is written as null, which JSON readers accept. */
void compare_json_field(char *out, size_t size, const char *key, double value, int decimals);
/* Writes text to path through a temporary file. */
int compare_write_text(const char *path, const char *text);
/* runs/<name>-seed<seed> under out_dir. */
void compare_run_dir(const compare_options *opt, const char *name, int seed, char *out, size_t size);

/* The router config of a compare router name ("topk-lb": topk + Switch loss 0.01; probmoe-group
 * with compare_groups' G and M). */
int compare_router_config(const compare_options *opt, const char *name, pm_router_config *out);
/* The groups G of every router's analytics and probmoe-group's limit M: opt's, where given,
 * else probmoe-group's defaults for the model. */
void compare_groups(const compare_options *opt, int *groups, int *max_groups);

/* Stages (compare_stages.c). */
int compare_prepare(const compare_options *opt);
/* Pre-training of `router` (the backbone: "topk" under runs/backbone-seed<s>) and
 * fine-tuning, then evaluation; finished stages are reused. */
int compare_pretrain(const compare_options *opt, const char *router, const char *dir_name, int seed);
int compare_finetune(const compare_options *opt, const char *router, int seed);
int compare_evaluate(const compare_options *opt, const char *router, int seed);

/* Step time and peak memory of each router's fine-tuned model (seed 1), routers alternating
 * within each repetition (compare_measure.c). */
int compare_measure(const compare_options *opt);

/* report.md and plots/ (compare_report.c). */
int compare_write_report(const compare_options *opt);

#endif
