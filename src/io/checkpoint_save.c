/*
 * Saving a checkpoint. Everything is written into DIR.tmp-<pid> and fsynced; then DIR (if
 * any) is renamed to DIR.old-<pid>, DIR.tmp-<pid> to DIR, the parent fsynced, and
 * DIR.old-<pid> removed. At every moment a loader finds a complete checkpoint: DIR, or in
 * the gap between the two renames DIR.old-<pid> (ckpt_resolve), so the sequence survives a
 * crash at any point; the next save sweeps away what a crash left behind.
 */
#define _POSIX_C_SOURCE 200809L /* getpid, link, lstat, opendir */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/checkpoint_internal.h"
#include "core/fs.h"
#include "io/safetensors.h"

/* Files a save writes (some of them). Other files in an existing DIR are carried over. */
static bool is_checkpoint_file(const char *name) {
    static const char *const names[] = {"config.json", "model.safetensors", "model.safetensors.index.json",
                                        "optimizer.safetensors", "trainer_state.json", "tokenizer.json",
                                        "encoder.json", "vocab.bpe"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0) return true;
    size_t n = strlen(name), suffix = strlen(".safetensors");
    return strncmp(name, "model-", 6) == 0 && n > 6 + suffix && strcmp(name + n - suffix, ".safetensors") == 0;
}

/*
 * Checks an existing DIR before anything is written: it is replaced whole, so it must be a
 * real directory holding only files. A symbolic link would be renamed instead of its target,
 * and a subdirectory (say, the run's checkpoint-N folders) would be deleted with it.
 * If keep_into is not NULL, hard-links its files that a save does not write (metrics.jsonl,
 * notes) into keep_into, so they survive the replacement.
 */
static int scan_existing(const char *dir, const char *keep_into) {
    DIR *handle = opendir(dir);
    if (!handle) return pm_fail(PM_ERR_ARG, "cannot open the directory '%s': %s", dir, strerror(errno));
    char from[CKPT_PATH_MAX], to[CKPT_PATH_MAX];
    int status = PM_OK;
    for (struct dirent *entry; status == 0 && (entry = readdir(handle));) {
        const char *name = entry->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
        struct stat info;
        status = ckpt_join(from, sizeof from, dir, name);
        if (status == 0 && lstat(from, &info) != 0)
            status = pm_fail(PM_ERR_ARG, "cannot inspect '%s': %s", from, strerror(errno));
        if (status == 0 && !S_ISREG(info.st_mode))
            status = pm_fail(PM_ERR_ARG, "checkpoint: '%s' holds '%s', which is not a regular file; a save replaces "
                             "the whole directory, so save elsewhere or move it out first", dir, name);
        if (status < 0 || !keep_into || is_checkpoint_file(name)) continue;
        status = ckpt_join(to, sizeof to, keep_into, name);
        if (status == 0 && link(from, to) != 0)
            status = pm_fail(PM_ERR_ARG, "checkpoint: cannot keep '%s' in the new '%s': %s", from, dir, strerror(errno));
    }
    closedir(handle);
    return status;
}

/* ------------------------------------------------------------ weights */

static size_t param_bytes(const pm_param *param, bool bf16) { return param->count * (bf16 ? 2 : 4); }

/* Writes parameters [first, end) to path. F32 tensors point into the weights (no copy). */
static int write_weight_file(pm_model *model, int first, int end, bool bf16, const char *router_values, const char *path) {
    st_writer *writer = st_writer_create();
    int status = writer ? PM_OK : PM_ERR_NOMEM;
    const float *weights = pm_model_weights(model);
    for (int i = first; status == 0 && i < end; i++) {
        const pm_param *p = pm_model_param(model, i);
        status = bf16 ? st_writer_add_bf16(writer, p->name, p->shape, p->rank, weights + p->offset)
                      : st_writer_add(writer, p->name, ST_F32, p->shape, p->rank, weights + p->offset);
    }
    if (status == 0) status = st_writer_set_metadata(writer, "format", "pt");
    /* the routers' state and learnable values: a loaded model routes as this one does */
    if (status == 0) status = st_writer_set_metadata(writer, "probmoe.router_values", router_values);
    if (status == 0) status = st_writer_write(writer, path);
    if (status == 0) status = ckpt_sync(path, false);
    st_writer_free(writer);
    return status;
}

/* Hugging Face's sharded layout: model-0000i-of-0000n.safetensors, filled in parameter order
 * up to shard_bytes each (a larger tensor gets a file of its own), and
 * model.safetensors.index.json = {"metadata": {"total_size": bytes}, "weight_map": {name: file}}. */
