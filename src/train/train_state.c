#include "train/train_state.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int train_history_add(train_history *history, long step, double loss, double val_loss) {
    if (history->count == history->capacity) {
        long grown = history->capacity ? 2 * history->capacity : 256;
        train_history_entry *entries = realloc(history->entries, sizeof *entries * (size_t)grown);
        if (!entries) return pm_fail(PM_ERR_NOMEM, "train: out of memory for the metrics history");
        history->entries = entries;
        history->capacity = grown;
    }
    history->entries[history->count++] = (train_history_entry){step, loss, val_loss};
    return PM_OK;
}

void train_history_free(train_history *history) {
    free(history->entries);
    memset(history, 0, sizeof *history);
}

static const char *schedule_name(lr_schedule schedule) {
    return schedule == SCHEDULE_LINEAR ? "linear" : schedule == SCHEDULE_CONSTANT ? "constant" : "cosine";
}

char *train_state_to_json(const train_options *opt, long step, const train_history *history) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddNumberToObject(root, "step", (double)step);
    cJSON_AddStringToObject(root, "seed", ""); /* replaced below: a u64 does not fit a double */
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)opt->seed);
    cJSON_ReplaceItemInObject(root, "seed", cJSON_CreateString(seed));
    /* Every random number is counter-based (Philox keyed by the seed): a generator's whole
     * state is (seed, stream), and batches and routing samples take their stream from the
     * step. These two objects say so explicitly for tools reading the file. */
    cJSON *rng = cJSON_AddObjectToObject(root, "rng");
    cJSON_AddStringToObject(rng, "generator", "philox4x32-10, counter-based");
    cJSON_AddStringToObject(rng, "seed", seed);
    cJSON_AddNumberToObject(rng, "next_step", (double)step);
    cJSON *position = cJSON_AddObjectToObject(root, "data_position");
    cJSON_AddNumberToObject(position, "batches_consumed", (double)step * opt->accum);
    cJSON_AddNumberToObject(position, "next_batch_index", (double)step * opt->accum);
    cJSON_AddNumberToObject(root, "steps", (double)opt->steps);
    cJSON_AddNumberToObject(root, "batch", opt->batch);
    cJSON_AddNumberToObject(root, "seq", opt->seq);
    cJSON_AddNumberToObject(root, "accum", opt->accum);
    cJSON_AddNumberToObject(root, "lr", opt->lr);
    cJSON_AddNumberToObject(root, "min_lr_ratio", opt->min_lr_ratio);
    cJSON_AddNumberToObject(root, "warmup", (double)opt->warmup);
    cJSON_AddStringToObject(root, "schedule", schedule_name(opt->schedule));
    cJSON_AddNumberToObject(root, "clip", opt->clip);
    cJSON_AddNumberToObject(root, "beta1", opt->adamw.beta1);
    cJSON_AddNumberToObject(root, "beta2", opt->adamw.beta2);
    cJSON_AddNumberToObject(root, "eps", opt->adamw.eps);
    cJSON_AddNumberToObject(root, "weight_decay", opt->adamw.weight_decay);
    cJSON_AddBoolToObject(root, "freeze_router", opt->adamw.freeze_router);
    cJSON_AddNumberToObject(root, "eval_interval", (double)opt->eval_interval);
    cJSON_AddNumberToObject(root, "eval_batches", opt->eval_batches);
    cJSON_AddNumberToObject(root, "val_fraction", opt->val_fraction);
    cJSON_AddNumberToObject(root, "save_interval", (double)opt->save_interval);
    cJSON_AddNumberToObject(root, "keep_last", opt->keep_last);
    cJSON_AddStringToObject(root, "data", opt->data_path ? opt->data_path : "");
    cJSON_AddBoolToObject(root, "supervised", opt->supervised);
    if (opt->tokenizer_path) cJSON_AddStringToObject(root, "tokenizer", opt->tokenizer_path);
    cJSON_AddStringToObject(root, "command_line", opt->command_line ? opt->command_line : "");
    cJSON *metrics = cJSON_AddArrayToObject(root, "metrics");
    for (long i = 0; history && i < history->count; i++) {
        cJSON *entry = cJSON_CreateObject();
        cJSON_AddNumberToObject(entry, "step", (double)history->entries[i].step);
        cJSON_AddNumberToObject(entry, "loss", history->entries[i].loss);
        if (!isnan(history->entries[i].val_loss)) cJSON_AddNumberToObject(entry, "val_loss", history->entries[i].val_loss);
        cJSON_AddItemToArray(metrics, entry);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

static double number(const cJSON *root, const char *key, double fallback) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsNumber(item) ? item->valuedouble : fallback;
}

