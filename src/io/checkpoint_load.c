/*
 * Loading checkpoints: the model from config.json and model.safetensors or Hugging Face's
 * sharded layout (model.safetensors.index.json), the optimizer state, the trainer state.
 * The directory read is DIR, or the copy a crashed save left aside (ckpt_resolve).
 */
#define _DEFAULT_SOURCE /* realpath (XSI), lstat */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "core/utf8.h"
#include "io/checkpoint.h"
#include "io/checkpoint_internal.h"
#include "io/safetensors.h"

typedef struct {
    const char *name;
    int index;
} named_param;

typedef struct {
    pm_model *model;
    bool allow_unknown;
    named_param *sorted;   /* the parameters by name, for lookups among thousands */
    const char **file_of;  /* per parameter, the file the index puts it in (NULL: no index) */
    bool *loaded;
    bool skip_router_values; /* the file's router values belong to another router kind */
    const char *index_path;  /* the index being loaded, for messages */
} weight_loader;

static int compare_names(const void *a, const void *b) {
    return strcmp(((const named_param *)a)->name, ((const named_param *)b)->name);
}

static int find_param(const weight_loader *w, const char *name) {
    int lo = 0, hi = pm_model_num_params(w->model);
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(w->sorted[mid].name, name);
        if (c == 0) return w->sorted[mid].index;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* The routers' values from the weights' metadata. Files written before "probmoe.router_values"
 * existed carry only softmoe's thresholds, as "probmoe.layer_tau" (a JSON array, one per layer). */
static int restore_router_values(pm_model *model, const st_file *file, const char *path) {
    const char *values = st_metadata(file, "probmoe.router_values");
    if (values) return pm_model_set_router_values_json(model, values, path);
    const char *taus = st_metadata(file, "probmoe.layer_tau");
    for (int m = 0; taus && m < pm_model_moe_layers(pm_model_get_config(model)); m++) {
        float *tau = pm_router_find_value(pm_model_router(model, m), "tau", NULL);
        while (*taus == '[' || *taus == ',' || *taus == ' ') taus++;
        char *end;
        const float value = strtof(taus, &end);
        if (end == taus || !tau) break;
        *tau = value;
        taus = end;
    }
    return PM_OK;
}

/* A tensor only some routers have (softmoe's learned budget, src/model/params.c): a model
 * rerouted to another kind leaves it behind. */
static bool router_only_tensor(const char *name) {
    const size_t length = strlen(name), suffix = strlen(".gate.log_alpha"); /* mlp. or block_sparse_moe. */
    return strcmp(name, "model.soft_budget.eta") == 0 ||
           (length > suffix && strcmp(name + length - suffix, ".gate.log_alpha") == 0);
}

static int fail_unknown(const pm_model *model, const char *path, const char *name) {
    /* Hugging Face would tie over it silently; the weights may have been trained untied */
    if (strcmp(name, "lm_head.weight") == 0 && pm_model_get_config(model)->tie_word_embeddings)
        return pm_fail(PM_ERR_ARG, "%s holds lm_head.weight, but config.json ties lm_head to the embedding "
                       "(tie_word_embeddings = true): set tie_word_embeddings to false to use it, or skip it with "
                       "--allow-unknown", path);
    return pm_fail(PM_ERR_ARG, "%s: the tensor '%s' is not a parameter of the model that config.json describes "
                   "(a different architecture or config?): use the config.json the weights were saved with, or allow "
                   "unknown tensors (--allow-unknown) to skip it", path, name);
}

/* ------------------------------------------------------------ symbolic links */

/* Whether path lies below the directory root (both resolved). */
static bool below(const char *path, const char *root) {
    const size_t n = strlen(root);
    if (n == 1 && root[0] == '/') return path[0] == '/' && path[1];
    return strncmp(path, root, n) == 0 && path[n] == '/';
}

/* The Hugging Face hub cache: real_dir is <repo>/snapshots/<revision>, whose files link to
 * <repo>/blobs/<hash>. Whether target is in that repository's blobs/. */
static bool in_hub_blobs(const char *real_dir, const char *target) {
    char repo[CKPT_PATH_MAX], blobs[CKPT_PATH_MAX];
    if ((size_t)snprintf(repo, sizeof repo, "%s", real_dir) >= sizeof repo) return false;
    char *slash = strrchr(repo, '/'); /* <repo>/snapshots | <revision> */
    if (!slash || slash == repo) return false;
    *slash = '\0';
    slash = strrchr(repo, '/'); /* <repo> | snapshots */
    if (!slash || strcmp(slash + 1, "snapshots") != 0) return false;
    *slash = '\0';
    if (ckpt_join(blobs, sizeof blobs, slash == repo ? "" : repo, "blobs") < 0) return false;
    char *real_blobs = realpath(blobs, NULL);
    const bool inside = real_blobs && below(target, real_blobs);
    free(real_blobs);
    return inside;
}

int checkpoint_check_link(const char *dir, const char *name) {
    char path[CKPT_PATH_MAX];
    struct stat info;
    int status = ckpt_join(path, sizeof path, dir, name);
    if (status < 0 || lstat(path, &info) != 0 || !S_ISLNK(info.st_mode)) return status; /* a missing file: the reader says so */
    char *real_dir = realpath(dir, NULL), *target = realpath(path, NULL);
    if (!real_dir)
        status = pm_fail(PM_ERR_ARG, "cannot resolve the model directory '%s': %s", dir, strerror(errno));
    else if (!target)
        status = pm_fail(PM_ERR_ARG, "%s is a symbolic link that leads nowhere (%s); replace it by the file itself",
                         path, strerror(errno));
    else if (!below(target, real_dir) && !in_hub_blobs(real_dir, target))
        status = pm_fail(PM_ERR_ARG, "%s is a symbolic link to '%s', outside the model directory; probmoe reads a "
                         "model's files only from its directory (or, in a Hugging Face hub cache, from the "
                         "repository's blobs/). Copy the file into the directory instead of linking it",
                         path, target);
    free(real_dir);
    free(target);
    return status;
}

/* ------------------------------------------------------------ weights */

/* Reads the parameters in one weights file; file_name is relative to dir. With an index,
 * first_tensor is the first parameter the index puts in it (for messages). */
static int load_file(weight_loader *w, const char *dir, const char *file_name, const char *first_tensor) {
    char path[CKPT_PATH_MAX];
    st_file *file = NULL;
    int status = checkpoint_check_link(dir, file_name);
    if (status == 0) status = ckpt_join(path, sizeof path, dir, file_name);
    if (status == 0 && (status = st_open(&file, path)) < 0 && w->file_of)
        pm_fail(status, "%s maps the tensor '%s' to a shard that cannot be loaded (if it is missing, the model "
                "directory is incomplete: copy or save it again): %s", w->index_path, first_tensor, pm_last_error());
    float *weights = pm_model_weights(w->model);
    for (int i = 0; status == 0 && i < st_count(file); i++) {
        const st_tensor *tensor = st_tensor_at(file, i);
        int p = find_param(w, tensor->name);
        if (p < 0) {
            if (!w->allow_unknown && !(w->skip_router_values && router_only_tensor(tensor->name)))
                status = fail_unknown(w->model, path, tensor->name);
            continue;
        }
        if (w->file_of && (!w->file_of[p] || strcmp(w->file_of[p], file_name) != 0)) {
            status = pm_fail(PM_ERR_ARG, "%s holds the tensor '%s', but %s %s; the index and its shards disagree: "
                             "save the model again or correct the index's weight_map", path, tensor->name,
                             w->index_path, w->file_of[p] ? "puts it in another file" : "does not list it");
            break;
        }
        const pm_param *param = pm_model_param(w->model, p);
        status = st_read_f32(file, param->name, param->shape, param->rank, weights + param->offset);
        w->loaded[p] = true;
    }
    for (int p = 0; status == 0 && w->file_of && p < pm_model_num_params(w->model); p++)
        if (!w->loaded[p] && w->file_of[p] && strcmp(w->file_of[p], file_name) == 0)
            status = pm_fail(PM_ERR_ARG, "%s puts the tensor '%s' in %s, but it is not there; the index and its "
                             "shards disagree: save the model again or correct the index's weight_map", w->index_path,
                             pm_model_param(w->model, p)->name, path);
    if (status == 0 && !w->skip_router_values) status = restore_router_values(w->model, file, path);
    st_close(file);
    return status;
}

/* A shard named by the index must be a file beside it, not a path leading elsewhere, and a
 * name that messages can print (UTF-8, no control characters). */
static bool plain_file_name(const char *name) {
    for (const char *c = name; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) return false;
    const size_t length = strlen(name);
    return length && name[0] != '.' && !strchr(name, '/') && utf8_invalid_at((const unsigned char *)name, length) == length;
}

/*
 * The sharded layout. The index is checked before any shard is read: a JSON object whose
 * "weight_map" lists every parameter exactly once, each in a plain file name. Its
 * "metadata"."total_size" is informational (tools disagree on what it counts), so not checked.
 */
static int load_index(weight_loader *w, const char *dir, const char *index_path) {
    char *text = NULL;
    int status = ckpt_read_text(index_path, (size_t)64 << 20, &text);
    if (status < 0) return status;
    w->index_path = index_path;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(map))
        status = pm_fail(PM_ERR_ARG, "%s is not a shard index: it needs to be a JSON object with a \"weight_map\" "
                         "object", index_path);
    for (const cJSON *entry = map ? map->child : NULL; status == 0 && entry; entry = entry->next) {
        if (!cJSON_IsString(entry) || !plain_file_name(entry->valuestring)) {
            status = pm_fail(PM_ERR_ARG, "%s: the tensor '%s' is not mapped to a file name in the same directory; "
                             "each weight_map value must name a shard file beside the index", index_path, entry->string);
            break;
        }
        int p = find_param(w, entry->string);
        if (p < 0 && !w->allow_unknown && !(w->skip_router_values && router_only_tensor(entry->string)))
            status = fail_unknown(w->model, index_path, entry->string);
        else if (p >= 0 && w->file_of[p])
            status = pm_fail(PM_ERR_ARG, "%s lists the tensor '%s' twice; each tensor must appear once in its "
                             "weight_map", index_path, entry->string);
        else if (p >= 0) w->file_of[p] = entry->valuestring;
    }
    const int n = pm_model_num_params(w->model);
    for (int p = 0; status == 0 && p < n; p++)
        if (!w->file_of[p] && !pm_model_param(w->model, p)->optional)
            status = pm_fail(PM_ERR_ARG, "%s: the tensor '%s' is missing (the index does not list it)", index_path,
                             pm_model_param(w->model, p)->name);
    /* each shard once, in the order of the parameters it first holds */
    for (int p = 0; status == 0 && p < n; p++) {
        if (!w->file_of[p]) continue; /* an optional tensor the index does not list */
        bool seen = false;
        for (int q = 0; q < p && !seen; q++) seen = w->file_of[q] && strcmp(w->file_of[q], w->file_of[p]) == 0;
        if (!seen) status = load_file(w, dir, w->file_of[p], pm_model_param(w->model, p)->name);
    }
    cJSON_Delete(root);
    return status;
}

