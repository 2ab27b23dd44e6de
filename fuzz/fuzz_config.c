/* config.json: parsed, checked, and when valid written back and parsed again, which must give
 * the same configuration (the same JSON text). */
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    pm_model_config cfg;
    if (pm_model_config_from_json(&cfg, text, "config.json") == PM_OK && pm_model_config_check(&cfg) == PM_OK) {
        pm_model_soft_budget(&cfg);
        char *json = pm_model_config_to_json(&cfg);
        pm_model_config again;
        if (!json) fuzz_fail("a valid config could not be written", NULL);
        if (pm_model_config_from_json(&again, json, "written config.json") != PM_OK)
            fuzz_fail("a written config does not parse", pm_last_error());
        char *json_again = pm_model_config_to_json(&again);
        if (!json_again || strcmp(json, json_again) != 0) fuzz_fail("config.json does not round-trip", json);
        free(json);
        free(json_again);
    }
    free(text);
    return 0;
}
