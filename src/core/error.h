/* Internal error reporting: set a thread-local message and return the status. */
#ifndef PM_CORE_ERROR_H
#define PM_CORE_ERROR_H

#include "probmoe.h"

#if defined(__GNUC__)
#define PM_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define PM_PRINTF(fmt_index, first_arg)
#endif

/* Formats the message for pm_last_error() and returns status, so callers can write
 * `return pm_fail(PM_ERR_ARG, "k = %d ...", k);`. */
pm_status pm_fail(pm_status status, const char *fmt, ...) PM_PRINTF(2, 3);
void pm_clear_error(void);

#endif
