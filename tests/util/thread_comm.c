#define _POSIX_C_SOURCE 200809L /* pthread barriers */
#include "thread_comm.h"

#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A started sum: where, how much, and a copy to check that nothing wrote there before the
 * finish (the promise a bucket in flight depends on). */
typedef struct {
    float *values, *copy;
    size_t count;
} started_sum;

typedef struct {
    int size;
    pthread_barrier_t barrier;
    const void *slots[64]; /* each rank's input of the current collective */
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

static void sum_floats(const batch_comm *comm, float *values, size_t count) {
    shared_state *s = shared_of(comm);
    s->slots[comm->rank] = values;
    float *total = calloc(count, sizeof(float));
    pthread_barrier_wait(&s->barrier);
    for (int r = 0; r < s->size; r++)
        for (size_t i = 0; i < count; i++) total[i] += ((const float *)s->slots[r])[i];
    pthread_barrier_wait(&s->barrier);
    memcpy(values, total, sizeof(float) * count);
    free(total);
}

/* Started sums are summed at the finish, in the order they were started, after checking that
 * their values were left alone in between; a write into a bucket in flight aborts the test. */
static void start_sum_floats(const batch_comm *comm, float *values, size_t count) {
    shared_state *s = shared_of(comm);
    const int r = comm->rank, n = s->started_count[r];
    s->started[r] = realloc(s->started[r], sizeof(started_sum) * (size_t)(n + 1));
    float *copy = malloc(sizeof(float) * (count ? count : 1));
    memcpy(copy, values, sizeof(float) * count);
    s->started[r][n] = (started_sum){values, copy, count};
    s->started_count[r] = n + 1;
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
        sum_floats(comm, sum->values, sum->count);
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

static void *run_rank(void *arg) {
    rank_thread *t = arg;
    omp_set_num_threads(1);
    t->result = t->body(t->comm.rank, &t->comm, t->user);
    return NULL;
}

int thread_comm_run(int size, int (*body)(int rank, const batch_comm *comm, void *user), void *user) {
    if (size < 1 || size > 64) return size;
    shared_state shared = {.size = size};
    pthread_barrier_init(&shared.barrier, NULL, (unsigned)size);
    rank_thread threads[64];
    pthread_t ids[64];
    for (int r = 0; r < size; r++) {
        threads[r] = (rank_thread){&shared, {r, size, sum_doubles, sum_floats, start_sum_floats, finish_sums,
                                             gather_floats, &shared}, body, user, 0};
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
