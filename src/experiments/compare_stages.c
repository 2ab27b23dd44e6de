/* The stages of probmoe compare, each in a child process: data, pre-training, fine-tuning,
 * evaluation. A stage leaves its result file only when it succeeded. */
#define _DEFAULT_SOURCE /* fork, dirent and wait4 (per-child peak memory) */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "data/corpus.h"
#include "eval/analytics.h"
#include "eval/eval.h"
#include "experiments/compare_internal.h"
#include "tokenizer/bpe_train.h"
#include "train/trainer.h"

/* ---------------------------------------------------------------- helpers */

bool compare_exists(const char *path) {
    struct stat info;
    return stat(path, &info) == 0;
}

void compare_json_field(char *out, size_t size, const char *key, double value, int decimals) {
    const size_t used = strlen(out);
    if (used >= size) return;
    const char *comma = used > 1 ? ", " : "";
    if (isfinite(value)) snprintf(out + used, size - used, "%s\"%s\": %.*f", comma, key, decimals, value);
    else snprintf(out + used, size - used, "%s\"%s\": null", comma, key);
}

void compare_inputs_of(const compare_options *opt, compare_inputs *in) {
    snprintf(in->tokenizer, sizeof in->tokenizer, "%s/tokenizer.json", opt->out_dir);
    snprintf(in->text_data, sizeof in->text_data, "%s/data", opt->out_dir);
    snprintf(in->arith_train, sizeof in->arith_train, "%s/arith/train.jsonl", opt->out_dir);
    snprintf(in->arith_test, sizeof in->arith_test, "%s/arith/test.jsonl", opt->out_dir);
}

void compare_run_dir(const compare_options *opt, const char *name, int seed, char *out, size_t size) {
    snprintf(out, size, "%s/runs/%s-seed%d", opt->out_dir, name, seed);
}

int compare_in_child(compare_job job, const compare_options *opt, const void *arg, const char *what,
                     double *peak_mib) {
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    if (child < 0) return pm_fail(PM_ERR_STATE, "compare: cannot start %s: %s", what, strerror(errno));
    if (child == 0) {
        int status = job(opt, arg);
        if (status < 0) fprintf(stderr, "compare: %s: %s\n", what, pm_last_error());
        fflush(stderr);
        _exit(status < 0 ? 1 : 0);
    }
    int status = 0;
    struct rusage usage;
    if (wait4(child, &status, 0, &usage) < 0) return pm_fail(PM_ERR_STATE, "compare: lost %s", what);
    if (peak_mib) *peak_mib = usage.ru_maxrss / 1024.0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return pm_fail(PM_ERR_STATE, "compare: %s failed (see the message above); run the same command again "
                       "to retry from where it stopped", what);
    return PM_OK;
}

int compare_write_text(const char *path, const char *text) {
    char temporary[COMPARE_PATH + 8];
    snprintf(temporary, sizeof temporary, "%s.tmp", path);
    FILE *file = fopen(temporary, "w");
    if (!file) return pm_fail(PM_ERR_ARG, "compare: cannot write %s", path);
    bool ok = fputs(text, file) >= 0;
    ok = fclose(file) == 0 && ok;
    if (!ok || rename(temporary, path) != 0) return pm_fail(PM_ERR_ARG, "compare: writing %s failed", path);
    return PM_OK;
}

/* The newest checkpoint-NNNNNN directory under dir, or "" if none. */
static void latest_checkpoint(const char *dir, char *out, size_t size) {
    out[0] = '\0';
    DIR *listing = opendir(dir);
    long best = -1;
    for (struct dirent *entry; listing && (entry = readdir(listing));) {
        long step;
        char tail;
        if (sscanf(entry->d_name, "checkpoint-%ld%c", &step, &tail) == 1 && step > best) best = step;
    }
    if (listing) closedir(listing);
    if (best >= 0 && (size_t)snprintf(out, size, "%s/checkpoint-%06ld", dir, best) >= size) out[0] = '\0';
}

void compare_groups(const compare_options *opt, int *groups, int *max_groups) {
    pm_router_kind group_kind = PM_ROUTER_PROBMOE;
    pm_router_kind_parse("probmoe-group", &group_kind); /* in the table, without a public constant */
    const pm_router_config d =
        pm_router_config_default(group_kind, opt->model.num_experts, opt->model.experts_per_token);
    *groups = opt->groups > 0 ? opt->groups : d.groups;
    *max_groups = opt->max_groups > 0 ? opt->max_groups : d.max_groups;
}

