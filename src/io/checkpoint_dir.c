/* Names around a checkpoint directory: its siblings DIR.tmp-/old-/del-<pid>, cleaning up
 * after crashed saves, finding the directory to load, and pruning old checkpoints. */
#define _POSIX_C_SOURCE 200809L /* kill, opendir, lstat */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/checkpoint_internal.h"

int ckpt_path_init(ckpt_path *out, const char *dir) {
    if (!dir || (size_t)snprintf(out->dir, sizeof out->dir, "%s", dir) >= sizeof out->dir)
        return pm_fail(PM_ERR_ARG, "checkpoint: the directory name is missing or too long");
    /* "run/ckpt/" must mean run/ckpt: its siblings are run/ckpt.tmp-*, not run/ckpt/.tmp-* */
    size_t length = strlen(out->dir);
    while (length > 1 && out->dir[length - 1] == '/') out->dir[--length] = '\0';
    char *slash = strrchr(out->dir, '/');
    out->base = slash ? slash + 1 : out->dir;
    if (!*out->base || strcmp(out->base, ".") == 0 || strcmp(out->base, "..") == 0)
        return pm_fail(PM_ERR_ARG, "checkpoint: '%s' does not name a directory that can be replaced; "
                       "give a path such as runs/ckpt", dir);
    if (!slash) snprintf(out->parent, sizeof out->parent, ".");
    else if (slash == out->dir) snprintf(out->parent, sizeof out->parent, "/");
    else snprintf(out->parent, sizeof out->parent, "%.*s", (int)(slash - out->dir), out->dir);
    return PM_OK;
}

int ckpt_sibling(const ckpt_path *path, const char *kind, long pid, char *out, size_t size) {
    if ((size_t)snprintf(out, size, "%s.%s-%ld", path->dir, kind, pid) >= size)
        return pm_fail(PM_ERR_ARG, "the path '%s' is too long", path->dir);
    return PM_OK;
}

/* Whether name is base.<kind>-<digits>; *kind gets "tmp", "old" or "del" and *pid the number. */
static bool parse_sibling(const char *name, const char *base, const char **kind, long *pid) {
    static const char *const kinds[] = {"tmp", "old", "del"};
    size_t n = strlen(base);
    if (strncmp(name, base, n) != 0 || name[n] != '.') return false;
    for (int k = 0; k < 3; k++) {
        const char *rest = name + n + 1;
        if (strncmp(rest, kinds[k], 3) != 0 || rest[3] != '-') continue;
        rest += 4;
        if (*rest < '0' || *rest > '9' || strlen(rest) > 18 || strspn(rest, "0123456789") != strlen(rest))
            return false;
        *kind = kinds[k];
        *pid = strtol(rest, NULL, 10);
        return true;
    }
    return false;
}

/* A save by this process is over whenever we look; another's is if the process is gone. */
static bool owner_gone(long pid) {
    return pid == (long)getpid() || (kill((pid_t)pid, 0) != 0 && errno == ESRCH);
}

/* The names in dir that keep(name, user) accepts, as one malloc'd array of fixed-size
 * slots: collected first because the caller then renames and removes them. */
typedef bool (*name_filter)(const char *name, void *user);

static int list_names(const char *dir, name_filter keep, void *user, char (**out)[256], int *count) {
    *out = NULL;
    *count = 0;
    DIR *handle = opendir(dir);
    if (!handle) return pm_fail(PM_ERR_ARG, "cannot open the directory '%s': %s", dir, strerror(errno));
    int capacity = 0, status = PM_OK;
    for (struct dirent *entry; status == 0 && (entry = readdir(handle));) {
        if (strlen(entry->d_name) >= 256 || !keep(entry->d_name, user)) continue;
        if (*count == capacity) {
            capacity = capacity ? 2 * capacity : 16;
            char(*grown)[256] = realloc(*out, (size_t)capacity * sizeof *grown);
            if (!grown) {
                status = pm_fail(PM_ERR_NOMEM, "out of memory listing '%s'", dir);
                break;
            }
            *out = grown;
        }
        memcpy((*out)[(*count)++], entry->d_name, strlen(entry->d_name) + 1);
    }
    closedir(handle);
    if (status < 0) {
        free(*out);
        *out = NULL;
        *count = 0;
    }
    return status;
}

static bool is_sibling(const char *name, void *user) {
    const char *kind;
    long pid;
    return parse_sibling(name, ((const ckpt_path *)user)->base, &kind, &pid);
}

