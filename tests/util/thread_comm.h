/* Data- and expert-parallel ranks as threads of one process: a batch_comm whose collectives meet at a
 * barrier, for tests of data parallelism without MPI. Sums add the ranks' values in rank
 * order, so every rank gets the same bits. A started sum runs at the finish, after checking
 * that nothing wrote into its values in between (a bucket in flight must be left alone). */
#ifndef PM_TEST_THREAD_COMM_H
#define PM_TEST_THREAD_COMM_H

#include "core/batch_comm.h"

/* Runs body(rank, comm, user) on `size` threads at once (one OpenMP thread each) and waits for
 * them; returns the number of bodies that returned non-zero. */
int thread_comm_run(int size, int (*body)(int rank, const batch_comm *comm, void *user), void *user);
/* The same with expert groups of expert_size consecutive ranks (size a multiple of it). Every
 * rank calls the expert-parallel collectives together, as the trainer does. */
int thread_comm_run_experts(int size, int expert_size, int (*body)(int rank, const batch_comm *comm, void *user),
                            void *user);

#endif
