#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *pm_last_error(void) { return last_error; }

void pm_clear_error(void) { last_error[0] = '\0'; }

const char *pm_status_string(pm_status status) {
    switch (status) {
    case PM_OK: return "ok";
    case PM_ERR_ARG: return "invalid argument";
    case PM_ERR_NONFINITE: return "non-finite value";
    case PM_ERR_NOMEM: return "out of memory";
    case PM_ERR_STATE: return "invalid state";
    }
    return "unknown status";
}

pm_status pm_fail(pm_status status, const char *fmt, ...) {
    /* Format aside first: an argument may be pm_last_error() itself (a message that wraps the
     * previous one), and formatting a buffer into itself garbles it. */
    char message[sizeof last_error];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    memcpy(last_error, message, sizeof message);
    return status;
}
