/* Helpers shared by the unit tests (cmocka). */
#ifndef PM_TEST_CHECK_H
#define PM_TEST_CHECK_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "probmoe.h"

/* Fails the test (with a message naming `what`, the index and both values) unless
 * |got − want| <= rel·|want| + abs_floor. */
#define assert_close(got, want, rel, abs_floor, what, index)                                    \
    check_close((double)(got), (double)(want), (rel), (abs_floor), (what), (index), __FILE__, \
                __LINE__)
void check_close(double got, double want, double rel, double abs_floor, const char *what,
                 int index, const char *file, int line);

/* Fills x[0..n-1] with normal(0, scale) values from a fixed generator. */
void random_normal(pm_rng *rng, float *x, int n, double scale);

/* What the code under test prints on stderr: stderr_capture_begin() sends it to a temporary
 * file, stderr_capture_end() puts stderr back and returns the text (static storage, valid
 * until the next capture; it is also echoed, so the test's log still shows it). */
void stderr_capture_begin(void);
const char *stderr_capture_end(void);

/* The pid of a process that no longer runs: a child forked, exited and reaped (it does nothing
 * but exit, so forking is safe even after OpenMP has started threads). */
long dead_pid(void);

#endif
