#define _POSIX_C_SOURCE 200809L /* pthread barriers */
#include "thread_comm.h"

#include <omp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A started sum: where, how much, and a copy to check that nothing wrote there before the
 * finish (the promise a bucket in flight depends on). */
typedef struct {
    float *values, *copy;
    size_t count;
    bool replicas; /* over the replicas of the rank's experts only */
} started_sum;

typedef struct {
    int size, expert_size;
    pthread_barrier_t barrier;
    const void *slots[64]; /* each rank's input of the current collective */
    const int *row_counts[64];
    int counts[64];
    started_sum *started[64]; /* each rank's sums started and not finished */
    int started_count[64];
} shared_state;

typedef struct {
    shared_state *shared;
    batch_comm comm;
    int (*body)(int rank, const batch_comm *comm, void *user);
    void *user;
    int result;
} rank_thread;

static shared_state *shared_of(const batch_comm *comm) { return comm->impl; }

static void sum_doubles(const batch_comm *comm, double *values, int count) {
    shared_state *s = shared_of(comm);
    s->slots[comm->rank] = values;
    double *total = calloc((size_t)count, sizeof(double));
    pthread_barrier_wait(&s->barrier);
    for (int r = 0; r < s->size; r++)
        for (int i = 0; i < count; i++) total[i] += ((const double *)s->slots[r])[i];
    pthread_barrier_wait(&s->barrier); /* every rank has read every input */
    memcpy(values, total, sizeof(double) * (size_t)count);
    free(total);
}

/* Whether rank r takes part in a sum of `comm`'s rank over its replicas (replicas) or all. */
static bool in_sum(const batch_comm *comm, int r, bool replicas) {
    return !replicas || r % comm->expert_size == comm->rank % comm->expert_size;
}

static void sum_floats_over(const batch_comm *comm, float *values, size_t count, bool replicas) {
    shared_state *s = shared_of(comm);
    s->slots[comm->rank] = values;
    float *total = calloc(count ? count : 1, sizeof(float));
    pthread_barrier_wait(&s->barrier);
    for (int r = 0; r < s->size; r++)
        for (size_t i = 0; in_sum(comm, r, replicas) && i < count; i++) total[i] += ((const float *)s->slots[r])[i];
    pthread_barrier_wait(&s->barrier);
    memcpy(values, total, sizeof(float) * count);
    free(total);
}

static void sum_floats(const batch_comm *comm, float *values, size_t count) { sum_floats_over(comm, values, count, false); }

/* Started sums are summed at the finish, in the order they were started, after checking that
 * their values were left alone in between; a write into a bucket in flight aborts the test. */
static void start_sum(const batch_comm *comm, float *values, size_t count, bool replicas) {
    shared_state *s = shared_of(comm);
    const int r = comm->rank, n = s->started_count[r];
    s->started[r] = realloc(s->started[r], sizeof(started_sum) * (size_t)(n + 1));
    float *copy = malloc(sizeof(float) * (count ? count : 1));
    memcpy(copy, values, sizeof(float) * count);
    s->started[r][n] = (started_sum){values, copy, count, replicas};
    s->started_count[r] = n + 1;
}

static void start_sum_floats(const batch_comm *comm, float *values, size_t count) {
    start_sum(comm, values, count, false);
}

static void start_sum_floats_replicas(const batch_comm *comm, float *values, size_t count) {
    start_sum(comm, values, count, true);
}

static void finish_sums(const batch_comm *comm) {
    shared_state *s = shared_of(comm);
    const int r = comm->rank;
    for (int i = 0; i < s->started_count[r]; i++) {
        started_sum *sum = &s->started[r][i];
        if (memcmp(sum->values, sum->copy, sizeof(float) * sum->count) != 0) {
            fprintf(stderr, "thread_comm: rank %d wrote into a bucket of %zu floats after starting its sum\n", r,
                    sum->count);
            abort();
        }
        sum_floats_over(comm, sum->values, sum->count, sum->replicas);
        free(sum->copy);
    }
    s->started_count[r] = 0;
}

static int gather_floats(const batch_comm *comm, const float *values, int count, float **out, int *total) {
    shared_state *s = shared_of(comm);
    s->slots[comm->rank] = values;
    s->counts[comm->rank] = count;
    pthread_barrier_wait(&s->barrier);
    int n = 0;
    for (int r = 0; r < s->size; r++) n += s->counts[r];
    float *all = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int r = 0, at = 0; r < s->size; at += s->counts[r], r++)
        memcpy(all + at, s->slots[r], sizeof(float) * (size_t)s->counts[r]);
    pthread_barrier_wait(&s->barrier);
    *out = all;
    *total = n;
    return 0;
}

/* ------------------------------------------------------------ expert parallelism: every rank
 * calls these together (they meet at the world's barrier); each group exchanges within itself */