int compare_router_config(const compare_options *opt, const char *name, pm_router_config *out) {
    pm_router_kind kind;
    const bool with_lb = strcmp(name, "topk-lb") == 0;
    if (!with_lb && pm_router_kind_parse(name, &kind) < 0)
        return pm_fail(PM_ERR_ARG, "compare: unknown router '%s'; choose from topk-lb, %s", name,
                       pm_router_kind_list());
    *out = pm_router_config_default(with_lb ? PM_ROUTER_TOPK : kind, opt->model.num_experts,
                                    opt->model.experts_per_token);
    if (with_lb) out->lb_coef = 0.01f;
    if (strcmp(name, "probmoe-group") == 0) compare_groups(opt, &out->groups, &out->max_groups);
    return PM_OK;
}

static int record_peak(const char *dir, const char *stage, double peak_mib) {
    char path[COMPARE_PATH + 64], text[64];
    snprintf(path, sizeof path, "%s/peak_%s_mib", dir, stage);
    snprintf(text, sizeof text, "%.1f\n", peak_mib);
    return compare_write_text(path, text);
}

/* ------------------------------------------------------------------ data */

static int prepare_job(const compare_options *opt, const void *arg) {
    const compare_inputs *in = arg;
    if (!compare_exists(in->tokenizer)) {
        const char *files[1] = {opt->text_path};
        bpe_train_stats stats;
        int status = bpe_train(files, 1, opt->vocab_size, in->tokenizer, &stats);
        if (status < 0) return status;
    }
    tokenizer *tok = NULL;
    int status = tokenizer_load(in->tokenizer, &tok);
    if (status < 0) return status;
    const char *files[1] = {opt->text_path};
    corpus_source source = {"text", files, 1};
    corpus_options options = {tok, in->tokenizer, 0.1, true};
    status = corpus_prepare(in->text_data, &source, 1, &options, NULL);
    tokenizer_free(tok);
    return status;
}

int compare_prepare(const compare_options *opt) {
    compare_inputs in;
    compare_inputs_of(opt, &in);
    char marker[COMPARE_PATH + 16];
    snprintf(marker, sizeof marker, "%s/train.bin", in.text_data);
    if (!compare_exists(marker) || !compare_exists(in.tokenizer)) {
        printf("== preparing the BPE vocabulary and token shards of %s\n", opt->text_path);
        int status = compare_in_child(prepare_job, opt, &in, "preparing the data", NULL);
        if (status < 0) return status;
    }
    if (!compare_exists(in.arith_test)) {
        char dir[COMPARE_PATH + 8];
        snprintf(dir, sizeof dir, "%s/arith", opt->out_dir);
        printf("== generating the arithmetic task (%d training, %d test problems)\n", opt->arith.train_count,
               opt->arith.test_count);
        arith_options arith = opt->arith;
        arith.overwrite = true; /* a test file is missing, so nothing finished depends on them */
        int status = arith_write(dir, &arith, NULL);
        if (status < 0) return status;
    }
    return PM_OK;
}

/* -------------------------------------------------------------- training */

typedef struct {
    const char *router;
    int seed;
    bool finetune;
    char dir[COMPARE_PATH];  /* the run directory */
    char init[COMPARE_PATH]; /* fine-tuning: the model to start from */
} train_stage;

