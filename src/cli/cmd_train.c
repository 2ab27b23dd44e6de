/* probmoe train: builds the model config and training options from a JSON file and/or
 * flags, then trains and reports the validation loss against the unigram baseline. */
#define _POSIX_C_SOURCE 200809L /* isatty, fileno */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "train/routing_stats.h"
#include "core/fs.h"
#include "eval/plots.h"
#include "io/checkpoint.h"
#include "train/trainer.h"

static const char train_usage_head[] =
    "usage: probmoe train --data FILE [--out DIR] [--config FILE] [options]\n"
    "\n"
    "Trains an OLMoE-style MoE language model on a text file (bytes as tokens, or a BPE\n"
    "tokenizer given with --tokenizer tokenizer.json). Writes\n"
    "DIR/metrics.jsonl during training, then DIR/model.safetensors and DIR/config.json.\n"
    "\n"
    "  --config FILE      a Hugging Face OLMoE config.json (with an optional \"probmoe\" object\n"
    "                     for the router and an optional \"train\" object with the options below)\n"
    "model:   --layers N --hidden N --intermediate N --heads N --kv-heads N --experts N --k N\n"
    "         --max-positions N\n"
    "         --soft-budget K  softmoe's learned budget: the layers' k_l sum to K, L < K < L·E\n"
    "                          (default L·soft_k = L·k)\n";
static const char train_usage_tail[] =
    "train:   --steps N | --tokens N   --batch N --seq N --accum N --lr X --min-lr-ratio X\n"
    "         --warmup N --schedule cosine|linear|constant --clip X --weight-decay X --seed N\n"
    "         --eval-interval N --eval-batches N   --tokenizer FILE\n"
    "save:    --save-interval N (checkpoint every N steps)  --keep-last N  --bf16 (final weights)\n"
    "         --max-shard-mb N  split weight files above N MB (default 2048; 0: never)\n"
    "         --resume DIR  continue from a checkpoint (options come from it; --steps extends)\n"
    "fine-tune: --init MODEL_DIR (start from its weights; with --router, route them with that\n"
    "         router from there)  --gsm8k FILE (GSM8K JSONL instead of --data; the loss covers\n"
    "         the answer tokens only)  --freeze-router (gate weights, softmoe's budget and\n"
    "         topk's selection bias are not updated)\n"
    "Defaults: the demo model (4 layers, hidden 256, 8 experts, k 2, probmoe), batch 8 × 128\n"
    "tokens, 1000 steps, lr 3e-3 with 50 warmup steps and cosine decay, clip 1.\n";

static void train_usage(FILE *out) {
    fputs(train_usage_head, out);
    router_flags_usage(out);
    fputs(train_usage_tail, out);
}

typedef struct {
    pm_model_config model;
    train_options train;
    long tokens;
} train_request;

/* Applies the "train" object of a config file. Returns 0 or 2 after printing the problem. */
static int apply_train_object(const cJSON *object, train_request *request, const char *path) {
    const struct { const char *key; int *target; } ints[] = {
        {"batch", &request->train.batch}, {"seq", &request->train.seq}, {"accum", &request->train.accum},
        {"eval_batches", &request->train.eval_batches}};
    const struct { const char *key; float *target; } floats[] = {
        {"lr", &request->train.lr}, {"min_lr_ratio", &request->train.min_lr_ratio},
        {"clip", &request->train.clip}, {"weight_decay", &request->train.adamw.weight_decay}};
    const struct { const char *key; long *target; } longs[] = {
        {"steps", &request->train.steps}, {"tokens", &request->tokens}, {"warmup", &request->train.warmup},
        {"eval_interval", &request->train.eval_interval}};
    for (const cJSON *item = object ? object->child : NULL; item; item = item->next) {
        bool known = false;
        for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
            if (strcmp(item->string, ints[i].key) == 0) *ints[i].target = item->valueint, known = true;
        for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
            if (strcmp(item->string, floats[i].key) == 0) *floats[i].target = (float)item->valuedouble, known = true;
        for (size_t i = 0; i < sizeof longs / sizeof longs[0]; i++)
            if (strcmp(item->string, longs[i].key) == 0) *longs[i].target = (long)item->valuedouble, known = true;
        if (strcmp(item->string, "seed") == 0) request->train.seed = (uint64_t)item->valuedouble, known = true;
        /* the strings outlive the parsed JSON: static storage (one config per run) */
        static char data[4096], out[4096];
        if (strcmp(item->string, "data") == 0 && cJSON_IsString(item)) {
            snprintf(data, sizeof data, "%s", item->valuestring);
            request->train.data_path = data;
            known = true;
        }
        if (strcmp(item->string, "out") == 0 && cJSON_IsString(item)) {
            snprintf(out, sizeof out, "%s", item->valuestring);
            request->train.out_dir = out;
            known = true;
        }
        if (!known || (!cJSON_IsNumber(item) && !cJSON_IsString(item))) {
            fprintf(stderr, "probmoe train: %s: unknown or mistyped train.%s\n", path, item->string);
            return 2;
        }
    }
    return 0;
}

