/* The one check every batched evaluation makes before its first forward pass. */
#include "core/error.h"
#include "eval/eval.h"
#include "eval/eval_internal.h"

int eval_check_batch(const pm_model *model, int batch, int seq) {
    if (batch < 1 || batch > EVAL_MAX_BATCH)
        return pm_fail(PM_ERR_ARG, "evaluation batch of %d rows: give 1 to %d", batch, EVAL_MAX_BATCH);
    if (batch > pm_model_max_batch(model))
        return pm_fail(PM_ERR_ARG, "evaluation batch of %d rows, but the model was made for %d per forward pass; "
                       "load it for more rows or lower the batch", batch, pm_model_max_batch(model));
    if (seq > pm_model_max_seq(model))
        return pm_fail(PM_ERR_ARG, "rows of %d tokens, but the model was made for %d; load it for longer rows", seq,
                       pm_model_max_seq(model));
    return PM_OK;
}
