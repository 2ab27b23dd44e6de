/* probmoe eval: validation loss on token shards and/or GSM8K loss and exact match. */
#define _POSIX_C_SOURCE 200809L /* stat */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "eval/eval.h"
#include "io/checkpoint.h"

static const char eval_usage[] =
    "usage: probmoe eval --model DIR --data SHARD_DIR [--batches N] [--seq S] [--eval-batch N]\n"
    "       probmoe eval --model DIR --gsm8k [PATH] [--limit N] [--max-new N] [--eval-batch N] [--out FILE.jsonl]\n"
    "                    [--chat-format plain|chatml|llama2|tulu]\n"
    "\n"
    "  --data DIR       validation loss and perplexity on DIR/val.bin (from probmoe data prepare)\n"
    "  --batches N      rows of --seq tokens to score (default: all)\n"
    "  --seq S          tokens per row (default 128, at most the model's context)\n"
    "  --gsm8k [PATH]   GSM8K test set (default ../shared/data/gsm8k/test.jsonl or\n"
    "                   data/gsm8k/test.jsonl; scripts/fetch_data.sh gsm8k-test fetches it):\n"
    "                   answer-token loss and exact match of greedy answers\n"
    "  --chat-format F  how the GSM8K prompts are written (default: the format the model was\n"
    "                   fine-tuned with, as its config.json records it; else plain)\n"
    "  --limit N        the first N examples (default: all)\n"
    "  --max-new N      tokens to generate per answer (default 256)\n"
    "  --out FILE       per-example outputs as JSON lines\n"
    "  --eval-batch N   rows per forward pass, and GSM8K prompts decoded together (default 8,\n"
    "                   1 to 1024; fewer if the model's buffers for N rows do not fit in memory);\n"
    "                   the results do not depend on it\n"
    "  --allow-unknown  load checkpoints holding tensors this model does not use\n"
    "  --analytics DIR  routing analytics of the --data rows (CSV, JSON, plots) into DIR\n"
    "  --groups G       with --analytics: count the groups of E/G experts each token's experts\n"
    "                   span, for any router (default: the router's own groups, as probmoe-group's)\n"
    "\n"
    "Routers use their inference rules. --data and --gsm8k may be given together.\n";

/* Where `probmoe eval --gsm8k` looks without a path: beside the repository (run from it),
 * then where scripts/fetch_data.sh downloads to. */
static const char *const default_gsm8k[] = {"../shared/data/gsm8k/test.jsonl", "data/gsm8k/test.jsonl"};

typedef struct {
    const char *model_dir, *data_dir, *gsm8k, *out, *analytics_dir, *chat_format;
    bool use_gsm8k, allow_unknown;
    int batches, seq, limit, max_new, eval_batch, groups;
} eval_options;

