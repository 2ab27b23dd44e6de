#define _POSIX_C_SOURCE 200809L /* clock_gettime, isatty, fileno, mkdir */
#include "train/trainer.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/memory.h"
#include "core/run_lock.h"
#include "io/checkpoint.h"
#include "model/model_internal.h"
#include "route/router_internal.h"
#include "train/train_state.h"
#include "train/routing_stats.h"

train_options train_options_default(void) {
    train_options opt;
    memset(&opt, 0, sizeof opt);
    opt.out_dir = "runs/default";
    opt.batch = 8;
    opt.seq = 128;
    opt.accum = 1;
    opt.steps = 1000;
    opt.lr = 3e-3f;
    opt.min_lr_ratio = 0.1f;
    opt.warmup = 50;
    opt.schedule = SCHEDULE_COSINE;
    opt.clip = 1.0f;
    opt.adamw = (adamw_config){0.9f, 0.95f, 1e-8f, 0.1f, false};
    opt.seed = 1;
    opt.eval_interval = 100;
    opt.eval_batches = 8;
    opt.val_fraction = 0.1;
    opt.max_bad_steps = 5;
    opt.shard_bytes = (size_t)2 << 30;
    opt.fp32_matmul = PM_FP32_MATMUL_MEASURED;
    return opt;
}

/* in pm_fp32_matmul's order */
static const char *const fp32_matmul_names[] = {"openblas", "measured", "onednn", "auto"};

const char *fp32_matmul_name(pm_fp32_matmul choice) {
    return choice >= PM_FP32_MATMUL_OPENBLAS && choice <= PM_FP32_MATMUL_AUTO ? fp32_matmul_names[choice] : "?";
}

bool fp32_matmul_parse(const char *name, pm_fp32_matmul *choice) {
    for (int i = PM_FP32_MATMUL_OPENBLAS; i <= PM_FP32_MATMUL_AUTO; i++)
        if (strcmp(name, fp32_matmul_names[i]) == 0) {
            *choice = (pm_fp32_matmul)i;
            return true;
        }
    return false;
}