static int load_config_file(const char *path, train_request *request) {
    if (pm_model_config_load(&request->model, path) < 0) {
        fprintf(stderr, "probmoe train: %s\n", pm_last_error());
        return 2;
    }
    FILE *file = fopen(path, "rb");
    char *text = NULL;
    size_t length = 0;
    if (file) {
        fseek(file, 0, SEEK_END);
        length = (size_t)ftell(file);
        fseek(file, 0, SEEK_SET);
        text = calloc(length + 1, 1);
        if (text && fread(text, 1, length, file) != length) length = 0;
        fclose(file);
    }
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    int status = apply_train_object(cJSON_GetObjectItemCaseSensitive(root, "train"), request, path);
    cJSON_Delete(root);
    free(text);
    return status;
}

/* Matches `--name value`; parses into the typed target. */
typedef enum { OPT_INT, OPT_LONG, OPT_FLOAT, OPT_STRING } option_type;
typedef struct {
    const char *name;
    option_type type;
    void *target;
} option;

static int parse_value(const option *opt, const char *value) {
    switch (opt->type) {
    case OPT_INT: return parse_int_option(opt->name, value, opt->target) ? 0 : 2;
    case OPT_FLOAT: return parse_float_option(opt->name, value, opt->target) ? 0 : 2;
    case OPT_LONG: {
        float parsed;
        if (!parse_float_option(opt->name, value, &parsed) || parsed < 0 || parsed != floorf(parsed)) {
            fprintf(stderr, "probmoe train: %s needs a whole number, got '%s'\n", opt->name, value ? value : "");
            return 2;
        }
        *(long *)opt->target = (long)parsed;
        return 0;
    }
    case OPT_STRING: *(const char **)opt->target = value; return 0;
    }
    return 2;
}

/* Rebuilds the router's defaults for a new kind, E or k, keeping the settings that do not
 * depend on them. */
static void reset_router(pm_model_config *m, pm_router_kind kind) {
    pm_router_config fresh = pm_router_config_default(kind, m->num_experts, m->experts_per_token);
    fresh.norm_topk_prob = m->router.norm_topk_prob;
    fresh.lb_coef = m->router.lb_coef;
    fresh.z_coef = m->router.z_coef;
    m->router = fresh;
}

/* Two passes: the router's shape (--router, --experts, --k) first, as it resets the router's
 * defaults, then every other flag on top. */