int ckpt_sweep(const ckpt_path *path, bool remove_old) {
    char(*names)[256];
    int count;
    int status = list_names(path->parent, is_sibling, (void *)path, &names, &count);
    char full[CKPT_PATH_MAX], trash[CKPT_PATH_MAX];
    for (int i = 0; status == 0 && i < count; i++) {
        const char *kind;
        long pid;
        parse_sibling(names[i], path->base, &kind, &pid);
        status = ckpt_join(full, sizeof full, path->parent, names[i]);
        if (status < 0) break;
        if (strcmp(kind, "old") == 0) {
            /* renamed to a del- name first, so no half-removed DIR.old-* is ever visible */
            if (remove_old) status = ckpt_sibling(path, "del", (long)getpid(), trash, sizeof trash);
            if (remove_old && status == 0) status = ckpt_discard(full, trash);
        } else if (owner_gone(pid)) {
            status = ckpt_remove_flat(full); /* tmp- and del- names are never loaded */
        }
    }
    free(names);
    return status;
}

int ckpt_discard(const char *path, const char *trash) {
    if (rename(path, trash) != 0)
        return pm_fail(PM_ERR_ARG, "cannot rename '%s' to '%s': %s", path, trash, strerror(errno));
    return ckpt_remove_flat(trash);
}

/* ------------------------------------------------------------ a run directory's leftovers */

/* Whether name is a sibling a save of the trainer leaves, DIR.tmp-<pid> or DIR.del-<pid>
 * where DIR is "model" or "checkpoint-<digits>" (anything else in a run directory is not
 * ours to remove); *pid gets the number. */
static bool parse_leftover(const char *name, long *pid) {
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name || (strncmp(dot + 1, "tmp-", 4) != 0 && strncmp(dot + 1, "del-", 4) != 0)) return false;
    const size_t base = (size_t)(dot - name), prefix = strlen("checkpoint-");
    const bool model = base == strlen("model") && strncmp(name, "model", base) == 0;
    const bool checkpoint = base > prefix && strncmp(name, "checkpoint-", prefix) == 0 &&
                            strspn(name + prefix, "0123456789") == base - prefix;
    if (!model && !checkpoint) return false;
    const char *digits = dot + 5;
    const size_t n = strlen(digits);
    if (n == 0 || n > 18 || strspn(digits, "0123456789") != n) return false;
    *pid = strtol(digits, NULL, 10);
    return *pid > 0 && *pid <= INT_MAX; /* a pid_t is an int: anything else is not our name */
}

static bool is_leftover(const char *name, void *user) {
    (void)user;
    long pid;
    return parse_leftover(name, &pid);
}

/* Whether dir holds no subdirectory (ckpt_remove_flat would stop midway at one). */
static bool is_flat(const char *dir) {
    DIR *handle = opendir(dir);
    if (!handle) return false;
    bool flat = true;
    char path[CKPT_PATH_MAX];
    for (struct dirent *entry; flat && (entry = readdir(handle));) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        struct stat info;
        flat = ckpt_join(path, sizeof path, dir, entry->d_name) == 0 && lstat(path, &info) == 0 &&
               !S_ISDIR(info.st_mode);
    }
    closedir(handle);
    return flat;
}

int checkpoint_remove_leftovers(const char *dir) {
    if (!dir) return 0;
    char(*names)[256];
    int count, removed = 0;
    if (list_names(dir, is_leftover, NULL, &names, &count) < 0) {
        fprintf(stderr, "probmoe: not looking for leftovers of interrupted saves: %s\n", pm_last_error());
        return 0;
    }
    char path[CKPT_PATH_MAX];
    for (int i = 0; i < count; i++) {
        long pid = 0;
        if (!parse_leftover(names[i], &pid)) continue;
        /* this process's own names are kept too: only a process that is gone is done saving */
        if (pid == (long)getpid() || !(kill((pid_t)pid, 0) != 0 && errno == ESRCH)) continue;
        struct stat info;
        /* saves write directories: a file of that name is someone else's */
        if (ckpt_join(path, sizeof path, dir, names[i]) < 0 || lstat(path, &info) != 0 || !S_ISDIR(info.st_mode))
            continue;
        int status = PM_OK;
        if (!is_flat(path)) {
            status = pm_fail(PM_ERR_ARG, "'%s' holds a subdirectory, so it is no checkpoint's leftover; left alone", path);
        } else {
            status = ckpt_remove_flat(path);
        }
        if (status < 0) {
            fprintf(stderr, "probmoe: %s\n", pm_last_error());
            continue;
        }
        fprintf(stderr, "probmoe: removed '%s', left by process %ld, which is no longer running (an interrupted "
                "save)\n", path, pid);
        removed++;
    }
    free(names);
    return removed;
}