static int train_job(const compare_options *opt, const void *arg) {
    const train_stage *stage = arg;
    compare_inputs in;
    compare_inputs_of(opt, &in);
    tokenizer *tok = NULL;
    int status = tokenizer_load(in.tokenizer, &tok);
    if (status < 0) return status;
    pm_model_config cfg = opt->model;
    cfg.vocab_size = tok->vocab_size;
    status = compare_router_config(opt, stage->router, &cfg.router);
    train_options t = train_options_default();
    t.tokenizer_path = in.tokenizer;
    t.seed = (uint64_t)stage->seed;
    t.steps = stage->finetune ? opt->finetune_steps : opt->pretrain_steps;
    t.warmup = t.steps / 10;
    t.batch = stage->finetune ? opt->finetune_batch : opt->batch;
    t.seq = stage->finetune ? opt->finetune_seq : opt->seq;
    t.lr = stage->finetune ? opt->finetune_lr : opt->lr;
    t.eval_interval = t.steps / 4 > 0 ? t.steps / 4 : 1;
    t.eval_batches = opt->eval_batches;
    t.save_interval = opt->save_interval;
    t.keep_last = 1;
    t.data_path = stage->finetune ? in.arith_train : in.text_data;
    t.supervised = stage->finetune;
    if (stage->finetune) {
        t.init_dir = stage->init;
        t.init_reroute = true; /* the backbone's weights, routed by this run's router */
        t.adamw.freeze_router = opt->freeze_router;
    }
    char out[COMPARE_PATH + 16], checkpoint[COMPARE_PATH + 64];
    snprintf(out, sizeof out, "%s/%s", stage->dir, stage->finetune ? "finetune" : "pretrain");
    t.out_dir = out;
    latest_checkpoint(out, checkpoint, sizeof checkpoint);
    if (checkpoint[0]) {
        t.resume_dir = checkpoint;
        t.data_path = NULL;
    }
    train_result result;
    if (status == 0) status = train_run(&cfg, &t, tok, &result);
    tokenizer_free(tok);
    if (status < 0) return status;
    double active = 0.0;
    for (int l = 0; l < result.num_layers; l++) active += result.routing[l].mean_active / result.num_layers;
    char text[512] = "{", path[COMPARE_PATH + 32];
    compare_json_field(text, sizeof text, "steps", (double)result.steps_done, 0);
    compare_json_field(text, sizeof text, "val_loss", result.final_val_loss, 6);
    compare_json_field(text, sizeof text, "tokens_per_s", result.tokens_per_second, 1);
    compare_json_field(text, sizeof text, "mean_active", active, 4);
    strcat(text, "}\n");
    snprintf(path, sizeof path, "%s/result.json", out);
    return compare_write_text(path, text);
}

static int run_training(const compare_options *opt, train_stage *stage) {
    const char *name = stage->finetune ? "finetune" : "pretrain";
    char marker[COMPARE_PATH + 32], what[256];
    snprintf(marker, sizeof marker, "%s/%s/result.json", stage->dir, name);
    if (compare_exists(marker)) return PM_OK; /* finished earlier: reuse */
    printf("== %s, seed %d: %s\n", stage->router, stage->seed,
           stage->finetune ? "fine-tuning on the arithmetic task" : "pre-training");
    snprintf(what, sizeof what, "%s of %s seed %d", name, stage->router, stage->seed);
    double peak = 0.0;
    int status = compare_in_child(train_job, opt, stage, what, &peak);
    if (status == 0) status = record_peak(stage->dir, name, peak);
    return status;
}

int compare_pretrain(const compare_options *opt, const char *router, const char *dir_name, int seed) {
    train_stage stage = {router, seed, false, "", ""};
    compare_run_dir(opt, dir_name, seed, stage.dir, sizeof stage.dir);
    return run_training(opt, &stage);
}

int compare_finetune(const compare_options *opt, const char *router, int seed) {
    train_stage stage = {router, seed, true, "", ""};
    compare_run_dir(opt, router, seed, stage.dir, sizeof stage.dir);
    char from[COMPARE_PATH];
    compare_run_dir(opt, opt->protocol == COMPARE_FINETUNE ? "backbone" : router, seed, from, sizeof from);
    snprintf(stage.init, sizeof stage.init, "%.4000s/pretrain/model", from);
    return run_training(opt, &stage);
}

/* ------------------------------------------------------------ evaluation */

typedef struct {
    const char *router;
    char dir[COMPARE_PATH];
} eval_stage;

/* ", \"budget_k\": [..], \"budget_alpha\": [..]" for a model that learns a budget, else "". */
static void budget_json(pm_model *model, char *out, size_t size) {
    out[0] = '\0';
    const int L = pm_model_moe_layers(pm_model_get_config(model));
    float *values = malloc(sizeof(float) * 2 * (size_t)L);
    if (values && pm_model_budget(model, values, values + L)) {
        size_t used = (size_t)snprintf(out, size, ", \"budget_k\": [");
        for (int l = 0; l < L && used < size; l++)
            used += (size_t)snprintf(out + used, size - used, "%s%.6f", l ? ", " : "", values[l]);
        if (used < size) used += (size_t)snprintf(out + used, size - used, "], \"budget_alpha\": [");
        for (int l = 0; l < L && used < size; l++)
            used += (size_t)snprintf(out + used, size - used, "%s%.6f", l ? ", " : "", values[L + l]);
        if (used < size) used += (size_t)snprintf(out + used, size - used, "]");
        if (used >= size) out[0] = '\0'; /* too many layers to list: leave them out, keep the JSON whole */
    }
    free(values);
}

