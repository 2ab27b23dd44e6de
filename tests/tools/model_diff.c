/* model_diff A B [TOL]: the largest |Δw|/|w| over the tensors of two model directories (each
 * tensor as a whole, Euclidean norms); exit 1 if it exceeds TOL (default 1e-5) or the models
 * differ in shape. For the MPI equivalence test (tests/mpi_test.sh). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "probmoe.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: model_diff A B [TOL]\n");
        return 2;
    }
    const double tolerance = argc > 3 ? atof(argv[3]) : 1e-5;
    pm_model *a = pm_model_load(argv[1], 1, 8), *b = pm_model_load(argv[2], 1, 8);
    if (!a || !b || pm_model_size(a) != pm_model_size(b)) {
        fprintf(stderr, "model_diff: %s\n", a && b ? "the models differ in size" : pm_last_error());
        return 1;
    }
    const float *wa = pm_model_weights(a), *wb = pm_model_weights(b);
    double worst = 0.0;
    const char *where = "";
    for (int p = 0; p < pm_model_num_params(a); p++) {
        const pm_param *param = pm_model_param(a, p);
        double sq = 0.0, diff = 0.0;
        for (size_t i = param->offset; i < param->offset + param->count; i++) {
            sq += (double)wa[i] * wa[i];
            diff += ((double)wa[i] - wb[i]) * ((double)wa[i] - wb[i]);
        }
        const double relative = sqrt(diff) / (sqrt(sq) + 1e-30);
        if (relative > worst) worst = relative, where = param->name;
    }
    printf("largest relative difference %.3g (%s)\n", worst, where);
    pm_model_free(a);
    pm_model_free(b);
    return worst <= tolerance ? 0 : 1;
}