static int parse_eval_options(int argc, char **argv, eval_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->limit = -1;
    opt->max_new = 256;
    opt->eval_batch = EVAL_DEFAULT_BATCH;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (strcmp(arg, "--help") == 0) {
            fputs(eval_usage, stdout);
            return -1;
        }
        if (strcmp(arg, "--allow-unknown") == 0) {
            opt->allow_unknown = true;
            continue;
        }
        if (strcmp(arg, "--gsm8k") == 0) { /* the path is optional: the next word unless an option */
            opt->use_gsm8k = true;
            if (value && strncmp(value, "--", 2) != 0) opt->gsm8k = value, i++;
            continue;
        }
        static const char *const valued[] = {"--model", "--data", "--out", "--batches", "--seq", "--limit",
                                             "--max-new", "--analytics", "--eval-batch", "--chat-format",
                                             "--groups"};
        bool known = false;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) known |= strcmp(arg, valued[k]) == 0;
        if (!known) {
            fprintf(stderr, "probmoe eval: unknown option '%s'\n\n%s", arg, eval_usage);
            return 2;
        }
        if (!value) {
            fprintf(stderr, "probmoe eval: %s needs a value\n\n%s", arg, eval_usage);
            return 2;
        }
        if (strcmp(arg, "--model") == 0) opt->model_dir = value;
        else if (strcmp(arg, "--data") == 0) opt->data_dir = value;
        else if (strcmp(arg, "--out") == 0) opt->out = value;
        else if (strcmp(arg, "--analytics") == 0) opt->analytics_dir = value;
        else if (strcmp(arg, "--chat-format") == 0) opt->chat_format = value;
        else if (strcmp(arg, "--batches") == 0) ok = parse_int_flag(arg, value, 1, 2147483647, &opt->batches);
        else if (strcmp(arg, "--seq") == 0) ok = parse_int_flag(arg, value, 1, 1 << 20, &opt->seq);
        else if (strcmp(arg, "--limit") == 0) ok = parse_int_flag(arg, value, 1, 2147483647, &opt->limit);
        else if (strcmp(arg, "--eval-batch") == 0) ok = parse_int_flag(arg, value, 1, EVAL_MAX_BATCH, &opt->eval_batch);
        else if (strcmp(arg, "--groups") == 0) ok = parse_int_flag(arg, value, 1, 4096, &opt->groups);
        else ok = parse_int_flag(arg, value, 0, 1 << 20, &opt->max_new);
        if (!ok) return 2;
        i++;
    }
    if (!opt->model_dir) {
        fprintf(stderr, "probmoe eval: which model? give --model DIR (a directory written by probmoe train)\n");
        return 2;
    }
    if (!opt->data_dir && !opt->use_gsm8k) {
        fprintf(stderr, "probmoe eval: what to evaluate on? give --data SHARD_DIR and/or --gsm8k [PATH]\n\n%s",
                eval_usage);
        return 2;
    }
    if (opt->chat_format && !opt->use_gsm8k) {
        fprintf(stderr, "probmoe eval: --chat-format applies to --gsm8k\n");
        return 2;
    }
    if (opt->analytics_dir && !opt->data_dir) {
        fprintf(stderr, "probmoe eval: --analytics routes the validation windows of --data SHARD_DIR; give both\n");
        return 2;
    }
    if (opt->groups && !opt->analytics_dir) {
        fprintf(stderr, "probmoe eval: --groups applies to --analytics DIR\n");
        return 2;
    }
    return 0;
}

static const char *find_gsm8k(void) {
    for (size_t i = 0; i < sizeof default_gsm8k / sizeof default_gsm8k[0]; i++) {
        struct stat st;
        if (stat(default_gsm8k[i], &st) == 0 && S_ISREG(st.st_mode)) return default_gsm8k[i];
    }
    fprintf(stderr, "probmoe eval: no GSM8K test set at %s or %s (relative to the current directory): run from the "
            "repository, fetch it with scripts/fetch_data.sh gsm8k-test, or give --gsm8k PATH\n",
            default_gsm8k[0], default_gsm8k[1]);
    return NULL;
}

static int run_shards(pm_model *model, const tokenizer *tok, const eval_options *opt) {
    const int context = pm_model_get_config(model)->max_position_embeddings;
    const int seq = opt->seq > 0 ? opt->seq : (context < 128 ? context : 128);
    eval_loss_result r;
    if (eval_shards(model, tok, opt->data_dir, opt->batches, seq, opt->eval_batch, &r) < 0) {
        fprintf(stderr, "probmoe eval: %s\n", pm_last_error());
        return 1;
    }
    printf("validation loss %.4f nats/token, perplexity %.3f (%d rows of %d tokens: %ld tokens of %s/val.bin)\n",
           r.loss, r.perplexity, r.batches, r.seq, r.tokens, opt->data_dir);
    if (!opt->analytics_dir) return 0;
    analytics *a = NULL;
    if (eval_routing(model, tok, opt->data_dir, r.batches, seq, opt->eval_batch, opt->groups, opt->analytics_dir,
                     opt->model_dir, &a) < 0) {
        fprintf(stderr, "probmoe eval: %s\n", pm_last_error());
        return 1;
    }
    printf("routing over the same rows (written to %s):\n", opt->analytics_dir);
    printf("  layer  active  load entropy  max/mean  dead  routing entropy  cover 99%%  top-k mass\n");
    for (int l = 0; l < analytics_num_layers(a); l++) {
        const analytics_layer *layer = analytics_get_layer(a, l);
        printf("  %5d  %6.2f  %12.3f  %8.2f  %4d  %15.3f  %9.2f  %10.3f\n", analytics_layer_number(a, l),
               layer->mean_active, layer->load_entropy, layer->max_over_mean, layer->dead_experts,
               layer->routing_entropy, layer->cover99, layer->topk_mass);
    }
    if (analytics_groups(a) > 1) {
        printf("  groups a token's experts span (of G = %d), mean and most:", analytics_groups(a));
        for (int l = 0; l < analytics_num_layers(a); l++)
            printf(" %.2f (%d)", analytics_get_layer(a, l)->mean_groups, analytics_get_layer(a, l)->max_groups);
        printf("\n");
    }
    analytics_free(a);
    return 0;
}

