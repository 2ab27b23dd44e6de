/* A fine-tuned model's chat format in config.json's "probmoe" object: written with the model,
 * read by evaluation so that it prompts as the model was trained (data/chat_format.h). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/checkpoint_internal.h"

char *ckpt_config_with_chat_format(char *config, const char *name) {
    cJSON *root = cJSON_Parse(config);
    free(config);
    cJSON *probmoe = root ? cJSON_GetObjectItemCaseSensitive(root, "probmoe") : NULL;
    if (root && !probmoe) probmoe = cJSON_AddObjectToObject(root, "probmoe");
    char *text = probmoe && cJSON_AddStringToObject(probmoe, "chat_format", name) ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    return text;
}

int checkpoint_read_chat_format(const char *dir, char *name, size_t capacity) {
    char root_dir[CKPT_PATH_MAX], path[CKPT_PATH_MAX], *text = NULL;
    if (ckpt_resolve(dir, root_dir, sizeof root_dir) < 0 || ckpt_join(path, sizeof path, root_dir, "config.json") < 0 ||
        ckpt_read_text(path, (size_t)64 << 20, &text) < 0)
        return 0; /* loading the model reports what is wrong with the directory */
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "probmoe"),
                                                           "chat_format");
    int status = 0;
    if (cJSON_IsString(format) && snprintf(name, capacity, "%s", format->valuestring) < (int)capacity) status = 1;
    else if (cJSON_IsString(format))
        status = pm_fail(PM_ERR_ARG, "%s: \"probmoe\".\"chat_format\" is too long to be a chat format", path);
    cJSON_Delete(root);
    return status;
}