static const char *string(const cJSON *root, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsString(item) && item->valuestring[0] ? item->valuestring : NULL;
}

int train_state_from_json(const char *json, const char *source, train_options *opt, long *step,
                          train_history *history, train_state_paths *paths) {
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "step")) || !string(root, "seed")) {
        cJSON_Delete(root);
        return pm_fail(PM_ERR_ARG, "%s: not a probmoe trainer state (step and seed missing)", source);
    }
    *step = (long)number(root, "step", 0);
    opt->seed = strtoull(string(root, "seed"), NULL, 10);
    opt->steps = (long)number(root, "steps", (double)opt->steps);
    opt->batch = (int)number(root, "batch", opt->batch);
    opt->seq = (int)number(root, "seq", opt->seq);
    opt->accum = (int)number(root, "accum", opt->accum);
    opt->lr = (float)number(root, "lr", opt->lr);
    opt->min_lr_ratio = (float)number(root, "min_lr_ratio", opt->min_lr_ratio);
    opt->warmup = (long)number(root, "warmup", (double)opt->warmup);
    const char *schedule = string(root, "schedule");
    if (schedule) opt->schedule = strcmp(schedule, "linear") == 0 ? SCHEDULE_LINEAR
                                  : strcmp(schedule, "constant") == 0 ? SCHEDULE_CONSTANT : SCHEDULE_COSINE;
    opt->clip = (float)number(root, "clip", opt->clip);
    opt->adamw.beta1 = (float)number(root, "beta1", opt->adamw.beta1);
    opt->adamw.beta2 = (float)number(root, "beta2", opt->adamw.beta2);
    opt->adamw.eps = (float)number(root, "eps", opt->adamw.eps);
    opt->adamw.weight_decay = (float)number(root, "weight_decay", opt->adamw.weight_decay);
    /* a frozen run stays frozen; --freeze-router may freeze a resumed one from here on */
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "freeze_router"))) opt->adamw.freeze_router = true;
    opt->eval_interval = (long)number(root, "eval_interval", (double)opt->eval_interval);
    opt->eval_batches = (int)number(root, "eval_batches", opt->eval_batches);
    opt->val_fraction = number(root, "val_fraction", opt->val_fraction);
    opt->save_interval = (long)number(root, "save_interval", (double)opt->save_interval);
    opt->keep_last = (int)number(root, "keep_last", opt->keep_last);
    if (!opt->data_path && string(root, "data")) {
        snprintf(paths->data_path, sizeof paths->data_path, "%s", string(root, "data"));
        opt->data_path = paths->data_path;
        opt->supervised = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "supervised"));
    }
    if (!opt->tokenizer_path && string(root, "tokenizer")) {
        snprintf(paths->tokenizer_path, sizeof paths->tokenizer_path, "%s", string(root, "tokenizer"));
        opt->tokenizer_path = paths->tokenizer_path;
    }
    /* the routers' state (the selection bias, softmoe's tau) travels with the weights
     * (pm_model_router_values_json), not here */
    int status = PM_OK;
    const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(root, "metrics"), *entry;
    cJSON_ArrayForEach(entry, metrics) {
        if (status < 0 || !history) break;
        status = train_history_add(history, (long)number(entry, "step", 0), number(entry, "loss", NAN),
                                   number(entry, "val_loss", NAN));
    }
    cJSON_Delete(root);
    return status;
}
