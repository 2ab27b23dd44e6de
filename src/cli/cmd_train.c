/* probmoe train: builds the model config and training options from a JSON file and/or
 * flags, then trains and reports the validation loss against the unigram baseline. */
#define _POSIX_C_SOURCE 200809L /* isatty, fileno */
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
    "Trains a MoE language model (OLMoE-style, or Qwen2-MoE or Mixtral from --config) on a text\n"
    "file (bytes as tokens, or a BPE tokenizer given with --tokenizer tokenizer.json). Writes\n"
    "DIR/metrics.jsonl during training, then DIR/model.safetensors and DIR/config.json.\n"
    "\n"
    "  --config FILE      a Hugging Face config.json of model_type olmoe, qwen2_moe or mixtral\n"
    "                     (with an optional \"probmoe\" object for the router and an optional\n"
    "                     \"train\" object with the options below)\n"
    "model:   --layers N --hidden N --intermediate N --heads N --kv-heads N --experts N --k N\n"
    "         --max-positions N\n"
    "         --soft-budget K  softmoe's learned budget: the MoE layers' k_l sum to K, M < K < M·E\n"
    "                          (M the MoE layers; default M·soft_k = M·k)\n";
static const char train_usage_tail[] =
    "train:   --steps N | --tokens N   --batch N --seq N --accum N --lr X --min-lr-ratio X\n"
    "         --warmup N --schedule cosine|linear|constant --clip X --weight-decay X --seed N\n"
    "         --eval-interval N --eval-batches N   --tokenizer FILE\n"
    "         --precision fp32|bf16  matrix products in bf16 with fp32 accumulation (oneDNN);\n"
    "         weights, gradients, optimizer, router and loss stay fp32 (default fp32)\n"
    "         --fp32-matmul measured|openblas|onednn|auto  who runs fp32 matrix products: per\n"
    "         product and shape the library bench/matmul_sites measured faster (default),\n"
    "         OpenBLAS or oneDNN everywhere, or auto: time both on each shape's first run and\n"
    "         keep the faster (gives up bit-for-bit reproducibility between runs)\n"
    "save:    --save-interval N (checkpoint every N steps)  --keep-last N  --bf16 (final weights)\n"
    "         --max-shard-mb N  split weight files above N MB (default 2048; 0: never)\n"
    "         --resume DIR  continue from a checkpoint (options come from it; --steps extends)\n"
    "fine-tune: --init MODEL_DIR (start from its weights; with --router, route them with that\n"
    "         router from there)  --gsm8k FILE (GSM8K JSONL instead of --data; the loss covers\n"
    "         the answer tokens only)  --chat-format plain|chatml|llama2|tulu (how --gsm8k's\n"
    "         turns are written; chatml and llama2 need the tokenizer's special tokens; eval\n"
    "         uses the format the model was fine-tuned with)\n"
    "         --freeze-router (gate weights, softmoe's budget and topk's selection bias are not\n"
    "         updated)\n"
    "mpirun:  mpirun -np N probmoe train ... trains on N processes (data parallelism)\n"
    "         --expert-parallel G  split each layer's experts over groups of G processes\n"
    "         (N a multiple of G; every process still trains its own rows of each batch)\n"
    "         --comm-timeout S  end the run when a process waits S seconds in one collective\n"
    "         (a hung process; default 1800, 0: wait for ever)\n"
    "Defaults: the demo model (4 layers, hidden 256, 8 experts, k 2, probmoe), batch 8 × 128\n"
    "tokens, 1000 steps, lr 3e-3 with 50 warmup steps and cosine decay, clip 1.\n";

static void train_usage(FILE *out) {
    fputs(train_usage_head, out);
    router_flags_usage(out);
    fputs(train_usage_tail, out);
}

/* Flags that set no field as given: applied after parsing. */
typedef struct {
    const char *router, *schedule, *gsm8k, *chat_format, *precision, *fp32_matmul;
    int seed, heads, kv_heads; /* -1: not given */
    int expert_parallel;       /* processes an expert group (1: no expert parallelism) */
    float comm_timeout;        /* seconds a process may wait in one collective (0: for ever) */
    long max_shard_mb;         /* -1: not given */
} train_flags;

typedef struct {
    pm_model_config model;
    train_options train;
    long tokens;
    train_flags flags;
} train_request;

/* One flag: `--name value`, and with a key, the same setting in the config file's "train"
 * object; parsed into the typed target within [min, max] (floats: min excluded when
 * min_open). The router's shape (shape) is parsed first, as it resets the router's defaults. */
