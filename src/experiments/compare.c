#define _DEFAULT_SOURCE /* fork, popen, dirent and wait4 (per-child peak memory) */
#include "experiments/compare.h"

#include <cjson/cJSON.h>
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
#include "tokenizer/bpe_train.h"
#include "data/corpus.h"
#include "data/text_data.h"
#include "eval/analytics.h"
#include "experiments/compare_report.h"
#include "eval/eval.h"
#include "eval/plots.h"
#include "core/fs.h"
#include "train/trainer.h"


int compare_preset(const char *name, compare_options *opt) {
    memset(opt, 0, sizeof *opt);
    const bool quick = strcmp(name, "quick") == 0;
    if (!quick && strcmp(name, "paper") != 0)
        return pm_fail(PM_ERR_ARG, "compare: unknown preset '%s'; choose quick or paper", name);
    opt->out_dir = quick ? "runs/compare-quick" : "runs/compare-paper";
    /* every router of the table but the ablation hybrids, and topk with the Switch loss */
    for (int kind = 0; kind < pm_router_kind_count() && opt->router_count < COMPARE_MAX_ROUTERS - 1; kind++) {
        if (pm_router_is_ablation(kind)) continue;
        opt->routers[opt->router_count++] = pm_router_kind_name(kind);
        if (kind == PM_ROUTER_TOPK) opt->routers[opt->router_count++] = "topk-lb";
    }
    opt->seeds = quick ? 1 : 3;
    opt->model = pm_model_config_default();
    if (quick) {
        opt->model.num_layers = 2;
        opt->model.hidden_size = 128;
        opt->model.num_heads = opt->model.num_kv_heads = 4;
        opt->model.intermediate_size = 256;
    }
    opt->model.max_position_embeddings = 512;
    opt->vocab_size = quick ? 2048 : 4096;
    opt->pretrain_steps = quick ? 1500 : 6000;
    opt->finetune_steps = quick ? 300 : 1500;
    opt->batch = 8;
    opt->seq = 128;
    opt->finetune_batch = 4;
    opt->finetune_seq = 256;
    opt->lr = 3e-3f;
    opt->finetune_lr = 1e-3f;
    opt->eval_batches = quick ? 32 : 128;
    opt->gsm8k_limit = quick ? 50 : -1;
    opt->max_new = quick ? 64 : 256;
    opt->save_interval = quick ? 500 : 1000;
    return PM_OK;
}

/* ---------------------------------------------------------------- helpers */

static bool exists(const char *path) {
    struct stat info;
    return stat(path, &info) == 0;
}

/* Runs job(arg) in a child process and waits; *peak_mib gets the child's peak memory. The
 * parent never starts OpenMP or BLAS threads, so forking is safe. */
typedef int (*stage_job)(const compare_options *opt, const void *arg);