static int eval_job(const compare_options *opt, const void *arg) {
    const eval_stage *stage = arg;
    compare_inputs in;
    compare_inputs_of(opt, &in);
    char model_dir[COMPARE_PATH + 32], path[COMPARE_PATH + 32], routing_dir[COMPARE_PATH + 16];
    snprintf(model_dir, sizeof model_dir, "%s/finetune/model", stage->dir);
    pm_model *model = NULL;
    tokenizer *tok = NULL;
    int batch = EVAL_DEFAULT_BATCH;
    int status = eval_load_model(model_dir, 0, &batch, false, &model, &tok);
    if (status < 0) return status;
    eval_loss_result text;
    eval_gsm8k_result arith, gsm8k;
    status = eval_shards(model, tok, in.text_data, opt->eval_batches, opt->seq, batch, &text);
    snprintf(path, sizeof path, "%s/arith_outputs.jsonl", stage->dir);
    if (status == 0)
        status = eval_gsm8k(model, tok, in.arith_test, CHAT_PLAIN, opt->arith_limit, opt->arith_max_new, batch, path, NULL,
                            &arith);
    /* GSM8K: the answer loss only (no model of this size solves it; generation would be wasted) */
    if (status == 0) status = eval_gsm8k(model, tok, opt->gsm8k_test, CHAT_PLAIN, opt->gsm8k_limit, 0, batch, NULL, NULL, &gsm8k);
    analytics *a = NULL;
    snprintf(routing_dir, sizeof routing_dir, "%s/routing", stage->dir);
    int groups, max_groups;
    compare_groups(opt, &groups, &max_groups);
    if (status == 0) status = eval_routing(model, tok, in.text_data, opt->eval_batches, opt->seq, batch, groups,
                                             routing_dir, stage->router, &a);
    if (status == 0) {
        const int L = analytics_num_layers(a);
        double active = 0.0, entropy = 0.0, routing_entropy = 0.0, cover = 0.0, dead = 0.0, spanned = 0.0;
        int most_spanned = 0;
        for (int l = 0; l < L; l++) {
            const analytics_layer *layer = analytics_get_layer(a, l);
            active += layer->mean_active / L;
            spanned += layer->mean_groups / L;
            if (layer->max_groups > most_spanned) most_spanned = layer->max_groups;
            entropy += layer->load_entropy / L;
            routing_entropy += layer->routing_entropy / L;
            cover += layer->cover99 / L;
            dead += layer->dead_experts;
        }
        char budget[2048], json[4096] = "{";
        budget_json(model, budget, sizeof budget);
        const struct { const char *key; double value; int decimals; } fields[] = {
            {"text_val_loss", text.loss, 6}, {"arith_exact_match", arith.exact_match, 6},
            {"arith_answer_loss", arith.answer_loss, 6}, {"arith_examples", arith.examples, 0},
            {"gsm8k_answer_loss", gsm8k.answer_loss, 6}, {"gsm8k_examples", gsm8k.examples, 0},
            {"mean_active_inference", active, 4}, {"load_entropy", entropy, 4}, {"dead_experts", dead, 0},
            {"routing_entropy", routing_entropy, 4}, {"cover99", cover, 4}, {"groups", groups, 0},
            {"mean_groups", spanned, 4}, {"max_groups", most_spanned, 0}};
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
            compare_json_field(json, sizeof json, fields[i].key, fields[i].value, fields[i].decimals);
        snprintf(json + strlen(json), sizeof json - strlen(json), "%s}\n", budget);
        snprintf(path, sizeof path, "%s/eval.json", stage->dir);
        status = compare_write_text(path, json);
    }
    analytics_free(a);
    pm_model_free(model);
    tokenizer_free(tok);
    return status;
}

int compare_evaluate(const compare_options *opt, const char *router, int seed) {
    eval_stage stage = {router, ""};
    compare_run_dir(opt, router, seed, stage.dir, sizeof stage.dir);
    char marker[COMPARE_PATH + 16];
    snprintf(marker, sizeof marker, "%s/eval.json", stage.dir);
    if (compare_exists(marker)) return PM_OK;
    printf("== %s, seed %d: evaluating\n", router, seed);
    double peak = 0.0;
    int status = compare_in_child(eval_job, opt, &stage, "evaluation", &peak);
    if (status == 0) status = record_peak(stage.dir, "eval", peak);
    return status;
}
