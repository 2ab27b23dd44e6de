/* model.safetensors.index.json: a tiny sharded model directory is saved once; each input
 * replaces its index, and the directory is loaded as `--init DIR` would. */
#include <stdio.h>

#include "fuzz_input.h"
#include "tiny_model.h"
#include "io/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *model_dir(void) {
    static char dir[512];
    if (dir[0]) return dir;
    snprintf(dir, sizeof dir, "%s/model", fuzz_dir());
    pm_model_config cfg = tiny_model_config(PM_ROUTER_PROBMOE);
    pm_model *model = pm_model_create(&cfg, 1, 8);
    checkpoint_options options = {.shard_bytes = 4096};
    if (!model || checkpoint_save(model, NULL, dir, &options) < 0) fuzz_fail("cannot save the model", pm_last_error());
    pm_model_free(model);
    return dir;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", model_dir());
    FILE *file = fopen(path, "wb");
    if (!file || fwrite(data, 1, size, file) != size || fclose(file) != 0) fuzz_fail("cannot write", path);
    pm_model_free(checkpoint_load_model(model_dir(), 1, 8, false));
    return 0;
}
