/* File steps of checkpointing: writes that reach the disk before the directory is renamed
 * into place (fsync), copies, whole-file reads, and removal of flat directories. */
#define _POSIX_C_SOURCE 200809L /* fsync, O_DIRECTORY, opendir */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/checkpoint_internal.h"

int ckpt_join(char *out, size_t size, const char *dir, const char *file) {
    if ((size_t)snprintf(out, size, "%s/%s", dir, file) >= size)
        return pm_fail(PM_ERR_ARG, "the path '%s/%s' is too long", dir, file);
    return PM_OK;
}

/* Writes all of data, retrying short writes and interruptions. */
static int write_all(int fd, const void *data, size_t size) {
    const char *p = data;
    while (size > 0) {
        ssize_t got = write(fd, p, size);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -1;
        p += got;
        size -= (size_t)got;
    }
    return 0;
}

int ckpt_write_file(const char *path, const void *data, size_t size) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return pm_fail(PM_ERR_ARG, "cannot create '%s': %s", path, strerror(errno));
    int ok = write_all(fd, data, size) == 0 && fsync(fd) == 0;
    int saved = errno;
    ok = close(fd) == 0 && ok;
    if (!ok) return pm_fail(PM_ERR_ARG, "writing '%s' failed: %s (disk full?)", path, strerror(saved));
    return PM_OK;
}

int ckpt_copy_file(const char *from, const char *to) {
    int in = open(from, O_RDONLY);
    if (in < 0) return pm_fail(PM_ERR_ARG, "cannot read '%s': %s", from, strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (out < 0) {
        int saved = errno;
        close(in);
        return pm_fail(PM_ERR_ARG, "cannot create '%s': %s", to, strerror(saved));
    }
    char buffer[1 << 16];
    int status = PM_OK;
    for (;;) {
        ssize_t got = read(in, buffer, sizeof buffer);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) status = pm_fail(PM_ERR_ARG, "reading '%s' failed: %s", from, strerror(errno));
        if (got <= 0) break;
        if (write_all(out, buffer, (size_t)got) != 0) {
            status = pm_fail(PM_ERR_ARG, "writing '%s' failed: %s (disk full?)", to, strerror(errno));
            break;
        }
    }
    if (status == 0 && fsync(out) != 0)
        status = pm_fail(PM_ERR_ARG, "writing '%s' failed: %s", to, strerror(errno));
    if (close(out) != 0 && status == 0)
        status = pm_fail(PM_ERR_ARG, "writing '%s' failed: %s", to, strerror(errno));
    close(in);
    return status;
}

int ckpt_sync(const char *path, bool directory) {
    /* Read-only: a directory cannot be opened for writing, and a file may not be writable
     * (umask); Linux and the BSDs fsync read-only descriptors. */
    int fd = open(path, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return pm_fail(PM_ERR_ARG, "cannot open '%s' to sync it: %s", path, strerror(errno));
    int ok = fsync(fd) == 0;
    int saved = errno;
    close(fd);
    return ok ? PM_OK : pm_fail(PM_ERR_ARG, "syncing '%s' failed: %s", path, strerror(saved));
}

int ckpt_read_text(const char *path, size_t max_bytes, char **out) {
    *out = NULL;
    FILE *file = fopen(path, "rb");
    if (!file) return pm_fail(PM_ERR_ARG, "cannot open '%s': %s", path, strerror(errno));
    struct stat info;
    int status = PM_OK;
    if (fstat(fileno(file), &info) != 0 || !S_ISREG(info.st_mode))
        status = pm_fail(PM_ERR_ARG, "'%s' is not a regular file", path);
    else if ((unsigned long long)info.st_size > max_bytes)
        status = pm_fail(PM_ERR_ARG, "'%s' is implausibly large (%lld bytes)", path, (long long)info.st_size);
    size_t size = status == 0 ? (size_t)info.st_size : 0;
    char *text = status == 0 ? malloc(size + 1) : NULL;
    if (status == 0 && !text) status = pm_fail(PM_ERR_NOMEM, "out of memory reading '%s'", path);
    if (status == 0 && fread(text, 1, size, file) != size)
        status = pm_fail(PM_ERR_ARG, "reading '%s' failed", path);
    fclose(file);
    if (status < 0) {
        free(text);
        return status;
    }
    text[size] = '\0';
    *out = text;
    return PM_OK;
}

int ckpt_remove_flat(const char *dir) {
    DIR *handle = opendir(dir);
    if (!handle) return pm_fail(PM_ERR_ARG, "cannot open the directory '%s': %s", dir, strerror(errno));
    char path[CKPT_PATH_MAX];
    int status = PM_OK;
    /* unlinking during readdir is safe: only the removed entry's visibility is unspecified */
    for (struct dirent *entry; status == 0 && (entry = readdir(handle));) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        status = ckpt_join(path, sizeof path, dir, entry->d_name);
        if (status == 0 && unlink(path) != 0)
            status = pm_fail(PM_ERR_ARG, "cannot remove '%s': %s", path, strerror(errno));
    }
    closedir(handle);
    if (status == 0 && rmdir(dir) != 0)
        status = pm_fail(PM_ERR_ARG, "cannot remove the directory '%s': %s", dir, strerror(errno));
    return status;
}
