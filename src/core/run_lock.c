/* The lock of a run directory (run_lock.h): an flock held on DIR/.lock for the writer's
 * lifetime, the file naming the writer for the messages of others. */
#define _DEFAULT_SOURCE /* flock, gethostname, pread, nanosleep, O_NOFOLLOW, O_CLOEXEC */
#include "core/run_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"

enum { LOCK_PATH_MAX = 4200, FIELD_MAX = 256 };

struct run_lock {
    int fd;
    long owner;      /* the process that took it: only it removes the file */
    long taken_from; /* the stale owner's pid, or 0 */
    char path[LOCK_PATH_MAX];
};

/* What a lock file says about its writer; empty fields when it says nothing. */
typedef struct {
    long pid;
    char host[FIELD_MAX], command[FIELD_MAX], since[FIELD_MAX];
} lock_owner;

static void this_host(char *out, size_t size) {
    if (gethostname(out, size) != 0 || !out[0]) snprintf(out, size, "unknown");
    out[size - 1] = '\0';
}

/* Copies a value, with '?' for anything but printable ASCII: the file may hold anything, and
 * its content ends up in messages. */
static void copy_field(char *out, size_t size, const char *from, size_t length) {
    const size_t n = length < size - 1 ? length : size - 1;
    for (size_t i = 0; i < n; i++) out[i] = from[i] >= 0x20 && from[i] < 0x7f ? from[i] : '?';
    out[n] = '\0';
}

/* Reads "pid N", "host H", "command C" and "since T" lines; *bytes gets the file's size read. */
static void read_owner(int fd, lock_owner *owner, long *bytes) {
    memset(owner, 0, sizeof *owner);
    char text[2048];
    const ssize_t got = pread(fd, text, sizeof text - 1, 0);
    *bytes = got > 0 ? (long)got : 0;
    if (got <= 0) return;
    text[got] = '\0';
    for (char *line = text; line && *line;) {
        char *end = strchr(line, '\n');
        const size_t length = end ? (size_t)(end - line) : strlen(line);
        if (strncmp(line, "pid ", 4) == 0) {
            char *stop;
            errno = 0;
            const long pid = strtol(line + 4, &stop, 10);
            /* a pid_t is an int: anything else names no process */
            if (stop != line + 4 && errno == 0 && pid > 0 && pid <= INT_MAX) owner->pid = pid;
        } else if (strncmp(line, "host ", 5) == 0) {
            copy_field(owner->host, sizeof owner->host, line + 5, length - 5);
        } else if (strncmp(line, "command ", 8) == 0) {
            copy_field(owner->command, sizeof owner->command, line + 8, length - 8);
        } else if (strncmp(line, "since ", 6) == 0) {
            copy_field(owner->since, sizeof owner->since, line + 6, length - 6);
        }
        line = end ? end + 1 : NULL;
    }
}

static bool says_something(const lock_owner *owner) { return owner->pid > 0 || owner->host[0]; }

/* kill(pid, 0) fails with ESRCH only when no such process exists (EPERM: it exists, another
 * user's). pid 0 would address our own process group. */
static bool running(long pid) { return pid > 0 && !(kill((pid_t)pid, 0) != 0 && errno == ESRCH); }

/* "probmoe train, pid 12 on host h (since T)" into out. */
static const char *describe(const lock_owner *owner, char *out, size_t size) {
    snprintf(out, size, "%s, pid %ld on host %s%s%s%s", owner->command[0] ? owner->command : "a probmoe run",
             owner->pid, owner->host[0] ? owner->host : "(not recorded)", owner->since[0] ? " (since " : "",
             owner->since, owner->since[0] ? ")" : "");
    return out;
}

/* The refusal when another process holds the flock. */
static int refuse_held(const char *dir, const char *path, const lock_owner *owner, const char *host) {
    char who[4 * FIELD_MAX];
    if (!says_something(owner))
        return pm_fail(PM_ERR_STATE, "'%s' is in use: another process is taking its lock (%s) right now; nothing "
                       "was written. Wait for it to finish, or choose another --out", dir, path);
    if (strcmp(owner->host, host) != 0)
        return pm_fail(PM_ERR_STATE, "'%s' is in use by %s; nothing was written. Wait for that run to finish, or "
                       "choose another --out", dir, describe(owner, who, sizeof who));
    if (!running(owner->pid))
        return pm_fail(PM_ERR_STATE, "'%s' is in use: its lock %s names %s, which has exited, but a process it "
                       "started still holds the lock (`fuser %s` shows it); nothing was written. Wait for it to "
                       "finish or stop it, or choose another --out", dir, path, describe(owner, who, sizeof who), path);
    return pm_fail(PM_ERR_STATE, "'%s' is in use by %s; nothing was written. Wait for it to finish or stop it "
                   "(kill %ld), or choose another --out", dir, describe(owner, who, sizeof who), owner->pid);
}

