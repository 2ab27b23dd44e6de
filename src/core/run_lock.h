/*
 * The lock of a run directory: one writer at a time (probmoe train, probmoe compare).
 *
 * DIR/.lock is a small text file (pid, host, command, start time) on which the writer holds
 * an exclusive flock(2) for its whole lifetime. The kernel drops a flock when its process
 * dies, however it dies, so on the same host a lock nobody holds is stale by construction;
 * the pid and host are for the messages. A lock file whose host is another machine is never
 * taken over (a flock on a network file system need not reach this host): the message says
 * how to remove it. The lock file is removed when the writer releases the lock, which it does
 * at normal exit and on its error paths; a killed writer leaves it, and the next writer says
 * that it takes it over.
 *
 * On a file system without flock the lock falls back on the file's content: a lock naming a
 * live process of this host, or another host, is refused.
 */
#ifndef PM_CORE_RUN_LOCK_H
#define PM_CORE_RUN_LOCK_H

typedef struct run_lock run_lock;

/* The lock file's name inside the run directory. */
#define RUN_LOCK_FILE ".lock"

/*
 * Whether dir could be locked now, without writing anything (dir need not exist): PM_OK, or
 * PM_ERR_STATE with a message naming dir, the owner's pid and host and what to do when another
 * process holds the lock or a lock of another host is there. For refusing early, before any
 * work; run_lock_acquire decides.
 */
int run_lock_check(const char *dir);

/*
 * Takes dir's lock for command (say "probmoe train"; recorded for the messages of others),
 * creating dir and its parents if needed. Refused like run_lock_check, before anything but dir
 * is created. A stale lock of this host is taken over with a message on stderr. *out is NULL
 * on failure.
 */
int run_lock_acquire(const char *dir, const char *command, run_lock **out);

/* The pid in the stale lock file that run_lock_acquire took over, or 0. */
long run_lock_taken_from(const run_lock *lock);

/* Removes the lock file and drops the lock; NULL does nothing. In a child forked from the
 * owner it only closes the child's descriptor: the lock stays the parent's. */
void run_lock_release(run_lock *lock);

#endif
