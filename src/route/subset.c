/* Public single-token functions of the k-subset distribution: validation, then the DP. */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "route/route_args.h"
#include "route/subset_dp.h"

/* Runs the forward DP on a heap workspace; the caller frees *workspace. */
static int prepare(subset_dp *dp, double **workspace, const float *theta, int n, int kmin,
                   int kmax, const char *function) {
    int status = check_subset_args(theta, n, kmin, kmax, function);
    if (status < 0) return status;
    *workspace = malloc(sizeof(double) * subset_dp_workspace(n, kmax));
    if (!*workspace)
        return pm_fail(PM_ERR_NOMEM, "%s: out of memory for n = %d, kmax = %d", function, n, kmax);
    subset_dp_forward(dp, theta, n, kmin, kmax, *workspace, false);
    return PM_OK;
}

double pm_subset_logz(const float *theta, int n, int kmin, int kmax) {
    subset_dp dp;
    double *workspace = NULL;
    if (prepare(&dp, &workspace, theta, n, kmin, kmax, "pm_subset_logz") < 0) return NAN;
    double log_z = dp.log_z;
    free(workspace);
    return log_z;
}

pm_status pm_subset_marginals(const float *theta, int n, int kmin, int kmax, float *m) {
    subset_dp dp;
    double *workspace = NULL;
    int status = prepare(&dp, &workspace, theta, n, kmin, kmax, "pm_subset_marginals");
    if (status < 0) return status;
    double *marginals = malloc(sizeof(double) * n);
    if (!marginals) {
        free(workspace);
        return pm_fail(PM_ERR_NOMEM, "pm_subset_marginals: out of memory for n = %d", n);
    }
    subset_dp_marginals(&dp, marginals);
    for (int i = 0; i < n; i++) m[i] = (float)marginals[i];
    free(marginals);
    free(workspace);
    return PM_OK;
}

pm_status pm_subset_cov_mv(const float *theta, int n, int kmin, int kmax, const float *u, float *out) {
    int status = check_finite(u, n, "pm_subset_cov_mv", "u");
    if (status < 0) return status;
    subset_dp dp;
    double *workspace = NULL;
    status = prepare(&dp, &workspace, theta, n, kmin, kmax, "pm_subset_cov_mv");
    if (status < 0) return status;
    double *buffer = malloc(sizeof(double) * 2 * n);
    if (!buffer) {
        free(workspace);
        return pm_fail(PM_ERR_NOMEM, "pm_subset_cov_mv: out of memory for n = %d", n);
    }
    for (int i = 0; i < n; i++) buffer[i] = u[i];
    subset_dp_cov_mv(&dp, buffer, buffer + n, NULL);
    for (int i = 0; i < n; i++) out[i] = (float)buffer[n + i];
    free(buffer);
    free(workspace);
    return PM_OK;
}

int pm_subset_sample(const float *theta, int n, int kmin, int kmax, pm_rng *rng, int *idx) {
    if (!rng) return pm_fail(PM_ERR_ARG, "pm_subset_sample: rng is NULL; pass a generator set up with pm_rng_init");
    subset_dp dp;
    double *workspace = NULL;
    int status = prepare(&dp, &workspace, theta, n, kmin, kmax, "pm_subset_sample");
    if (status < 0) return status;
    int size = subset_dp_sample(&dp, rng, idx);
    free(workspace);
    return size;
}

int pm_subset_map(const float *theta, int n, int kmin, int kmax, int *idx) {
    int status = check_subset_args(theta, n, kmin, kmax, "pm_subset_map");
    if (status < 0) return status;
    return subset_map(theta, n, kmin, kmax, idx);
}
