/* Internals of config.json parsing (config.c, config_family.c): a reader of one JSON object's
 * fields whose messages name the file and the field, and the families' own fields. */
#ifndef PM_MODEL_CONFIG_INTERNAL_H
#define PM_MODEL_CONFIG_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "model/arch.h"
#include "probmoe.h"

typedef struct {
    const cJSON *object;
    const char *source;
    const char *prefix; /* "" or "probmoe." for messages */
    int status;         /* the first failure; later reads do nothing */
} json_reader;

/* Each leaves *out as it is when the field is missing or null (an error if required), and sets
 * reader->status on a value of the wrong type or range. */
void config_read_int(json_reader *reader, const char *name, int *out, bool required);
void config_read_float(json_reader *reader, const char *name, float *out);
void config_read_bool(json_reader *reader, const char *name, bool *out);

/* The fields of cfg's family (cfg->arch set) beyond the common ones, and the refusal of every
 * field the model does not implement (rope scaling, MLA, ...),
 * each naming the field and what is supported. *norm_topk gets the family's renormalisation. */
int config_family_read(json_reader *reader, const model_arch *arch, pm_model_config *cfg, bool *norm_topk);
/* The family's own fields of cfg, added to root (model_type, architectures, its field names). */
bool config_family_write(cJSON *root, const pm_model_config *cfg);

#endif
