/* GSM8K evaluation: answer-token loss with the fine-tuning masks, and exact match of greedy
 * decoding through the key/value cache. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, fileno */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "data/gsm8k.h"
#include "data/sft.h"
#include "eval/eval.h"
#include "eval/eval_internal.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Everything one run allocates, freed in one place. */
typedef struct {
    gsm8k_set set;
    sft_tokens data;
    pm_generator *gen;
    int32_t *inputs, *targets;   /* (batch, context) answer-loss rows */
    eval_answer_loss *losses;    /* (examples) */
    eval_prompt *prompts;        /* (examples) what is decoded of each prompt */
    bool *prompt_cut;            /* (examples) the prompt lost its start */
    char **texts;                /* (examples) decoded text waiting for the examples before it */
    size_t *text_lengths;
    FILE *out;
    /* the records, written in the file's order as the decoder finishes examples in any */
    const char *out_path;
    FILE *progress;
    eval_gsm8k_result *result;
    double loss_sum, start;
    int total, next_record;
} gsm8k_run;

static void run_free(gsm8k_run *run) {
    sft_tokens_free(&run->data);
    gsm8k_free(&run->set);
    pm_generator_free(run->gen);
    free(run->inputs);
    free(run->targets);
    free(run->losses);
    free(run->prompts);
    free(run->prompt_cut);
    for (int i = 0; run->texts && i < run->total; i++) free(run->texts[i]);
    free(run->texts);
    free(run->text_lengths);
    if (run->out) fclose(run->out);
}

/* What of example i's prompt is decoded: room is kept for max_new tokens, so a long prompt
 * loses its start (the question's beginning). */
static eval_prompt prompt_of(const sft_tokens *data, int i, int context, int max_new, bool *cut) {
    const int32_t *tokens = data->tokens + data->offsets[i];
    const int total = (int)(data->offsets[i + 1] - data->offsets[i]);
    int length = 0;
    while (length < total && !data->loss_mask[data->offsets[i] + length]) length++;
    const int keep = length < context - max_new ? length : context - max_new;
    *cut = keep < length;
    return (eval_prompt){tokens + (length - keep), keep};
}

static void report_progress(FILE *progress, const eval_gsm8k_result *r, int total, double elapsed) {
    const bool terminal = isatty(fileno(progress));
    const int every = total / 20 > 0 ? total / 20 : 1;
    if (!terminal && r->examples % every != 0 && r->examples != total) return;
    fprintf(progress, "%sgsm8k %d/%d  exact match %.1f%%  %.2f examples/s%s", terminal ? "\r" : "", r->examples,
            total, 100.0 * r->correct / r->examples, elapsed > 0 ? r->examples / elapsed : 0.0,
            terminal && r->examples < total ? "   " : "\n");
    fflush(progress);
}

/* Example i, decoded: score, record, totals. */
static int finish_example(gsm8k_run *run, int i, const char *text, size_t length) {
    char *generated = eval_clean_text(text, length);
    if (!generated) return pm_fail(PM_ERR_NOMEM, "out of memory evaluating GSM8K");
    const gsm8k_example *ex = &run->set.examples[i];
    const eval_answer_loss *loss = &run->losses[i];
    char predicted[128];
    const bool correct = eval_score_answer(generated, ex->final_answer, predicted, sizeof predicted);
    int status = PM_OK;
    if (run->out) {
        eval_gsm8k_record record = {i, ex->line, ex->prompt, generated, predicted, ex->final_answer, correct,
                                    loss->count > 0 ? loss->sum / loss->count : NAN, loss->count};
        status = eval_write_record(run->out, run->out_path, &record);
    }
    free(generated);
    eval_gsm8k_result *result = run->result;
    run->loss_sum += loss->sum;
    result->answer_tokens += loss->count;
    result->truncated += loss->truncated || run->prompt_cut[i];
    result->correct += correct;
    result->examples++;
    if (status == 0 && run->progress) report_progress(run->progress, result, run->total, now_seconds() - run->start);
    return status;
}

/* The decoder's callback: example i waits until every example before it is written. */
static int decoded(void *user, int i, const char *text, size_t length) {
    gsm8k_run *run = user;
    if (i != run->next_record) {
        if (!(run->texts[i] = malloc(length > 0 ? length : 1)))
            return pm_fail(PM_ERR_NOMEM, "out of memory evaluating GSM8K");
        memcpy(run->texts[i], text, length);
        run->text_lengths[i] = length;
        return PM_OK;
    }
    int status = finish_example(run, run->next_record++, text, length);
    while (status == 0 && run->next_record < run->total && run->texts[run->next_record]) {
        const int next = run->next_record++;
        status = finish_example(run, next, run->texts[next], run->text_lengths[next]);
        free(run->texts[next]);
        run->texts[next] = NULL;
    }
    return status;
}