/* The refusal for a lock file written on another host, held or not. */
static int refuse_foreign(const char *dir, const char *path, const lock_owner *owner) {
    char who[4 * FIELD_MAX];
    return pm_fail(PM_ERR_STATE, "'%s' is locked by %s, another host; nothing was written. Whether that run "
                   "still goes cannot be told from here, so the lock is not taken over: if it has ended, remove "
                   "%s and start again; otherwise choose another --out", dir, describe(owner, who, sizeof who),
                   path);
}

/* Whether fd is still the file at path: a writer releasing its lock removes the file, so a
 * lock taken on a file that was removed meanwhile guards nothing. */
static bool same_file(int fd, const char *path) {
    struct stat open_file, named;
    return fstat(fd, &open_file) == 0 && lstat(path, &named) == 0 && open_file.st_dev == named.st_dev &&
           open_file.st_ino == named.st_ino;
}

static bool no_flock_here(int error) { return error == ENOLCK || error == EINVAL || error == EOPNOTSUPP; }

/* Whether fd's file system is local: there a flock is seen by every process that can open the
 * file, so a lock nobody holds is stale whatever host wrote it (a container restarted under a
 * new hostname, a renamed machine). On a network file system another machine may hold it. */
static bool local_file_system(int fd) {
    static const unsigned long network[] = {0x6969 /* NFS */,         0x517B /* SMB */,
                                            0xFF534D42 /* CIFS */,    0xFE534D42 /* SMB2 */,
                                            0x73757245 /* Coda */,    0x5346414F /* AFS */,
                                            0x01021997 /* 9P */,      0x65735546 /* FUSE */,
                                            0x00C36400 /* Ceph */,    0x01161970 /* GFS2 */,
                                            0x0BD00BD0 /* Lustre */,  0x47504653 /* GPFS */};
    struct statfs info;
    if (fstatfs(fd, &info) != 0) return false;
    for (size_t i = 0; i < sizeof network / sizeof network[0]; i++)
        if ((unsigned long)info.f_type == network[i]) return false;
    return true;
}

/* A lock file written on another host (one that records no host was cut short here). */
static bool foreign(const lock_owner *owner, const char *host) { return owner->host[0] && strcmp(owner->host, host) != 0; }

static int lock_path(const char *dir, char *out, size_t size) {
    if (!dir || !dir[0]) return pm_fail(PM_ERR_ARG, "the run directory's name is missing");
    if ((size_t)snprintf(out, size, "%s/%s", dir, RUN_LOCK_FILE) >= size)
        return pm_fail(PM_ERR_ARG, "the path '%s' is too long", dir);
    return PM_OK;
}

int run_lock_check(const char *dir) {
    char path[LOCK_PATH_MAX], host[FIELD_MAX];
    int status = lock_path(dir, path, sizeof path);
    if (status < 0) return status;
    const int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return PM_OK; /* no lock (or none readable): run_lock_acquire decides */
    /* shared: it detects a holder without excluding another checker */
    const int locked = flock(fd, LOCK_SH | LOCK_NB);
    const int error = errno;
    lock_owner owner;
    long bytes;
    read_owner(fd, &owner, &bytes);
    const bool stale_anywhere = locked == 0 && local_file_system(fd);
    close(fd);
    this_host(host, sizeof host);
    if (locked != 0 && error == EWOULDBLOCK) return refuse_held(dir, path, &owner, host);
    if (says_something(&owner) && foreign(&owner, host) && !stale_anywhere) return refuse_foreign(dir, path, &owner);
    if (locked != 0 && owner.pid > 0 && owner.pid != (long)getpid() && running(owner.pid))
        return refuse_held(dir, path, &owner, host); /* no flock here: the content decides */
    return PM_OK;
}

static void sleep_ms(long ms) {
    struct timespec pause = {0, ms * 1000000L};
    nanosleep(&pause, NULL);
}

/* Opens and flocks dir's lock file: *fd >= 0 and *flocked (false where the file system has no
 * flock) on success. Busy means refused, with owner read from the file. */
