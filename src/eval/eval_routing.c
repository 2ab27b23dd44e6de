/* Routing analytics of a model over a shard directory's validation windows, written as
 * CSV/JSON and, when gnuplot is there, plotted. Shared by `probmoe eval --analytics` and
 * `probmoe compare`. */
#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"
#include "data/text_data.h"
#include "eval/eval.h"
#include "eval/eval_internal.h"
#include "eval/plots.h"
#include "core/fs.h"

int eval_routing(pm_model *model, const tokenizer *tok, const char *shard_dir, int batches, int seq, int batch,
                 int groups, const char *out_dir, const char *label, analytics **out) {
    if (out) *out = NULL;
    int status = eval_check_batch(model, batch, seq);
    if (status < 0) return status;
    text_data data;
    status = text_data_load_shards(&data, shard_dir, tok, seq);
    if (status < 0) return status;
    analytics *a = analytics_create(model);
    const size_t window = (size_t)batch * seq;
    int32_t *inputs = malloc(sizeof(int32_t) * window), *targets = malloc(sizeof(int32_t) * window);
    if (!a || !inputs || !targets) status = pm_fail(PM_ERR_NOMEM, "routing analytics: out of memory");
    if (status == 0 && groups > 0) status = analytics_set_groups(a, groups);
    for (int i = 0; status == 0 && i < batches;) {
        const int n = eval_next_rows((size_t)i, (size_t)batches, batch);
        for (int r = 0; r < n; r++) /* window i + r, as one-row batches number them */
            text_data_val_batch(&data, i + r, 1, seq, inputs + (size_t)r * seq, targets + (size_t)r * seq);
        status = pm_model_forward(model, inputs, NULL, n, seq, false, 0, 0, NULL);
        if (status == 0) status = analytics_add_batch(a, model, inputs, n, seq);
        i += n;
    }
    if (status == 0) status = analytics_finish(a);
    if (status == 0) status = analytics_write_all(a, out_dir);
    char plot_dir[4200];
    snprintf(plot_dir, sizeof plot_dir, "%s/plots", out_dir);
    /* plots are a bonus: a missing gnuplot or a failed plot only warns */
    if (status == 0 && ensure_directory(plot_dir) == 0 && plots_from_analytics(plot_dir, "routing", label, a) < 0)
        fprintf(stderr, "routing plots: %s\n", pm_last_error());
    free(inputs);
    free(targets);
    text_data_free(&data);
    if (status < 0 || !out) {
        analytics_free(a);
        return status;
    }
    *out = a;
    return PM_OK;
}
