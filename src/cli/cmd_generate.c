/* probmoe generate: continues a prompt with a trained model (key/value cache), optionally
 * with another router's inference rule. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "tokenizer/tokenizer.h"
#include "eval/eval.h"
#include "probmoe.h"

static void generate_usage(FILE *out) {
    fputs("usage: probmoe generate --model DIR [--prompt TEXT] [options]\n"
          "\n"
          "  --max-new N        tokens to generate (default 200)\n"
          "  --temperature T    0 = greedy (default 0.8)\n"
          "  --top-p P          nucleus sampling mass (default 0.95)\n"
          "  --seed S           sampling seed (default 0)\n"
          "  --stop TEXT        stop once the output ends with TEXT (may repeat)\n"
          "  --precision P      fp32 (default) or bf16: the products read a bf16 copy of the weights\n"
          "                     made at load, half the bytes per token (inputs, sums, router fp32)\n"
          "  --allow-unknown    load checkpoints holding tensors this model does not use\n"
          "  --k K              experts per token of the router below (default: the model's k)\n"
          "Routing (default: the model's router at its inference rule; any flag below switches to\n"
          "that router's inference rule with these settings, e.g. --router probmoe-dyn --kmax 3):\n",
          out);
    router_flags_usage(out);
}

/* The most tokens one run generates (the context bounds them further), and --stop texts. */
enum { GENERATE_MAX_NEW = 1 << 20, GENERATE_MAX_STOPS = 8 };

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

typedef struct {
    const char *model_dir, *prompt, *router;
    const char *stops[GENERATE_MAX_STOPS];
    int stop_count, max_new, seed, k;
    pm_precision precision;
    float temperature, top_p;
    bool allow_unknown;
    router_flags router_settings;
} generate_options;

static int parse_generate_options(int argc, char **argv, generate_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->prompt = "\n";
    opt->max_new = 200;
    opt->temperature = 0.8f;
    opt->top_p = 0.95f;
    opt->k = -1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (strcmp(arg, "--help") == 0) {
            generate_usage(stdout);
            return -1;
        }
        bool error = false;
        if (router_flags_take(&opt->router_settings, argc, argv, &i, &error)) {
            if (error) return 2;
            continue;
        }
        if (strcmp(arg, "--allow-unknown") == 0) {
            opt->allow_unknown = true;
            continue;
        }
        if (!value) {
            fprintf(stderr, "probmoe generate: %s needs a value\n\n", arg);
            generate_usage(stderr);
            return 2;
        }
        if (strcmp(arg, "--model") == 0) opt->model_dir = value;
        else if (strcmp(arg, "--prompt") == 0) opt->prompt = value;
        else if (strcmp(arg, "--router") == 0) opt->router = value;
        else if (strcmp(arg, "--precision") == 0) {
            if (strcmp(value, "fp32") == 0) opt->precision = PM_PRECISION_FP32;
            else if (strcmp(value, "bf16") == 0) opt->precision = PM_PRECISION_BF16;
            else {
                fprintf(stderr, "probmoe generate: --precision '%s'; choose fp32 or bf16\n", value);
                return 2;
            }
        }
        else if (strcmp(arg, "--max-new") == 0) ok = parse_int_flag(arg, value, 0, GENERATE_MAX_NEW, &opt->max_new);
        else if (strcmp(arg, "--seed") == 0) ok = parse_int_flag(arg, value, 0, 2147483647, &opt->seed);
        else if (strcmp(arg, "--k") == 0) ok = parse_int_flag(arg, value, 1, 4096, &opt->k);
        else if (strcmp(arg, "--temperature") == 0)
            ok = parse_float_flag(arg, value, FLAG_NONNEGATIVE, &opt->temperature);
        else if (strcmp(arg, "--top-p") == 0)
            ok = parse_float_flag(arg, value, (flag_range){0, 1, true, false}, &opt->top_p);
        else if (strcmp(arg, "--stop") == 0) {
            if (opt->stop_count == GENERATE_MAX_STOPS) {
                fprintf(stderr, "probmoe generate: at most %d --stop texts\n", GENERATE_MAX_STOPS);
                return 2;
            }
            opt->stops[opt->stop_count++] = value;
        } else {
            fprintf(stderr, "probmoe generate: unknown option '%s'\n\n", arg);
            generate_usage(stderr);
            return 2;
        }
        if (!ok) return 2;
        i++;
    }
    if (!opt->model_dir) {
        fprintf(stderr, "probmoe generate: which model? give --model DIR (a directory written by probmoe train)\n");
        return 2;
    }
    return 0;
}

static bool ends_with(const char *text, size_t length, const char *suffix) {
    size_t n = strlen(suffix);
    return n > 0 && n <= length && memcmp(text + length - n, suffix, n) == 0;
}

/* The router to generate with: the model's own, or another kind with the given settings. */
static int inference_router(const generate_options *opt, const pm_model_config *cfg, pm_router_config *out,
                            bool *override) {
    *override = false;
    if (!opt->router && opt->k < 0 && !opt->router_settings.any) return 0;
    pm_router_kind kind = cfg->router.kind;
    if (opt->router && pm_router_kind_parse(opt->router, &kind) < 0) {
        fprintf(stderr, "probmoe generate: --router: %s\n", pm_last_error());
        return 2;
    }
    *out = pm_router_config_default(kind, cfg->num_experts, opt->k > 0 ? opt->k : cfg->experts_per_token);
    out->norm_topk_prob = cfg->router.norm_topk_prob;
    if (!router_flags_apply(&opt->router_settings, out)) return 2;
    if (pm_router_config_check(out) < 0) {
        fprintf(stderr, "probmoe generate: %s\n", pm_last_error());
        return 2;
    }
    *override = true;
    return 0;
}