int train_options_check(const train_options *opt, const pm_model_config *cfg) {
    if (!opt->data_path)
        return pm_fail(PM_ERR_ARG, "train: no data; give a text file or a directory from `probmoe data prepare` "
                       "with --data");
    if (opt->batch < 1 || opt->seq < 1 || opt->accum < 1 || opt->steps < 1)
        return pm_fail(PM_ERR_ARG, "train: --batch, --seq, --accum and --steps must be at least 1");
    if ((int64_t)opt->batch * opt->seq > INT_MAX || opt->accum > TRAIN_MAX_ACCUM)
        return pm_fail(PM_ERR_ARG, "train: --batch %d × --seq %d and --accum %d; a step takes at most %d tokens a "
                       "batch and %d batches", opt->batch, opt->seq, opt->accum, INT_MAX, TRAIN_MAX_ACCUM);
    if (opt->seq > cfg->max_position_embeddings)
        return pm_fail(PM_ERR_ARG, "train: --seq %d is longer than max_position_embeddings = %d; shorten the "
                       "sequences or raise max_position_embeddings", opt->seq, cfg->max_position_embeddings);
    if (!(opt->lr > 0.0f) || !isfinite(opt->lr))
        return pm_fail(PM_ERR_ARG, "train: --lr %g; the learning rate must be positive", (double)opt->lr);
    if (opt->warmup < 0 || !(opt->clip >= 0.0f) || !isfinite(opt->clip) || opt->eval_batches < 1 ||
        opt->eval_interval < 0)
        return pm_fail(PM_ERR_ARG, "train: --warmup, --clip (finite) and --eval-interval must be >= 0, --eval-batches "
                       ">= 1");
    if (!(opt->adamw.weight_decay >= 0.0f) || !isfinite(opt->adamw.weight_decay))
        return pm_fail(PM_ERR_ARG, "train: --weight-decay %g; give a finite decay >= 0", (double)opt->adamw.weight_decay);
    if (!(opt->min_lr_ratio >= 0.0f && opt->min_lr_ratio <= 1.0f))
        return pm_fail(PM_ERR_ARG, "train: --min-lr-ratio %g; give a ratio between 0 and 1", (double)opt->min_lr_ratio);
    if (opt->keep_last < 0 || opt->save_interval < 0)
        return pm_fail(PM_ERR_ARG, "train: --keep-last %d and --save-interval %ld must be >= 0 (0: keep all, no "
                       "checkpoints)", opt->keep_last, opt->save_interval);
    if (!(opt->val_fraction > 0.0 && opt->val_fraction < 1.0))
        return pm_fail(PM_ERR_ARG, "train: the validation fraction %g must lie in (0, 1)", opt->val_fraction);
    return PM_OK;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int evaluate_loss(pm_model *model, const batch_source *data, int batches, int B, int S, double *loss) {
    int32_t *inputs = malloc(sizeof(int32_t) * B * S), *targets = malloc(sizeof(int32_t) * B * S);
    int status = inputs && targets ? PM_OK : pm_fail(PM_ERR_NOMEM, "evaluation: out of memory");
    double total = 0.0;
    for (int i = 0; status == 0 && i < batches; i++) {
        float batch_loss;
        batches_val(data, i, B, S, inputs, targets);
        status = pm_model_forward(model, inputs, targets, B, S, false, 0, 0, &batch_loss);
        float ce;
        pm_model_last_losses(model, &ce, NULL);
        total += ce;
    }
    free(inputs);
    free(targets);
    *loss = total / batches;
    return status;
}

/* Each MoE layer's routing statistics of the step's last micro-batch, over the global batch (the
 * ranks' loads summed); stats holds an entry per MoE layer. Collective under data parallelism. */
static void step_routing_stats(pm_model *model, const batch_comm *comm, routing_stats *stats) {
    const int L = model->num_moe, E = pm_model_get_config(model)->num_experts;
    double *counts = malloc(sizeof(double) * (size_t)(E + 1));
    for (int l = 0; l < L; l++) {
        const pm_routing *routing = pm_model_routing(model, l);
        if (!comm || !counts) {
            stats[l] = routing_stats_of(routing);
            continue;
        }
        for (int e = 0; e < E; e++) counts[e] = (double)routing->load[e];
        counts[E] = routing->num_tokens;
        comm->sum_doubles(comm, counts, E + 1);
        stats[l] = routing_stats_from_counts(counts, E, counts[E]);
    }
    free(counts);
}

/* One JSON line per step: the figures a plot or a resumed run needs. */
static void log_step(FILE *metrics, pm_model *model, const routing_stats *layer_stats, long step, double loss,
                     float lr, double grad_norm, double tokens_per_second, double val_loss) {
    fprintf(metrics, "{\"step\": %ld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6g, \"tokens_per_s\": %.1f",
            step, loss, lr, grad_norm, tokens_per_second);
    if (!isnan(val_loss)) fprintf(metrics, ", \"val_loss\": %.6f", val_loss);
    fprintf(metrics, ", \"layers\": [");
    const int L = model->num_moe;
    float *budget = malloc(sizeof(float) * 2 * (size_t)L);
    const bool has_budget = budget && pm_model_budget(model, budget, budget + L);
    for (int l = 0; l < L; l++) {
        const routing_stats stats = layer_stats[l];
        fprintf(metrics, "%s{\"layer\": %d, \"mean_active\": %.4f, \"load_entropy\": %.4f, \"max_over_mean\": %.4f, "
                "\"dead_experts\": %d", l ? ", " : "", model->moe_layers[l], stats.mean_active, stats.load_entropy,
                stats.max_over_mean, stats.dead_experts);
        /* the learned budget after this step's update */
        if (has_budget) fprintf(metrics, ", \"soft_k\": %.6g, \"alpha\": %.6g", budget[l], budget[L + l]);
        fprintf(metrics, "}");
    }
    free(budget);
    fprintf(metrics, "]}\n");
    fflush(metrics);
}

/* The learned budget's k_m and alpha of the reported MoE layers into result; false if none. */
static bool copy_budget(pm_model *model, train_result *result) {
    const int L = model->num_moe;
    float *budget = malloc(sizeof(float) * 2 * (size_t)L);
    const bool has = budget && pm_model_budget(model, budget, budget + L);
    for (int l = 0; has && l < result->num_layers; l++) {
        result->budget_k[l] = budget[l];
        result->budget_alpha[l] = budget[L + l];
    }
    free(budget);
    return has;
}

static void print_progress(long step, long steps, double loss, double tokens_per_second, double elapsed) {
    double eta = step > 0 ? elapsed / step * (steps - step) : 0.0;
    fprintf(stderr, "\rstep %ld/%ld  loss %.4f  %.0f tok/s  ETA %dm%02ds   ", step, steps, loss,
            tokens_per_second, (int)(eta / 60), (int)fmod(eta, 60.0));
    fflush(stderr);
}

/* The backward pass of a step's last micro-batch has finished a bucket of gradients: its sum
 * over the ranks starts while the backward pass goes on. A bucket of this rank's experts is
 * summed over their replicas only (the other ranks of its expert group own other experts). */
static void start_bucket_sum(void *user, size_t offset, size_t count, bool experts) {
    pm_model *model = user;
    const batch_comm *comm = model->comm;
    if (!experts)
        comm->start_sum_floats(comm, pm_model_grads(model) + offset, count);
    else if (comm->size > comm->expert_size)
        comm->start_sum_floats_replicas(comm, pm_model_grads(model) + offset, count);
}

/* The norm of the whole model's gradient as accumulated (the sum over the micro-batches). Under
 * expert parallelism the shared tensors' are the same on every rank and each rank's experts
 * its own: the shared squares once, the experts' summed over the expert group. */
static double global_gradient_norm(pm_model *model) {
    const batch_comm *comm = model->expert_comm;
    if (!comm) return gradient_norm(pm_model_grads(model), pm_model_size(model));
    const pm_model_config *cfg = pm_model_get_config(model);
    const float *grads = pm_model_grads(model);
    double shared = 0.0, experts = 0.0;
    size_t at = 0; /* the start of the shared tensors not counted yet */
    for (int m = 0; m < model->num_moe; m++) {
        const int l = model->moe_layers[m];
        size_t offset, count;
        model_local_experts(model, l, &offset, &count);
        const pm_param *first = pm_model_param(model, model->layer_params[l].expert0);
        const pm_param *last = first + 3 * cfg->num_experts - 1;
        shared += sum_of_squares(grads + at, first->offset - at);
        experts += sum_of_squares(grads + offset, count);
        at = last->offset + last->count;
    }
    shared += sum_of_squares(grads + at, pm_model_size(model) - at);
    comm->sum_doubles_experts(comm, &experts, 1);
    return sqrt(shared + experts);
}

/* Forward and backward over opt->accum micro-batches; the gradients are their sum (AdamW's
 * pass divides by accum, with the clip factor: no pass of its own). grads_clear: the last
 * update left them 0, so no pass clears them first. Under data parallelism each rank runs its
 * rows of every micro-batch (the losses are the global batch's) and the gradients are summed
 * over the ranks, bucket by bucket during the last backward. */
static int accumulate_gradients(pm_model *model, const batch_source *data, const train_options *opt, long step,
                                bool grads_clear, int32_t *inputs, int32_t *targets, double *loss) {
    const batch_comm *comm = opt->comm;
    const int V = pm_model_get_config(model)->vocab_size;
    int first = 0, rows = opt->batch;
    if (comm) batch_comm_rows(opt->batch, comm->rank, comm->size, &first, &rows);
    const size_t skip = (size_t)first * opt->seq;
    model_set_batch_origin(model, comm, (uint32_t)skip);
    if (!grads_clear) pm_model_zero_grads(model);
    *loss = 0.0;
    for (int micro = 0; micro < opt->accum; micro++) {
        const uint64_t index = (uint64_t)step * opt->accum + micro;
        batches_train(data, opt->seed, index, opt->batch, opt->seq, inputs, targets);
        /* every rank checks the whole batch (the forward pass checks only its rows), so that a
         * bad id stops all ranks alike instead of one while the others wait for it */
        for (size_t i = 0; comm && i < (size_t)opt->batch * opt->seq; i++)
            if (inputs[i] < 0 || inputs[i] >= V || targets[i] < -1 || targets[i] >= V)
                return pm_fail(PM_ERR_ARG, "train: batch %llu holds the id %d at %zu, outside the vocabulary of %d",
                               (unsigned long long)index, inputs[i] < 0 || inputs[i] >= V ? inputs[i] : targets[i],
                               i, V);
        float micro_loss;
        int status = pm_model_forward(model, inputs + skip, targets + skip, rows, opt->seq, true, opt->seed, index,
                                      &micro_loss);
        const bool overlap = comm && micro + 1 == opt->accum;
        if (overlap) model_set_grads_ready(model, start_bucket_sum, model);
        if (status == 0) status = pm_model_backward(model);
        model_set_grads_ready(model, NULL, NULL);
        if (overlap) comm->finish_sums(comm); /* also after an error: no sum is left running */
        if (status < 0) return status;
        *loss += micro_loss / opt->accum;
    }
    return PM_OK;
}

/* The training load of each router since its last step, summed over the ranks (topk's bias
 * follows the global batch's load). */
static void sum_step_loads(pm_model *model, const batch_comm *comm) {
    const int L = model->num_moe, E = pm_model_get_config(model)->num_experts;
    double *load = malloc(sizeof(double) * (size_t)E);
    for (int l = 0; load && l < L; l++) {
        int64_t *step_load = router_step_load(pm_model_router(model, l));
        for (int e = 0; e < E; e++) load[e] = (double)step_load[e];
        comm->sum_doubles(comm, load, E);
        for (int e = 0; e < E; e++) step_load[e] = (int64_t)load[e];
    }
    free(load);
}

/* Whether any rank says yes (every rank gets the same answer). */
static bool any_rank(const batch_comm *comm, bool yes) {
    double count = yes;
    if (comm) comm->sum_doubles(comm, &count, 1);
    return count > 0;
}

static void zero_router_gradients(pm_model *model) {
    for (int i = 0; i < pm_model_num_params(model); i++) {
        const pm_param *param = pm_model_param(model, i);
        if (param->router) memset(pm_model_grads(model) + param->offset, 0, sizeof(float) * param->count);
    }
}

/* Set by SIGINT/SIGTERM: finish the step, save, stop. */
static volatile sig_atomic_t stop_requested = 0;
static void request_stop(int signal_number) {
    (void)signal_number;
    stop_requested = 1;
}

/* Everything a step needs, so the loop and the checkpointing share it. */
typedef struct {
    pm_model *model;
    const batch_source *data;
    const train_options *opt;
    adamw optimizer;
    train_history history;
    FILE *metrics;
    train_state_paths restored; /* paths a resumed run takes from its trainer state */
    bool experts_collected;     /* rank 0 holds every expert's current weights (since the last update) */
} train_session;

/* Expert parallelism: rank 0's copy of every expert's weights brought up to date, once per
 * update (collective). */
static void collect_weights(train_session *session) {
    if (session->experts_collected) return;
    model_collect_experts(session->model, pm_model_weights(session->model));
    session->experts_collected = true;
}

/* The chat format a fine-tuning run records in its models' config.json; NULL when pretraining. */
static const char *finetune_chat_format(const train_options *opt) {
    return opt->supervised ? chat_format_name(opt->chat_format) : NULL;
}

/* Saves out/checkpoint-<step> with the optimizer and trainer state; prunes old ones. */
static int save_checkpoint(train_session *session, long step, char *where, size_t where_size) {
    const train_options *opt = session->opt;
    char *state = train_state_to_json(opt, step, &session->history);
    if (!state) return pm_fail(PM_ERR_NOMEM, "train: out of memory writing the trainer state");
    snprintf(where, where_size, "%s/checkpoint-%06ld", opt->out_dir, step);
    checkpoint_extras extras = {session->optimizer.m, session->optimizer.v, session->optimizer.step, state,
                                opt->tokenizer_path, finetune_chat_format(opt)};
    checkpoint_options options = {false, opt->shard_bytes};
    int status = checkpoint_save(session->model, &extras, where, &options);
    free(state);
    if (status == 0) status = checkpoint_prune(opt->out_dir, "checkpoint-", opt->keep_last);
    return status;
}

static int train_loop(train_session *session, long first_step, train_result *result) {
    pm_model *model = session->model;
    const batch_source *data = session->data;
    const train_options *opt = session->opt;
    int status = PM_OK;
    const size_t tokens = (size_t)opt->batch * opt->seq;
    const bool writer = !opt->comm || opt->comm->rank == 0; /* prints, evaluates and writes */
    int32_t *inputs = malloc(sizeof(int32_t) * tokens), *targets = malloc(sizeof(int32_t) * tokens);
    routing_stats *layer_stats = malloc(sizeof(routing_stats) * (size_t)model->num_moe);
    if (!inputs || !targets || !layer_stats) status = pm_fail(PM_ERR_NOMEM, "train: out of memory for a batch");
    const double start = now_seconds();
    int bad_in_a_row = 0;
    bool grads_clear = false; /* the last update left the gradients 0 */
    for (long step = first_step; status == 0 && step < opt->steps; step++) {
        const double step_start = now_seconds();
        double loss;
        status = accumulate_gradients(model, data, opt, step, grads_clear, inputs, targets, &loss);
        grads_clear = false;
        if (status == PM_ERR_NONFINITE) { /* non-finite router logits: a diverged step */
            loss = NAN;
            status = PM_OK;
        }
        if (status < 0) break;
        /* the training batch's routing, before an evaluation routes other batches */
        if (isfinite(loss)) step_routing_stats(model, opt->comm, layer_stats);
        if (opt->adamw.freeze_router) zero_router_gradients(model); /* frozen: not in the norm or the clip */
        /* the mean gradient's norm; collective under expert parallelism: every rank computes
         * it, finite or not */
        double grad_norm = global_gradient_norm(model) / opt->accum;
        if (!isfinite(loss)) grad_norm = NAN;
        const float lr = schedule_lr(opt->schedule, opt->lr, opt->min_lr_ratio, step, opt->warmup, opt->steps);
        /* the same sums give the same decision on every rank; agreeing costs one small sum */
        if (any_rank(opt->comm, !isfinite(loss) || !isfinite(grad_norm))) {
            if (writer) fprintf(stderr, "\nstep %ld: the loss or gradient is not finite (loss %g, gradient norm %g); "
                    "skipping this update\n", step, loss, grad_norm);
            if (++bad_in_a_row >= opt->max_bad_steps) {
                status = pm_fail(PM_ERR_NONFINITE, "train: %d non-finite steps in a row; stopping. Lower --lr "
                                 "or --clip; nothing was saved from this run", bad_in_a_row);
            }
            continue;
        }
        bad_in_a_row = 0;
        /* the mean over the micro-batches and the clipping in one factor, which AdamW applies as
         * it reads each gradient, leaving it 0 for the next step */
        const double clip_factor = opt->clip > 0.0f && grad_norm > opt->clip ? opt->clip / grad_norm : 1.0;
        adamw_step_options update = adamw_step_defaults();
        update.grad_scale = (float)(clip_factor / opt->accum);
        update.zero_grads = true;
        update.bf16_weights = model->weights16; /* bf16 products: their copy in the same pass */
        adamw_step(&session->optimizer, model, lr, &update);
        if (model->weights16) model_weights16_written(model);
        grads_clear = true;
        session->experts_collected = false;
        /* each router's per-step update (topk's selection bias with bias_rate > 0), unless frozen */
        if (opt->comm && !opt->adamw.freeze_router) sum_step_loads(model, opt->comm);
        for (int m = 0; !opt->adamw.freeze_router && m < model->num_moe; m++)
            pm_router_step(pm_model_router(model, m));
        const double now = now_seconds();
        const double tokens_per_second = tokens * opt->accum / (now - step_start);
        double val_loss = NAN;
        const bool last = step + 1 == opt->steps;
        /* an evaluation error stops the run below, where the ranks agree on it */
        const bool evaluating = last || (opt->eval_interval > 0 && (step + 1) % opt->eval_interval == 0);
        if (evaluating) collect_weights(session); /* rank 0 runs them all */
        if (writer && evaluating)
            status = evaluate_loss(model, data, opt->eval_batches, opt->batch, opt->seq, &val_loss);
        if (writer && status == 0)
            log_step(session->metrics, model, layer_stats, step + 1, loss, lr, grad_norm, tokens_per_second, val_loss);
        if (status == 0) status = train_history_add(&session->history, step + 1, loss, val_loss);
        if (writer && opt->progress) print_progress(step + 1, opt->steps, loss, tokens_per_second, now - start);
        if (!isnan(val_loss)) /* also without a terminal, so logs show how training goes */
            fprintf(stderr, "%sstep %ld/%ld: loss %.4f, validation loss %.4f, %.0f tokens/s\n",
                    opt->progress ? "\n" : "", step + 1, opt->steps, loss, val_loss, tokens_per_second);
        result->steps_done = step + 1;
        result->final_train_loss = loss;
        result->num_layers = model->num_moe < TRAIN_MAX_REPORTED_LAYERS ? model->num_moe : TRAIN_MAX_REPORTED_LAYERS;
        for (int m = 0; m < result->num_layers; m++) {
            result->routing[m] = layer_stats[m];
            result->layer_numbers[m] = model->moe_layers[m];
        }
        result->has_budget = copy_budget(model, result);
        if (!isnan(val_loss)) result->final_val_loss = val_loss;
        /* the ranks stop together: on a signal any of them got, or an error of any of them */
        const bool stopping = any_rank(opt->comm, stop_requested);
        const bool periodic = opt->save_interval > 0 && (step + 1) % opt->save_interval == 0;
        if (periodic || stopping) { /* rank 0 saves every expert, with its moments */
            collect_weights(session);
            model_collect_experts(model, session->optimizer.m);
            model_collect_experts(model, session->optimizer.v);
        }
        if (writer && status == 0 && (periodic || stopping))
            status = save_checkpoint(session, step + 1, result->last_checkpoint, sizeof result->last_checkpoint);
        if (any_rank(opt->comm, status < 0) && status == 0)
            status = pm_fail(PM_ERR_STATE, "train: another process of this run failed at step %ld (rank 0 says why)",
                             step + 1);
        if (status == 0 && stopping) {
            result->interrupted = true;
            break;
        }
    }
    if (writer && opt->progress) fprintf(stderr, "\n");
    const long done = result->steps_done - first_step;
    result->tokens_per_second = done * (double)tokens * opt->accum / (now_seconds() - start);
    model_expert_traffic(model, &result->expert_pair_rows, &result->expert_rank_rows);
    free(inputs);
    free(targets);
    free(layer_stats);
    return status;
}

/* The sequences a model of this process must hold: the whole batch for a single process and
 * for rank 0 (it evaluates whole batches), the largest share of one for the other ranks. */
static int model_rows(const train_options *opt) {
    const batch_comm *comm = opt->comm;
    if (!comm || comm->rank == 0 || opt->batch < comm->size) return opt->batch;
    return (opt->batch + comm->size - 1) / comm->size;
}

/* What expert parallelism adds to a process: the rows its experts receive, kept for the
 * backward pass in every MoE layer, and the rows in transit. */
static uint64_t expert_rows_bytes(const pm_model_config *cfg, const batch_comm *comm, const train_options *opt,
                                  int share_rows, int local_rows) {
    if (!comm || comm->expert_size <= 1 || comm->expert_size > cfg->num_experts) return 0;
    const int per_token = model_pairs_per_token(&cfg->router);
    const int64_t capacity = moe_owner_capacity(comm->expert_size, share_rows * opt->seq, per_token, cfg->num_experts);
    const uint64_t local_pairs = (uint64_t)local_rows * (uint64_t)opt->seq * (uint64_t)per_token;
    const uint64_t layers = sat_mul((uint64_t)pm_model_moe_layers(cfg), moe_owner_bytes(cfg->hidden_size, cfg->intermediate_size,
                                                                            cfg->num_experts, comm->expert_size,
                                                                            (uint64_t)capacity));
    return sat_add(layers, moe_owner_scratch_bytes(cfg->hidden_size, cfg->intermediate_size, (uint64_t)capacity,
                                                   local_pairs));
}

/* What bf16 products add to a process of `rows` sequences: the weights' bf16 copy and the two
 * scratch copies of a product's inputs (the largest: lm_head's T·V, an expert's rows, or under
 * expert parallelism the rows an owner's experts receive from share_rows sequences a rank),
 * and two per thread for the experts run side by side. */
static uint64_t bf16_bytes(const pm_model_config *cfg, const batch_comm *comm, const train_options *opt, int rows,
                           int share_rows) {
    if (opt->precision != PM_PRECISION_BF16) return 0;
    uint64_t widest = model_bf16_scratch_elements(cfg, (uint64_t)rows * (uint64_t)opt->seq);
    if (comm && comm->expert_size > 1 && comm->expert_size <= cfg->num_experts) {
        const int64_t capacity = moe_owner_capacity(comm->expert_size, share_rows * opt->seq,
                                                    model_pairs_per_token(&cfg->router), cfg->num_experts);
        const uint64_t owned = model_bf16_owner_elements(cfg, (uint64_t)capacity);
        widest = owned > widest ? owned : widest;
    }
    const uint64_t workers = sat_mul((uint64_t)omp_get_max_threads(),
                                     moe_side_by_side_elements(cfg->hidden_size, cfg->intermediate_size));
    return sat_add(sat_mul(2, model_param_floats(cfg)), sat_mul(2 * sizeof(uint16_t), sat_add(widest, workers)));
}

/* Refuses, before anything is allocated, a run whose model, gradients, optimizer moments and
 * batch do not fit this machine's memory; the processes of this run on the same machine
 * count together (rank 0's whole batch, the others' shares). cfg is the model's config, or
 * with from_dir that of the model directory from_dir (with cfg's router when rerouting). */
static int check_training_memory(const pm_model_config *cfg, const char *from_dir, bool reroute,
                                 const train_options *opt) {
    pm_model_config model = *cfg;
    if (from_dir) {
        int status = checkpoint_read_config(from_dir, &model);
        if (status < 0) return status;
        if (reroute) {
            model.router = cfg->router;
            model.soft_budget = cfg->soft_budget;
        }
    }
    const batch_comm *comm = opt->comm;
    const int together = comm && comm->node_size > 1 ? comm->node_size : 1;
    const bool bf16 = opt->precision == PM_PRECISION_BF16;
    if (together == 1 && !(comm && comm->expert_size > 1) && !bf16) {
        int status = pm_model_memory_check(&model, model_rows(opt), opt->seq, true);
        return status < 0 ? pm_fail((pm_status)status, "train: %s", pm_last_error()) : PM_OK;
    }
    /* the processes sharing this machine: rank 0 (if here) with a whole batch, the others with
     * their shares; each with the rows its experts receive under expert parallelism, and the
     * bf16 copies in bf16 */
    pm_memory_estimate whole, share;
    const int share_rows = comm ? (opt->batch + comm->size - 1) / comm->size : opt->batch;
    int status = pm_model_memory_estimate(&model, opt->batch, opt->seq, true, &whole);
    if (status == 0) status = pm_model_memory_estimate(&model, share_rows, opt->seq, true, &share);
    if (status < 0) return status;
    /* rank 0 (a whole batch of pairs in transit) and the others (their shares) */
    uint64_t first = sat_add(whole.total, expert_rows_bytes(&model, comm, opt, share_rows, opt->batch));
    uint64_t other = sat_add(share.total, expert_rows_bytes(&model, comm, opt, share_rows, share_rows));
    first = sat_add(first, bf16_bytes(&model, comm, opt, opt->batch, share_rows));
    other = sat_add(other, bf16_bytes(&model, comm, opt, share_rows, share_rows));
    const bool rank0_here = !comm || comm->node_has_rank0;
    const uint64_t mine = !comm || comm->rank == 0 ? first : other;
    const uint64_t others = sat_mul((uint64_t)(rank0_here ? together - 1 : together), other);
    const uint64_t need = sat_add(rank0_here ? first : 0, others);
    const char *source = NULL;
    const uint64_t limit = machine_memory_bytes(&source);
    if (limit == 0 || need <= limit) return PM_OK;
    char total[32], one[32], machine[32];
    return pm_fail(PM_ERR_NOMEM, "train: the %d process%s of this run on this machine need%s about %s of memory%s "
                   "(this one %s) but it has %s (%s); start fewer processes a machine, use a smaller model or batch, or "
                   "spread the run over more machines", together, together > 1 ? "es" : "", together > 1 ? "" : "s",
                   memory_format(need, total, sizeof total), together > 1 ? " together" : "",
                   memory_format(mine, one, sizeof one), memory_format(limit, machine, sizeof machine), source);
}

/* The matrix products' precision and library, and expert parallelism when asked for: each rank's rows meet
 * its group's experts (before the weights are drawn, so that a rank draws only those it keeps). */
static int split_experts(pm_model *model, const train_options *opt) {
    const batch_comm *comm = opt->comm;
    int status = pm_model_set_precision(model, opt->precision); /* and the products' precision */
    if (status < 0) return pm_fail((pm_status)status, "train: --precision bf16: %s", pm_last_error());
    status = pm_model_set_fp32_matmul(model, opt->fp32_matmul);
    if (status < 0)
        return pm_fail((pm_status)status, "train: --fp32-matmul %s: %s", fp32_matmul_name(opt->fp32_matmul),
                       pm_last_error());
    if (!comm || comm->expert_size <= 1) return PM_OK;
    const int most_rows = (opt->batch + comm->size - 1) / comm->size;
    return model_set_expert_parallel(model, comm, most_rows * opt->seq);
}

/* The model to train: a fresh one, or the one in opt->resume_dir with its optimizer and
 * trainer state (which also restore the options). */
static int open_session(train_session *session, const pm_model_config *cfg, train_options *opt,
                        long *first_step) {
    *first_step = 0;
    if (!opt->resume_dir) {
        int status = check_training_memory(cfg, opt->init_dir, opt->init_reroute, opt);
        if (status < 0) return status;
        if (opt->init_dir) { /* fine-tuning: a trained model's weights, a fresh optimizer */
            session->model = opt->init_reroute
                                 ? checkpoint_load_rerouted(opt->init_dir, cfg, model_rows(opt), opt->seq)
                                 : checkpoint_load_model(opt->init_dir, model_rows(opt), opt->seq, false);
            if (!session->model) return PM_ERR_ARG;
            status = split_experts(session->model, opt);
        } else {
            session->model = pm_model_create(cfg, model_rows(opt), opt->seq);
            if (!session->model) return PM_ERR_NOMEM;
            status = split_experts(session->model, opt);
            if (status == 0) pm_model_init_weights(session->model, opt->seed);
        }
        return status < 0 ? status : adamw_init(&session->optimizer, session->model, opt->adamw);
    }
    char *state = checkpoint_load_trainer_state(opt->resume_dir);
    if (!state) return PM_ERR_ARG;
    /* the stored options first (the model's buffers depend on batch and seq), then the model,
     * then what the state says about the model */
    const long requested_steps = opt->steps;
    long step = 0;
    int status = train_state_from_json(state, opt->resume_dir, opt, &step, NULL, &session->restored);
    if (requested_steps > 0) opt->steps = requested_steps;
    if (status == 0) status = check_training_memory(cfg, opt->resume_dir, false, opt);
    if (status == 0) {
        session->model = checkpoint_load_model(opt->resume_dir, model_rows(opt), opt->seq, false);
        if (!session->model) status = PM_ERR_ARG;
    }
    if (status == 0) status = split_experts(session->model, opt);
    train_options ignored = *opt;
    if (status == 0)
        status = train_state_from_json(state, opt->resume_dir, &ignored, &step, &session->history, &session->restored);
    free(state);
    if (status == 0) status = adamw_init(&session->optimizer, session->model, opt->adamw);
    if (status == 0)
        status = checkpoint_load_optimizer(opt->resume_dir, session->optimizer.m, session->optimizer.v,
                                           session->optimizer.size, &session->optimizer.step);
    if (status == 0) { /* other ranks' experts' moments are theirs */
        model_release_other_experts(session->model, session->optimizer.m);
        model_release_other_experts(session->model, session->optimizer.v);
    }
    if (status == 0 && step >= opt->steps)
        status = pm_fail(PM_ERR_ARG, "train: %s is at step %ld of %ld already; give --steps to train further",
                         opt->resume_dir, step, opt->steps);
    *first_step = step;
    return status;
}

int train_run(const pm_model_config *cfg, const train_options *options, const tokenizer *tok, train_result *result) {
    memset(result, 0, sizeof *result);
    result->final_val_loss = NAN;
    train_options opt = *options;
    const batch_comm *comm = opt.comm;
    const bool writer = !comm || comm->rank == 0;
    int status = pm_model_config_check(cfg);
    if (status == 0 && !opt.resume_dir) status = train_options_check(&opt, cfg);
    if (status == 0 && comm && opt.batch < comm->size)
        status = pm_fail(PM_ERR_ARG, "train: --batch %d is smaller than the %d processes; each process needs a "
                         "sequence of every batch: raise --batch or start fewer processes", opt.batch, comm->size);
    /* another run writing there is refused before any work (the lock is taken further down) */
    if (status == 0 && writer) status = run_lock_check(opt.out_dir);
    if (any_rank(comm, status < 0) && status == 0)
        status = pm_fail(PM_ERR_STATE, "train: another process of this run could not start (rank 0 says why)");
    if (status < 0) return status;
    if (!tok) tok = tokenizer_bytes();
    train_session session;
    memset(&session, 0, sizeof session);
    session.opt = &opt;
    long first_step = 0;
    status = open_session(&session, cfg, &opt, &first_step);
    result->first_step = first_step;
    const pm_model_config *model_cfg = session.model ? pm_model_get_config(session.model) : cfg;
    if (status == 0 && opt.resume_dir) status = train_options_check(&opt, model_cfg);
    if (status == 0 && comm && opt.batch < comm->size) /* a resumed run's batch is its checkpoint's */
        status = pm_fail(PM_ERR_ARG, "train: the run resumed from %s has batches of %d sequences, fewer than the %d "
                         "processes; each process needs a sequence of every batch: start at most %d processes",
                         opt.resume_dir, opt.batch, comm->size, opt.batch);
    if (status == 0 && model_cfg->vocab_size < tok->vocab_size)
        status = pm_fail(PM_ERR_ARG, "train: vocab_size = %d is smaller than the %s tokenizer's %d tokens",
                         model_cfg->vocab_size, tok->name, tok->vocab_size);
    batch_source data;
    memset(&data, 0, sizeof data);
    if (status == 0)
        status = opt.supervised ? batches_open_gsm8k(&data, opt.data_path, tok, opt.chat_format, opt.val_fraction, opt.seq)
                                : batches_open_text(&data, opt.data_path, tok, opt.val_fraction, opt.seq);
    if (status == 0) result->unigram_loss = data.unigram_loss;
    session.data = &data;
    /* Only now, with data and model in hand, touch the output directory: lock it (creating
     * it), then look at what is there. */
    run_lock *lock = NULL;
    if (status == 0 && writer) status = run_lock_acquire(opt.out_dir, "probmoe train", &lock);
    char path[4200];
    snprintf(result->model_dir, sizeof result->model_dir, "%s/model", opt.out_dir);
    snprintf(path, sizeof path, "%s/config.json", result->model_dir);
    struct stat existing;
    if (status == 0 && writer && !opt.resume_dir && stat(path, &existing) == 0)
        status = pm_fail(PM_ERR_ARG, "train: '%s' already holds a trained model; choose another --out, resume "
                         "with --resume, or remove it first (nothing was changed)", opt.out_dir);
    if (status == 0 && writer) checkpoint_remove_leftovers(opt.out_dir);
    if (status == 0 && writer) {
        snprintf(path, sizeof path, "%s/metrics.jsonl", opt.out_dir);
        session.metrics = fopen(path, opt.resume_dir ? "a" : "w");
        if (!session.metrics) status = pm_fail(PM_ERR_ARG, "train: cannot write '%s': %s", path, strerror(errno));
    }
    /* SIGUSR1 too: mpirun passes it on to every rank without killing them after a grace period */
    struct sigaction stop = {0}, old_int, old_term, old_usr1;
    stop.sa_handler = request_stop;
    stop_requested = 0;
    sigaction(SIGINT, &stop, &old_int);
    sigaction(SIGTERM, &stop, &old_term);
    sigaction(SIGUSR1, &stop, &old_usr1);
    if (any_rank(comm, status < 0) && status == 0)
        status = pm_fail(PM_ERR_STATE, "train: another process of this run could not start (rank 0 says why)");
    if (status == 0) status = train_loop(&session, first_step, result);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    if (session.metrics) fclose(session.metrics);
    if (status == 0 && !result->interrupted) collect_weights(&session);
    if (status == 0 && writer && !result->interrupted) {
        checkpoint_extras extras = {NULL, NULL, 0, NULL, opt.tokenizer_path, finetune_chat_format(&opt)};
        checkpoint_options save = {opt.save_bf16, opt.shard_bytes};
        status = checkpoint_save(session.model, &extras, result->model_dir, &save);
    }
    if (status == 0 && writer && opt.finished) opt.finished(result, opt.finished_user);
    run_lock_release(lock);
    adamw_free(&session.optimizer);
    train_history_free(&session.history);
    pm_model_free(session.model);
    batches_close(&data);
    return status;
}
