/* probmoe route: reads router logits (one token per line) and prints how a router routes
 * them, so any router can be tried without writing C. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "route/logits_text.h"
#include "probmoe.h"

static void route_usage(FILE *out) {
    fputs("usage: probmoe route --router NAME --k K [options] [FILE]\n"
          "\n"
          "Reads logits from FILE (or standard input): one token per line, E decimal numbers\n"
          "separated by one comma or by spaces (blank lines skipped; at most 4096 experts and\n"
          "2^24 logits). Prints each token's experts and combine weights, then the load.\n"
          "\n"
          "  --k K           experts per token (default 2)\n"
          "  --train         training mode: sampling routers sample, densemixer computes every expert\n"
          "  --seed S        seed of the sampler (default 0)\n"
          "  --marginals     also print P(expert in S) under the router's subset distribution\n",
          out);
    router_flags_usage(out);
    fputs("Defaults: --router probmoe; each router's own defaults for the other settings.\n", out);
}

/* The whole of in, at most LOGITS_TEXT_MAX_BYTES; NULL after printing what is wrong. */
static char *read_input(FILE *in, const char *name, size_t *length) {
    size_t used = 0, capacity = 0;
    char *text = NULL;
    for (;;) {
        if (used == capacity) {
            if (capacity > LOGITS_TEXT_MAX_BYTES) {
                fprintf(stderr, "probmoe route: %s is larger than %zu MiB, the most route reads; route fewer "
                        "tokens at a time (split the input)\n", name, LOGITS_TEXT_MAX_BYTES >> 20);
                free(text);
                return NULL;
            }
            /* one byte more than the limit, so that a longer input is seen to be longer */
            size_t grown = capacity ? 2 * capacity : 65536;
            if (grown > LOGITS_TEXT_MAX_BYTES) grown = LOGITS_TEXT_MAX_BYTES + 1;
            char *bigger = realloc(text, grown);
            if (!bigger) {
                fprintf(stderr, "probmoe route: out of memory reading %s\n", name);
                free(text);
                return NULL;
            }
            text = bigger;
            capacity = grown;
        }
        const size_t got = fread(text + used, 1, capacity - used, in);
        used += got;
        if (got == 0) break;
    }
    if (ferror(in)) {
        fprintf(stderr, "probmoe route: cannot read %s\n", name);
        free(text);
        return NULL;
    }
    *length = used;
    return text;
}

typedef struct {
    pm_router_kind kind;
    int k, seed;
    bool train, marginals;
    router_flags router;
    const char *input;
} route_options;

/* Returns 0, or the exit code to stop with. */
static int parse_route_options(int argc, char **argv, route_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->kind = PM_ROUTER_PROBMOE;
    opt->k = 2;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true, takes_value = true, error = false;
        if (strcmp(arg, "--help") == 0) {
            route_usage(stdout);
            return -1;
        } else if (router_flags_take(&opt->router, argc, argv, &i, &error)) {
            if (error) return 2;
            continue;
        } else if (strcmp(arg, "--router") == 0) {
            if (!value || pm_router_kind_parse(value, &opt->kind) < 0) {
                fprintf(stderr, "probmoe route: %s\n", value ? pm_last_error() : "--router needs a name");
                return 2;
            }
        } else if (strcmp(arg, "--k") == 0) {
            ok = parse_int_flag(arg, value, 1, LOGITS_TEXT_MAX_EXPERTS, &opt->k);
        } else if (strcmp(arg, "--seed") == 0) {
            ok = parse_int_flag(arg, value, 0, 2147483647, &opt->seed);
        } else {
            takes_value = false;
            if (strcmp(arg, "--train") == 0) opt->train = true;
            else if (strcmp(arg, "--marginals") == 0) opt->marginals = true;
            else if (arg[0] == '-' && arg[1] != '\0') {
                fprintf(stderr, "probmoe route: unknown option '%s'\n\n", arg);
                route_usage(stderr);
                return 2;
            } else if (opt->input) {
                fprintf(stderr, "probmoe route: one input file only ('%s' and '%s')\n", opt->input, arg);
                return 2;
            } else {
                opt->input = arg;
            }
        }
        if (!ok) return 2;
        if (takes_value) i++;
    }
    return 0;
}

static void print_marginals(const pm_router *router, const pm_router_config *cfg, const float *theta) {
    int kmin, kmax;
    if (!pm_router_subset_range(cfg, &kmin, &kmax)) return;
    float *m = malloc(sizeof(float) * cfg->num_experts);
    if (!m || pm_router_subset_marginals(router, theta, m) < 0) {
        free(m);
        return;
    }
    printf("    P(in S):");
    for (int e = 0; e < cfg->num_experts; e++) printf(" %.4f", m[e]);
    printf("\n");
    free(m);
}

int cmd_route(int argc, char **argv) {
    route_options opt;
    int status = parse_route_options(argc, argv, &opt);
    if (status != 0) return status < 0 ? 0 : status;
    /* the router flags' values, before any input is read (E is known only after) */
    pm_router_config probe = pm_router_config_default(opt.kind, LOGITS_TEXT_MAX_EXPERTS, opt.k);
    if (!router_flags_apply(&opt.router, &probe)) return 2;
    FILE *in = opt.input ? fopen(opt.input, "r") : stdin;
    if (!in) {
        fprintf(stderr, "probmoe route: cannot open '%s'; check the path\n", opt.input);
        return 1;
    }
    const char *name = opt.input ? opt.input : "standard input";
    size_t length = 0;
    char *text = read_input(in, name, &length);
    if (opt.input) fclose(in);
    if (!text) return 1;
    float *logits = NULL;
    int E = 0, T = 0;
    status = logits_text_parse(text, length, name, &logits, &T, &E);
    free(text);
    if (status < 0) {
        fprintf(stderr, "probmoe route: %s\n", pm_last_error());
        return 1;
    }
    pm_router_config cfg = pm_router_config_default(opt.kind, E, opt.k);
    if (!router_flags_apply(&opt.router, &cfg)) {
        free(logits);
        return 2;
    }
    pm_router *router = pm_router_create(&cfg);
    pm_routing *routing = router ? pm_routing_create(router, T) : NULL;
    pm_rng rng;
    pm_rng_init(&rng, (uint64_t)opt.seed, 0);
    if (!routing || pm_router_forward(router, routing, logits, T, opt.train, &rng) < 0) {
        fprintf(stderr, "probmoe route: %s\n", pm_last_error());
        pm_routing_free(routing);
        pm_router_free(router);
        free(logits);
        return 1;
    }
    printf("%s, %d experts, %s mode\n", pm_router_kind_name(opt.kind), E, opt.train ? "training" : "inference");
    pm_circuit_info circuit;
    if (pm_router_circuit_info(router, &circuit))
        printf("circuit: %d nodes, %d edges, %.1f KB, compiled in %.3f ms\n", circuit.nodes, circuit.edges,
               (double)circuit.bytes / 1024.0, circuit.build_seconds * 1e3);
    for (int t = 0; t < T; t++) {
        printf("token %d:", t);
        for (int p = routing->offsets[t]; p < routing->offsets[t + 1]; p++)
            printf(" %d:%.6f", routing->experts[p], routing->weights[p]);
        printf("\n");
        if (opt.marginals) print_marginals(router, &cfg, logits + (size_t)t * E);
    }
    printf("mean active experts %.3f; load", routing->mean_active);
    for (int e = 0; e < E; e++) printf(" %lld", (long long)routing->load[e]);
    printf("\n");
    pm_routing_free(routing);
    pm_router_free(router);
    free(logits);
    return 0;
}
