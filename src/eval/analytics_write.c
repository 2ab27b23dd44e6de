/* CSV and JSON files of the analytics results. They are written atomically, so a plot or a
 * script reading them never sees half a file. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"
#include "eval/analytics.h"
#include "core/atomic_file.h"
#include "core/fs.h"

static int commit(atomic_file *out) {
    if (ferror(out->file)) {
        atomic_file_abort(out);
        return pm_fail(PM_ERR_STATE, "could not write %s", out->final_path);
    }
    return atomic_file_commit(out);
}

int analytics_write_layers_csv(const analytics *a, const char *path) {
    atomic_file out;
    int status = atomic_file_open(&out, path);
    if (status) return status;
    const int E = analytics_num_experts(a);
    fprintf(out.file, "layer,tokens,pairs,mean_active,load_entropy,max_over_mean,dead_experts,"
            "routing_entropy,cover99,topk_mass,groups,mean_groups,max_groups");
    for (int e = 0; e < E; e++) fprintf(out.file, ",load_%d", e);
    fprintf(out.file, "\n");
    for (int l = 0; l < analytics_num_layers(a); l++) {
        const analytics_layer *r = analytics_get_layer(a, l);
        fprintf(out.file, "%d,%lld,%lld,%.6f,%.6f,%.6f,%d,%.6f,%.6f,%.6f,%d,%.6f,%d", analytics_layer_number(a, l),
                (long long)r->tokens,
                (long long)r->pairs, r->mean_active, r->load_entropy, r->max_over_mean, r->dead_experts,
                r->routing_entropy, r->cover99, r->topk_mass, analytics_groups(a), r->mean_groups, r->max_groups);
        for (int e = 0; e < E; e++) fprintf(out.file, ",%.6f", r->load[e]);
        fprintf(out.file, "\n");
    }
    return commit(&out);
}

int analytics_write_buckets_csv(const analytics *a, const char *path) {
    atomic_file out;
    int status = atomic_file_open(&out, path);
    if (status) return status;
    const int L = analytics_num_layers(a);
    int count;
    const analytics_bucket *buckets = analytics_get_buckets(a, &count);
    fprintf(out.file, "bucket,rank_lo,rank_hi,token_ids,occurrences,min_count,max_count,"
            "mean_active");
    for (int l = 0; l < L; l++) fprintf(out.file, ",mean_active_layer_%d", analytics_layer_number(a, l));
    fprintf(out.file, "\n");
    for (int b = 0; b < count; b++) {
        const analytics_bucket *k = &buckets[b];
        fprintf(out.file, "%d,%d,%d,%d,%lld,%lld,%lld,%.6f", b, k->rank_lo, k->rank_hi, k->token_ids,
                (long long)k->occurrences, (long long)k->min_count, (long long)k->max_count,
                k->mean_active_all);
        for (int l = 0; l < L; l++) fprintf(out.file, ",%.6f", k->mean_active[l]);
        fprintf(out.file, "\n");
    }
    return commit(&out);
}

static cJSON *layers_json(const analytics *a) {
    cJSON *layers = cJSON_CreateArray();
    for (int l = 0; l < analytics_num_layers(a); l++) {
        const analytics_layer *r = analytics_get_layer(a, l);
        cJSON *layer = cJSON_CreateObject();
        cJSON_AddNumberToObject(layer, "layer", analytics_layer_number(a, l));
        cJSON_AddNumberToObject(layer, "tokens", (double)r->tokens);
        cJSON_AddNumberToObject(layer, "pairs", (double)r->pairs);
        cJSON_AddNumberToObject(layer, "mean_active", r->mean_active);
        cJSON_AddNumberToObject(layer, "load_entropy", r->load_entropy);
        cJSON_AddNumberToObject(layer, "max_over_mean", r->max_over_mean);
        cJSON_AddNumberToObject(layer, "dead_experts", r->dead_experts);
        cJSON_AddNumberToObject(layer, "routing_entropy", r->routing_entropy);
        cJSON_AddNumberToObject(layer, "cover99", r->cover99);
        cJSON_AddNumberToObject(layer, "topk_mass", r->topk_mass);
        cJSON_AddNumberToObject(layer, "groups", analytics_groups(a));
        cJSON_AddNumberToObject(layer, "mean_groups", r->mean_groups);
        cJSON_AddNumberToObject(layer, "max_groups", r->max_groups);
        cJSON_AddItemToObject(layer, "load", cJSON_CreateDoubleArray(r->load, analytics_num_experts(a)));
        cJSON_AddItemToArray(layers, layer);
    }
    return layers;
}

static cJSON *buckets_json(const analytics *a) {
    int count;
    const analytics_bucket *buckets = analytics_get_buckets(a, &count);
    cJSON *list = cJSON_CreateArray();
    for (int b = 0; b < count; b++) {
        const analytics_bucket *k = &buckets[b];
        cJSON *bucket = cJSON_CreateObject();
        cJSON_AddNumberToObject(bucket, "rank_lo", k->rank_lo);
        cJSON_AddNumberToObject(bucket, "rank_hi", k->rank_hi);
        cJSON_AddNumberToObject(bucket, "token_ids", k->token_ids);
        cJSON_AddNumberToObject(bucket, "occurrences", (double)k->occurrences);
        cJSON_AddNumberToObject(bucket, "min_count", (double)k->min_count);
        cJSON_AddNumberToObject(bucket, "max_count", (double)k->max_count);
        cJSON_AddNumberToObject(bucket, "mean_active", k->mean_active_all);
        cJSON_AddItemToObject(bucket, "mean_active_per_layer",
                              cJSON_CreateDoubleArray(k->mean_active, analytics_num_layers(a)));
        cJSON_AddItemToArray(list, bucket);
    }
    return list;
}

int analytics_write_json(const analytics *a, const char *path) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "num_layers", analytics_num_layers(a));
    cJSON_AddNumberToObject(root, "num_experts", analytics_num_experts(a));
    cJSON_AddNumberToObject(root, "k", analytics_k(a));
    cJSON_AddNumberToObject(root, "cover_mass", ANALYTICS_COVER_MASS);
    cJSON_AddStringToObject(root, "frequency_buckets", "ranks 2^b .. 2^(b+1)-1, rank 1 = most frequent id");
    cJSON_AddItemToObject(root, "layers", layers_json(a));
    cJSON_AddItemToObject(root, "buckets", buckets_json(a));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return pm_fail(PM_ERR_NOMEM, "analytics: out of memory writing %s", path);
    atomic_file out;
    int status = atomic_file_open(&out, path);
    if (!status) {
        fprintf(out.file, "%s\n", text);
        status = commit(&out);
    }
    free(text);
    return status;
}

int analytics_write_all(const analytics *a, const char *dir) {
    int status = ensure_directory(dir);
    char path[4096];
    if (!status) {
        snprintf(path, sizeof path, "%s/routing_layers.csv", dir);
        status = analytics_write_layers_csv(a, path);
    }
    if (!status) {
        snprintf(path, sizeof path, "%s/routing_frequency.csv", dir);
        status = analytics_write_buckets_csv(a, path);
    }
    if (!status) {
        snprintf(path, sizeof path, "%s/routing.json", dir);
        status = analytics_write_json(a, path);
    }
    return status;
}
