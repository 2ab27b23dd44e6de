#include "train/train_state.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
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
    cJSON_AddStringToObject(root, "precision", opt->precision == PM_PRECISION_BF16 ? "bf16" : "fp32");
    cJSON_AddStringToObject(root, "fp32_matmul", fp32_matmul_name(opt->fp32_matmul));
    cJSON_AddNumberToObject(root, "eval_interval", (double)opt->eval_interval);
    cJSON_AddNumberToObject(root, "eval_batches", opt->eval_batches);
    cJSON_AddNumberToObject(root, "val_fraction", opt->val_fraction);
    cJSON_AddNumberToObject(root, "save_interval", (double)opt->save_interval);
    cJSON_AddNumberToObject(root, "keep_last", opt->keep_last);
    cJSON_AddStringToObject(root, "data", opt->data_path ? opt->data_path : "");
    cJSON_AddBoolToObject(root, "supervised", opt->supervised);
    if (opt->supervised) cJSON_AddStringToObject(root, "chat_format", chat_format_name(opt->chat_format));
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

/* Reads fields of the state, keeping the first error: a value out of its type's range would
 * make the conversion undefined, and a resumed run must not take a value no flag accepts. */
typedef struct {
    const char *source;
    int status;
} field_reader;

static const cJSON *numeric_field(field_reader *r, const cJSON *object, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!item || cJSON_IsNull(item) || r->status < 0) return NULL;
    if (!cJSON_IsNumber(item)) r->status = pm_fail(PM_ERR_ARG, "%s: \"%s\" must be a number", r->source, key);
    return r->status < 0 ? NULL : item;
}

/* An integer in [min, max]; fallback when the field is absent. */
static long integer_field(field_reader *r, const cJSON *object, const char *key, long fallback, long min, long max) {
    const cJSON *item = numeric_field(r, object, key);
    if (!item) return fallback;
    const double v = item->valuedouble;
    if (!(v >= (double)min && v <= (double)max) || v != floor(v)) {
        r->status = pm_fail(PM_ERR_ARG, "%s: \"%s\" is %g; it must be an integer from %ld to %ld (the file is "
                            "damaged: resume from another checkpoint)", r->source, key, v, min, max);
        return fallback;
    }
    return (long)v;
}

/* A finite number in [min, max]; fallback when the field is absent. */
static double real_field(field_reader *r, const cJSON *object, const char *key, double fallback, double min,
                         double max) {
    const cJSON *item = numeric_field(r, object, key);
    if (!item) return fallback;
    const double v = item->valuedouble;
    if (!(v >= min && v <= max)) {
        r->status = pm_fail(PM_ERR_ARG, "%s: \"%s\" is %g; it must lie in [%g, %g] (the file is damaged: resume "
                            "from another checkpoint)", r->source, key, v, min, max);
        return fallback;
    }
    return v;
}

static const char *string(const cJSON *root, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsString(item) && item->valuestring[0] ? item->valuestring : NULL;
}

static bool parse_seed(const char *text, uint64_t *seed) {
    if (!text || !isdigit((unsigned char)text[0])) return false;
    errno = 0;
    char *end = NULL;
    unsigned long long value = strtoull(text, &end, 10);
    *seed = value;
    return errno == 0 && *end == '\0';
}

