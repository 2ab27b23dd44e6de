/*
 * Data parallelism's view of the other processes: one global batch split by rows over `size`
 * ranks, each holding the whole model. The library never calls MPI itself; the command line
 * (src/cli/mpi_comm.c) or a test provides these functions. Every function is collective: all
 * ranks call it, in the same order, with the same counts (except gather, the exchanges' row
 * counts, and collect_floats, which MPI needs only from the first expert group; the test's
 * thread version wants it from every rank, as the trainer calls it).
 *
 * What must be global for results not to depend on the number of ranks (the trainer and the
 * routers use this): the loss's token count, the load-balancing loss's expert fractions and
 * mean probabilities, the z-loss's token count, topk's load for its selection bias, softmoe's
 * tau calibration, and the gradients; a ProbMoE sample uses the token's index in the global
 * batch.
 *
 * Expert parallelism (expert_size G > 1) splits each layer's experts over groups of G
 * consecutive ranks: rank r is rank expert_rank = r % G of the expert group of ranks
 * [r - r % G, r - r % G + G) and runs the experts batch_comm_rows(E, expert_rank, G) of every
 * layer (batch_comm_experts); the ranks of the other groups with the same expert_rank hold
 * replicas of them. Every rank still trains its own rows of the global batch (data
 * parallelism over all N ranks for every other parameter).
 */
#ifndef PM_CORE_BATCH_COMM_H
#define PM_CORE_BATCH_COMM_H

#include <stdbool.h>
#include <stddef.h>

typedef struct batch_comm batch_comm;
struct batch_comm {
    int rank, size;
    /* the ranks on this rank's machine (sharing its memory; 0 or 1: alone), and whether rank 0
     * is one of them */
    int node_size;
    bool node_has_rank0;
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

    /* Expert parallelism; with expert_size 1 the functions below are never called (may be NULL). */
    int expert_size, expert_rank;
    /* Within the expert group (MPI_Alltoall): send[j·n .. j·n + n) goes to group rank j,
     * recv[j·n ..) comes from it. */
    void (*exchange_ints)(const batch_comm *comm, const int *send, int *recv, int n);
    /* Within the expert group (MPI_Alltoallv), rows of `width` floats: send holds send_rows[j]
     * rows for group rank j, one rank after the other; recv gets recv_rows[j] rows from each. */
    void (*exchange_rows)(const batch_comm *comm, const float *send, const int *send_rows, float *recv,
                          const int *recv_rows, int width);
    /* values := their sum over the expert group only */
    void (*sum_doubles_experts)(const batch_comm *comm, double *values, int count);
    /* Like start_sum_floats, over the replicas of this rank's experts (the ranks r' with
     * r' % G == r % G); finished by finish_sums. */
    void (*start_sum_floats_replicas)(const batch_comm *comm, float *values, size_t count);
    /* Rank 0 (of the world) gets the values of rank `owner` of its expert group; no other rank's
     * values change. Collective over the world's first expert group; others return at once. */
    void (*collect_floats)(const batch_comm *comm, float *values, size_t count, int owner);
    void *impl;
};

/* Rows [first, first + count) of a batch of `rows` rows that rank `rank` of `size` takes. */
static inline void batch_comm_rows(int rows, int rank, int size, int *first, int *count) {
    const long long a = (long long)rows * rank / size, b = (long long)rows * (rank + 1) / size;
    *first = (int)a;
    *count = (int)(b - a);
}

/* The rank whose batch_comm_rows hold `row`: the largest j with rows·j / size ≤ row. */
static inline int batch_comm_row_owner(int row, int rows, int size) {
    return (int)(((long long)(row + 1) * size - 1) / rows);
}

/* The experts [*first, *first + *count) of E that group rank expert_rank of comm runs (all of
 * them without expert parallelism). */
static inline void batch_comm_experts(const batch_comm *comm, int E, int expert_rank, int *first, int *count) {
    if (!comm || comm->expert_size <= 1) {
        *first = 0;
        *count = E;
        return;
    }
    batch_comm_rows(E, expert_rank, comm->expert_size, first, count);
}

#endif
