/* probmoe info: what a model directory's (or a config.json's) model is, read from its config
 * alone, so that a checkpoint of billions of weights is described without loading them: the
 * family, which layers are MoE layers and which dense, the experts, the router, the parameter
 * counts (total and active per token) and the memory training and inference would take. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/error.h"
#include "core/memory.h"

static const char usage[] =
    "usage: probmoe info (--model DIR | --config FILE) [--batch N] [--seq N]\n"
    "\n"
    "Describes a model from its config.json, without reading the weights: the family, the MoE\n"
    "and dense layers, the experts and router, the parameters (total, and active per token at k\n"
    "experts) and the memory a batch of N sequences of --seq tokens takes to run and to train.\n"
    "\n"
    "  --model DIR    a model directory (config.json and safetensors), probmoe's or Hugging Face's\n"
    "  --config FILE  a config.json\n"
    "  --batch N      sequences per batch for the memory estimate (default 8)\n"
    "  --seq N        tokens per sequence (default 256 or the context if shorter; at most\n"
    "                 max_position_embeddings)\n";

typedef struct {
    const char *model_dir, *config;
    int batch, seq;
} info_options;

static int parse_options(int argc, char **argv, info_options *opt) {
    *opt = (info_options){NULL, NULL, 8, 0}; /* seq 0: the default, once the context is known */
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(usage, stdout);
            return -1;
        }
        bool ok = value != NULL;
        if (strcmp(arg, "--model") == 0) opt->model_dir = value;
        else if (strcmp(arg, "--config") == 0) opt->config = value;
        else if (strcmp(arg, "--batch") == 0) ok = parse_int_flag(arg, value, 1, 1 << 20, &opt->batch);
        else if (strcmp(arg, "--seq") == 0) ok = parse_int_flag(arg, value, 1, 1 << 20, &opt->seq);
        else {
            fprintf(stderr, "probmoe info: unknown option '%s'\n\n%s", arg, usage);
            return 2;
        }
        if (!ok) {
            if (!value) fprintf(stderr, "probmoe info: %s needs a value\n", arg);
            return 2;
        }
        i++;
    }
    if ((opt->model_dir != NULL) == (opt->config != NULL)) {
        fprintf(stderr, "probmoe info: give one of --model DIR or --config FILE\n\n%s", usage);
        return 2;
    }
    return 0;
}

/* "1, 3, 5" of the layers whose MoE-ness is `moe`, or "none". */
static void print_layers(const pm_model_config *cfg, bool moe) {
    int printed = 0;
    for (int l = 0; l < cfg->num_layers; l++)
        if (pm_model_layer_is_moe(cfg, l) == moe) printf("%s%d", printed++ ? ", " : "", l);
    printf("%s\n", printed ? "" : "none");
}

static void print_memory(const char *what, const pm_memory_estimate *m) {
    char total[32], parameters[32], gradients[32], optimizer[32], activations[32];
    printf("  %-10s %s (weights %s, gradients %s, optimizer %s, activations %s)\n", what,
           memory_format(m->total, total, sizeof total), memory_format(m->parameters, parameters, sizeof parameters),
           memory_format(m->gradients, gradients, sizeof gradients),
           memory_format(m->optimizer, optimizer, sizeof optimizer),
           memory_format(m->activations, activations, sizeof activations));
}

static void describe(const pm_model_config *cfg, const pm_memory_estimate *inference,
                     const pm_memory_estimate *training, const info_options *opt) {
    const int M = pm_model_moe_layers(cfg), H = cfg->hidden_size, I = cfg->intermediate_size;
    const pm_router_config *r = &cfg->router;
    printf("family      %s\n", pm_arch_name(cfg->arch));
    printf("layers      %d: MoE layers ", cfg->num_layers);
    print_layers(cfg, true);
    if (M < cfg->num_layers) {
        printf("            dense MLP layers (width %d): ", cfg->dense_intermediate_size);
        print_layers(cfg, false);
    }
    printf("hidden      %d, %d heads over %d key/value heads, context %d, vocabulary %d%s\n", H, cfg->num_heads,
           cfg->num_kv_heads, cfg->max_position_embeddings, cfg->vocab_size,
           cfg->tie_word_embeddings ? " (lm_head tied)" : "");
    printf("experts     %d of width %d per MoE layer, k = %d", cfg->num_experts, I, cfg->experts_per_token);
    if (cfg->shared_expert_size > 0) printf(", and a gated shared expert of width %d", cfg->shared_expert_size);
    if (cfg->sliding_window > 0) printf("; attention over the last %d positions", cfg->sliding_window);
    printf("\nrouter      %s", pm_router_kind_name(r->kind));
    int kmin, kmax, groups, most;
    if (pm_router_subset_range(r, &kmin, &kmax) && kmin != kmax) printf(", %d to %d experts a token", kmin, kmax);
    if (pm_router_group_limit(r, &groups, &most)) printf(", at most %d of %d groups", most, groups);
    if (pm_router_learns_budget(r->kind)) printf(", learned budget K = %g over %d MoE layers", (double)pm_model_soft_budget(cfg), M);
    printf("%s\n", r->norm_topk_prob ? ", top-k weights renormalised" : "");
    /* active: every weight but the experts a token does not use, at k of E */
    const double total = (double)inference->parameters / sizeof(float);
    const double idle = (double)M * (cfg->num_experts - cfg->experts_per_token) * 3.0 * H * I;
    printf("parameters  %.0f, %.0f active per token at k = %d (%.1f%%)\n", total, total - idle, cfg->experts_per_token,
           100.0 * (total - idle) / total);
    printf("memory for batches of %d × %d tokens:\n", opt->batch, opt->seq);
    print_memory("inference", inference);
    print_memory("training", training);
}

int cmd_info(int argc, char **argv) {
    info_options opt;
    int status = parse_options(argc, argv, &opt);
    if (status != 0) return status < 0 ? 0 : status;
    char path[4096];
    if (opt.model_dir) {
        struct stat st;
        if (stat(opt.model_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "probmoe info: '%s' is not a directory; give a model directory holding config.json, "
                    "or --config FILE\n", opt.model_dir);
            return 1;
        }
        if ((size_t)snprintf(path, sizeof path, "%s/config.json", opt.model_dir) >= sizeof path) {
            fprintf(stderr, "probmoe info: the path '%s' is too long\n", opt.model_dir);
            return 2;
        }
    } else {
        snprintf(path, sizeof path, "%s", opt.config);
    }
    pm_model_config cfg;
    if (pm_model_config_load(&cfg, path) < 0) {
        fprintf(stderr, "probmoe info: %s\n", pm_last_error());
        return 1;
    }
    if (opt.seq == 0) opt.seq = cfg.max_position_embeddings < 256 ? cfg.max_position_embeddings : 256;
    if (opt.seq > cfg.max_position_embeddings) {
        fprintf(stderr, "probmoe info: --seq %d is longer than the model's context, max_position_embeddings = %d\n",
                opt.seq, cfg.max_position_embeddings);
        return 2;
    }
    pm_memory_estimate inference, training;
    if (pm_model_memory_estimate(&cfg, opt.batch, opt.seq, false, &inference) < 0 ||
        pm_model_memory_estimate(&cfg, opt.batch, opt.seq, true, &training) < 0) {
        fprintf(stderr, "probmoe info: %s\n", pm_last_error());
        return 1;
    }
    describe(&cfg, &inference, &training, &opt);
    return 0;
}
