/*
 * The ranks of `mpirun -np N probmoe train ...` as the library's batch_comm (core/batch_comm.h):
 * MPI_Allreduce for sums, MPI_Allgatherv for softmoe's calibration, and for expert parallelism
 * MPI_Alltoall(v) within expert groups (a communicator split off the world per group) and
 * sums over expert replicas (one split off per expert slice). MPI is started only when
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
/* what the run's collectives cost this rank: seconds blocked in them, bytes handed to each kind */
enum { SUMS, EXCHANGES, OTHERS, KINDS };
static double waited_seconds, sent_bytes[KINDS];
/* expert parallelism: this rank's expert group, and the ranks holding the same experts */
static MPI_Comm expert_group = MPI_COMM_NULL, expert_replicas = MPI_COMM_NULL;

/* a blocking call: timed, and watched by the --comm-timeout watchdog */
#define TIMED(call)                                   \
    do {                                              \
        comm_watchdog_enter(#call);                   \
        const double timed_start_ = MPI_Wtime();      \
        call;                                         \
        waited_seconds += MPI_Wtime() - timed_start_; \
        comm_watchdog_leave();                        \
    } while (0)

static void sum_doubles(const batch_comm *comm, double *values, int count) {
    (void)comm;
    sent_bytes[SUMS] += sizeof(double) * (double)count;
    TIMED(MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
}

static void sum_floats(const batch_comm *comm, float *values, size_t count) {
    (void)comm;
    /* in pieces of 1 GiB: MPI counts are ints, and some transports mishandle messages of 2 GiB */
    for (size_t done = 0; done < count;) {
        const int n = count - done > (1u << 28) ? 1 << 28 : (int)(count - done);
        sent_bytes[SUMS] += sizeof(float) * (double)n;
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

static void start_sum_over(const batch_comm *comm, float *values, size_t count, MPI_Comm over) {
    for (size_t done = 0; done < count;) {
        if (in_flight_count == MAX_IN_FLIGHT) finish_sums(comm);
        const int n = count - done > (1u << 28) ? 1 << 28 : (int)(count - done);
        sent_bytes[SUMS] += sizeof(float) * (double)n;
        TIMED(MPI_Iallreduce(MPI_IN_PLACE, values + done, n, MPI_FLOAT, MPI_SUM, over, &in_flight[in_flight_count++]));
        done += (size_t)n;
    }
    /* Open MPI moves a nonblocking collective along inside MPI calls: give the earlier ones a
     * turn while the backward pass computes the next bucket */
    int all_done = 0;
    TIMED(MPI_Testall(in_flight_count, in_flight, &all_done, MPI_STATUSES_IGNORE));
    if (all_done) in_flight_count = 0;
}

static void start_sum_floats(const batch_comm *comm, float *values, size_t count) {
    start_sum_over(comm, values, count, MPI_COMM_WORLD);
}

static void start_sum_floats_replicas(const batch_comm *comm, float *values, size_t count) {
    start_sum_over(comm, values, count, expert_replicas);
}

/* PROBMOE_ALLREDUCE=blocking: each bucket summed at once with MPI_Allreduce (for comparison) */
static void sum_floats_now(const batch_comm *comm, float *values, size_t count) { sum_floats(comm, values, count); }
static void sum_replicas_now(const batch_comm *comm, float *values, size_t count) {
    start_sum_floats_replicas(comm, values, count);
    finish_sums(comm);
}
static void nothing_in_flight(const batch_comm *comm) { (void)comm; }

static int gather_floats(const batch_comm *comm, const float *values, int count, float **out, int *total) {
    int *counts = malloc(sizeof(int) * (size_t)comm->size), *starts = malloc(sizeof(int) * (size_t)comm->size);
    int ok = counts && starts;
    TIMED(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    if (!ok) {
        free(counts);
        free(starts);
        return -1;
    }
    sent_bytes[OTHERS] += sizeof(float) * (double)count;
    TIMED(MPI_Allgather(&count, 1, MPI_INT, counts, 1, MPI_INT, MPI_COMM_WORLD));
    long long n = 0;
    for (int r = 0; r < comm->size; r++) starts[r] = (int)n, n += counts[r];
    float *all = n <= 0x7fffffff ? malloc(sizeof(float) * (size_t)(n ? n : 1)) : NULL;
    ok = all != NULL;
    TIMED(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    if (ok) TIMED(MPI_Allgatherv(values, count, MPI_FLOAT, all, counts, starts, MPI_FLOAT, MPI_COMM_WORLD));
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

/* An MPI error (a peer gone, a network fault) names this rank and the error, then ends the run
 * (MPI_Abort makes mpirun stop every process) instead of leaving it to the default handler's
 * terse abort. */
static int my_rank_for_errors;
static void on_mpi_error(MPI_Comm *comm, int *code, ...) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(*code, text, &length);
    fprintf(stderr, "probmoe train (rank %d): MPI failed: %s; another process of this run may have died or become "
            "unreachable. Ending the run; the last checkpoint is intact (resume with --resume)\n", my_rank_for_errors,
            text);
    fflush(stderr);
    (void)comm;
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static MPI_Errhandler error_handler = MPI_ERRHANDLER_NULL;

static void handle_errors(MPI_Comm comm) {
    if (error_handler == MPI_ERRHANDLER_NULL) MPI_Comm_create_errhandler(on_mpi_error, &error_handler);
    MPI_Comm_set_errhandler(comm, error_handler);
}

/* ------------------------------------------------------------ expert parallelism */

static void exchange_ints(const batch_comm *comm, const int *send, int *recv, int n) {
    sent_bytes[EXCHANGES] += sizeof(int) * (double)n * (comm->expert_size - 1);
    TIMED(MPI_Alltoall(send, n, MPI_INT, recv, n, MPI_INT, expert_group));
}

/* Counts and displacements in rows (a row a datatype), so that they stay ints. */
static void exchange_rows(const batch_comm *comm, const float *send, const int *send_rows, float *recv,
                          const int *recv_rows, int width) {
    const int G = comm->expert_size;
    int *starts = malloc(sizeof(int) * 2 * (size_t)G);
    if (!starts) {
        fprintf(stderr, "probmoe train (rank %d): out of memory for %d counts; stopping\n", comm->rank, G);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    long long sent = 0; /* rows that leave this process (not those to itself) */
    for (int j = 0, out = 0, in = 0; j < G; out += send_rows[j], in += recv_rows[j], j++) {
        starts[j] = out;
        starts[G + j] = in;
        if (j != comm->expert_rank) sent += send_rows[j];
    }
    MPI_Datatype row;
    MPI_Type_contiguous(width, MPI_FLOAT, &row);
    MPI_Type_commit(&row);
    sent_bytes[EXCHANGES] += sizeof(float) * (double)width * (double)sent;
    TIMED(MPI_Alltoallv(send, send_rows, starts, row, recv, recv_rows, starts + G, row, expert_group));
    MPI_Type_free(&row);
    free(starts);
}

static void sum_doubles_experts(const batch_comm *comm, double *values, int count) {
    (void)comm;
    sent_bytes[SUMS] += sizeof(double) * (double)count;
    TIMED(MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_DOUBLE, MPI_SUM, expert_group));
}

static void collect_floats(const batch_comm *comm, float *values, size_t count, int owner) {
    if (comm->rank >= comm->expert_size || owner == 0) return; /* the first group's rank 0 writes */
    for (size_t done = 0; done < count;) {
        const int n = count - done > (1u << 28) ? 1 << 28 : (int)(count - done);
        if (comm->expert_rank == owner) {
            sent_bytes[OTHERS] += sizeof(float) * (double)n;
            TIMED(MPI_Send(values + done, n, MPI_FLOAT, 0, 0, expert_group));
        } else if (comm->expert_rank == 0) {
            TIMED(MPI_Recv(values + done, n, MPI_FLOAT, owner, 0, expert_group, MPI_STATUS_IGNORE));
        }
        done += (size_t)n;
    }
}

/* Groups of G consecutive ranks; false after printing why not. */
static bool split_experts(batch_comm *comm, int G, const char *command) {
    if (G <= 1) return true;
    if (comm->size % G != 0) {
        const int fewer = comm->size > G ? comm->size / G * G : G, more = fewer + G; /* the multiples nearby */
        if (comm->rank == 0)
            fprintf(stderr, "%s: --expert-parallel %d needs a number of processes that is a multiple of %d, not %d; "
                    "start %d or %d processes, or choose another group size\n", command, G, G, comm->size, fewer,
                    more);
        return false;
    }
    comm->expert_size = G;
    comm->expert_rank = comm->rank % G;
    MPI_Comm_split(MPI_COMM_WORLD, comm->rank / G, comm->rank, &expert_group);
    MPI_Comm_split(MPI_COMM_WORLD, comm->rank % G, comm->rank, &expert_replicas);
    handle_errors(expert_group);
    handle_errors(expert_replicas);
    comm->exchange_ints = exchange_ints;
    comm->exchange_rows = exchange_rows;
    comm->sum_doubles_experts = sum_doubles_experts;
    comm->collect_floats = collect_floats;
    return true;
}

int cli_mpi_start(int *argc, char ***argv, const char *command, int expert_parallel, const batch_comm **out) {
    static batch_comm comm;
    *out = NULL;
    if (launcher_size() == 0) {
        if (expert_parallel <= 1) return 0;
        fprintf(stderr, "%s: --expert-parallel %d splits the experts over processes; start it with mpirun -np N "
                "(N a multiple of %d)\n", command, expert_parallel, expert_parallel);
        return 2;
    }
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
    my_rank_for_errors = comm.rank;
    handle_errors(MPI_COMM_WORLD);
    MPI_Comm_size(MPI_COMM_WORLD, &comm.size);
    comm.sum_doubles = sum_doubles;
    comm.sum_floats = sum_floats;
    const char *mode = getenv("PROBMOE_ALLREDUCE");
    const bool blocking = mode && strcmp(mode, "blocking") == 0;
    comm.start_sum_floats = blocking ? sum_floats_now : start_sum_floats;
    comm.start_sum_floats_replicas = blocking ? sum_replicas_now : start_sum_floats_replicas;
    comm.finish_sums = blocking ? nothing_in_flight : finish_sums;
    comm.gather_floats = gather_floats;
    comm.expert_size = 1;
    /* the ranks sharing this machine's memory, for the memory check */
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, comm.rank, MPI_INFO_NULL, &node);
    int lowest = comm.rank;
    MPI_Comm_size(node, &comm.node_size);
    MPI_Allreduce(MPI_IN_PLACE, &lowest, 1, MPI_INT, MPI_MIN, node);
    comm.node_has_rank0 = lowest == 0;
    MPI_Comm_free(&node);
    if (!split_experts(&comm, expert_parallel, command)) return 2;
    if (comm.size > 1) *out = &comm;
    return 0;
}

void cli_mpi_set_timeout(double seconds) {
    int rank = 0, size = 1;
    if (!started) return;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1) comm_watchdog_start(seconds, rank, size);
}

/* This process's peak resident memory in bytes (VmHWM), or 0 where /proc does not say. */
static double peak_resident_bytes(void) {
    FILE *status = fopen("/proc/self/status", "r");
    char line[256];
    double kib = 0.0;
    while (status && fgets(line, sizeof line, status))
        if (strncmp(line, "VmHWM:", 6) == 0) kib = strtod(line + 6, NULL);
    if (status) fclose(status);
    return kib * 1024.0;
}

void cli_mpi_report(const batch_comm *comm, long steps, double seconds, const cli_expert_traffic *traffic) {
    if (!comm) return;
    /* then the peak memory of the ranks other than 0, and the expert rows of traffic */
    double mine[4 + KINDS] = {waited_seconds, sent_bytes[SUMS], sent_bytes[EXCHANGES], sent_bytes[OTHERS],
                              comm->rank ? peak_resident_bytes() : 0.0, (double)traffic->pair_rows,
                              (double)traffic->rank_rows};
    double most[4 + KINDS];
    MPI_Reduce(mine, most, 4 + KINDS, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (comm->rank != 0 || steps <= 0 || seconds <= 0.0) return;
    printf("communication over %d processes", comm->size);
    if (comm->expert_size > 1) printf(" (expert groups of %d)", comm->expert_size);
    printf(": per step and process %.2f MB to all-reduce", most[1] / steps / 1e6);
    if (comm->expert_size > 1) printf(", %.2f MB sent by all-to-all to the other ranks", most[2] / steps / 1e6);
    printf(", %.2f MB to other collectives (rank 0 collecting experts, softmoe's calibration); the process waiting longest spent %.1f%% of the run (%.3f s per "
           "step) blocked in them\n", most[3] / steps / 1e6, 100.0 * most[0] / seconds, most[0] / steps);
    printf("peak memory: rank 0 %.0f MB (it evaluates and saves the whole model), the largest of the others %.0f MB\n",
           peak_resident_bytes() / 1e6, most[4] / 1e6);
    if (comm->expert_size <= 1) return;
    /* what the limit of probmoe-group can save: rows are per pair here, one per rank there */
    const double row = sizeof(float) * (double)traffic->hidden / steps / 1e6;
    printf("expert rows of a process's tokens to other ranks and back (forward and backward), per step, the largest "
           "process's: %.2f MB as sent, one row per (token, expert) pair; %.2f MB if each token went once to each "
           "rank holding any of its experts (%.2f×)\n", most[5] * row, most[6] * row,
           most[5] > 0.0 ? most[6] / most[5] : 1.0);
}

void cli_mpi_stop(void) {
    comm_watchdog_stop();
    if (error_handler != MPI_ERRHANDLER_NULL) MPI_Errhandler_free(&error_handler);
    if (expert_group != MPI_COMM_NULL) MPI_Comm_free(&expert_group);
    if (expert_replicas != MPI_COMM_NULL) MPI_Comm_free(&expert_replicas);
    if (started) MPI_Finalize();
    started = false;
}

#else

int cli_mpi_start(int *argc, char ***argv, const char *command, int expert_parallel, const batch_comm **out) {
    (void)argc, (void)argv;
    *out = NULL;
    if (launcher_size() <= 1 && expert_parallel <= 1) return 0;
    if (launcher_size() <= 1) {
        fprintf(stderr, "%s: --expert-parallel %d splits the experts over processes; start it with mpirun, with a "
                "probmoe built with MPI (apt-get install openmpi-bin libopenmpi-dev, or scripts/setup.sh)\n", command,
                expert_parallel);
        return 2;
    }
    fprintf(stderr, "%s: started as one of %d processes, but this probmoe was built without MPI; install Open "
            "MPI (apt-get install openmpi-bin libopenmpi-dev, or scripts/setup.sh) and rebuild\n", command,
            launcher_size());
    return 2;
}

void cli_mpi_set_timeout(double seconds) { (void)seconds; }
void cli_mpi_report(const batch_comm *comm, long steps, double seconds, const cli_expert_traffic *traffic) {
    (void)comm, (void)steps, (void)seconds, (void)traffic;
}
void cli_mpi_stop(void) {}

#endif