static int parse_train_args(int argc, char **argv, train_request *request) {
    pm_model_config *m = &request->model;
    pm_router_config *r = &m->router;
    train_options *t = &request->train;
    const char *router = NULL, *schedule = NULL;
    int seed = -1, heads = -1, kv_heads = -1;
    long max_shard_mb = -1;
    router_flags router_flags_given = {0};
    const char *gsm8k = NULL;
    const option shape_options[] = {
        {"--router", OPT_STRING, &router}, {"--experts", OPT_INT, &m->num_experts},
        {"--k", OPT_INT, &m->experts_per_token},
    };
    const option options[] = {
        {"--data", OPT_STRING, &t->data_path}, {"--out", OPT_STRING, &t->out_dir},
        {"--tokenizer", OPT_STRING, &t->tokenizer_path},
        {"--config", OPT_STRING, NULL}, /* read before the flags */
        {"--layers", OPT_INT, &m->num_layers}, {"--hidden", OPT_INT, &m->hidden_size},
        {"--intermediate", OPT_INT, &m->intermediate_size}, {"--heads", OPT_INT, &heads},
        {"--kv-heads", OPT_INT, &kv_heads}, {"--max-positions", OPT_INT, &m->max_position_embeddings},
        {"--soft-budget", OPT_FLOAT, &m->soft_budget},
        {"--steps", OPT_LONG, &t->steps}, {"--tokens", OPT_LONG, &request->tokens},
        {"--batch", OPT_INT, &t->batch}, {"--seq", OPT_INT, &t->seq}, {"--accum", OPT_INT, &t->accum},
        {"--lr", OPT_FLOAT, &t->lr}, {"--min-lr-ratio", OPT_FLOAT, &t->min_lr_ratio},
        {"--warmup", OPT_LONG, &t->warmup}, {"--schedule", OPT_STRING, &schedule},
        {"--clip", OPT_FLOAT, &t->clip}, {"--weight-decay", OPT_FLOAT, &t->adamw.weight_decay},
        {"--seed", OPT_INT, &seed}, {"--eval-interval", OPT_LONG, &t->eval_interval},
        {"--eval-batches", OPT_INT, &t->eval_batches},
        {"--save-interval", OPT_LONG, &t->save_interval}, {"--keep-last", OPT_INT, &t->keep_last},
        {"--resume", OPT_STRING, &t->resume_dir}, {"--max-shard-mb", OPT_LONG, &max_shard_mb},
        {"--gsm8k", OPT_STRING, &gsm8k}, {"--init", OPT_STRING, &t->init_dir},
    };
    const size_t shape_count = sizeof shape_options / sizeof shape_options[0];
    const size_t option_count = sizeof options / sizeof options[0];
    bool reshaped = false;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 1; i < argc; i++) {
            if (strcmp(argv[i], "--help") == 0) {
                train_usage(stdout);
                return -1;
            }
            bool error = false;
            if (router_flags_take(&router_flags_given, argc, argv, &i, &error)) {
                if (error) return 2;
                continue;
            }
            if (strcmp(argv[i], "--bf16") == 0) {
                t->save_bf16 = true;
                continue;
            }
            if (strcmp(argv[i], "--freeze-router") == 0) {
                t->adamw.freeze_router = true;
                continue;
            }
            const option *match = NULL;
            bool shape = false;
            for (size_t o = 0; o < shape_count; o++)
                if (strcmp(argv[i], shape_options[o].name) == 0) match = &shape_options[o], shape = true;
            for (size_t o = 0; o < option_count; o++)
                if (strcmp(argv[i], options[o].name) == 0) match = &options[o];
            if (!match) {
                fprintf(stderr, "probmoe train: unknown option '%s'\n\n", argv[i]);
                train_usage(stderr);
                return 2;
            }
            if (i + 1 >= argc) {
                fprintf(stderr, "probmoe train: %s needs a value\n", argv[i]);
                return 2;
            }
            i++;
            if (shape != (pass == 0) || !match->target) continue;
            int status = parse_value(match, argv[i]);
            if (status) return status;
            reshaped |= shape;
        }
        if (pass == 0 && reshaped) {
            pm_router_kind kind = r->kind;
            if (router && pm_router_kind_parse(router, &kind) < 0) {
                fprintf(stderr, "probmoe train: --router: %s\n", pm_last_error());
                return 2;
            }
            reset_router(m, kind);
        }
        /* the router flags go on top of the (possibly reset) router's defaults */
        if (pass == 1 && !router_flags_apply(&router_flags_given, r)) return 2;
        memset(&router_flags_given, 0, sizeof router_flags_given);
    }
    if (schedule) {
        if (strcmp(schedule, "cosine") == 0) t->schedule = SCHEDULE_COSINE;
        else if (strcmp(schedule, "linear") == 0) t->schedule = SCHEDULE_LINEAR;
        else if (strcmp(schedule, "constant") == 0) t->schedule = SCHEDULE_CONSTANT;
        else {
            fprintf(stderr, "probmoe train: --schedule '%s'; choose cosine, linear or constant\n", schedule);
            return 2;
        }
    }
    if (seed >= 0) t->seed = (uint64_t)seed;
    if (max_shard_mb >= 0) t->shard_bytes = (size_t)max_shard_mb << 20;
    if (gsm8k) {
        t->data_path = gsm8k;
        t->supervised = true;
    }
    /* --heads alone means plain multi-head attention */
    if (heads > 0) m->num_heads = heads;
    if (kv_heads > 0 || heads > 0) m->num_kv_heads = kv_heads > 0 ? kv_heads : heads;
    return 0;
}

