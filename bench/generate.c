/* Single-stream generation (one row, greedy, through the key/value cache): tokens/s in fp32 and
 * bf16 next to the memory bound, the bytes one token reads (attention, the router, the experts
 * it uses, lm_head, its embedding row and norms, and the cache at the mean position) over a
 * copy bandwidth measured in the same run: out of memory (buffers larger than the L3 cache),
 * and, when the model's weights or one token's fit, out of the L3 and L2 caches.
 * The model: --model DIR (a probmoe model directory), else the demo's configuration (4 layers,
 * hidden 256, 8 heads, 8 experts of width 512, k = 2, ProbMoE, 2,048 tokens) with random
 * weights, decoding contexts of 128 tokens (the demo's training length).
 * Usage: generate [tokens] [--model DIR] [--context N] */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "probmoe.h"

/* The target for the demo model in fp32. */
#define TARGET_TOKENS_PER_SECOND 1000.0

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Copy bandwidth in bytes/s, counting what is read and written (as STREAM's copy does), best of
 * enough repeats to move about 4 GB (or 40 repeats); a buffer larger than the caches measures
 * memory, a small one the cache it fits. */
static double copy_bandwidth(size_t bytes) {
    char *from = malloc(bytes), *to = malloc(bytes);
    if (!from || !to) {
        free(from);
        free(to);
        return 0.0;
    }
    memset(from, 1, bytes);
    memset(to, 2, bytes);
    size_t repeats = (size_t)4e9 / bytes;
    repeats = repeats < 8 ? 8 : repeats > 400000 ? 400000 : repeats;
    double best = 0.0;
    for (int pass = 0; pass < 5; pass++) {
        const size_t inner = repeats / 5 + 1;
        const double start = now_seconds();
        for (size_t r = 0; r < inner; r++) {
            memcpy(to, from, bytes);
            from[r % bytes] = to[(r * 7) % bytes]; /* a dependence, so no copy is skipped */
        }
        const double rate = 2.0 * bytes * inner / (now_seconds() - start);
        best = rate > best ? rate : best;
    }
    free(from);
    free(to);
    return best;
}

/* The size of the level-`level` data or unified cache of CPU 0 from sysfs (sysconf's figures
 * can be wrong in a virtual machine: 320 MiB of L3 for 32 here), or fallback. */
static long cache_bytes(int level, long fallback) {
    for (int index = 0; index < 8; index++) {
        char path[96], text[32];
        long found = -1, kilobytes = -1;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", index);
        FILE *file = fopen(path, "r");
        if (!file) break;
        if (fgets(text, sizeof text, file)) found = atol(text);
        fclose(file);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", index);
        if (found != level || !(file = fopen(path, "r"))) continue;
        const bool instruction = fgets(text, sizeof text, file) && strncmp(text, "Instruction", 11) == 0;
        fclose(file);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", index);
        if (instruction || !(file = fopen(path, "r"))) continue;
        if (fgets(text, sizeof text, file)) kilobytes = atol(text); /* "32768K" */
        fclose(file);
        if (kilobytes > 0) return kilobytes * 1024;
    }
    return fallback;
}

/* Bytes one token reads at cache position `position` with `active` experts per MoE layer,
 * weights of weight_bytes each (the router, norms and embedding stay fp32, as in the decoder);
 * qwen2_moe's dense layers read their MLP instead of a router and experts. */
static double token_bytes(const pm_model_config *cfg, double active, double position, int weight_bytes) {
    const double H = cfg->hidden_size, I = cfg->intermediate_size, L = cfg->num_layers;
    const double M = pm_model_moe_layers(cfg), KV = H / cfg->num_heads * cfg->num_kv_heads;
    const double attention = H * H + 2 * KV * H + H * H, experts = active * 3 * H * I;
    const double dense = 3 * H * cfg->dense_intermediate_size, shared = 3 * H * cfg->shared_expert_size;
    /* routers; norms; embedding row, final norm */
    const double fp32 = 4.0 * (M * cfg->num_experts * H + L * (3 * H + KV) + 2 * H);
    const double cache = 4.0 * L * 2 * KV * (position + 1);
    return weight_bytes * (L * attention + M * (experts + shared) + (L - M) * dense + cfg->vocab_size * H) + fp32 +
           cache;
}

/* Generates greedily from token 0 until the context is full, again and again until `tokens`
 * tokens are fed (after one warm-up context); writes tokens/s and the mean active experts. */
static int time_generation(pm_model *model, pm_precision precision, int context, int tokens, double *rate,
                           double *active) {
    const pm_model_config *cfg = pm_model_get_config(model);
    pm_generator *gen = pm_generator_create(model, NULL, context);
    float *logits = malloc(sizeof(float) * cfg->vocab_size);
    if (!gen || !logits || pm_generator_set_precision(gen, precision) < 0) {
        fprintf(stderr, "generate: %s\n", pm_last_error());
        pm_generator_free(gen);
        free(logits);
        return 1;
    }
    int fed = 0;
    double start = 0.0;
    for (int round = 0; fed < tokens; round++) {
        if (round == 1) start = now_seconds(), fed = 0;
        pm_generator_reset(gen);
        int32_t next = 0;
        for (int t = 0; t < context; t++, fed += round > 0) {
            if (pm_generator_feed(gen, next, logits) < 0) {
                fprintf(stderr, "generate: %s\n", pm_last_error());
                return 1;
            }
            next = pm_sample_token(logits, cfg->vocab_size, 0.0f, 1.0f, NULL);
        }
    }
    *rate = fed / (now_seconds() - start);
    *active = 0.0;
    const int M = pm_model_moe_layers(cfg);
    for (int m = 0; m < M; m++) *active += pm_generator_mean_active(gen, m) / M;
    pm_generator_free(gen);
    free(logits);
    return 0;
}

static pm_model *demo_model(int context) {
    pm_model_config cfg = pm_model_config_default();
    cfg.vocab_size = 2048;
    cfg.max_position_embeddings = context;
    pm_model *model = pm_model_create(&cfg, 1, 1);
    if (model) pm_model_init_weights(model, 1);
    return model;
}

int main(int argc, char **argv) {
    int tokens = 2000, context = 128;
    const char *model_dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) model_dir = argv[++i];
        else if (strcmp(argv[i], "--context") == 0 && i + 1 < argc) context = atoi(argv[++i]);
        else if (atoi(argv[i]) > 0) tokens = atoi(argv[i]);
        else {
            fprintf(stderr, "usage: generate [tokens] [--model DIR] [--context N]\n");
            return 2;
        }
    }
    pm_model *model = model_dir ? pm_model_load(model_dir, 1, 1) : demo_model(context);
    if (!model) {
        fprintf(stderr, "generate: %s\n", pm_last_error());
        return 1;
    }
    const pm_model_config *cfg = pm_model_get_config(model);
    if (context < 2 || context > cfg->max_position_embeddings) context = cfg->max_position_embeddings;
    const long l2 = cache_bytes(2, 1L << 20), l3 = cache_bytes(3, 32L << 20);
    /* memory: 4 times the L3 each way; caches: a quarter of each, both buffers inside */
    const double memory = copy_bandwidth((size_t)l3 * 4), in_l3 = copy_bandwidth((size_t)l3 / 4),
                 in_l2 = copy_bandwidth((size_t)l2 / 4);
    const double model_bytes = 4.0 * (double)pm_model_size(model);
    printf("generate: %s, %d layers, hidden %d, %d experts (k %d), intermediate %d, vocabulary %d; contexts of %d "
           "tokens, one row, greedy, %d OpenMP threads\n", model_dir ? model_dir : "the demo model (random weights)",
           cfg->num_layers, cfg->hidden_size, cfg->num_experts, cfg->experts_per_token, cfg->intermediate_size,
           cfg->vocab_size, context, omp_get_max_threads());
    printf("copy bandwidth (read + write): memory %.1f GB/s, L3 (%ld MiB) %.1f GB/s, L2 (%ld KiB) %.1f GB/s; "
           "weights %.1f MB in fp32\n", memory / 1e9, l3 >> 20, in_l3 / 1e9, l2 >> 10, in_l2 / 1e9, model_bytes / 1e6);

    const pm_precision precisions[] = {PM_PRECISION_FP32, PM_PRECISION_BF16};
    for (int p = 0; p < 2; p++) {
        double rate, active;
        if (time_generation(model, precisions[p], context, tokens, &rate, &active)) return 1;
        const int weight_bytes = p == 0 ? 4 : 2;
        const double bytes = token_bytes(cfg, active, (context - 1) / 2.0, weight_bytes);
        const double bound = memory / bytes, all_weights = model_bytes * weight_bytes / 4;
        printf("%s: %.0f tokens/s; %.2f MB per token (%.2f experts per layer, cache at position %.1f): bound %.0f "
               "tokens/s from memory, %.0f%% of it", p == 0 ? "fp32" : "bf16", rate, bytes / 1e6, active,
               (context - 1) / 2.0, bound, 100.0 * rate / bound);
        /* a token's bytes come from the L3 when all the weights stay there (the experts change
         * from token to token) */
        if (all_weights <= l3)
            printf("; %.0f tokens/s from the L3 (the weights fit), %.0f%% of it", in_l3 / bytes,
                   100.0 * rate / (in_l3 / bytes));
        else if (bytes <= l3)
            printf("; %.0f tokens/s if a token's bytes stayed in the L3 (the weights, %.0f MB, do not fit)",
                   in_l3 / bytes, all_weights / 1e6);
        if (bytes <= l2) printf("; %.0f tokens/s from the L2", in_l2 / bytes);
        if (p == 0 && !model_dir) {
            const bool met = rate >= TARGET_TOKENS_PER_SECOND;

            printf("; target >= %.0f tokens/s: %s", TARGET_TOKENS_PER_SECOND, met ? "met" : "MISSED");
        }
        printf("\n");
    }
    pm_model_free(model);
    return 0; /* a missed target is printed, not an error: the bench measures */
}