/* ------------------------------------------------------------ finding a checkpoint */

/* DIR.old-* directories holding a config.json (user: the ckpt_path). */
static bool is_complete_old(const char *name, void *user) {
    const ckpt_path *path = user;
    const char *kind;
    long pid;
    char config[CKPT_PATH_MAX];
    struct stat info;
    return parse_sibling(name, path->base, &kind, &pid) && strcmp(kind, "old") == 0 &&
           (size_t)snprintf(config, sizeof config, "%s/%s/config.json", path->parent, name) < sizeof config &&
           stat(config, &info) == 0;
}

int ckpt_resolve(const char *dir, char *out, size_t size) {
    ckpt_path path;
    int status = ckpt_path_init(&path, dir);
    if (status < 0) return status;
    /* A save renames DIR aside, then its new version to DIR, then removes the old one: if DIR
     * is missing, the old one is there. Looking again covers a save finishing meanwhile. */
    for (int attempt = 0; attempt < 3; attempt++) {
        struct stat info;
        if (stat(path.dir, &info) == 0) {
            if (!S_ISDIR(info.st_mode)) return pm_fail(PM_ERR_ARG, "'%s' is not a directory", path.dir);
            if ((size_t)snprintf(out, size, "%s", path.dir) >= size)
                return pm_fail(PM_ERR_ARG, "the path '%s' is too long", path.dir);
            return PM_OK;
        }
        if (errno != ENOENT) return pm_fail(PM_ERR_ARG, "cannot open '%s': %s", path.dir, strerror(errno));
        /* saves remove every DIR.old-* before renaming DIR aside, so there is at most one */
        char(*names)[256];
        int count;
        if (list_names(path.parent, is_complete_old, &path, &names, &count) < 0) return PM_ERR_ARG;
        bool found = count > 0;
        if (found) status = ckpt_join(out, size, path.parent, names[0]);
        free(names);
        if (found) return status;
    }
    return pm_fail(PM_ERR_ARG, "the checkpoint directory '%s' does not exist", path.dir);
}

/* ------------------------------------------------------------ pruning */

typedef struct {
    const char *parent, *prefix;
} prune_filter;

/* Directories named <prefix><digits> (at most 18, so the number fits a long long). */
static bool is_numbered(const char *name, void *user) {
    const prune_filter *filter = user;
    size_t n = strlen(filter->prefix);
    if (strncmp(name, filter->prefix, n) != 0) return false;
    size_t digits = strspn(name + n, "0123456789");
    char path[CKPT_PATH_MAX];
    struct stat info;
    return digits > 0 && digits <= 18 && name[n + digits] == '\0' &&
           (size_t)snprintf(path, sizeof path, "%s/%s", filter->parent, name) < sizeof path &&
           lstat(path, &info) == 0 && S_ISDIR(info.st_mode);
}

static int compare_newest_first(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x < y) - (x > y);
}

int checkpoint_prune(const char *parent, const char *prefix, int keep_last) {
    if (!parent || !prefix) return pm_fail(PM_ERR_ARG, "checkpoint_prune: parent or prefix is NULL");
    if (keep_last <= 0) return PM_OK;
    prune_filter filter = {parent, prefix};
    char(*names)[256];
    int count;
    int status = list_names(parent, is_numbered, &filter, &names, &count);
    if (status < 0 || count <= keep_last) {
        free(names);
        return status;
    }
    /* (number, index) pairs sorted by number, newest first */
    long long *order = malloc(2 * sizeof *order * (size_t)count);
    if (!order) status = pm_fail(PM_ERR_NOMEM, "out of memory pruning '%s'", parent);
    for (int i = 0; status == 0 && i < count; i++) {
        order[2 * i] = strtoll(names[i] + strlen(prefix), NULL, 10);
        order[2 * i + 1] = i;
    }
    if (status == 0) qsort(order, (size_t)count, 2 * sizeof *order, compare_newest_first);
    char full[CKPT_PATH_MAX], trash[CKPT_PATH_MAX];
    for (int i = keep_last; status == 0 && i < count; i++) {
        ckpt_path path;
        status = ckpt_join(full, sizeof full, parent, names[order[2 * i + 1]]);
        if (status == 0) status = ckpt_path_init(&path, full);
        if (status == 0) status = ckpt_sibling(&path, "del", (long)getpid(), trash, sizeof trash);
        if (status == 0) status = ckpt_discard(full, trash);
        /* leftovers of crashed saves of this checkpoint go with it */
        if (status == 0) status = ckpt_sweep(&path, true);
    }
    free(order);
    free(names);
    return status;
}