static void print_summary(const train_result *result, const train_request *request) {
    if (result->interrupted) {
        printf("\nstopped at step %ld; saved %s\nresume with: probmoe train --resume %s\n", result->steps_done,
               result->last_checkpoint, result->last_checkpoint);
        return;
    }
    printf("\ntrained to step %ld at %.0f tokens/s\n", result->steps_done, result->tokens_per_second);
    if (isnan(result->unigram_loss)) /* supervised data: the loss covers answer tokens only */
        printf("validation loss %.4f nats/token on held-out answers\n", result->final_val_loss);
    else
        printf("validation loss %.4f nats/token (unigram baseline %.4f, %.1f%% below it)\n", result->final_val_loss,
               result->unigram_loss, 100.0 * (1.0 - result->final_val_loss / result->unigram_loss));
    printf("routing in the last step (%s):\n", pm_router_kind_name(request->model.router.kind));
    printf("  layer  active experts  load entropy  max/mean load  dead experts%s\n",
           result->has_budget ? "  learned k_l   alpha" : "");
    for (int l = 0; l < result->num_layers; l++) {
        printf("  %5d  %14.2f  %12.3f  %13.2f  %12d", l, result->routing[l].mean_active,
               result->routing[l].load_entropy, result->routing[l].max_over_mean, result->routing[l].dead_experts);
        if (result->has_budget) printf("  %11.3f  %6.3f", result->budget_k[l], result->budget_alpha[l]);
        printf("\n");
    }
    if (result->has_budget)
        printf("  the learned k_l sum to the budget K = %g\n", (double)pm_model_soft_budget(&request->model));
    printf("saved the model to %s (probmoe generate --model %s); metrics in %s/metrics.jsonl\n",
           result->model_dir, result->model_dir, request->train.out_dir);
}

/* DIR/plots: the loss curve, and softmoe's learned k_l and alpha per layer over training. */
static void write_plots(const train_result *result, const char *out_dir) {
    char dir[4200], metrics[4200];
    snprintf(dir, sizeof dir, "%s/plots", out_dir);
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", out_dir);
    if (ensure_directory(dir) < 0) return;
    const plots_run run = {"training", metrics};
    int status = plots_loss(dir, "loss", &run, 1);
    if (status >= 0 && result->has_budget) {
        status = plots_layer_values(dir, "budget_k", "learned k_l per layer", "k_l", metrics, "soft_k");
        if (status >= 0) status = plots_layer_values(dir, "budget_alpha", "learned alpha per layer", "alpha", metrics, "alpha");
    }
    if (status < 0) fprintf(stderr, "probmoe train: plots: %s\n", pm_last_error());
    else if (status == 0)
        printf("plots in %s (loss%s)\n", dir, result->has_budget ? ", budget_k and budget_alpha: the learned budget" : "");
}

/* The report and the plots, while the run directory is still locked (train_options.finished). */
static void report_run(const train_result *result, void *user) {
    const train_request *request = user;
    print_summary(result, request);
    if (!result->interrupted) write_plots(result, request->train.out_dir);
}