static int load_weights(pm_model *model, const char *dir, bool allow_unknown, bool skip_router_values) {
    const int n = pm_model_num_params(model);
    weight_loader w = {model, allow_unknown, malloc(sizeof(named_param) * (size_t)n), calloc((size_t)n, sizeof(char *)),
                       calloc((size_t)n, sizeof(bool)), skip_router_values, NULL};
    char path[CKPT_PATH_MAX];
    int status = w.sorted && w.file_of && w.loaded ? PM_OK : pm_fail(PM_ERR_NOMEM, "out of memory loading '%s'", dir);
    for (int i = 0; status == 0 && i < n; i++) w.sorted[i] = (named_param){pm_model_param(model, i)->name, i};
    if (status == 0) qsort(w.sorted, (size_t)n, sizeof(named_param), compare_names);
    if (status == 0) status = ckpt_join(path, sizeof path, dir, "model.safetensors");
    struct stat entry;
    if (status == 0 && lstat(path, &entry) == 0) { /* Hugging Face prefers the single file too when both exist */
        const char **file_of = w.file_of;
        w.file_of = NULL;
        status = load_file(&w, dir, "model.safetensors", NULL);
        w.file_of = file_of;
        for (int p = 0; status == 0 && p < n; p++)
            if (!w.loaded[p] && !pm_model_param(model, p)->optional)
                status = pm_fail(PM_ERR_ARG, "%s: the tensor '%s' is missing", path, pm_model_param(model, p)->name);
    } else if (status == 0) {
        status = ckpt_join(path, sizeof path, dir, "model.safetensors.index.json");
        if (status == 0 && lstat(path, &entry) == 0) {
            status = checkpoint_check_link(dir, "model.safetensors.index.json");
            if (status == 0) status = load_index(&w, dir, path);
        } else if (status == 0) {
            status = pm_fail(PM_ERR_ARG, "'%s' holds no weights: neither model.safetensors nor "
                             "model.safetensors.index.json", dir);
        }
    }
    free(w.sorted);
    free(w.file_of);
    free(w.loaded);
    return status;
}

