/* trainer_state.json, read by `train --resume`: parsed with its history, and when valid
 * written back and parsed again, which must give the same text. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "train/train_state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    train_options opt = train_options_default();
    train_history history = {0};
    static train_state_paths paths, paths_again;
    long step = 0;
    if (train_state_from_json(text, "trainer_state.json", &opt, &step, &history, &paths) == 0) {
        char *json = train_state_to_json(&opt, step, &history);
        if (!json) fuzz_fail("a valid trainer state could not be written", NULL);
        train_options again = train_options_default();
        train_history history_again = {0};
        long step_again = 0;
        if (train_state_from_json(json, "written trainer_state.json", &again, &step_again, &history_again,
                                  &paths_again) != 0)
            fuzz_fail("a written trainer state does not parse", pm_last_error());
        char *json_again = train_state_to_json(&again, step_again, &history_again);
        if (!json_again || strcmp(json, json_again) != 0) fuzz_fail("trainer_state.json does not round-trip", json);
        free(json);
        free(json_again);
        train_history_free(&history_again);
    }
    train_history_free(&history);
    free(text);
    return 0;
}
