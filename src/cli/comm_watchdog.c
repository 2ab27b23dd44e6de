/*
 * The step timeout of a run over several processes: a thread that watches the collective this
 * process is blocked in. A process that hangs (deadlocked, stopped, its machine unreachable)
 * leaves the others waiting in their next collective for ever; after `seconds` there the
 * watchdog says so and exits this process, which makes mpirun end the whole run. It calls no
 * MPI itself (the main thread owns MPI, MPI_THREAD_FUNNELED).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

static pthread_t watcher;
static atomic_bool running;
static double limit;
static int my_rank, world_size;
static atomic_llong entered_ns; /* when the current blocking call began, or 0 */
static const char *_Atomic entered_name;

static long long monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *watch(void *unused) {
    (void)unused;
    const struct timespec tick = {0, 200 * 1000 * 1000};
    while (atomic_load(&running)) {
        nanosleep(&tick, NULL);
        const long long since = atomic_load(&entered_ns);
        if (since == 0 || (double)(monotonic_ns() - since) * 1e-9 < limit) continue;
        const char *name = atomic_load(&entered_name), *paren = strchr(name, '(');
        const int length = paren ? (int)(paren - name) : (int)strlen(name);
        fprintf(stderr, "\nprobmoe train (rank %d of %d): waited %.0f s in %.*s for the other processes; one of them "
                "has stopped responding (hung, stopped, or its machine unreachable). Ending the run; the last "
                "checkpoint is intact (resume with --resume). A run whose checkpoints or evaluations take longer "
                "than this needs a larger --comm-timeout.\n", my_rank, world_size, limit, length, name);
        fflush(stderr);
        _exit(3); /* mpirun ends the other processes */
    }
    return NULL;
}

void comm_watchdog_start(double seconds, int rank, int size) {
    if (seconds <= 0.0 || atomic_load(&running)) return;
    limit = seconds;
    my_rank = rank;
    world_size = size;
    atomic_store(&running, true);
    /* signals (SIGINT, SIGUSR1: save and stop) go to the main thread, not to the watcher */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    const int failed = pthread_create(&watcher, NULL, watch, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (failed) {
        atomic_store(&running, false);
        fprintf(stderr, "probmoe train (rank %d): cannot start the --comm-timeout watchdog; a hung process will not "
                "end the run\n", rank);
    }
}

void comm_watchdog_enter(const char *name) {
    atomic_store(&entered_name, name);
    atomic_store(&entered_ns, monotonic_ns());
}

void comm_watchdog_leave(void) { atomic_store(&entered_ns, 0); }

void comm_watchdog_stop(void) {
    if (!atomic_load(&running)) return;
    atomic_store(&running, false);
    pthread_join(watcher, NULL);
}