static int write_shards(pm_model *model, const char *dir, const checkpoint_options *options, const char *router_values,
                        size_t total) {
    const int n = pm_model_num_params(model);
    int *starts = malloc(sizeof *starts * ((size_t)n + 1)), shards = 0;
    if (!starts) return pm_fail(PM_ERR_NOMEM, "out of memory sharding the weights");
    size_t filled = 0;
    for (int i = 0; i < n; i++) {
        size_t bytes = param_bytes(pm_model_param(model, i), options->bf16);
        if (i == 0 || filled + bytes > options->shard_bytes) {
            starts[shards++] = i;
            filled = 0;
        }
        filled += bytes;
    }
    starts[shards] = n;
    cJSON *root = cJSON_CreateObject(), *metadata = cJSON_AddObjectToObject(root, "metadata");
    cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
    char number[32], name[64], path[CKPT_PATH_MAX];
    snprintf(number, sizeof number, "%zu", total);
    /* raw: cJSON would print a large total through a double */
    int status = root && metadata && map && cJSON_AddRawToObject(metadata, "total_size", number)
                     ? PM_OK : pm_fail(PM_ERR_NOMEM, "out of memory writing the shard index");
    for (int s = 0; status == 0 && s < shards; s++) {
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, shards);
        status = ckpt_join(path, sizeof path, dir, name);
        if (status == 0) status = write_weight_file(model, starts[s], starts[s + 1], options->bf16, router_values, path);
        for (int i = starts[s]; status == 0 && i < starts[s + 1]; i++)
            if (!cJSON_AddStringToObject(map, pm_model_param(model, i)->name, name))
                status = pm_fail(PM_ERR_NOMEM, "out of memory writing the shard index");
    }
    char *text = status == 0 ? cJSON_Print(root) : NULL;
    if (status == 0 && !text) status = pm_fail(PM_ERR_NOMEM, "out of memory writing the shard index");
    if (status == 0) status = ckpt_join(path, sizeof path, dir, "model.safetensors.index.json");
    if (status == 0) status = ckpt_write_file(path, text, strlen(text));
    free(text);
    cJSON_Delete(root);
    free(starts);
    return status;
}

static int write_weights(pm_model *model, const char *dir, const checkpoint_options *options) {
    size_t total = 0;
    for (int i = 0; i < pm_model_num_params(model); i++) total += param_bytes(pm_model_param(model, i), options->bf16);
    char *router_values = pm_model_router_values_json(model);
    if (!router_values) return PM_ERR_NOMEM;
    char path[CKPT_PATH_MAX];
    int status;
    if (options->shard_bytes > 0 && total > options->shard_bytes) {
        status = write_shards(model, dir, options, router_values, total);
    } else {
        status = ckpt_join(path, sizeof path, dir, "model.safetensors");
        if (status == 0) status = write_weight_file(model, 0, pm_model_num_params(model), options->bf16, router_values, path);
    }
    free(router_values);
    return status;
}

/* ------------------------------------------------------------ the other files */

static int write_optimizer(const pm_model *model, const checkpoint_extras *extras, const char *dir) {
    int64_t shape[1] = {(int64_t)pm_model_size(model)};
    char step[32], path[CKPT_PATH_MAX];
    snprintf(step, sizeof step, "%ld", extras->adam_step);
    st_writer *writer = st_writer_create();
    int status = writer ? PM_OK : PM_ERR_NOMEM;
    if (status == 0) status = st_writer_add(writer, "adamw.m", ST_F32, shape, 1, extras->adam_m);
    if (status == 0) status = st_writer_add(writer, "adamw.v", ST_F32, shape, 1, extras->adam_v);
    if (status == 0) status = st_writer_set_metadata(writer, "step", step);
    if (status == 0) status = ckpt_join(path, sizeof path, dir, "optimizer.safetensors");
    if (status == 0) status = st_writer_write(writer, path);
    if (status == 0) status = ckpt_sync(path, false);
    st_writer_free(writer);
    return status;
}

static int write_text(const char *dir, const char *name, const char *text) {
    char path[CKPT_PATH_MAX];
    int status = ckpt_join(path, sizeof path, dir, name);
    return status < 0 ? status : ckpt_write_file(path, text, strlen(text));
}

static bool is_file(const char *path) {
    struct stat info;
    return stat(path, &info) == 0 && S_ISREG(info.st_mode);
}

/* A tokenizer.json file, or a directory with tokenizer.json or GPT-2's encoder.json + vocab.bpe. */
static int copy_tokenizer(const char *source, const char *dir) {
    struct stat info;
    char from[CKPT_PATH_MAX], to[CKPT_PATH_MAX];
    if (stat(source, &info) != 0)
        return pm_fail(PM_ERR_ARG, "checkpoint: cannot read the tokenizer '%s': %s", source, strerror(errno));
    if (!S_ISDIR(info.st_mode)) {
        int status = ckpt_join(to, sizeof to, dir, "tokenizer.json");
        return status < 0 ? status : ckpt_copy_file(source, to);
    }
    static const char *const hf[] = {"tokenizer.json"}, *const gpt2[] = {"encoder.json", "vocab.bpe"};
    int status = ckpt_join(from, sizeof from, source, "tokenizer.json");
    bool has_json = status == 0 && is_file(from);
    const char *const *names = has_json ? hf : gpt2;
    int count = has_json ? 1 : 2;
    for (int i = 0; status == 0 && i < count; i++) {
        status = ckpt_join(from, sizeof from, source, names[i]);
        if (status == 0 && !is_file(from))
            status = pm_fail(PM_ERR_ARG, "checkpoint: the tokenizer directory '%s' has neither tokenizer.json nor "
                             "encoder.json + vocab.bpe", source);
        if (status == 0) status = ckpt_join(to, sizeof to, dir, names[i]);
        if (status == 0) status = ckpt_copy_file(from, to);
    }
    return status;
}

