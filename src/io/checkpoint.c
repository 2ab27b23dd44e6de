/* Model directories: model.safetensors (Hugging Face tensor names) and config.json. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "probmoe.h"

static int join(char *out, size_t size, const char *dir, const char *file) {
    if ((size_t)snprintf(out, size, "%s/%s", dir, file) >= size)
        return pm_fail(PM_ERR_ARG, "the path '%s/%s' is too long", dir, file);
    return PM_OK;
}

static int write_text(const char *path, const char *text) {
    FILE *file = fopen(path, "wb");
    if (!file) return pm_fail(PM_ERR_ARG, "cannot write '%s': %s", path, strerror(errno));
    size_t length = strlen(text);
    bool ok = fwrite(text, 1, length, file) == length;
    ok = fclose(file) == 0 && ok;
    return ok ? PM_OK : pm_fail(PM_ERR_ARG, "writing '%s' failed (disk full?)", path);
}

int pm_model_save(pm_model *model, const char *dir) {
    char path[4096];
    int status = ensure_directory(dir);
    if (status == 0) status = join(path, sizeof path, dir, "config.json");
    char *config = status == 0 ? pm_model_config_to_json(pm_model_get_config(model)) : NULL;
    if (status == 0 && !config) status = pm_fail(PM_ERR_NOMEM, "out of memory writing config.json");
    if (status == 0) status = write_text(path, config);
    free(config);
    st_writer *writer = status == 0 ? st_writer_create() : NULL;
    if (status == 0 && !writer) status = pm_fail(PM_ERR_NOMEM, "out of memory writing model.safetensors");
    const float *weights = pm_model_weights(model);
    for (int i = 0; status == 0 && i < pm_model_num_params(model); i++) {
        const pm_param *param = pm_model_param(model, i);
        status = st_writer_add(writer, param->name, ST_F32, param->shape, param->rank, weights + param->offset);
    }
    if (status == 0) status = st_writer_set_metadata(writer, "format", "pt");
    /* softmoe calibrates tau per layer on its first batch; keep the values so inference
     * routes exactly as training did */
    char taus[4096] = "[";
    for (int l = 0; status == 0 && l < pm_model_get_config(model)->num_layers; l++) {
        size_t used = strlen(taus);
        snprintf(taus + used, sizeof taus - used, "%s%.9g", l ? ", " : "", (double)pm_router_tau(pm_model_router(model, l)));
    }
    strncat(taus, "]", sizeof taus - strlen(taus) - 1);
    if (status == 0) status = st_writer_set_metadata(writer, "probmoe.layer_tau", taus);
    if (status == 0) status = join(path, sizeof path, dir, "model.safetensors");
    if (status == 0) status = st_writer_write(writer, path);
    st_writer_free(writer);
    return status;
}

pm_model *pm_model_load(const char *dir, int max_batch, int max_seq) {
    char path[4096];
    pm_model_config cfg;
    if (join(path, sizeof path, dir, "config.json") < 0 || pm_model_config_load(&cfg, path) < 0) return NULL;
    if (max_seq > cfg.max_position_embeddings) max_seq = cfg.max_position_embeddings;
    pm_model *model = pm_model_create(&cfg, max_batch, max_seq);
    if (!model) return NULL;
    st_file *file = NULL;
    int status = join(path, sizeof path, dir, "model.safetensors");
    if (status == 0) status = st_open(&file, path);
    float *weights = pm_model_weights(model);
    for (int i = 0; status == 0 && i < pm_model_num_params(model); i++) {
        const pm_param *param = pm_model_param(model, i);
        if (!st_find(file, param->name))
            status = pm_fail(PM_ERR_ARG, "%s: the tensor %s is missing", path, param->name);
        else
            status = st_read_f32(file, param->name, param->shape, param->rank, weights + param->offset);
    }
    const char *taus = status == 0 ? st_metadata(file, "probmoe.layer_tau") : NULL;
    for (int l = 0; taus && l < cfg.num_layers; l++) {
        while (*taus == '[' || *taus == ',' || *taus == ' ') taus++;
        char *end;
        float tau = strtof(taus, &end);
        if (end == taus) break;
        pm_router_set_tau(pm_model_router(model, l), tau);
        taus = end;
    }
    st_close(file);
    if (status < 0) {
        pm_model_free(model);
        return NULL;
    }
    return model;
}
