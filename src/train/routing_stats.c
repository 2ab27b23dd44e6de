#include "train/routing_stats.h"

#include <math.h>

routing_stats routing_stats_of(const pm_routing *routing) {
    routing_stats stats = {routing->mean_active, 0.0, 0.0, 0};
    const int E = routing->num_experts;
    double total = 0.0, largest = 0.0;
    for (int e = 0; e < E; e++) {
        total += (double)routing->load[e];
        if (routing->load[e] > largest) largest = (double)routing->load[e];
        stats.dead_experts += routing->load[e] == 0;
    }
    if (total <= 0.0) return stats;
    for (int e = 0; e < E; e++) {
        const double f = routing->load[e] / total;
        if (f > 0.0) stats.load_entropy -= f * log(f);
    }
    stats.load_entropy = E > 1 ? stats.load_entropy / log((double)E) : 1.0;
    stats.max_over_mean = largest / (total / E);
    return stats;
}