int train_state_from_json(const char *json, const char *source, train_options *opt, long *step,
                          train_history *history, train_state_paths *paths) {
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "step")) || !string(root, "seed")) {
        cJSON_Delete(root);
        return pm_fail(PM_ERR_ARG, "%s: not a probmoe trainer state (step and seed missing); resume from a "
                       "checkpoint directory that probmoe train saved", source);
    }
    if (!parse_seed(string(root, "seed"), &opt->seed)) {
        cJSON_Delete(root);
        return pm_fail(PM_ERR_ARG, "%s: \"seed\" must be a decimal integer below 2^64, as a string", source);
    }
    enum { BIG = INT_MAX }; /* the flags' bound */
    const long STEPS = 1L << 53; /* exact in a double, as JSON numbers are */
    field_reader r = {source, PM_OK};
    *step = integer_field(&r, root, "step", 0, 0, STEPS);
    opt->steps = integer_field(&r, root, "steps", opt->steps, 1, STEPS);
    opt->batch = (int)integer_field(&r, root, "batch", opt->batch, 1, BIG);
    opt->seq = (int)integer_field(&r, root, "seq", opt->seq, 1, BIG);
    opt->accum = (int)integer_field(&r, root, "accum", opt->accum, 1, BIG);
    opt->lr = (float)real_field(&r, root, "lr", opt->lr, FLT_MIN, FLT_MAX);
    opt->min_lr_ratio = (float)real_field(&r, root, "min_lr_ratio", opt->min_lr_ratio, 0.0, 1.0);
    opt->warmup = integer_field(&r, root, "warmup", opt->warmup, 0, STEPS);
    const char *schedule = string(root, "schedule");
    if (schedule && r.status == PM_OK) {
        if (strcmp(schedule, "linear") == 0) opt->schedule = SCHEDULE_LINEAR;
        else if (strcmp(schedule, "constant") == 0) opt->schedule = SCHEDULE_CONSTANT;
        else if (strcmp(schedule, "cosine") == 0) opt->schedule = SCHEDULE_COSINE;
        else r.status = pm_fail(PM_ERR_ARG, "%s: \"schedule\" must be cosine, linear or constant", source);
    }
    opt->clip = (float)real_field(&r, root, "clip", opt->clip, 0.0, FLT_MAX);
    opt->adamw.beta1 = (float)real_field(&r, root, "beta1", opt->adamw.beta1, 0.0, 1.0);
    opt->adamw.beta2 = (float)real_field(&r, root, "beta2", opt->adamw.beta2, 0.0, 1.0);
    opt->adamw.eps = (float)real_field(&r, root, "eps", opt->adamw.eps, FLT_MIN, FLT_MAX);
    opt->adamw.weight_decay = (float)real_field(&r, root, "weight_decay", opt->adamw.weight_decay, 0.0, FLT_MAX);
    /* a frozen run stays frozen; --freeze-router may freeze a resumed one from here on */
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "freeze_router"))) opt->adamw.freeze_router = true;
    const char *precision = string(root, "precision"); /* absent in states written before bf16: fp32 */
    if (precision && r.status == PM_OK) {
        if (strcmp(precision, "bf16") == 0) opt->precision = PM_PRECISION_BF16;
        else if (strcmp(precision, "fp32") == 0) opt->precision = PM_PRECISION_FP32;
        else r.status = pm_fail(PM_ERR_ARG, "%s: \"precision\" must be fp32 or bf16", source);
    }
    const char *fp32_matmul = string(root, "fp32_matmul"); /* absent in states written before it: openblas */
    opt->fp32_matmul = PM_FP32_MATMUL_OPENBLAS;
    if (fp32_matmul && r.status == PM_OK && !fp32_matmul_parse(fp32_matmul, &opt->fp32_matmul))
        r.status = pm_fail(PM_ERR_ARG, "%s: \"fp32_matmul\" must be openblas, measured, onednn or auto", source);
    opt->eval_interval = integer_field(&r, root, "eval_interval", opt->eval_interval, 0, STEPS);
    opt->eval_batches = (int)integer_field(&r, root, "eval_batches", opt->eval_batches, 1, BIG);
    opt->val_fraction = real_field(&r, root, "val_fraction", opt->val_fraction, DBL_MIN, 1.0 - DBL_EPSILON);
    opt->save_interval = integer_field(&r, root, "save_interval", opt->save_interval, 0, STEPS);
    opt->keep_last = (int)integer_field(&r, root, "keep_last", opt->keep_last, 0, BIG);
    if (!opt->data_path && string(root, "data")) {
        snprintf(paths->data_path, sizeof paths->data_path, "%s", string(root, "data"));
        opt->data_path = paths->data_path;
        opt->supervised = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "supervised"));
    }
    /* a resumed run keeps its examples' format; absent in states written before chat formats */
    const char *format = string(root, "chat_format");
    if (format && r.status == PM_OK && !chat_format_parse(format, &opt->chat_format))
        r.status = pm_fail(PM_ERR_ARG, "%s: \"chat_format\" must be one of %s", source, chat_format_list());
    if (!opt->tokenizer_path && string(root, "tokenizer")) {
        snprintf(paths->tokenizer_path, sizeof paths->tokenizer_path, "%s", string(root, "tokenizer"));
        opt->tokenizer_path = paths->tokenizer_path;
    }
    /* the routers' state (the selection bias, softmoe's tau) travels with the weights
     * (pm_model_router_values_json), not here */
    const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(root, "metrics"), *entry;
    cJSON_ArrayForEach(entry, metrics) {
        if (r.status < 0 || !history) break;
        long entry_step = integer_field(&r, entry, "step", 0, 0, STEPS);
        double loss = real_field(&r, entry, "loss", NAN, -DBL_MAX, DBL_MAX);
        double val_loss = real_field(&r, entry, "val_loss", NAN, -DBL_MAX, DBL_MAX);
        if (r.status == PM_OK) r.status = train_history_add(history, entry_step, loss, val_loss);
    }
    cJSON_Delete(root);
    return r.status;
}
