#define _POSIX_C_SOURCE 200809L /* mkstemp, fdopen, fsync, fchmod */
#include "core/atomic_file.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

int atomic_file_open(atomic_file *out, const char *path) {
    memset(out, 0, sizeof *out);
    if (snprintf(out->final_path, sizeof out->final_path, "%s", path) >= (int)sizeof out->final_path ||
        snprintf(out->temp_path, sizeof out->temp_path, "%s.tmp-XXXXXX", path) >= (int)sizeof out->temp_path)
        return pm_fail(PM_ERR_ARG, "the path '%s' is too long", path);
    /* mkstemp: a unique name, so two writers of the same path never share a temporary file */
    int fd = mkstemp(out->temp_path);
    if (fd < 0) return pm_fail(PM_ERR_ARG, "cannot create '%s': %s", out->temp_path, strerror(errno));
    /* mkstemp creates the file private (0600); give it the mode open() would (0666 - umask) */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    out->file = fdopen(fd, "wb");
    if (!out->file) {
        int saved = errno;
        close(fd);
        unlink(out->temp_path);
        return pm_fail(PM_ERR_ARG, "cannot write '%s': %s", out->temp_path, strerror(saved));
    }
    return PM_OK;
}

int atomic_file_commit(atomic_file *out) {
    /* fsync before rename: otherwise a crash can leave the new name pointing at empty data */
    bool ok = fflush(out->file) == 0 && !ferror(out->file) && fsync(fileno(out->file)) == 0;
    int saved = errno;
    ok = fclose(out->file) == 0 && ok;
    out->file = NULL;
    if (ok && rename(out->temp_path, out->final_path) == 0) return PM_OK;
    if (ok) saved = errno;
    unlink(out->temp_path);
    return pm_fail(PM_ERR_ARG, "cannot write '%s': %s", out->final_path, strerror(saved));
}

void atomic_file_abort(atomic_file *out) {
    if (out->file) fclose(out->file);
    out->file = NULL;
    unlink(out->temp_path);
}
