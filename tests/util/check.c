#define _POSIX_C_SOURCE 200809L /* dup, fork, mkstemp */
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

void check_close(double got, double want, double rel, double abs_floor, const char *what,
                 int index, const char *file, int line) {
    double tolerance = rel * fabs(want) + abs_floor;
    if (!(fabs(got - want) <= tolerance)) {
        char message[256];
        snprintf(message, sizeof message, "%s[%d]: got %.10g, want %.10g (tolerance %.3g)", what,
                 index, got, want, tolerance);
        print_error("%s\n", message);
        _fail(file, line);
    }
}

void random_normal(pm_rng *rng, float *x, int n, double scale) {
    for (int i = 0; i < n; i++) {
        double u1 = pm_rng_uniform(rng), u2 = pm_rng_uniform(rng);
        x[i] = (float)(scale * sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2));
    }
}

static int saved_stderr = -1;
static char capture_path[64];

void stderr_capture_begin(void) {
    fflush(stderr);
    snprintf(capture_path, sizeof capture_path, "/tmp/probmoe_stderr_XXXXXX");
    int fd = mkstemp(capture_path);
    saved_stderr = dup(STDERR_FILENO);
    if (fd < 0 || saved_stderr < 0 || dup2(fd, STDERR_FILENO) < 0) fail_msg("cannot capture stderr");
    close(fd);
}

const char *stderr_capture_end(void) {
    static char text[1 << 16];
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    saved_stderr = -1;
    FILE *file = fopen(capture_path, "rb");
    size_t got = file ? fread(text, 1, sizeof text - 1, file) : 0;
    if (file) fclose(file);
    unlink(capture_path);
    text[got] = '\0';
    fputs(text, stderr);
    return text;
}

long dead_pid(void) {
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    if (child < 0) fail_msg("fork failed");
    if (child == 0) _exit(0);
    int status;
    if (waitpid(child, &status, 0) != child) fail_msg("waitpid failed");
    return (long)child;
}
