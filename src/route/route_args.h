/* Argument checks shared by the routing functions; each sets pm_last_error() on failure. */
#ifndef PM_ROUTE_ARGS_H
#define PM_ROUTE_ARGS_H

#include "probmoe.h"

/* NULL pointers and non-finite values in x[0..n-1]; `name` is the argument's name. */
int check_finite(const float *x, int n, const char *function, const char *name);
/* theta finite, n >= 1, 0 <= kmin <= kmax <= n. */
int check_subset_args(const float *theta, int n, int kmin, int kmax, const char *function);
/* r finite, n >= 1, 0 < k < n, alpha > 0 and finite. */
int check_lapsum_args(const float *r, int n, float k, float alpha, const char *function);

#endif
