/* Per-layer routing statistics of one batch (ROUTING.md section 6, the training subset). */
#ifndef PM_TRAIN_ROUTING_STATS_H
#define PM_TRAIN_ROUTING_STATS_H

#include "probmoe.h"

typedef struct {
    double mean_active;   /* experts per token */
    double load_entropy;  /* H(f) / log E of the load fractions f */
    double max_over_mean; /* largest load over the mean load */
    int dead_experts;     /* experts that got no token */
} routing_stats;

routing_stats routing_stats_of(const pm_routing *routing);
/* The same from counts: load[0..E) combine pairs per expert over `tokens` tokens (summed over
 * the ranks of a data-parallel batch). */
routing_stats routing_stats_from_counts(const double *load, int E, double tokens);

#endif
