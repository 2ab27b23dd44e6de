/* Step time and peak memory of each router, measured side by side: in each repetition every
 * router runs the same fine-tuning steps in its own child process, one after another, the
 * order rotating between repetitions, so that load changes on the machine spread over all
 * routers instead of favouring the one that ran at a quiet moment. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/fs.h"
#include "eval/eval.h"
#include "experiments/compare_internal.h"
#include "io/checkpoint.h"
#include "train/batches.h"
#include "train/optim.h"

typedef struct {
    const char *router;
    int rep;
    char path[COMPARE_PATH + 64]; /* where the child writes its median step time */
} measure_stage;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Two warm-up steps, then measure_steps timed ones of forward, backward and AdamW on the
 * fine-tuning data; writes the median step time. */
static int measure_job(const compare_options *opt, const void *arg) {
    const measure_stage *stage = arg;
    compare_inputs in;
    compare_inputs_of(opt, &in);
    char run[COMPARE_PATH], model_dir[COMPARE_PATH + 32];
    compare_run_dir(opt, stage->router, 1, run, sizeof run);
    snprintf(model_dir, sizeof model_dir, "%.4000s/finetune/model", run);
    const int B = opt->finetune_batch, S = opt->finetune_seq, steps = opt->measure_steps;
    /* training steps: the model, its gradients and AdamW's moments must fit */
    pm_model_config model_cfg;
    int status = checkpoint_read_config(model_dir, &model_cfg);
    if (status == 0) status = pm_model_memory_check(&model_cfg, B, S, true);
    pm_model *model = status == 0 ? checkpoint_load_model(model_dir, B, S, false) : NULL;
    tokenizer *tok = NULL;
    if (status == 0) status = model ? tokenizer_load(in.tokenizer, &tok) : PM_ERR_ARG;
    batch_source data;
    memset(&data, 0, sizeof data);
    if (status == 0) status = batches_open_gsm8k(&data, in.arith_train, tok, CHAT_PLAIN, 0.1, S);
    adamw optimizer = {0};
    adamw_config config = {0.9f, 0.95f, 1e-8f, 0.1f, opt->freeze_router};
    if (status == 0) status = adamw_init(&optimizer, model, config);
    int32_t *inputs = malloc(sizeof(int32_t) * (size_t)B * S), *targets = malloc(sizeof(int32_t) * (size_t)B * S);
    double *times = malloc(sizeof(double) * (size_t)steps);
    if (status == 0 && (!inputs || !targets || !times)) status = pm_fail(PM_ERR_NOMEM, "measure: out of memory");
    for (int step = -2; status == 0 && step < steps; step++) {
        const double start = now_seconds();
        float loss;
        batches_train(&data, 1, (uint64_t)(step + 2), B, S, inputs, targets);
        pm_model_zero_grads(model);
        status = pm_model_forward(model, inputs, targets, B, S, true, 1, (uint64_t)(step + 2), &loss);
        if (status == 0) status = pm_model_backward(model);
        if (status == 0) adamw_step(&optimizer, model, opt->finetune_lr, NULL);
        if (step >= 0) times[step] = now_seconds() - start;
    }
    if (status == 0) {
        qsort(times, (size_t)steps, sizeof(double), by_value);
        char text[64];
        snprintf(text, sizeof text, "%.9f\n", times[steps / 2]);
        status = compare_write_text(stage->path, text);
    }
    free(inputs);
    free(targets);
    free(times);
    adamw_free(&optimizer);
    batches_close(&data);
    tokenizer_free(tok);
    pm_model_free(model);
    return status;
}

static double read_double(const char *path) {
    FILE *file = fopen(path, "r");
    double value = NAN;
    if (file && fscanf(file, "%lf", &value) != 1) value = NAN;
    if (file) fclose(file);
    return value;
}

int compare_measure(const compare_options *opt) {
    char dir[COMPARE_PATH + 16];
    snprintf(dir, sizeof dir, "%s/measure", opt->out_dir);
    int status = ensure_directory(dir);
    const long tokens = (long)opt->finetune_batch * opt->finetune_seq;
    for (int rep = 0; status == 0 && rep < opt->measure_reps; rep++)
        for (int i = 0; status == 0 && i < opt->router_count; i++) {
            /* rotate the order: each router goes first in some repetition */
            const char *router = opt->routers[(i + rep) % opt->router_count];
            char result[COMPARE_PATH + 64];
            snprintf(result, sizeof result, "%s/%s-rep%d.json", dir, router, rep + 1);
            if (compare_exists(result)) continue;
            if (rep == 0 && i == 0) printf("== measuring step time and peak memory, routers alternating\n");
            measure_stage stage = {router, rep + 1, ""};
            snprintf(stage.path, sizeof stage.path, "%s/%s-rep%d.time", dir, router, rep + 1);
            char what[256];
            snprintf(what, sizeof what, "measuring %s (repetition %d)", router, rep + 1);
            double peak = 0.0;
            status = compare_in_child(measure_job, opt, &stage, what, &peak);
            if (status < 0) break;
            const double seconds = read_double(stage.path);
            char text[256] = "{";
            compare_json_field(text, sizeof text, "step_seconds", seconds, 9);
            compare_json_field(text, sizeof text, "tokens_per_s", tokens / seconds, 1);
            compare_json_field(text, sizeof text, "peak_mib", peak, 1);
            strcat(text, "}\n");
            status = compare_write_text(result, text);
            remove(stage.path);
        }
    return status;
}
