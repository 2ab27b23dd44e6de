/* The training loop: data, schedule, accumulation, clipping, AdamW, evaluation, metrics. */
#ifndef PM_TRAIN_TRAINER_H
#define PM_TRAIN_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/batch_comm.h"
#include "data/text_data.h"
#include "train/batches.h"
#include "probmoe.h"
#include "train/optim.h"
#include "train/routing_stats.h"

struct train_result;
/* The most micro-batches a step accumulates (2^20), so that the tokens of a step (at most
 * INT_MAX a micro-batch) stay far inside a 64-bit count. */
enum { TRAIN_MAX_ACCUM = 1 << 20 };

typedef struct {
    const char *data_path;  /* a text file or a shard directory; GSM8K JSONL when supervised */
    bool supervised;        /* fine-tune on GSM8K: loss on answer tokens only */
    chat_format chat_format; /* supervised: how each example's turns are written (plain) */
    const char *init_dir;   /* start from this model directory's weights (fresh optimizer) */
    bool init_reroute;      /* with init_dir: route with the given config's router (and
                               soft_budget) instead of the one the weights were trained with */
    const char *tokenizer_path; /* tokenizer.json or a GPT-2 directory; NULL: bytes */
    const char *out_dir;    /* metrics.jsonl, model.safetensors, config.json */
    int batch, seq, accum;  /* sequences per micro-batch, tokens per sequence, micro-batches */
    long steps;             /* optimizer steps */
    float lr, min_lr_ratio; /* peak rate; the decay ends at lr·min_lr_ratio */
    long warmup;            /* steps of linear warmup */
    lr_schedule schedule;
    float clip;             /* global gradient-norm limit; 0 = off */
    adamw_config adamw;
    pm_precision precision; /* of the matrix products (pm_model_set_precision); a resumed run keeps its own */
    pm_fp32_matmul fp32_matmul; /* who runs fp32 products (pm_model_set_fp32_matmul; default MEASURED); kept
                                   by a resumed run */
    uint64_t seed;
    long eval_interval;     /* steps between validation losses; 0 = only at the end */
    int eval_batches;
    double val_fraction;
    int max_bad_steps;      /* stop after this many non-finite steps in a row */
    bool progress;          /* a progress line on stderr */
    long save_interval;     /* a checkpoint every N steps into out/checkpoint-<step>; 0 = none */
    int keep_last;          /* keep only the newest N checkpoints; 0 = all */
    bool save_bf16;         /* store the final model's weights as BF16 */
    size_t shard_bytes;     /* split weight files above this size (Hugging Face sharding) */
    const char *resume_dir; /* continue from this checkpoint */
    const char *command_line; /* recorded in trainer_state.json */
    /* Called once a run has ended well (interrupted included), while out_dir is still
     * locked: the CLI writes its plots there. NULL: nothing. */
    void (*finished)(const struct train_result *result, void *user);
    void *finished_user;
    /* Data parallelism (core/batch_comm.h): this process is one rank of comm, taking its rows of
     * every global batch of `batch` sequences; rank 0 alone writes out_dir and evaluates. NULL:
     * a single process. */
    const batch_comm *comm;
} train_options;

enum { TRAIN_MAX_REPORTED_LAYERS = 64 };

typedef struct train_result {
    long steps_done;
    long first_step;  /* the step this invocation started from (a resumed run's checkpoint) */
    double final_train_loss, final_val_loss, unigram_loss, tokens_per_second;
    int num_layers;  /* routing of the last training step, per MoE layer (the first 64) */
    routing_stats routing[TRAIN_MAX_REPORTED_LAYERS];
    int layer_numbers[TRAIN_MAX_REPORTED_LAYERS]; /* their decoder layer numbers */
    bool has_budget;  /* the router learns a budget: its k_m and alpha per MoE layer at the end */
    float budget_k[TRAIN_MAX_REPORTED_LAYERS], budget_alpha[TRAIN_MAX_REPORTED_LAYERS];
    bool interrupted; /* stopped by SIGINT/SIGTERM after saving a checkpoint */
    /* expert parallelism, this rank: rows of H floats sent to other ranks and back, one per
     * pair as sent and one per (token, rank) as a per-rank dispatch would (model_expert_traffic) */
    int64_t expert_pair_rows, expert_rank_rows;
    char last_checkpoint[4096];
    char model_dir[4096]; /* where the final model went */
} train_result;

train_options train_options_default(void);
/* The names of --fp32-matmul and the trainer state: openblas, measured, onednn, auto. */
const char *fp32_matmul_name(pm_fp32_matmul choice);
bool fp32_matmul_parse(const char *name, pm_fp32_matmul *choice);
/* Checks the options against the model config; 0 or a negative pm_status naming the flag. */
int train_options_check(const train_options *opt, const pm_model_config *cfg);

/*
 * Trains a fresh model (or, with opt->resume_dir, continues one) on text tokenized by tok.
 * Layout of opt->out_dir: metrics.jsonl, checkpoint-<step>/ every save_interval steps, and
 * model/ with the final model (a model directory: config.json, model.safetensors, tokenizer).
 * Nothing is written before the data and model are known to be good. opt->out_dir is locked
 * (core/run_lock.h) from then until the return: another run writing there is refused, before
 * any work. With the lock taken, leftovers of interrupted saves by processes that are gone
 * are removed (checkpoint_remove_leftovers). SIGINT/SIGTERM finish the current step, save a
 * checkpoint and return 0 with result->interrupted set.
 */
int train_run(const pm_model_config *cfg, const train_options *opt, const tokenizer *tok,
              train_result *result);

/* Mean validation loss over n fixed batches (inference-mode routing). */
int evaluate_loss(pm_model *model, const batch_source *data, int batches, int B, int S, double *loss);

#endif
