/*
 * trainer_state.json: what a resumed run needs besides the weights and AdamW moments. The
 * project's randomness is counter-based — batch windows and routing samples are functions of
 * (seed, step) — so the seed and the step are the whole random-generator and data-loader
 * state. The options are stored so that a resumed run continues exactly as it started.
 */
#ifndef PM_TRAIN_TRAIN_STATE_H
#define PM_TRAIN_TRAIN_STATE_H

#include "probmoe.h"
#include "train/trainer.h"

/* One line of history kept in the state ("metrics so far"). */
typedef struct {
    long step;
    double loss, val_loss; /* val_loss NaN when not evaluated */
} train_history_entry;

typedef struct {
    train_history_entry *entries;
    long count, capacity;
} train_history;

int train_history_add(train_history *history, long step, double loss, double val_loss);
void train_history_free(train_history *history);

/* The JSON text for a checkpoint after `step` steps (free() it); NULL on OOM. */
char *train_state_to_json(const train_options *opt, long step, const train_history *history);

/*
 * Restores from trainer_state.json text: the options (except those the caller overrides
 * afterwards), the step reached, and, when history is not NULL, the history. (The routers'
 * state comes back with the model's weights.) 0 or a negative pm_status naming what is wrong.
 */
/* Paths restored from the state are copied into storage the caller owns (it must outlive
 * opt's use of them). */
typedef struct {
    char data_path[4096], tokenizer_path[4096];
} train_state_paths;

int train_state_from_json(const char *json, const char *source, train_options *opt, long *step,
                          train_history *history, train_state_paths *paths);


#endif