typedef enum { OPT_INT, OPT_LONG, OPT_FLOAT, OPT_STRING } option_type;
typedef struct {
    const char *name, *key;
    option_type type;
    void *target;
    double min, max;
    bool min_open, shape;
} option;

enum { TRAIN_OPTION_COUNT = 39 };

/* The table of train's flags for request; returns their count. */
static int train_option_table(train_request *request, option out[TRAIN_OPTION_COUNT]) {
    pm_model_config *m = &request->model;
    train_options *t = &request->train;
    train_flags *f = &request->flags;
    const double count = (double)FLAG_MAX_COUNT, unbounded = INFINITY;
    const option table[] = {
        {"--router", NULL, OPT_STRING, &f->router, 0, 0, false, true},
        {"--experts", NULL, OPT_INT, &m->num_experts, 1, 4096, false, true},
        {"--k", NULL, OPT_INT, &m->experts_per_token, 1, 4096, false, true},
        {"--data", "data", OPT_STRING, &t->data_path, 0, 0, false, false},
        {"--out", "out", OPT_STRING, &t->out_dir, 0, 0, false, false},
        {"--tokenizer", NULL, OPT_STRING, &t->tokenizer_path, 0, 0, false, false},
        {"--config", NULL, OPT_STRING, NULL, 0, 0, false, false}, /* read before the flags */
        {"--layers", NULL, OPT_INT, &m->num_layers, 1, 1 << 10, false, false},
        {"--hidden", NULL, OPT_INT, &m->hidden_size, 1, 1 << 16, false, false},
        {"--intermediate", NULL, OPT_INT, &m->intermediate_size, 1, 1 << 18, false, false},
        {"--heads", NULL, OPT_INT, &f->heads, 1, 1 << 10, false, false},
        {"--kv-heads", NULL, OPT_INT, &f->kv_heads, 1, 1 << 10, false, false},
        {"--max-positions", NULL, OPT_INT, &m->max_position_embeddings, 1, 1 << 20, false, false},
        {"--soft-budget", NULL, OPT_FLOAT, &m->soft_budget, 0, unbounded, false, false},
        {"--steps", "steps", OPT_LONG, &t->steps, 1, count, false, false},
        {"--tokens", "tokens", OPT_LONG, &request->tokens, 1, count, false, false},
        {"--batch", "batch", OPT_INT, &t->batch, 1, INT_MAX, false, false},
        {"--seq", "seq", OPT_INT, &t->seq, 1, 1 << 20, false, false},
        {"--accum", "accum", OPT_INT, &t->accum, 1, TRAIN_MAX_ACCUM, false, false},
        {"--lr", "lr", OPT_FLOAT, &t->lr, 0, unbounded, true, false},
        {"--min-lr-ratio", "min_lr_ratio", OPT_FLOAT, &t->min_lr_ratio, 0, 1, false, false},
        {"--warmup", "warmup", OPT_LONG, &t->warmup, 0, count, false, false},
        {"--schedule", NULL, OPT_STRING, &f->schedule, 0, 0, false, false},
        {"--precision", "precision", OPT_STRING, &f->precision, 0, 0, false, false},
        {"--fp32-matmul", "fp32_matmul", OPT_STRING, &f->fp32_matmul, 0, 0, false, false},
        {"--clip", "clip", OPT_FLOAT, &t->clip, 0, unbounded, false, false},
        {"--weight-decay", "weight_decay", OPT_FLOAT, &t->adamw.weight_decay, 0, unbounded, false, false},
        {"--seed", "seed", OPT_INT, &f->seed, 0, INT_MAX, false, false},
        {"--eval-interval", "eval_interval", OPT_LONG, &t->eval_interval, 0, count, false, false},
        {"--eval-batches", "eval_batches", OPT_INT, &t->eval_batches, 1, INT_MAX, false, false},
        {"--save-interval", NULL, OPT_LONG, &t->save_interval, 0, count, false, false},
        {"--keep-last", NULL, OPT_INT, &t->keep_last, 0, INT_MAX, false, false},
        {"--resume", NULL, OPT_STRING, &t->resume_dir, 0, 0, false, false},
        {"--max-shard-mb", NULL, OPT_LONG, &f->max_shard_mb, 0, 1 << 24, false, false},
        {"--gsm8k", NULL, OPT_STRING, &f->gsm8k, 0, 0, false, false},
        {"--chat-format", NULL, OPT_STRING, &f->chat_format, 0, 0, false, false},
        {"--init", NULL, OPT_STRING, &t->init_dir, 0, 0, false, false},
        {"--expert-parallel", NULL, OPT_INT, &f->expert_parallel, 1, 4096, false, false},
        {"--comm-timeout", NULL, OPT_FLOAT, &f->comm_timeout, 0, 1e7, false, false},
    };
    _Static_assert(sizeof table / sizeof table[0] == TRAIN_OPTION_COUNT, "TRAIN_OPTION_COUNT is the table's size");
    memcpy(out, table, sizeof table);
    return TRAIN_OPTION_COUNT;
}

