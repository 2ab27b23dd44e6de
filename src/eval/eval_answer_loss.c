/* GSM8K answer-token loss, several examples per forward pass: each row holds one example,
 * padded at the end to the batch's longest. Attention is causal, so padding after a row's
 * tokens changes none of its logits; its targets are -1 and count nowhere. */
#include "core/error.h"
#include "eval/eval_internal.h"
#include "nn/nn.h"

/* Example i's tokens and loss mask, and where its kept part starts: an example longer than
 * the context keeps its last context + 1 tokens (its inputs are all tokens but the last). */
static const int32_t *example(const sft_tokens *data, int i, int context, const uint8_t **mask, int *first,
                              int *inputs) {
    const size_t start = data->offsets[i];
    const int length = (int)(data->offsets[i + 1] - start);
    *mask = data->loss_mask + start;
    *first = length - 1 > context ? length - 1 - context : 0;
    *inputs = length > 0 ? length - 1 - *first : 0;
    return data->tokens + start;
}

/* Examples first .. first+rows-1 in one forward pass. */
static int score_rows(pm_model *model, const sft_tokens *data, int first_example, int rows, int context,
                      int32_t *inputs, int32_t *targets, eval_answer_loss *losses) {
    int S = 0;
    for (int r = 0; r < rows; r++) {
        const uint8_t *mask;
        int first, n;
        example(data, first_example + r, context, &mask, &first, &n);
        S = n > S ? n : S;
    }
    long scored = 0;
    for (int r = 0; r < rows; r++) {
        const uint8_t *mask;
        int first, n;
        const int32_t *tokens = example(data, first_example + r, context, &mask, &first, &n);
        eval_answer_loss *loss = &losses[first_example + r];
        int32_t *row_inputs = inputs + (size_t)r * S, *row_targets = targets + (size_t)r * S;
        loss->truncated = first > 0;
        loss->sum = 0.0;
        loss->count = 0;
        for (int j = 0; j < S; j++) {
            row_inputs[j] = j < n ? tokens[first + j] : data->pad_token;
            row_targets[j] = j < n && mask[first + j + 1] ? tokens[first + j + 1] : -1;
            loss->count += row_targets[j] >= 0;
        }
        scored += loss->count;
    }
    if (scored == 0) return PM_OK; /* no answer tokens (nothing after the prompt): nothing to run */
    int status = pm_model_forward(model, inputs, targets, rows, S, false, 0, 0, NULL);
    if (status < 0) return status;
    const int V = pm_model_get_config(model)->vocab_size;
    const float *logits = pm_model_logits(model);
    for (int r = 0; r < rows; r++) {
        eval_answer_loss *loss = &losses[first_example + r];
        if (loss->count == 0) continue;
        int count; /* the row's own mean, as a forward pass of it alone would give */
        const float mean = cross_entropy_forward(logits + (size_t)r * S * V, targets + (size_t)r * S, S, V, &count);
        loss->sum = (double)mean * count;
    }
    return PM_OK;
}

int eval_answer_losses(pm_model *model, const sft_tokens *data, int count, int batch, int context, int32_t *inputs,
                       int32_t *targets, eval_answer_loss *losses) {
    int status = PM_OK;
    for (int done = 0; status == 0 && done < count;) {
        const int rows = eval_next_rows((size_t)done, (size_t)count, batch);
        status = score_rows(model, data, done, rows, context, inputs, targets, losses);
        done += rows;
    }
    return status;
}
