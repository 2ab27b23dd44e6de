/*
 * Routing analytics over an evaluation set (ROUTING.md section 6, the metrics the papers
 * report), per layer:
 *  - load fractions f_i (combine pairs of expert i over all pairs), load entropy H(f)/log E,
 *    max/mean load and dead experts (load 0);
 *  - from the router's probabilities π (softmax of the logits): the mean per-token entropy
 *    H(π)/log E, the mean number of experts needed to cover 99% of π's mass and the mean
 *    mass of π's k largest entries (k = the router's k);
 *  - the mean and the largest number of groups a token's experts span, with the experts in G
 *    equal, contiguous groups (G: the router's groups, the machines of expert parallelism;
 *    any router can be given one, so that top-k's spread shows next to probmoe-group's limit);
 *  - the mean number of active experts (combine pairs per token), overall and per bucket of
 *    token frequency: token ids are ranked by how often they occur in the evaluated data
 *    (rank 1 = most frequent) and bucketed by rank in powers of two (ranks 1, 2-3, 4-7, ...).
 *
 * Usage: analytics_create(model), then after each inference-mode pm_model_forward
 * analytics_add_batch(a, model, tokens, B, S), then analytics_finish and the getters or
 * writers. analytics_create_raw/analytics_add_routing take the routing directly, so the math
 * can be checked without a model.
 */
#ifndef PM_EVAL_ANALYTICS_H
#define PM_EVAL_ANALYTICS_H

#include <stdint.h>

#include "probmoe.h"

/* The share of π's mass the cover metric asks for. */
#define ANALYTICS_COVER_MASS 0.99

typedef struct analytics analytics;

typedef struct {
    int64_t tokens;         /* tokens routed through the layer */
    int64_t pairs;          /* (token, expert) combine pairs */
    const double *load;     /* (E) load fractions f_i, summing to 1 (all 0 without pairs) */
    double load_entropy;    /* H(f) / log E; 1 = perfectly balanced */
    double max_over_mean;   /* largest load over the mean load */
    int dead_experts;       /* experts with no pair */
    double routing_entropy; /* mean over tokens of H(π_t) / log E */
    double cover99;         /* mean over tokens of the fewest experts holding 99% of π_t */
    double topk_mass;       /* mean over tokens of the mass of π_t's k largest entries */
    double mean_active;     /* mean combine pairs per token */
    double mean_groups;     /* mean over tokens of the groups their experts span (of analytics_groups) */
    int max_groups;         /* the most groups one token's experts spanned */
} analytics_layer;

typedef struct {
    int rank_lo, rank_hi;      /* frequency ranks covered, 1-based, inclusive */
    int token_ids;             /* distinct token ids of the data in this bucket */
    int64_t occurrences;       /* tokens of the data whose id is in this bucket */
    int64_t min_count, max_count; /* fewest and most occurrences of one id in the bucket */
    const double *mean_active; /* (L) per layer: mean active experts of the bucket's tokens */
    double mean_active_all;    /* the mean over layers */
} analytics_bucket;

/* Analytics for the model's layers, experts, router k and vocabulary. NULL on failure. */
analytics *analytics_create(const pm_model *model);
/* The same from plain sizes (k: the k of the top-k mass). NULL on bad sizes or no memory. */
analytics *analytics_create_raw(int num_layers, int num_experts, int k, int vocab_size);
void analytics_free(analytics *a);

/* Adds the last forward of the model (inference mode) over tokens (B, S) for every layer.
 * 0 or a negative pm_status (the model's routing must hold B·S tokens). */
int analytics_add_batch(analytics *a, const pm_model *model, const int32_t *tokens, int B, int S);

/*
 * Adds T tokens of one layer: probs (T, E) π, the combine list in CSR form (offsets (T+1),
 * experts) and the token ids (T; each in [0, vocab_size)). 0 or a negative pm_status.
 * Tokens of one batch must be added to every layer, so the frequency counts stay consistent:
 * ids are counted when layer 0 is added.
 */
int analytics_add_routing(analytics *a, int layer, const float *probs, const int *offsets,
                          const int *experts, const int32_t *tokens, int T);

/* Computes the results of everything added so far (may be called again after more adds).
 * 0 or a negative pm_status. */
int analytics_finish(analytics *a);

/* The groups mean_groups counts (1 unless set; analytics_create takes the router's). G must
 * divide the experts; PM_ERR_ARG otherwise. Set it before adding routing. */
int analytics_set_groups(analytics *a, int groups);
int analytics_groups(const analytics *a);

/* The layers analysed: a model's MoE layers (analytics_create), in order. */
int analytics_num_layers(const analytics *a);
/* The decoder layer number of analysed layer `layer` (itself for analytics_create_raw), and all
 * of them (analytics_num_layers values). */
int analytics_layer_number(const analytics *a, int layer);
const int *analytics_layer_numbers(const analytics *a);
int analytics_num_experts(const analytics *a);
int analytics_k(const analytics *a);
/* Results after analytics_finish; pointers stay valid until the next finish or free. */
const analytics_layer *analytics_get_layer(const analytics *a, int layer);
const analytics_bucket *analytics_get_buckets(const analytics *a, int *count);

/* CSV, one row per layer (load fractions as columns load_0 ...). 0 or a negative pm_status. */
int analytics_write_layers_csv(const analytics *a, const char *path);
/* CSV, one row per frequency bucket (mean active experts per layer as columns). */
int analytics_write_buckets_csv(const analytics *a, const char *path);
/* JSON with everything: sizes, per-layer metrics with load fractions, buckets. */
int analytics_write_json(const analytics *a, const char *path);
/* The three files above in dir (created if missing): routing_layers.csv,
 * routing_frequency.csv and routing.json. */
int analytics_write_all(const analytics *a, const char *dir);

#endif