/* Parses value into the option's target; name is how messages call it. 0 or 2 after printing. */
static int parse_value(const option *opt, const char *name, const char *value) {
    switch (opt->type) {
    case OPT_INT: return parse_int_flag(name, value, (int)opt->min, (int)opt->max, opt->target) ? 0 : 2;
    case OPT_LONG: {
        long long parsed;
        if (!parse_long_flag(name, value, (long long)opt->min, (long long)opt->max, &parsed)) return 2;
        *(long *)opt->target = (long)parsed;
        return 0;
    }
    case OPT_FLOAT: {
        const flag_range range = {opt->min, opt->max, opt->min_open, false};
        return parse_float_flag(name, value, range, opt->target) ? 0 : 2;
    }
    case OPT_STRING: *(const char **)opt->target = value; return 0;
    }
    return 2;
}

/* Applies the "train" object of a config file, each value checked as its flag's. Returns 0 or 2
 * after printing the problem. */
static int apply_train_object(const cJSON *object, train_request *request, const char *path) {
    option table[TRAIN_OPTION_COUNT];
    const int count = train_option_table(request, table);
    for (const cJSON *item = object ? object->child : NULL; item; item = item->next) {
        const option *match = NULL;
        for (int o = 0; o < count; o++)
            if (table[o].key && strcmp(item->string, table[o].key) == 0) match = &table[o];
        const bool string = match && match->type == OPT_STRING;
        if (!match || (string ? !cJSON_IsString(item) : !cJSON_IsNumber(item))) {
            fprintf(stderr, "probmoe train: %s: unknown or mistyped train.%s\n", path, item->string);
            return 2;
        }
        char name[4200];
        snprintf(name, sizeof name, "%s: train.%s", path, match->key);
        if (string) {
            /* the strings outlive the parsed JSON: static storage (one config per run) */
            static char data[4096], out[4096];
            char *storage = strcmp(match->key, "data") == 0 ? data : out;
            snprintf(storage, sizeof data, "%s", item->valuestring);
            *(const char **)match->target = storage;
            continue;
        }
        char text[64]; /* the number as its flag would be written */
        snprintf(text, sizeof text, "%.17g", item->valuedouble);
        int status = parse_value(match, name, text);
        if (status) return status;
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
    const train_flags *f = &request->flags;
    router_flags router_flags_given = {0};
    option options[TRAIN_OPTION_COUNT];
    const int option_count = train_option_table(request, options);
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
            for (int o = 0; o < option_count; o++)
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
            if (match->shape != (pass == 0) || !match->target) continue;
            int status = parse_value(match, match->name, argv[i]);
            if (status) return status;
            reshaped |= match->shape;
        }
        if (pass == 0 && reshaped) {
            pm_router_kind kind = r->kind;
            if (f->router && pm_router_kind_parse(f->router, &kind) < 0) {
                fprintf(stderr, "probmoe train: --router: %s\n", pm_last_error());
                return 2;
            }
            reset_router(m, kind);
        }
        /* the router flags go on top of the (possibly reset) router's defaults */
        if (pass == 1 && !router_flags_apply(&router_flags_given, r)) return 2;
        memset(&router_flags_given, 0, sizeof router_flags_given);
    }
    if (f->schedule) {
        if (strcmp(f->schedule, "cosine") == 0) t->schedule = SCHEDULE_COSINE;
        else if (strcmp(f->schedule, "linear") == 0) t->schedule = SCHEDULE_LINEAR;
        else if (strcmp(f->schedule, "constant") == 0) t->schedule = SCHEDULE_CONSTANT;
        else {
            fprintf(stderr, "probmoe train: --schedule '%s'; choose cosine, linear or constant\n", f->schedule);
            return 2;
        }
    }
    if (f->precision) {
        if (strcmp(f->precision, "fp32") == 0) t->precision = PM_PRECISION_FP32;
        else if (strcmp(f->precision, "bf16") == 0) t->precision = PM_PRECISION_BF16;
        else {
            fprintf(stderr, "probmoe train: --precision '%s'; choose fp32 or bf16\n", f->precision);
            return 2;
        }
    }
    if (f->fp32_matmul && !fp32_matmul_parse(f->fp32_matmul, &t->fp32_matmul)) {
        fprintf(stderr, "probmoe train: --fp32-matmul '%s'; choose measured, openblas, onednn or auto\n",
                f->fp32_matmul);
        return 2;
    }
    if (f->seed >= 0) t->seed = (uint64_t)f->seed;
    if (f->max_shard_mb >= 0) t->shard_bytes = (size_t)f->max_shard_mb << 20;
    if (f->gsm8k) {
        t->data_path = f->gsm8k;
        t->supervised = true;
    }
    if (f->chat_format) {
        if (!chat_format_parse(f->chat_format, &t->chat_format)) {
            fprintf(stderr, "probmoe train: --chat-format '%s'; choose %s\n", f->chat_format, chat_format_list());
            return 2;
        }
        if (!f->gsm8k) {
            fprintf(stderr, "probmoe train: --chat-format applies to --gsm8k fine-tuning; give --gsm8k FILE\n");
            return 2;
        }
    }
    /* --heads alone means plain multi-head attention */
    if (f->heads > 0) m->num_heads = f->heads;
    if (f->kv_heads > 0 || f->heads > 0) m->num_kv_heads = f->kv_heads > 0 ? f->kv_heads : f->heads;
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
        printf("  %5d  %14.2f  %12.3f  %13.2f  %12d", result->layer_numbers[l], result->routing[l].mean_active,
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
    request.flags = (train_flags){.seed = -1, .heads = -1, .kv_heads = -1, .expert_parallel = 1, .comm_timeout = 1800.0f,
                                  .max_shard_mb = -1};
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
        /* "runs/x/checkpoint-000100/" (as tab completion writes it) is in runs/x too */
        for (size_t n = strlen(parent); n > 1 && parent[n - 1] == '/'; n--) parent[n - 1] = '\0';
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent) *slash = '\0';
        else if (slash) slash[1] = '\0'; /* a checkpoint directly below / */
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
    /* tokens to steps; a batch beyond INT_MAX tokens is refused by train_options_check below,
     * and within it a step (at most 2^20 batches) is far inside 64 bits */
    const int64_t per_batch = (int64_t)request.train.batch * request.train.seq;
    if (request.tokens > 0 && per_batch <= INT_MAX) {
        const int64_t per_step = per_batch * request.train.accum;
        request.train.steps = (long)((request.tokens + per_step - 1) / per_step);
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
    /* under mpirun: data parallelism over the ranks; rank 0 prints and writes */
    const batch_comm *comm = NULL;
    status = cli_mpi_start(NULL, NULL, "probmoe train", request.flags.expert_parallel, &comm);
    if (status) {
        tokenizer_free(tok);
        cli_mpi_stop();
        return status;
    }
    request.train.comm = comm;
    if (comm && comm->rank > 0) request.train.progress = false;
    if (comm) cli_mpi_set_timeout(request.flags.comm_timeout);
    train_result result = {0}; /* read by the report below even when train_run fails early */
    struct timespec began, ended;
    clock_gettime(CLOCK_MONOTONIC, &began);
    status = train_run(&request.model, &request.train, tok, &result);
    clock_gettime(CLOCK_MONOTONIC, &ended);
    /* every rank (a collective), also after an error, with the steps all of them did */
    const cli_expert_traffic traffic = {request.model.hidden_size, result.expert_pair_rows, result.expert_rank_rows};
    cli_mpi_report(comm, status == 0 ? result.steps_done - result.first_step : 0,
                   (double)(ended.tv_sec - began.tv_sec) + 1e-9 * (double)(ended.tv_nsec - began.tv_nsec), &traffic);
    tokenizer_free(tok);
    if (status < 0) {
        if (comm) fprintf(stderr, "probmoe train (rank %d of %d): %s\n", comm->rank, comm->size, pm_last_error());
        else fprintf(stderr, "probmoe train: %s\n", pm_last_error());
    }
    cli_mpi_stop();
    return status < 0 ? 1 : 0;
}