/* Tokenizes only the examples evaluated (--limit 10 on the test set stays instant) and opens
 * the output. */
static int prepare(gsm8k_run *run, const tokenizer *tok, const char *out_jsonl) {
    const int total = run->total;
    const char **texts = malloc(sizeof(char *) * 2 * (size_t)total);
    if (!texts) return pm_fail(PM_ERR_NOMEM, "out of memory evaluating GSM8K");
    for (int i = 0; i < total; i++) {
        texts[i] = run->set.examples[i].prompt;
        texts[total + i] = run->set.examples[i].completion;
    }
    int status = sft_tokenize(&run->data, texts, texts + total, total, tok, chat_format_appends_eos(run->set.format));
    free(texts);
    if (status == 0 && out_jsonl && !(run->out = fopen(out_jsonl, "w")))
        status = pm_fail(PM_ERR_ARG, "cannot write %s: %s", out_jsonl, strerror(errno));
    return status;
}

/* The buffers of a run of `rows` rows per forward pass and decoding step. */
static int allocate(gsm8k_run *run, pm_model *model, int rows, int context) {
    const size_t total = (size_t)run->total;
    /* made before any forward pass, so that its routers start from the model's as loaded */
    run->gen = pm_generator_create_rows(model, NULL, context, rows);
    if (!run->gen) return PM_ERR_NOMEM;
    run->inputs = malloc(sizeof(int32_t) * (size_t)rows * context);
    run->targets = malloc(sizeof(int32_t) * (size_t)rows * context);
    run->losses = calloc(total, sizeof(eval_answer_loss));
    run->prompts = malloc(sizeof(eval_prompt) * total);
    run->prompt_cut = malloc(sizeof(bool) * total);
    run->texts = calloc(total, sizeof(char *));
    run->text_lengths = calloc(total, sizeof(size_t));
    if (!run->inputs || !run->targets || !run->losses || !run->prompts || !run->prompt_cut || !run->texts ||
        !run->text_lengths)
        return pm_fail(PM_ERR_NOMEM, "out of memory evaluating GSM8K");
    return PM_OK;
}

int eval_gsm8k(pm_model *model, const tokenizer *tok, const char *jsonl, chat_format format, int limit, int max_new,
               int batch, const char *out_jsonl, FILE *progress, eval_gsm8k_result *result) {
    memset(result, 0, sizeof *result);
    const pm_model_config *cfg = pm_model_get_config(model);
    const int context = cfg->max_position_embeddings;
    if (limit == 0) return pm_fail(PM_ERR_ARG, "no GSM8K examples to evaluate: the limit is 0");
    if (max_new < 0 || max_new >= context)
        return pm_fail(PM_ERR_ARG, "max_new = %d: give 0 to %d so that the prompt fits the model's context of %d",
                       max_new, context - 1, context);
    if (tok->vocab_size > cfg->vocab_size)
        return pm_fail(PM_ERR_ARG, "the tokenizer (%s) has %d tokens but the model only %d", tok->name,
                       tok->vocab_size, cfg->vocab_size);
    int status = eval_check_batch(model, batch, 0);
    if (status == 0) status = chat_format_check(format, tok);
    if (status < 0) return status;
    gsm8k_run run = {.out_path = out_jsonl, .progress = progress, .result = result};
    status = gsm8k_load(jsonl, false, &run.set);
    if (status == 0 && format != CHAT_PLAIN) status = gsm8k_set_chat_format(&run.set, format);
    if (status < 0) {
        gsm8k_free(&run.set);
        return status;
    }
    run.total = limit < 0 || limit > run.set.count ? run.set.count : limit;
    const int rows = batch < run.total ? batch : run.total;
    status = prepare(&run, tok, out_jsonl);
    if (status == 0) status = allocate(&run, model, rows, context);
    run.start = now_seconds();
    if (status == 0)
        status = eval_answer_losses(model, &run.data, run.total, rows, context, run.inputs, run.targets, run.losses);
    for (int i = 0; status == 0 && i < run.total; i++)
        run.prompts[i] = prompt_of(&run.data, i, context, max_new, &run.prompt_cut[i]);
    if (status == 0)
        status = eval_greedy_decode(run.gen, tok, chat_format_stop_token(format, tok), cfg->vocab_size, run.prompts,
                                    run.total, max_new, decoded, &run);
    if (run.out && fclose(run.out) != 0 && status == 0)
        status = pm_fail(PM_ERR_STATE, "could not write %s: %s", out_jsonl, strerror(errno));
    run.out = NULL;
    const double loss_sum = run.loss_sum, start = run.start;
    run_free(&run);
    result->seconds = now_seconds() - start;
    result->exact_match = result->examples > 0 ? (double)result->correct / result->examples : 0.0;
    result->answer_loss = result->answer_tokens > 0 ? loss_sum / result->answer_tokens : NAN;
    result->answer_perplexity = exp(result->answer_loss);
    return status;
}