/* Everything into the (new, empty) directory dir. */
static int write_contents(pm_model *model, const checkpoint_extras *extras, const checkpoint_options *options,
                          const char *dir) {
    char *config = pm_model_config_to_json(pm_model_get_config(model));
    if (config && extras->chat_format) config = ckpt_config_with_chat_format(config, extras->chat_format);
    int status = config ? write_text(dir, "config.json", config) : pm_fail(PM_ERR_NOMEM, "out of memory saving '%s'", dir);
    free(config);
    if (status == 0) status = write_weights(model, dir, options);
    if (status == 0 && extras->adam_m) status = write_optimizer(model, extras, dir);
    if (status == 0 && extras->trainer_state_json)
        status = write_text(dir, "trainer_state.json", extras->trainer_state_json);
    if (status == 0 && extras->tokenizer_path) status = copy_tokenizer(extras->tokenizer_path, dir);
    return status;
}

/* ------------------------------------------------------------ the swap */

/* Moves the complete tmp to path->dir (see the top of the file). */
static int swap_into_place(const ckpt_path *path, const char *tmp, bool exists) {
    char old[CKPT_PATH_MAX];
    int status = ckpt_sibling(path, "old", (long)getpid(), old, sizeof old);
    if (status == 0 && exists && rename(path->dir, old) != 0)
        status = pm_fail(PM_ERR_ARG, "checkpoint: cannot rename '%s' to '%s': %s", path->dir, old, strerror(errno));
    if (status == 0 && rename(tmp, path->dir) != 0) {
        status = pm_fail(PM_ERR_ARG, "checkpoint: cannot rename '%s' to '%s': %s", tmp, path->dir, strerror(errno));
        if (exists) rename(old, path->dir); /* put the previous checkpoint back */
    }
    if (status < 0) return status; /* the caller removes tmp */
    status = ckpt_sync(path->parent, true);
    /* the old copy, and one a crashed save may have left while DIR was missing */
    if (status == 0) status = ckpt_sweep(path, true);
    if (status < 0) {
        char message[512];
        snprintf(message, sizeof message, "%s", pm_last_error());
        return pm_fail(PM_ERR_ARG, "checkpoint: '%s' was saved, but cleaning up after it failed: %s", path->dir, message);
    }
    return PM_OK;
}

int checkpoint_save(pm_model *model, const checkpoint_extras *extras, const char *dir,
                    const checkpoint_options *options) {
    static const checkpoint_extras no_extras = {0};
    static const checkpoint_options defaults = {0};
    if (!model) return pm_fail(PM_ERR_ARG, "checkpoint_save: model is NULL");
    if (!extras) extras = &no_extras;
    if (!options) options = &defaults;
    if (!extras->adam_m != !extras->adam_v)
        return pm_fail(PM_ERR_ARG, "checkpoint_save: give both AdamW moments (adam_m and adam_v) or neither");
    ckpt_path path;
    int status = ckpt_path_init(&path, dir);
    if (status == 0) status = ensure_directory(path.parent);
    if (status < 0) return status;
    struct stat info;
    bool exists = lstat(path.dir, &info) == 0;
    if (exists && !S_ISDIR(info.st_mode))
        return pm_fail(PM_ERR_ARG, "checkpoint: '%s' exists and is not a directory%s", path.dir,
                       S_ISLNK(info.st_mode) ? " (a symbolic link: save to its target instead)" : "");
    if (exists) status = scan_existing(path.dir, NULL);
    /* left by crashed saves: a stale DIR.old-* must go before DIR is renamed aside again */
    if (status == 0) status = ckpt_sweep(&path, exists);
    char tmp[CKPT_PATH_MAX];
    if (status == 0) status = ckpt_sibling(&path, "tmp", (long)getpid(), tmp, sizeof tmp);
    if (status < 0) return status;
    if (mkdir(tmp, 0755) != 0)
        return pm_fail(PM_ERR_ARG, "checkpoint: cannot create '%s': %s", tmp, strerror(errno));
    status = write_contents(model, extras, options, tmp);
    if (status == 0 && exists) status = scan_existing(path.dir, tmp);
    if (status == 0) status = ckpt_sync(tmp, true);
    if (status == 0) status = swap_into_place(&path, tmp, exists);
    if (status == 0 || access(tmp, F_OK) != 0) return status;
    char message[512];
    snprintf(message, sizeof message, "%s", pm_last_error());
    ckpt_remove_flat(tmp); /* the failure is what matters; keep its message */
    return pm_fail(status, "%s", message);
}

pm_status pm_model_save(pm_model *model, const char *dir) { return checkpoint_save(model, NULL, dir, NULL); }