int cmd_generate(int argc, char **argv) {
    generate_options opt;
    int status = parse_generate_options(argc, argv, &opt);
    if (status) return status < 0 ? 0 : status;
    /* the router flags' values, before the model is loaded (its E and k are known only after) */
    pm_router_kind probe_kind = PM_ROUTER_PROBMOE;
    if (opt.router && pm_router_kind_parse(opt.router, &probe_kind) < 0) {
        fprintf(stderr, "probmoe generate: --router: %s\n", pm_last_error());
        return 2;
    }
    pm_router_config probe = pm_router_config_default(probe_kind, 4096, opt.k > 0 ? opt.k : 1);
    if (!router_flags_apply(&opt.router_settings, &probe)) return 2;
    /* a training run's directory holds its final model in model/ */
    static char run_model[4200];
    char config[4400];
    snprintf(config, sizeof config, "%s/config.json", opt.model_dir);
    struct stat info;
    if (stat(config, &info) != 0) {
        snprintf(run_model, sizeof run_model, "%s/model", opt.model_dir);
        snprintf(config, sizeof config, "%s/config.json", run_model);
        if (stat(config, &info) == 0) opt.model_dir = run_model;
    }
    pm_model *model = NULL;
    tokenizer *loaded_tok = NULL;
    int rows = 1; /* the generator has its own buffers: the model's are never used */
    if (eval_load_model(opt.model_dir, 1, &rows, opt.allow_unknown, &model, &loaded_tok) < 0) {
        fprintf(stderr, "probmoe generate: %s\n", pm_last_error());
        return 1;
    }
    const tokenizer *tok = loaded_tok;
    size_t prompt_length = strlen(opt.prompt);
    /* the prompt's bytes bound its tokens; in 64 bits, as a long prompt could wrap an int */
    const long long context = (long long)prompt_length + opt.max_new;
    const pm_model_config *cfg = pm_model_get_config(model);
    pm_router_config router;
    bool override;
    status = inference_router(&opt, cfg, &router, &override);
    if (status) {
        pm_model_free(model);
        return status;
    }
    if (context > cfg->max_position_embeddings) {
        fprintf(stderr, "probmoe generate: the prompt (%zu bytes, at most as many tokens) + --max-new %d exceeds the "
                "model's context of %d; shorten the prompt or lower --max-new\n", prompt_length, opt.max_new,
                cfg->max_position_embeddings);
        pm_model_free(model);
        return 2;
    }
    pm_generator *gen = pm_generator_create(model, override ? &router : NULL, context > 0 ? (int)context : 1);
    float *logits = malloc(sizeof(float) * cfg->vocab_size);
    int32_t *prompt = malloc(sizeof(int32_t) * (prompt_length + 1));
    char *output = malloc((size_t)opt.max_new * TOKENIZER_MAX_TOKEN_BYTES + 1);
    if (!gen || !logits || !prompt || !output) {
        fprintf(stderr, "probmoe generate: %s\n", gen ? "out of memory" : pm_last_error());
        status = 1;
    } else if (pm_generator_set_precision(gen, opt.precision) < 0) {
        fprintf(stderr, "probmoe generate: %s\n", pm_last_error());
        status = 1;
    }
    int64_t prompt_tokens = status ? 0 : tok->encode(tok, opt.prompt, prompt_length, prompt, prompt_length);
    if (prompt_tokens < 0) {
        fprintf(stderr, "probmoe generate: the prompt: %s\n", pm_last_error());
        status = 2;
    }
    for (int64_t i = 0; status == 0 && i < prompt_tokens; i++)
        if (pm_generator_feed(gen, prompt[i], logits) < 0) status = 1;
    if (status == 0) fputs(opt.prompt, stdout);
    pm_rng rng;
    pm_rng_init(&rng, (uint64_t)opt.seed, 0x6E6E);
    size_t length = 0;
    const double start = now_seconds();
    int generated = 0;
    for (; status == 0 && generated < opt.max_new; generated++) {
        int32_t next = pm_sample_token(logits, cfg->vocab_size, opt.temperature, opt.top_p, &rng);
        char bytes[TOKENIZER_MAX_TOKEN_BYTES];
        size_t n = tok->decode_token(tok, next, bytes, sizeof bytes);
        fwrite(bytes, 1, n, stdout);
        fflush(stdout);
        memcpy(output + length, bytes, n);
        length += n;
        bool stop = false;
        for (int s = 0; s < opt.stop_count; s++) stop |= ends_with(output, length, opt.stops[s]);
        if (stop || generated + 1 == opt.max_new) {
            generated++;
            break;
        }
        if (pm_generator_feed(gen, next, logits) < 0) status = 1;
    }
    if (status) fprintf(stderr, "probmoe generate: %s\n", pm_last_error());
    const double seconds = now_seconds() - start;
    fprintf(stderr, "\n[%d tokens, %.1f tokens/s; mean active experts per %slayer:", generated,
            seconds > 0 ? generated / seconds : 0.0, pm_model_moe_layers(cfg) < cfg->num_layers ? "MoE " : "");
    for (int m = 0; status == 0 && m < pm_model_moe_layers(cfg); m++)
        fprintf(stderr, " %.2f", pm_generator_mean_active(gen, m));
    fprintf(stderr, "]\n");
    free(output);
    free(prompt);
    free(logits);
    pm_generator_free(gen);
    pm_model_free(model);
    tokenizer_free(loaded_tok);
    return status;
}