/* --chat-format, else the one the model was fine-tuned with (plain when it records none). */
static int gsm8k_format(const eval_options *opt, chat_format *format) {
    if (opt->chat_format) {
        if (chat_format_parse(opt->chat_format, format)) return 0;
        fprintf(stderr, "probmoe eval: --chat-format '%s'; choose %s\n", opt->chat_format, chat_format_list());
        return 2;
    }
    *format = CHAT_PLAIN;
    char name[64];
    const int found = checkpoint_read_chat_format(opt->model_dir, name, sizeof name);
    if (found < 0) {
        fprintf(stderr, "probmoe eval: %s\n", pm_last_error());
        return 1;
    }
    if (found == 0) return 0; /* not fine-tuned by probmoe, or before chat formats: plain */
    if (!chat_format_parse(name, format)) {
        fprintf(stderr, "probmoe eval: %s's config.json records the chat format '%s', which this probmoe does not "
                "know (%s); give --chat-format\n", opt->model_dir, name, chat_format_list());
        return 1;
    }
    fprintf(stderr, "gsm8k: the %s chat format the model was fine-tuned with\n", chat_format_name(*format));
    return 0;
}

static int run_gsm8k(pm_model *model, const tokenizer *tok, const eval_options *opt) {
    const char *path = opt->gsm8k;
    chat_format format;
    int status = gsm8k_format(opt, &format);
    if (status) return status;
    eval_gsm8k_result r;
    status = eval_gsm8k(model, tok, path, format, opt->limit, opt->max_new, opt->eval_batch, opt->out, stderr, &r);
    if (status < 0) {
        fprintf(stderr, "probmoe eval: %s\n", pm_last_error());
        return 1;
    }
    printf("gsm8k (%s): %d examples, answer loss %.4f nats/token, perplexity %.3f (%ld answer tokens), "
           "exact match %.2f%% (%d/%d), %.1f s\n",
           path, r.examples, r.answer_loss, r.answer_perplexity, r.answer_tokens, 100.0 * r.exact_match, r.correct,
           r.examples, r.seconds);
    if (r.truncated > 0) printf("gsm8k: %d examples cut from the left to fit the context\n", r.truncated);
    if (opt->out) printf("wrote %s\n", opt->out);
    return 0;
}

int cmd_eval(int argc, char **argv) {
    eval_options opt;
    int status = parse_eval_options(argc, argv, &opt);
    if (status) return status < 0 ? 0 : status;
    /* find the test set before loading the model, so a missing file fails at once */
    if (opt.use_gsm8k && !opt.gsm8k && !(opt.gsm8k = find_gsm8k())) return 1;
    pm_model *model;
    tokenizer *tok;
    /* GSM8K examples can be as long as the context; shards need only --seq */
    const int max_seq = opt.use_gsm8k ? 0 : (opt.seq > 0 ? opt.seq : 128);
    const int asked = opt.eval_batch;
    if (eval_load_model(opt.model_dir, max_seq, &opt.eval_batch, opt.allow_unknown, &model, &tok) < 0) {
        fprintf(stderr, "probmoe eval: %s\n", pm_last_error());
        return 1;
    }
    if (opt.eval_batch < asked)
        fprintf(stderr, "probmoe eval: the model's buffers for --eval-batch %d rows of %d tokens do not fit in this "
                "machine's memory; evaluating %d rows at a time\n", asked, pm_model_max_seq(model), opt.eval_batch);
    if (opt.data_dir) status = run_shards(model, tok, &opt);
    if (status == 0 && opt.use_gsm8k) status = run_gsm8k(model, tok, &opt);
    pm_model_free(model);
    tokenizer_free(tok);
    return status;
}
