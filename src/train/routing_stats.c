#include "train/routing_stats.h"

#include <math.h>

routing_stats routing_stats_of(const pm_routing *routing) {
    const int E = routing->num_experts;
    double load[4096];
    if (E > 4096) return (routing_stats){routing->mean_active, NAN, NAN, 0};
    for (int e = 0; e < E; e++) load[e] = (double)routing->load[e];
    routing_stats stats = routing_stats_from_counts(load, E, routing->num_tokens);
    stats.mean_active = routing->mean_active; /* the router's own figure (the same count) */
    return stats;
}

routing_stats routing_stats_from_counts(const double *load, int E, double tokens) {
    routing_stats stats = {0.0, 0.0, 0.0, 0};
    double total = 0.0, largest = 0.0;
    for (int e = 0; e < E; e++) {
        total += load[e];
        if (load[e] > largest) largest = load[e];
        stats.dead_experts += load[e] == 0;
    }
    stats.mean_active = tokens > 0 ? total / tokens : 0.0;
    if (total <= 0.0) return stats;
    for (int e = 0; e < E; e++) {
        const double f = load[e] / total;
        if (f > 0.0) stats.load_entropy -= f * log(f);
    }
    stats.load_entropy = E > 1 ? stats.load_entropy / log((double)E) : 1.0;
    stats.max_over_mean = largest / (total / E);
    return stats;
}
