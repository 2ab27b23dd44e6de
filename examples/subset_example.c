/* The k-subset distribution and a router on ROUTING.md's worked example.
 * Build from the repository root after make: cc -O2 examples/subset_example.c -Iinclude
 *   -Lbuild -lprobmoe -fopenmp -lm -o subset_example */
#include <math.h>
#include <stdio.h>

#include "probmoe.h"

int main(void) {
    const float probs[4] = {0.8f, 0.6f, 0.4f, 0.2f};
    float theta[4], m[4], u[4] = {1, 0, 0, 0}, cov_row[4];
    for (int i = 0; i < 4; i++) theta[i] = logf(probs[i] / (1.0f - probs[i]));

    /* exact-k with k = 2: log Z, marginals, one row of Cov(z), a sample, the MAP set */
    printf("log Z = %.6f\n", pm_subset_logz(theta, 4, 2, 2));
    if (pm_subset_marginals(theta, 4, 2, 2, m) < 0 || pm_subset_cov_mv(theta, 4, 2, 2, u, cov_row) < 0) {
        fprintf(stderr, "error: %s\n", pm_last_error());
        return 1;
    }
    printf("m = %.6f %.6f %.6f %.6f\n", m[0], m[1], m[2], m[3]);
    printf("Cov row 1 = %.5f %.5f %.5f %.5f\n", cov_row[0], cov_row[1], cov_row[2], cov_row[3]);
    pm_rng rng;
    pm_rng_init(&rng, 42, 0);
    int idx[4];
    int size = pm_subset_sample(theta, 4, 2, 2, &rng, idx);
    printf("sample: {%d, %d} (size %d)\n", idx[0], idx[1], size);
    size = pm_subset_map(theta, 4, 1, 3, idx); /* dynamic-k MAP over sizes 1..3 */
    printf("MAP over sizes 1..3: %d experts\n", size);

    /* the batched ProbMoE router, training mode, on one token */
    pm_router_config cfg = pm_router_config_default(PM_ROUTER_PROBMOE, 4, 2);
    pm_router *router = pm_router_create(&cfg);
    pm_routing *routing = pm_routing_create(router, 1);
    if (!routing || pm_router_forward(router, routing, theta, 1, true, &rng) < 0) {
        fprintf(stderr, "error: %s\n", pm_last_error());
        return 1;
    }
    printf("routed to");
    for (int p = routing->offsets[0]; p < routing->offsets[1]; p++)
        printf(" expert %d (weight %.4f)", routing->experts[p], routing->weights[p]);
    /* c = <dL/dy, f_j(x)> for the computed experts, as the MoE layer would hand it over */
    float c[2] = {0.7f, -0.4f}, dlogits[4] = {0};
    pm_router_backward(router, dlogits, routing, theta, c, 1.0f);
    printf("\ndL/dlogits = %.6f %.6f %.6f %.6f\n", dlogits[0], dlogits[1], dlogits[2], dlogits[3]);
    pm_routing_free(routing);
    pm_router_free(router);
    return 0;
}
