#include "route/route_args.h"

#include <math.h>

#include "core/error.h"

int check_finite(const float *x, int n, const char *function, const char *name) {
    if (!x) return pm_fail(PM_ERR_ARG, "%s: %s is NULL; pass an array of %d floats", function, name, n);
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return pm_fail(PM_ERR_NONFINITE,
                           "%s: %s[%d] = %g is not finite; check the values that produced it "
                           "(a diverged model gives NaN logits)",
                           function, name, i, (double)x[i]);
    return PM_OK;
}

int check_subset_args(const float *theta, int n, int kmin, int kmax, const char *function) {
    if (n < 1) return pm_fail(PM_ERR_ARG, "%s: n = %d; need at least one expert (n >= 1)", function, n);
    if (kmin < 0) return pm_fail(PM_ERR_ARG, "%s: kmin = %d; need kmin >= 0", function, kmin);
    if (kmin > kmax)
        return pm_fail(PM_ERR_ARG, "%s: kmin = %d > kmax = %d; need kmin <= kmax", function, kmin, kmax);
    if (kmax > n)
        return pm_fail(PM_ERR_ARG, "%s: kmax = %d > n = %d; cannot choose more experts than exist",
                       function, kmax, n);
    return check_finite(theta, n, function, "theta");
}

int check_lapsum_args(const float *r, int n, float k, float alpha, const char *function) {
    if (n < 1) return pm_fail(PM_ERR_ARG, "%s: n = %d; need n >= 1", function, n);
    if (!(k > 0.0f && k < (float)n))
        return pm_fail(PM_ERR_ARG, "%s: k = %g; need 0 < k < n = %d", function, (double)k, n);
    if (!(alpha > 0.0f) || !isfinite(alpha))
        return pm_fail(PM_ERR_ARG, "%s: alpha = %g; need a finite alpha > 0", function, (double)alpha);
    return check_finite(r, n, function, "r");
}