int checkpoint_read_config(const char *dir, pm_model_config *cfg) {
    char root[CKPT_PATH_MAX], path[CKPT_PATH_MAX];
    int status = ckpt_resolve(dir, root, sizeof root);
    if (status == 0) status = ckpt_join(path, sizeof path, root, "config.json");
    if (status == 0) status = checkpoint_check_link(root, "config.json");
    return status < 0 ? status : pm_model_config_load(cfg, path);
}

pm_model *checkpoint_load_model(const char *dir, int max_batch, int max_seq, bool allow_unknown) {
    char root[CKPT_PATH_MAX], path[CKPT_PATH_MAX];
    pm_model_config cfg;
    if (ckpt_resolve(dir, root, sizeof root) < 0 || ckpt_join(path, sizeof path, root, "config.json") < 0 ||
        checkpoint_check_link(root, "config.json") < 0 || pm_model_config_load(&cfg, path) < 0)
        return NULL;
    if (max_seq > cfg.max_position_embeddings) max_seq = cfg.max_position_embeddings;
    pm_model *model = pm_model_create(&cfg, max_batch, max_seq);
    if (model && load_weights(model, root, allow_unknown, false) < 0) {
        pm_model_free(model);
        return NULL;
    }
    return model;
}

pm_model *checkpoint_load_rerouted(const char *dir, const pm_model_config *as, int max_batch, int max_seq) {
    char root[CKPT_PATH_MAX], path[CKPT_PATH_MAX];
    pm_model_config cfg;
    if (ckpt_resolve(dir, root, sizeof root) < 0 || ckpt_join(path, sizeof path, root, "config.json") < 0 ||
        checkpoint_check_link(root, "config.json") < 0 || pm_model_config_load(&cfg, path) < 0)
        return NULL;
    if (as->router.num_experts != cfg.num_experts || as->experts_per_token != cfg.experts_per_token) {
        pm_fail(PM_ERR_ARG, "%s has %d experts and k = %d; the router to fine-tune it with has %d and k = %d", dir,
                cfg.num_experts, cfg.experts_per_token, as->router.num_experts, as->experts_per_token);
        return NULL;
    }
    const bool same_kind = cfg.router.kind == as->router.kind;
    cfg.router = as->router;
    cfg.soft_budget = as->soft_budget;
    if (max_seq > cfg.max_position_embeddings) max_seq = cfg.max_position_embeddings;
    pm_model *model = pm_model_create(&cfg, max_batch, max_seq);
    if (model && load_weights(model, root, false, !same_kind) < 0) {
        pm_model_free(model);
        return NULL;
    }
    return model;
}