static int in_child(stage_job job, const compare_options *opt, const void *arg, const char *what, double *peak_mib) {
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

static int write_text(const char *path, const char *text) {
    char temporary[4200];
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

int compare_router_config(const char *name, const pm_model_config *model, pm_router_config *out) {
    /* (declared in compare_report.h, which the report shares) */
    pm_router_kind kind;
    const bool with_lb = strcmp(name, "topk-lb") == 0;
    if (!with_lb && pm_router_kind_parse(name, &kind) < 0)
        return pm_fail(PM_ERR_ARG, "compare: unknown router '%s'; choose from topk-lb, %s", name,
                       pm_router_kind_list());
    *out = pm_router_config_default(with_lb ? PM_ROUTER_TOPK : kind, model->num_experts, model->experts_per_token);
    if (with_lb) out->lb_coef = 0.01f;
    return PM_OK;
}

/* ----------------------------------------------------------------- stages */

typedef struct {
    const char *text, *tokenizer, *data;
} prepare_paths;

static int prepare_job(const compare_options *opt, const void *arg) {
    const prepare_paths *paths = arg;
    if (!exists(paths->tokenizer)) {
        const char *files[1] = {paths->text};
        bpe_train_stats stats;
        int status = bpe_train(files, 1, opt->vocab_size, paths->tokenizer, &stats);
        if (status < 0) return status;
    }
    tokenizer *tok = NULL;
    int status = tokenizer_load(paths->tokenizer, &tok);
    if (status < 0) return status;
    const char *files[1] = {paths->text};
    corpus_source source = {"text", files, 1};
    corpus_options options = {tok, paths->tokenizer, 0.1, true};
    status = corpus_prepare(paths->data, &source, 1, &options, NULL);
    tokenizer_free(tok);
    return status;
}

typedef struct {
    const char *router, *tokenizer, *data, *gsm8k_train;
    int seed;
    char dir[4096];
    bool finetune;
} train_stage;

static int train_job(const compare_options *opt, const void *arg) {
    const train_stage *stage = arg;
    tokenizer *tok = NULL;
    int status = tokenizer_load(stage->tokenizer, &tok);
    if (status < 0) return status;
    pm_model_config cfg = opt->model;
    cfg.vocab_size = tok->vocab_size;
    status = compare_router_config(stage->router, &cfg, &cfg.router);
    train_options t = train_options_default();
    t.tokenizer_path = stage->tokenizer;
    t.seed = (uint64_t)stage->seed;
    t.steps = stage->finetune ? opt->finetune_steps : opt->pretrain_steps;
    t.warmup = t.steps / 10;
    t.batch = stage->finetune ? opt->finetune_batch : opt->batch;
    t.seq = stage->finetune ? opt->finetune_seq : opt->seq;
    t.lr = stage->finetune ? opt->finetune_lr : opt->lr;
    t.eval_interval = t.steps / 2 > 0 ? t.steps / 2 : 1;
    t.eval_batches = opt->eval_batches;
    t.save_interval = opt->save_interval;
    t.keep_last = 1;
    t.data_path = stage->finetune ? stage->gsm8k_train : stage->data;
    t.supervised = stage->finetune;
    char out[4200], init[4200], checkpoint[4200];
    snprintf(out, sizeof out, "%s/%s", stage->dir, stage->finetune ? "finetune" : "pretrain");
    snprintf(init, sizeof init, "%s/pretrain/model", stage->dir);
    t.out_dir = out;
    if (stage->finetune) t.init_dir = init;
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
    char text[512], path[4300];
    snprintf(text, sizeof text, "{\"steps\": %ld, \"val_loss\": %.6f, \"tokens_per_s\": %.1f, \"mean_active\": %.4f}\n",
             result.steps_done, result.final_val_loss, result.tokens_per_second, active);
    snprintf(path, sizeof path, "%s/result.json", out);
    return write_text(path, text);
}

typedef struct {
    const char *tokenizer, *data, *gsm8k_test, *label;
    char dir[4096];
} eval_stage;

static int eval_job(const compare_options *opt, const void *arg) {
    const eval_stage *stage = arg;
    char model_dir[4200], path[4300], routing_dir[4300];
    snprintf(model_dir, sizeof model_dir, "%s/finetune/model", stage->dir);
    pm_model *model = NULL;
    tokenizer *tok = NULL;
    int status = eval_load_model(model_dir, 0, false, &model, &tok);
    if (status < 0) return status;
    eval_loss_result text;
    eval_gsm8k_result gsm8k;
    status = eval_shards(model, tok, stage->data, opt->eval_batches, opt->seq, &text);
    snprintf(path, sizeof path, "%s/gsm8k_outputs.jsonl", stage->dir);
    if (status == 0)
        status = eval_gsm8k(model, tok, stage->gsm8k_test, opt->gsm8k_limit, opt->max_new, path, NULL, &gsm8k);
    analytics *a = NULL;
    snprintf(routing_dir, sizeof routing_dir, "%s/routing", stage->dir);
    if (status == 0) status = eval_routing(model, tok, stage->data, opt->eval_batches, opt->seq, routing_dir, stage->label, &a);
    if (status == 0) {
        const int L = analytics_num_layers(a);
        double active = 0.0, entropy = 0.0;
        for (int l = 0; l < L; l++) {
            active += analytics_get_layer(a, l)->mean_active / L;
            entropy += analytics_get_layer(a, l)->load_entropy / L;
        }
        char text_json[1024];
        snprintf(text_json, sizeof text_json,
                 "{\"text_val_loss\": %.6f, \"gsm8k_answer_loss\": %.6f, \"exact_match\": %.6f, "
                 "\"gsm8k_examples\": %d, \"mean_active_inference\": %.4f, \"load_entropy\": %.4f}\n",
                 text.loss, gsm8k.answer_loss, gsm8k.exact_match, gsm8k.examples, active, entropy);
        snprintf(path, sizeof path, "%s/eval.json", stage->dir);
        status = write_text(path, text_json);
    }
    analytics_free(a);
    pm_model_free(model);
    tokenizer_free(tok);
    return status;
}

static int record_peak(const char *dir, const char *stage, double peak_mib) {
    char path[4300], text[64];
    snprintf(path, sizeof path, "%s/peak_%s_mib", dir, stage);
    snprintf(text, sizeof text, "%.1f\n", peak_mib);
    return write_text(path, text);
}

/* Finished stages are reused only under the same settings: the first run records them in
 * settings.json and later runs must match (routers and seeds may be added). */
static int check_settings(const compare_options *opt) {
    const pm_model_config *m = &opt->model;
    char settings[1024], path[4200], existing[1024] = "";
    snprintf(settings, sizeof settings,
             "{\"layers\": %d, \"hidden\": %d, \"heads\": %d, \"kv_heads\": %d, \"experts\": %d, \"k\": %d, "
             "\"intermediate\": %d, \"max_positions\": %d, \"vocab\": %d, \"pretrain_steps\": %ld, "
             "\"finetune_steps\": %ld, \"batch\": %d, \"seq\": %d, \"finetune_batch\": %d, \"finetune_seq\": %d, "
             "\"lr\": %g, \"finetune_lr\": %g, \"eval_batches\": %d, \"gsm8k_limit\": %d, \"max_new\": %d}\n",
             m->num_layers, m->hidden_size, m->num_heads, m->num_kv_heads, m->num_experts, m->experts_per_token,
             m->intermediate_size, m->max_position_embeddings, opt->vocab_size, opt->pretrain_steps,
             opt->finetune_steps, opt->batch, opt->seq, opt->finetune_batch, opt->finetune_seq, (double)opt->lr,
             (double)opt->finetune_lr, opt->eval_batches, opt->gsm8k_limit, opt->max_new);
    snprintf(path, sizeof path, "%s/settings.json", opt->out_dir);
    FILE *file = fopen(path, "r");
    if (!file) return write_text(path, settings);
    size_t got = fread(existing, 1, sizeof existing - 1, file);
    fclose(file);
    existing[got] = '\0';
    if (strcmp(existing, settings) != 0)
        return pm_fail(PM_ERR_ARG, "compare: %s holds runs made with other settings (%s); use another --out to "
                       "keep both", opt->out_dir, path);
    return PM_OK;
}

/* ------------------------------------------------------------------- run */

int compare_check(const compare_options *opt) {
    if (opt->router_count < 1 || opt->seeds < 1)
        return pm_fail(PM_ERR_ARG, "compare: give at least one router and one seed");
    pm_router_config probe;
    for (int r = 0; r < opt->router_count; r++) {
        int status = compare_router_config(opt->routers[r], &opt->model, &probe);
        if (status < 0) return status;
    }
    return pm_model_config_check(&opt->model) < 0 ? PM_ERR_ARG : PM_OK;
}

int compare_run(const compare_options *opt) {
    int status = compare_check(opt);
    if (status == 0) status = ensure_directory(opt->out_dir);
    if (status == 0) status = check_settings(opt);
    if (status == 0 && (!opt->text_path || !opt->gsm8k_train || !opt->gsm8k_test))
        status = pm_fail(PM_ERR_ARG, "compare: the text corpus and GSM8K train/test paths are needed");
    const char *text = opt->text_path, *gsm8k_train = opt->gsm8k_train, *gsm8k_test = opt->gsm8k_test;
    if (status < 0) return status;
    char tokenizer_path[4200], data_dir[4200], marker[4300];
    snprintf(tokenizer_path, sizeof tokenizer_path, "%s/tokenizer.json", opt->out_dir);
    snprintf(data_dir, sizeof data_dir, "%s/data", opt->out_dir);
    snprintf(marker, sizeof marker, "%s/train.bin", data_dir);
    if (!exists(marker) || !exists(tokenizer_path)) {
        printf("== preparing the BPE vocabulary and token shards of %s\n", text);
        prepare_paths paths = {text, tokenizer_path, data_dir};
        status = in_child(prepare_job, opt, &paths, "preparing the data", NULL);
        if (status < 0) return status;
    }
    for (int r = 0; r < opt->router_count; r++)
        for (int seed = 1; seed <= opt->seeds; seed++) {
            train_stage stage = {opt->routers[r], tokenizer_path, data_dir, gsm8k_train, seed, "", false};
            snprintf(stage.dir, sizeof stage.dir, "%s/runs/%s-seed%d", opt->out_dir, opt->routers[r], seed);
            for (int phase = 0; phase < 2 && status == 0; phase++) {
                stage.finetune = phase == 1;
                const char *name = stage.finetune ? "finetune" : "pretrain";
                snprintf(marker, sizeof marker, "%s/%s/result.json", stage.dir, name);
                if (exists(marker)) continue; /* finished earlier: reuse */
                printf("== %s, seed %d: %s\n", opt->routers[r], seed, stage.finetune ? "fine-tuning on GSM8K" :
                       "pre-training");
                char what[256];
                snprintf(what, sizeof what, "%s of %s seed %d", name, opt->routers[r], seed);
                double peak = 0.0;
                status = in_child(train_job, opt, &stage, what, &peak);
                if (status == 0) status = record_peak(stage.dir, name, peak);
            }
            snprintf(marker, sizeof marker, "%s/eval.json", stage.dir);
            if (status == 0 && !exists(marker)) {
                printf("== %s, seed %d: evaluating\n", opt->routers[r], seed);
                eval_stage evaluation = {tokenizer_path, data_dir, gsm8k_test, opt->routers[r], ""};
                snprintf(evaluation.dir, sizeof evaluation.dir, "%s", stage.dir);
                double peak = 0.0;
                status = in_child(eval_job, opt, &evaluation, "evaluation", &peak);
                if (status == 0) status = record_peak(stage.dir, "eval", peak);
            }
            if (status < 0) return status;
        }
    return compare_write_report(opt);
}
