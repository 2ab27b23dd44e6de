/* The router config fields that config.json ("probmoe" object) and the command line set, one
 * table for both, so that a field is added in one place. norm_topk_prob is not here: it is a
 * Hugging Face field at the top of config.json. */
#ifndef PM_ROUTE_ROUTER_FIELDS_H
#define PM_ROUTE_ROUTER_FIELDS_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>

#include "probmoe.h"

/* CHOICE: one of the names in choices, stored as its index in an int. */
typedef enum { ROUTER_FIELD_INT, ROUTER_FIELD_FLOAT, ROUTER_FIELD_BOOL, ROUTER_FIELD_CHOICE } router_field_type;

typedef struct {
    const char *key;         /* in the "probmoe" object of config.json */
    const char *flag;        /* on the command line (a bool flag takes no value) */
    router_field_type type;
    size_t offset;           /* in pm_router_config */
    const char *help;
    /* the values any router may take (each router's config check narrows them, e.g. soft_k
     * below E): min and max, ±INFINITY for none, each excluded when open */
    double min, max;
    bool min_open, max_open;
    const char *const *choices; /* CHOICE: the names, NULL-terminated */
} router_field;

/* The index of name among a CHOICE field's names, or −1; and the names as "a, b". */
int router_field_choice(const router_field *field, const char *name);
const char *router_field_choices(const router_field *field);

int router_field_count(void);
const router_field *router_field_at(int index);
/* The field with this flag, or NULL. */
const router_field *router_field_by_flag(const char *flag);

/* Pointers to the field's value in cfg. */
static inline void *router_field_value(pm_router_config *cfg, const router_field *field) {
    return (char *)cfg + field->offset;
}
static inline const void *router_field_const_value(const pm_router_config *cfg, const router_field *field) {
    return (const char *)cfg + field->offset;
}

#endif
