/*
 * Checkpoints: Hugging Face-style model directories plus training state, saved so that a
 * crash at any moment leaves the previous checkpoint intact and loadable.
 *
 * A directory holds
 *   config.json                       the family's Hugging Face config fields + "probmoe" object
 *   model.safetensors                 HF tensor names, F32 (or BF16 on request); above the
 *     or model-0000i-of-0000n.safetensors + model.safetensors.index.json  shard limit
 *   tokenizer.json (or encoder.json + vocab.bpe)   when the model has a BPE tokenizer
 *   optimizer.safetensors             training only: AdamW "adamw.m", "adamw.v" in the
 *                                     parameter layout, metadata "step"
 *   trainer_state.json                training only: whatever JSON the trainer hands over
 *
 * The weights files also carry the per-layer softmoe thresholds (metadata
 * "probmoe.layer_tau"), so a loaded model routes exactly as the saved one did.
 *
 * Saving writes everything into DIR.tmp-<pid>, fsyncs every file and the directory, then
 * renames an existing DIR to DIR.old-<pid>, renames DIR.tmp-<pid> to DIR, fsyncs the parent
 * directory and only then removes DIR.old-<pid> (renamed to DIR.del-<pid> first, so it
 * vanishes at once). A name a loader uses therefore always holds a complete checkpoint:
 *   - DIR, whenever it exists (it only ever appears complete);
 *   - if DIR is missing (a crash between the two renames), DIR.old-<pid>. Saves remove every
 *     DIR.old-* before renaming DIR aside, so there is at most one.
 * The checkpoint_load_* functions follow this rule. DIR.tmp-* and DIR.del-* are never read;
 * the next save of DIR removes those of processes no longer running, and stale DIR.old-*.
 *
 * An existing DIR is replaced whole: it must be a directory (not a symbolic link) holding
 * only regular files. Files a save does not write (say metrics.jsonl) are hard-linked into
 * the new directory, so they survive; the checkpoint's own files (the names above, including
 * a previous save's shards or tokenizer files) are not. A subdirectory makes the save fail
 * rather than be deleted. One process at a time may save a given DIR.
 */
#ifndef PM_IO_CHECKPOINT_H
#define PM_IO_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include "probmoe.h"

typedef struct {
    bool bf16;            /* store the weights as BF16 (optimizer state stays F32) */
    size_t shard_bytes;   /* above this many bytes of weights, shards of at most this many
                             (a larger tensor gets one of its own); 0 = one file */
} checkpoint_options;

/* What a training checkpoint adds to the model (all optional: NULL / 0 to omit). */
typedef struct {
    const float *adam_m, *adam_v; /* pm_model_size(model) floats each */
    long adam_step;
    const char *trainer_state_json;
    const char *tokenizer_path;   /* a tokenizer.json file or a directory with the files */
    const char *chat_format;      /* a fine-tuned model's chat format (data/chat_format.h), kept in
                                     config.json's "probmoe" object for evaluation */
} checkpoint_extras;

/* Saves crash-safely (see above). 0 or a negative pm_status naming the path. */
int checkpoint_save(pm_model *model, const checkpoint_extras *extras, const char *dir,
                    const checkpoint_options *options);

/*
 * Loads a model directory: config.json, then the weights from model.safetensors or (if there
 * is none) the sharded index, converting F32/BF16/F16. Every tensor's shape is checked against
 * the config; a missing tensor is an error, and so is an unknown one unless allow_unknown is
 * set. The index must list every parameter exactly once, in a file beside it that holds it.
 * NULL with pm_last_error() naming the directory and file.
 */
pm_model *checkpoint_load_model(const char *dir, int max_batch, int max_seq, bool allow_unknown);

/* The config.json of a model directory (as checkpoint_load_model finds it), without the
 * weights: to check what the model will need before loading it. 0 or a negative pm_status. */
int checkpoint_read_config(const char *dir, pm_model_config *cfg);

/*
 * The same weights with another router: the model of dir, its router config (and soft_budget)
 * replaced by as's, which must have the same number of experts and k. The gate weights carry
 * over; the file's router values do only when the router kind is the same (another kind
 * starts from its own initial values, softmoe's tau calibrating on the first batch). The
 * fine-tuning protocol of compare: one backbone, each router fine-tuned from it.
 */
pm_model *checkpoint_load_rerouted(const char *dir, const pm_model_config *as, int max_batch, int max_seq);

/*
 * Whether dir/name may be read as part of the model directory dir: it is no symbolic link, or
 * one that resolves inside dir, or (the Hugging Face hub cache, where dir is
 * <repo>/snapshots/<revision> and its files link to ../../blobs/<hash>) inside <repo>/blobs.
 * PM_OK, also when there is no dir/name (its reader reports that); else PM_ERR_ARG naming the
 * link and its target, before a byte of the target is read. The loaders above check every
 * file they read: config.json, model.safetensors, the index and each shard.
 */
int checkpoint_check_link(const char *dir, const char *name);

/* Reads optimizer.safetensors into m, v (size floats each) and *step. */
int checkpoint_load_optimizer(const char *dir, float *m, float *v, size_t size, long *step);

/* The chat format name config.json's "probmoe" object records (checkpoint_extras.chat_format)
 * into name: 1, or 0 when it records none (or the directory has no readable config), or a
 * negative pm_status (the name does not fit). */
int checkpoint_read_chat_format(const char *dir, char *name, size_t capacity);

/* trainer_state.json's text (free() it), or NULL with pm_last_error() set. */
char *checkpoint_load_trainer_state(const char *dir);

/* Removes all but the newest keep_last directories named <parent>/<prefix><number>
 * (numbers compared as integers; other names, and files, are left alone), together with
 * their crash leftovers <prefix><number>.old-* etc. keep_last <= 0 keeps all. */
int checkpoint_prune(const char *parent, const char *prefix, int keep_last);

/*
 * Removes what interrupted saves left in a run directory: every dir/<name>.tmp-<pid> and
 * dir/<name>.del-<pid> whose process is no longer running (never those of a live process,
 * this one included), saying on stderr what it removed. DIR.old-* stays: it can be the only
 * complete copy of DIR (see above). Meant for a run directory whose lock the caller holds,
 * so that no other run saves there meanwhile. A leftover that cannot be removed is reported
 * and skipped, never an error. Returns how many entries went.
 */
int checkpoint_remove_leftovers(const char *dir);

#endif