int cmd_train(int argc, char **argv) {
    train_request request;
    request.model = pm_model_config_default();
    request.train = train_options_default();
    request.tokens = 0;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--config") == 0) {
            int status = load_config_file(argv[i + 1], &request);
            if (status) return status;
        }
    bool resuming = false;
    for (int i = 1; i < argc; i++) resuming |= strcmp(argv[i], "--resume") == 0;
    if (resuming) request.train.steps = 0; /* the checkpoint's, unless --steps extends it */
    int status = parse_train_args(argc, argv, &request);
    if (status) return status < 0 ? 0 : status;
    static char command_line[4096], parent[4096];
    size_t used = 0;
    for (int i = 0; i < argc && used < sizeof command_line; i++)
        used += (size_t)snprintf(command_line + used, sizeof command_line - used, "%s%s", i ? " " : "probmoe ", argv[i]);
    request.train.command_line = command_line;
    if (request.train.init_dir && !resuming) {
        /* fine-tuning: the model (and its tokenizer) come from the initial directory */
        char path[4200];
        snprintf(path, sizeof path, "%s/config.json", request.train.init_dir);
        if (checkpoint_check_link(request.train.init_dir, "config.json") < 0 ||
            pm_model_config_load(&request.model, path) < 0) {
            fprintf(stderr, "probmoe train: --init: %s\n", pm_last_error());
            return 2;
        }
        /* --router, a router flag or --soft-budget: the same weights, routed by the router they
         * describe (E and k the model's) */
        bool reroute = false;
        for (int i = 1; i < argc; i++) {
            router_flags probe = {0};
            int at = i;
            bool error = false;
            reroute |= strcmp(argv[i], "--router") == 0 || strcmp(argv[i], "--soft-budget") == 0 ||
                       router_flags_take(&probe, argc, argv, &at, &error);
        }
        if (reroute) {
            const float file_budget = request.model.soft_budget;
            request.model.soft_budget = 0.0f;
            status = parse_train_args(argc, argv, &request);
            if (status) return status < 0 ? 0 : status;
            /* the file's budget goes on with a router that learns one, unless --soft-budget says otherwise */
            if (request.model.soft_budget == 0.0f && pm_router_learns_budget(request.model.router.kind))
                request.model.soft_budget = file_budget;
            request.train.init_reroute = true;
        }
        snprintf(path, sizeof path, "%s/tokenizer.json", request.train.init_dir);
        FILE *has_tokenizer = fopen(path, "rb");
        if (has_tokenizer) {
            fclose(has_tokenizer);
            if (!request.train.tokenizer_path) request.train.tokenizer_path = request.train.init_dir;
        }
    }
    if (resuming) {
        /* by default the run continues in the directory holding the checkpoint */
        bool out_given = false;
        for (int i = 1; i < argc; i++) out_given |= strcmp(argv[i], "--out") == 0;
        snprintf(parent, sizeof parent, "%s", request.train.resume_dir);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent) *slash = '\0';
        else snprintf(parent, sizeof parent, ".");
        if (!out_given) request.train.out_dir = parent;
        if (!request.train.tokenizer_path) {
            char probe[4200];
            snprintf(probe, sizeof probe, "%s/config.json", request.train.resume_dir);
            FILE *config = fopen(probe, "rb");
            if (!config) {
                fprintf(stderr, "probmoe train: --resume %s: no checkpoint there (config.json is missing)\n",
                        request.train.resume_dir);
                return 2;
            }
            fclose(config);
            snprintf(probe, sizeof probe, "%s/tokenizer.json", request.train.resume_dir);
            FILE *has_tokenizer = fopen(probe, "rb");
            if (!has_tokenizer) {
                snprintf(probe, sizeof probe, "%s/encoder.json", request.train.resume_dir);
                has_tokenizer = fopen(probe, "rb");
            }
            if (has_tokenizer) {
                fclose(has_tokenizer);
                request.train.tokenizer_path = request.train.resume_dir;
            }
        }
        if (checkpoint_check_link(request.train.resume_dir, "config.json") < 0) {
            fprintf(stderr, "probmoe train: --resume: %s\n", pm_last_error());
            return 2;
        }
        if (pm_model_config_load(&request.model, request.train.resume_dir) < 0) {
            char config_path[4200];
            snprintf(config_path, sizeof config_path, "%s/config.json", request.train.resume_dir);
            if (pm_model_config_load(&request.model, config_path) < 0) {
                fprintf(stderr, "probmoe train: %s\n", pm_last_error());
                return 2;
            }
        }
    }
    tokenizer *tok = NULL;
    if (request.train.tokenizer_path) {
        if (tokenizer_load(request.train.tokenizer_path, &tok) < 0) {
            fprintf(stderr, "probmoe train: %s\n", pm_last_error());
            return 2;
        }
        /* the tokenizer decides the vocabulary unless a config asked for a larger one */
        if (request.model.vocab_size < tok->vocab_size) request.model.vocab_size = tok->vocab_size;
    }
    if (request.tokens > 0) {
        const long per_step = (long)request.train.batch * request.train.seq * request.train.accum;
        request.train.steps = (request.tokens + per_step - 1) / per_step;
    }
    if (pm_model_config_check(&request.model) < 0 ||
        (!resuming && train_options_check(&request.train, &request.model) < 0)) {
        fprintf(stderr, "probmoe train: %s\n", pm_last_error());
        tokenizer_free(tok);
        return 2;
    }
    request.train.progress = isatty(fileno(stderr));
    request.train.finished = report_run;
    request.train.finished_user = &request;
    train_result result;
    status = train_run(&request.model, &request.train, tok, &result);
    tokenizer_free(tok);
    if (status < 0) {
        fprintf(stderr, "probmoe train: %s\n", pm_last_error());
        return 1;
    }
    return 0;
}
