#include "check.h"

#include <math.h>
#include <stdio.h>

void check_close(double got, double want, double rel, double abs_floor, const char *what,
                 int index, const char *file, int line) {
    double tolerance = rel * fabs(want) + abs_floor;
    if (!(fabs(got - want) <= tolerance)) {
        char message[256];
        snprintf(message, sizeof message, "%s[%d]: got %.10g, want %.10g (tolerance %.3g)", what,
                 index, got, want, tolerance);
        print_error("%s\n", message);
        _fail(file, line);
    }
}

void random_normal(pm_rng *rng, float *x, int n, double scale) {
    for (int i = 0; i < n; i++) {
        double u1 = pm_rng_uniform(rng), u2 = pm_rng_uniform(rng);
        x[i] = (float)(scale * sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2));
    }
}