static int group_base(const batch_comm *comm) { return comm->rank - comm->expert_rank; }

static void exchange_ints(const batch_comm *comm, const int *send, int *recv, int n) {
    shared_state *s = shared_of(comm);
    s->slots[comm->rank] = send;
    pthread_barrier_wait(&s->barrier);
    for (int j = 0; j < comm->expert_size; j++)
        memcpy(recv + (size_t)j * n, (const int *)s->slots[group_base(comm) + j] + (size_t)comm->expert_rank * n,
               sizeof(int) * (size_t)n);
    pthread_barrier_wait(&s->barrier);
}

/* Also checks that each source sends this rank the rows it expects. */
static void exchange_rows(const batch_comm *comm, const float *send, const int *send_rows, float *recv,
                          const int *recv_rows, int width) {
    shared_state *s = shared_of(comm);
    s->slots[comm->rank] = send;
    s->row_counts[comm->rank] = send_rows;
    pthread_barrier_wait(&s->barrier);
    size_t at = 0;
    for (int j = 0; j < comm->expert_size; j++) {
        const int source = group_base(comm) + j;
        const int *counts = s->row_counts[source];
        if (counts[comm->expert_rank] != recv_rows[j]) {
            fprintf(stderr, "thread_comm: rank %d expects %d rows from rank %d, which sends %d\n", comm->rank,
                    recv_rows[j], source, counts[comm->expert_rank]);
            abort();
        }
        size_t skip = 0;
        for (int i = 0; i < comm->expert_rank; i++) skip += (size_t)counts[i];
        memcpy(recv + at * width, (const float *)s->slots[source] + skip * width,
               sizeof(float) * (size_t)recv_rows[j] * width);
        at += (size_t)recv_rows[j];
    }
    pthread_barrier_wait(&s->barrier);
}

static void sum_doubles_experts(const batch_comm *comm, double *values, int count) {
    shared_state *s = shared_of(comm);
    s->slots[comm->rank] = values;
    double *total = calloc((size_t)count, sizeof(double));
    pthread_barrier_wait(&s->barrier);
    for (int j = 0; j < comm->expert_size; j++)
        for (int i = 0; i < count; i++) total[i] += ((const double *)s->slots[group_base(comm) + j])[i];
    pthread_barrier_wait(&s->barrier);
    memcpy(values, total, sizeof(double) * (size_t)count);
    free(total);
}

static void collect_floats(const batch_comm *comm, float *values, size_t count, int owner) {
    shared_state *s = shared_of(comm);
    s->slots[comm->rank] = values;
    pthread_barrier_wait(&s->barrier);
    if (comm->rank == 0 && owner != 0) memcpy(values, s->slots[owner], sizeof(float) * count);
    pthread_barrier_wait(&s->barrier);
}

static void *run_rank(void *arg) {
    rank_thread *t = arg;
    omp_set_num_threads(1);
    t->result = t->body(t->comm.rank, &t->comm, t->user);
    return NULL;
}

int thread_comm_run(int size, int (*body)(int rank, const batch_comm *comm, void *user), void *user) {
    return thread_comm_run_experts(size, 1, body, user);
}

int thread_comm_run_experts(int size, int expert_size, int (*body)(int rank, const batch_comm *comm, void *user),
                            void *user) {
    if (size < 1 || size > 64 || expert_size < 1 || size % expert_size) return size;
    shared_state shared = {.size = size, .expert_size = expert_size};
    pthread_barrier_init(&shared.barrier, NULL, (unsigned)size);
    rank_thread threads[64];
    pthread_t ids[64];
    for (int r = 0; r < size; r++) {
        const batch_comm comm = {.rank = r, .size = size, .node_size = size, .node_has_rank0 = true,
                                 .sum_doubles = sum_doubles, .sum_floats = sum_floats,
                                 .start_sum_floats = start_sum_floats, .finish_sums = finish_sums,
                                 .gather_floats = gather_floats, .expert_size = expert_size,
                                 .expert_rank = r % expert_size, .exchange_ints = exchange_ints,
                                 .exchange_rows = exchange_rows, .sum_doubles_experts = sum_doubles_experts,
                                 .start_sum_floats_replicas = start_sum_floats_replicas,
                                 .collect_floats = collect_floats, .impl = &shared};
        threads[r] = (rank_thread){&shared, comm, body, user, 0};
        pthread_create(&ids[r], NULL, run_rank, &threads[r]);
    }
    int failed = 0;
    for (int r = 0; r < size; r++) {
        pthread_join(ids[r], NULL);
        failed += threads[r].result != 0;
    }
    pthread_barrier_destroy(&shared.barrier);
    for (int r = 0; r < size; r++) free(shared.started[r]);
    return failed;
}