pm_model *pm_model_load(const char *dir, int max_batch, int max_seq) {
    return checkpoint_load_model(dir, max_batch, max_seq, false);
}

int checkpoint_load_optimizer(const char *dir, float *m, float *v, size_t size, long *step) {
    if (!m || !v || !step) return pm_fail(PM_ERR_ARG, "checkpoint_load_optimizer: m, v or step is NULL");
    char root[CKPT_PATH_MAX], path[CKPT_PATH_MAX];
    st_file *file = NULL;
    int status = ckpt_resolve(dir, root, sizeof root);
    if (status == 0) status = ckpt_join(path, sizeof path, root, "optimizer.safetensors");
    if (status == 0) status = st_open(&file, path);
    int64_t shape[1] = {(int64_t)size};
    const st_tensor *moments = status == 0 ? st_find(file, "adamw.m") : NULL;
    if (moments && (moments->rank != 1 || moments->shape[0] != shape[0]))
        status = pm_fail(PM_ERR_ARG, "%s holds %lld moments (adamw.m) but the model has %zu parameters: the "
                         "optimizer state belongs to another model (or to softmoe before its learned budget). "
                         "Start a new run from its weights with --init instead of --resume", path,
                         (long long)(moments->rank == 1 ? moments->shape[0] : -1), size);
    if (status == 0) status = st_read_f32(file, "adamw.m", shape, 1, m);
    if (status == 0) status = st_read_f32(file, "adamw.v", shape, 1, v);
    const char *text = status == 0 ? st_metadata(file, "step") : NULL;
    char *end = NULL;
    long value = text ? strtol(text, &end, 10) : -1;
    if (status == 0 && (!text || end == text || *end || value < 0))
        status = pm_fail(PM_ERR_ARG, "%s: the metadata \"step\" is missing or not a count", path);
    if (status == 0) *step = value;
    st_close(file);
    return status;
}

char *checkpoint_load_trainer_state(const char *dir) {
    char root[CKPT_PATH_MAX], path[CKPT_PATH_MAX], *text = NULL;
    if (ckpt_resolve(dir, root, sizeof root) == 0 && ckpt_join(path, sizeof path, root, "trainer_state.json") == 0)
        ckpt_read_text(path, (size_t)64 << 20, &text);
    return text;
}
