#define _POSIX_C_SOURCE 200809L /* popen, pclose, access */

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eval/plots_internal.h"
#include "core/fs.h"

/* Image size and font shared by both terminals, so PNG and SVG look alike. */
#define PLOT_SIZE "1000,650"
#define PLOT_FONT "sans,12"

int plots_name(char *out, size_t size, const char *stem, const char *suffix) {
    if ((size_t)snprintf(out, size, "%s%s", stem, suffix) >= size)
        return pm_fail(PM_ERR_ARG, "plots: name too long: %s%s", stem, suffix);
    return PM_OK;
}

FILE *plots_open(const char *dir, const char *name, char *path, size_t path_size) {
    if (ensure_directory(dir)) return NULL;
    if ((size_t)snprintf(path, path_size, "%s/%s", dir, name) >= path_size) {
        pm_fail(PM_ERR_ARG, "plots: path too long: %s/%s", dir, name);
        return NULL;
    }
    FILE *file = fopen(path, "w");
    if (!file) pm_fail(PM_ERR_ARG, "plots: cannot write %s", path);
    return file;
}

int plots_close(FILE *file, const char *path) {
    const bool failed = ferror(file) != 0;
    if (fclose(file) != 0 || failed) return pm_fail(PM_ERR_STATE, "plots: could not write %s", path);
    return PM_OK;
}

void plots_quote(FILE *file, const char *s) {
    fputc('\'', file);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', file);
        fputc(*s, file);
    }
    fputc('\'', file);
}

void plots_script_begin(FILE *gp, const char *stem) {
    fprintf(gp, "# Written by probmoe. Re-plot with `gnuplot %s.gp` in this directory.\n", stem);
    fprintf(gp, "set encoding utf8\n");
    /* pngcairo draws anti-aliased lines and text; plain png (libgd) is the fallback. */
    fprintf(gp, "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
                "    set terminal pngcairo size " PLOT_SIZE " noenhanced font '" PLOT_FONT "'\n"
                "} else {\n"
                "    set terminal png size " PLOT_SIZE " noenhanced\n"
                "}\n");
    fprintf(gp, "set output '%s.png'\n", stem);
    fprintf(gp, "set grid back lc rgb '#dddddd'\n");
}

void plots_script_end(FILE *gp, const char *stem) {
    fprintf(gp, "set terminal svg size " PLOT_SIZE " dynamic noenhanced font '" PLOT_FONT "' "
                "background rgb 'white'\n");
    fprintf(gp, "set output '%s.svg'\nreplot\nunset output\n", stem);
}

/* $PM_GNUPLOT, else the first executable gnuplot on PATH; false if there is none. */
static bool find_gnuplot(char *path, size_t size) {
    const char *forced = getenv("PM_GNUPLOT");
    if (forced) {
        snprintf(path, size, "%s", forced);
        return *forced && access(forced, X_OK) == 0;
    }
    const char *dirs = getenv("PATH");
    while (dirs && *dirs) {
        const char *end = strchr(dirs, ':');
        const int len = end ? (int)(end - dirs) : (int)strlen(dirs);
        snprintf(path, size, "%.*s/gnuplot", len, len ? dirs : ".");
        if (access(path, X_OK) == 0) return true;
        dirs = end ? end + 1 : NULL;
    }
    return false;
}

static bool nonempty_file(const char *dir, const char *stem, const char *ext) {
    char path[4096];
    struct stat info;
    snprintf(path, sizeof path, "%s/%s.%s", dir, stem, ext);
    return stat(path, &info) == 0 && info.st_size > 0;
}

int plots_run_gnuplot(const char *dir, const char *stem) {
    char gnuplot[4096];
    if (!find_gnuplot(gnuplot, sizeof gnuplot)) {
        fprintf(stderr, "warning: gnuplot not found, so %s/%s.png and .svg were not drawn; "
                "install gnuplot (apt-get install gnuplot-nox) and run `gnuplot %s.gp` in %s\n",
                dir, stem, stem, dir);
        return PLOTS_SKIPPED;
    }
    /* Stale images would make a failed run look like a success. */
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.png", dir, stem);
    unlink(path);
    snprintf(path, sizeof path, "%s/%s.svg", dir, stem);
    unlink(path);

    /* The shell sees only the quoted gnuplot path; dir and the script go through gnuplot's own
     * quoting on its standard input, so no name can inject a shell command. */
    char command[8300];
    size_t n = 0;
    command[n++] = '\'';
    for (const char *c = gnuplot; *c && n < sizeof command - 8; c++) {
        if (*c == '\'') {
            memcpy(command + n, "'\\''", 4);
            n += 4;
        } else {
            command[n++] = *c;
        }
    }
    command[n++] = '\'';
    command[n] = '\0';
    fflush(NULL);
    FILE *pipe = popen(command, "w");
    if (!pipe) return pm_fail(PM_ERR_STATE, "plots: cannot start %s", gnuplot);
    fprintf(pipe, "cd ");
    plots_quote(pipe, dir);
    fprintf(pipe, "\nload ");
    char script[4096];
    snprintf(script, sizeof script, "%s.gp", stem);
    plots_quote(pipe, script);
    fprintf(pipe, "\n");
    const int status = pclose(pipe);
    if (status != 0 || !nonempty_file(dir, stem, "png") || !nonempty_file(dir, stem, "svg"))
        return pm_fail(PM_ERR_STATE, "plots: gnuplot failed on %s/%s.gp (status %d)", dir, stem,
                       status);
    return PM_OK;
}
