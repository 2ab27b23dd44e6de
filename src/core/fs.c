#define _POSIX_C_SOURCE 200809L /* mkdir */
#include "core/fs.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"

int ensure_directory(const char *dir) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return pm_fail(PM_ERR_ARG, "the path '%s' is too long", dir);
    for (char *slash = path + 1; *slash; slash++) {
        if (*slash != '/') continue;
        *slash = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return pm_fail(PM_ERR_ARG, "cannot create the directory '%s': %s", path, strerror(errno));
        *slash = '/';
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return pm_fail(PM_ERR_ARG, "cannot create the directory '%s': %s", path, strerror(errno));
    return PM_OK;
}
