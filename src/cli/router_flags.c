/* The router flags every command shares, from the table of router config fields
 * (route/router_fields.h): flags are collected first and applied once the router's kind,
 * experts and k are known, so that they override its defaults. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "route/router_fields.h"

bool router_flags_take(router_flags *flags, int argc, char **argv, int *i, bool *error) {
    *error = false;
    const router_field *field = router_field_by_flag(argv[*i]);
    if (strcmp(argv[*i], "--norm") == 0) {
        flags->norm = flags->any = true;
        return true;
    }
    if (!field) return false;
    flags->any = true;
    if (field->type == ROUTER_FIELD_BOOL) {
        flags->values[field - router_field_at(0)] = "1";
        return true;
    }
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s: %s needs a value\n", cli_command(), argv[*i]);
        *error = true;
        return true;
    }
    flags->values[field - router_field_at(0)] = argv[++*i];
    return true;
}

bool router_flags_apply(const router_flags *flags, pm_router_config *cfg) {
    if (flags->norm) cfg->norm_topk_prob = true;
    for (int f = 0; f < router_field_count(); f++) {
        const router_field *field = router_field_at(f);
        const char *text = flags->values[f];
        if (!text) continue;
        void *value = router_field_value(cfg, field);
        const flag_range range = {field->min, field->max, field->min_open, field->max_open};
        if (field->type == ROUTER_FIELD_INT &&
            !parse_int_flag(field->flag, text, (int)field->min, (int)field->max, value))
            return false;
        if (field->type == ROUTER_FIELD_FLOAT && !parse_float_flag(field->flag, text, range, value)) return false;
        if (field->type == ROUTER_FIELD_BOOL) *(bool *)value = true;
        if (field->type == ROUTER_FIELD_CHOICE) {
            const int index = router_field_choice(field, text);
            if (index < 0) {
                fprintf(stderr, "%s: %s %s: choose one of %s\n", cli_command(), field->flag, text,
                        router_field_choices(field));
                return false;
            }
            *(int *)value = index;
        }
    }
    return true;
}

void router_flags_usage(FILE *out) {
    fprintf(out, "router:  --router NAME, one of:\n");
    for (int kind = 0; kind < pm_router_kind_count(); kind++)
        fprintf(out, "           %-15s %s\n", pm_router_kind_name(kind), pm_router_kind_help(kind));
    fprintf(out, "         --norm                 renormalise the selected weights (norm_topk_prob)\n");
    for (int f = 0; f < router_field_count(); f++) {
        const router_field *field = router_field_at(f);
        char flag[64];
        snprintf(flag, sizeof flag, "%s%s", field->flag, field->type == ROUTER_FIELD_BOOL ? "" : " X");
        fprintf(out, "         %-22s %s\n", flag, field->help);
    }
}
