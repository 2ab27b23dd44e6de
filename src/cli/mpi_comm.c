/*
 * The ranks of `mpirun -np N probmoe train ...` as the library's batch_comm (core/batch_comm.h):
 * MPI_Allreduce for sums, MPI_Allgatherv for softmoe's calibration. MPI is started only when
 * a launcher started this process (its environment says so); a build without MPI refuses to
 * run as one of several processes rather than train N separate copies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* The world size the launcher announces (Open MPI, PMIx, MPICH's PMI), or 0 without one. */
static int launcher_size(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *value = getenv(names[i]);
        if (value && atoi(value) > 0) return atoi(value);
    }
    return getenv("PMIX_RANK") ? 1 : 0;
}

#ifdef PM_HAVE_MPI
#include <mpi.h>

static bool started;
/* what the run's collectives cost this rank: seconds blocked in them, bytes handed to them */
static double waited_seconds, sent_bytes;

#define TIMED(call)                                   \
    do {                                              \
        const double timed_start_ = MPI_Wtime();      \
        call;                                         \
        waited_seconds += MPI_Wtime() - timed_start_; \
    } while (0)

static void sum_doubles(const batch_comm *comm, double *values, int count) {
    (void)comm;
    sent_bytes += sizeof(double) * (double)count;
    TIMED(MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
}

static void sum_floats(const batch_comm *comm, float *values, size_t count) {
    (void)comm;
    /* in pieces: MPI counts are ints */
    for (size_t done = 0; done < count;) {
        const int n = count - done > (1u << 30) ? 1 << 30 : (int)(count - done);
        sent_bytes += sizeof(float) * (double)n;
        TIMED(MPI_Allreduce(MPI_IN_PLACE, values + done, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
        done += (size_t)n;
    }
}

/* Buckets of gradients in flight (MPI_Iallreduce), finished by finish_sums. */
enum { MAX_IN_FLIGHT = 4096 };
static MPI_Request in_flight[MAX_IN_FLIGHT];
static int in_flight_count;

static void finish_sums(const batch_comm *comm) {
    (void)comm;
    TIMED(MPI_Waitall(in_flight_count, in_flight, MPI_STATUSES_IGNORE));
    in_flight_count = 0;
}

static void start_sum_floats(const batch_comm *comm, float *values, size_t count) {
    for (size_t done = 0; done < count;) {
        if (in_flight_count == MAX_IN_FLIGHT) finish_sums(comm);
        const int n = count - done > (1u << 30) ? 1 << 30 : (int)(count - done);
        sent_bytes += sizeof(float) * (double)n;
        TIMED(MPI_Iallreduce(MPI_IN_PLACE, values + done, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                             &in_flight[in_flight_count++]));
        done += (size_t)n;
    }
    /* Open MPI moves a nonblocking collective along inside MPI calls: give the earlier ones a
     * turn while the backward pass computes the next bucket */
    int all_done = 0;
    TIMED(MPI_Testall(in_flight_count, in_flight, &all_done, MPI_STATUSES_IGNORE));
    if (all_done) in_flight_count = 0;
}

/* PROBMOE_ALLREDUCE=blocking: each bucket summed at once with MPI_Allreduce (for comparison) */
static void sum_floats_now(const batch_comm *comm, float *values, size_t count) { sum_floats(comm, values, count); }
static void nothing_in_flight(const batch_comm *comm) { (void)comm; }

static int gather_floats(const batch_comm *comm, const float *values, int count, float **out, int *total) {
    int *counts = malloc(sizeof(int) * (size_t)comm->size), *starts = malloc(sizeof(int) * (size_t)comm->size);
    int ok = counts && starts;
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!ok) {
        free(counts);
        free(starts);
        return -1;
    }
    sent_bytes += sizeof(float) * (double)count;
    MPI_Allgather(&count, 1, MPI_INT, counts, 1, MPI_INT, MPI_COMM_WORLD);
    long long n = 0;
    for (int r = 0; r < comm->size; r++) starts[r] = (int)n, n += counts[r];
    float *all = n <= 0x7fffffff ? malloc(sizeof(float) * (size_t)(n ? n : 1)) : NULL;
    ok = all != NULL;
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (ok) MPI_Allgatherv(values, count, MPI_FLOAT, all, counts, starts, MPI_FLOAT, MPI_COMM_WORLD);
    free(counts);
    free(starts);
    if (!ok) {
        free(all);
        return -1;
    }
    *out = all;
    *total = (int)n;
    return 0;
}

int cli_mpi_start(int *argc, char ***argv, const char *command, const batch_comm **out) {
    static batch_comm comm;
    *out = NULL;
    if (launcher_size() == 0) return 0;
    int provided = 0;
    /* only the main thread calls MPI (between OpenMP regions) */
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "%s: MPI could not start; run it with mpirun, or without it for one process\n", command);
        return 1;
    }
    started = true;
    if (provided < MPI_THREAD_FUNNELED)
        fprintf(stderr, "%s: this MPI gives thread support level %d, below MPI_THREAD_FUNNELED (OpenMP threads run "
                "beside the MPI calls of the main thread); results may be wrong\n", command, provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &comm.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &comm.size);
    comm.sum_doubles = sum_doubles;
    comm.sum_floats = sum_floats;
    const char *mode = getenv("PROBMOE_ALLREDUCE");
    const bool blocking = mode && strcmp(mode, "blocking") == 0;
    comm.start_sum_floats = blocking ? sum_floats_now : start_sum_floats;
    comm.finish_sums = blocking ? nothing_in_flight : finish_sums;
    comm.gather_floats = gather_floats;
    if (comm.size > 1) *out = &comm;
    return 0;
}

void cli_mpi_report(const batch_comm *comm, long steps, double seconds) {
    if (!comm) return;
    double mine[2] = {waited_seconds, sent_bytes}, most[2];
    MPI_Reduce(mine, most, 2, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (comm->rank == 0 && steps > 0 && seconds > 0.0)
        printf("communication over %d processes: %.2f MB per step handed to collectives per process; the "
               "process waiting longest spent %.1f%% of the run (%.3f s per step) blocked in them\n",
               comm->size, most[1] / steps / 1e6, 100.0 * most[0] / seconds, most[0] / steps);
}

void cli_mpi_stop(void) {
    if (started) MPI_Finalize();
    started = false;
}

#else

int cli_mpi_start(int *argc, char ***argv, const char *command, const batch_comm **out) {
    (void)argc, (void)argv;
    *out = NULL;
    if (launcher_size() <= 1) return 0;
    fprintf(stderr, "%s: started as one of %d processes, but this probmoe was built without MPI; install Open "
            "MPI (apt-get install openmpi-bin libopenmpi-dev, or scripts/setup.sh) and rebuild\n", command,
            launcher_size());
    return 2;
}

void cli_mpi_report(const batch_comm *comm, long steps, double seconds) { (void)comm, (void)steps, (void)seconds; }
void cli_mpi_stop(void) {}

#endif