static int open_locked(const char *path, int *fd, bool *flocked, bool *busy, lock_owner *owner, long *bytes) {
    *busy = false;
    /* a few tries: a checker's shared lock lasts microseconds, and a releasing writer
     * removes the file between our open and our flock */
    for (int attempt = 0; attempt < 20; attempt++) {
        *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (*fd < 0)
            return pm_fail(PM_ERR_ARG, "cannot open the lock file '%s': %s%s", path, strerror(errno),
                           errno == ELOOP ? " (a symbolic link; remove it)" : "");
        struct stat info;
        if (fstat(*fd, &info) != 0 || !S_ISREG(info.st_mode)) {
            close(*fd);
            *fd = -1;
            return pm_fail(PM_ERR_ARG, "the lock file '%s' is not a regular file; remove it", path);
        }
        const int locked = flock(*fd, LOCK_EX | LOCK_NB);
        const int error = errno;
        if (locked != 0 && error == EWOULDBLOCK) {
            if (attempt < 3) {
                close(*fd);
                sleep_ms(10);
                continue;
            }
            read_owner(*fd, owner, bytes);
            close(*fd);
            *fd = -1;
            *busy = true;
            return PM_OK;
        }
        if (locked != 0 && !no_flock_here(error)) {
            close(*fd);
            *fd = -1;
            return pm_fail(PM_ERR_ARG, "cannot lock '%s': %s", path, strerror(error));
        }
        if (same_file(*fd, path)) {
            *flocked = locked == 0;
            read_owner(*fd, owner, bytes);
            return PM_OK;
        }
        close(*fd);
    }
    *fd = -1;
    return pm_fail(PM_ERR_STATE, "cannot lock '%s': it keeps being replaced; is another run starting there?", path);
}

static int write_owner(int fd, const char *path, const char *host, const char *command) {
    char since[64] = "", text[4 * FIELD_MAX];
    const time_t now = time(NULL);
    struct tm utc;
    if (gmtime_r(&now, &utc)) strftime(since, sizeof since, "%Y-%m-%d %H:%M:%S UTC", &utc);
    const int length = snprintf(text, sizeof text, "pid %ld\nhost %s\ncommand %s\nsince %s\n", (long)getpid(), host,
                                command ? command : "probmoe", since);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)length, 0) != (ssize_t)length)
        return pm_fail(PM_ERR_ARG, "cannot write the lock file '%s': %s", path, strerror(errno));
    return PM_OK;
}

int run_lock_acquire(const char *dir, const char *command, run_lock **out) {
    *out = NULL;
    run_lock *lock = calloc(1, sizeof *lock);
    if (!lock) return pm_fail(PM_ERR_NOMEM, "out of memory locking '%s'", dir ? dir : "");
    lock->fd = -1;
    lock->owner = (long)getpid();
    char host[FIELD_MAX];
    this_host(host, sizeof host);
    int status = lock_path(dir, lock->path, sizeof lock->path);
    if (status == 0) status = ensure_directory(dir);
    bool flocked = false, busy = false;
    lock_owner owner;
    long bytes = 0;
    if (status == 0) status = open_locked(lock->path, &lock->fd, &flocked, &busy, &owner, &bytes);
    if (status == 0 && busy) status = refuse_held(dir, lock->path, &owner, host);
    if (status == 0 && says_something(&owner)) {
        char who[4 * FIELD_MAX];
        if (foreign(&owner, host) && !(flocked && local_file_system(lock->fd))) {
            status = refuse_foreign(dir, lock->path, &owner);
        } else if (!flocked && owner.pid != lock->owner && running(owner.pid)) {
            status = refuse_held(dir, lock->path, &owner, host);
        } else {
            /* nobody holds it: the process that wrote it died without releasing it (or, with
             * the same pid alive, that pid has been reused since) */
            fprintf(stderr, "probmoe: '%s' was locked by %s, which %s; taking the lock over\n", dir,
                    describe(&owner, who, sizeof who),
                    foreign(&owner, host) ? "no longer holds it (on this local file system no process does; "
                                            "the host name changed, as a restarted container's does)"
                    : running(owner.pid) ? "no longer holds it (it ended without removing the lock; its pid has been "
                                         "reused)"
                                       : "is no longer running (a crashed or killed run)");
            lock->taken_from = owner.pid;
        }
    } else if (status == 0 && bytes > 0) {
        fprintf(stderr, "probmoe: '%s' held an unreadable lock file that nobody holds; replacing it\n", lock->path);
    }
    if (status == 0) {
        status = write_owner(lock->fd, lock->path, host, command);
        if (status < 0) unlink(lock->path); /* ours: nobody else holds it */
    }
    if (status < 0) {
        if (lock->fd >= 0) close(lock->fd); /* a refused lock's file is left as it is */
        free(lock);
        return status;
    }
    *out = lock;
    return PM_OK;
}

long run_lock_taken_from(const run_lock *lock) { return lock ? lock->taken_from : 0; }

void run_lock_release(run_lock *lock) {
    if (!lock) return;
    /* removed while still locked, and only if it is still our file (someone may have deleted
     * it by hand and another run taken a new one) */
    if (lock->owner == (long)getpid() && same_file(lock->fd, lock->path)) unlink(lock->path);
    close(lock->fd);
    free(lock);
}
