/*
 * Data parallelism's view of the other processes: one global batch split by rows over `size`
 * ranks, each holding the whole model. The library never calls MPI itself; the command line
 * (src/cli/mpi_comm.c) or a test provides these functions. Every function is collective: all
 * ranks call it, in the same order, with the same counts (gather excepted).
 *
 * What must be global for results not to depend on the number of ranks (the trainer and the
 * routers use this): the loss's token count, the load-balancing loss's expert fractions and
 * mean probabilities, the z-loss's token count, topk's load for its selection bias, softmoe's
 * tau calibration, and the gradients; a ProbMoE sample uses the token's index in the global
 * batch.
 */
#ifndef PM_CORE_BATCH_COMM_H
#define PM_CORE_BATCH_COMM_H

#include <stddef.h>

typedef struct batch_comm batch_comm;
struct batch_comm {
    int rank, size;
    /* values[0..count) := their sum over the ranks (the same result on every rank) */
    void (*sum_doubles)(const batch_comm *comm, double *values, int count);
    void (*sum_floats)(const batch_comm *comm, float *values, size_t count);
    /* The same sum started now and finished by finish_sums (which finishes every started one),
     * so that a bucket of gradients travels while the backward pass computes the next. The
     * values must not be touched in between. */
    void (*start_sum_floats)(const batch_comm *comm, float *values, size_t count);
    void (*finish_sums)(const batch_comm *comm);
    /* Every rank's values concatenated in rank order, into *out (malloc'ed, *total floats); ranks
     * may give different counts. 0, or -1 when out of memory (on every rank). */
    int (*gather_floats)(const batch_comm *comm, const float *values, int count, float **out, int *total);
    void *impl;
};

/* Rows [first, first + count) of a batch of `rows` rows that rank `rank` of `size` takes. */
static inline void batch_comm_rows(int rows, int rank, int size, int *first, int *count) {
    const long long a = (long long)rows * rank / size, b = (long long)rows * (rank + 1) / size;
    *first = (int)a;
    *count = (int)(b - a);
}

#endif
