#define _POSIX_C_SOURCE 200809L /* popen, pclose, access */

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eval/plots_internal.h"
#include "core/fs.h"

/* The font of both terminals (and their common size), so PNG and SVG look alike. */
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

/* Okabe and Ito's colour-blind-safe palette (yellow left out: too faint on white). */
static const unsigned plot_colours[] = {0x0072B2, 0xD55E00, 0x009E73, 0xCC79A7,
                                        0xE69F00, 0x56B4E9, 0x000000, 0x8C564B};

unsigned plots_colour(int index) {
    const int count = (int)(sizeof plot_colours / sizeof plot_colours[0]);
    return plot_colours[((index % count) + count) % count];
}

void plots_write_colour(FILE *gp, int index, int transparency) {
    fprintf(gp, "rgb '#%02X%06X'", (unsigned)transparency & 0xFFu, plots_colour(index));
}

void plots_set_quoted(FILE *gp, const char *setting, const char *text) {
    if (!text) return;
    fprintf(gp, "set %s ", setting);
    plots_quote(gp, text);
    fprintf(gp, "\n");
}

void plots_script_begin_sized(FILE *gp, const char *stem, int width, int height) {
    fprintf(gp, "# Written by probmoe. Re-plot with `gnuplot %s.gp` in this directory.\n", stem);
    fprintf(gp, "set encoding utf8\n");
    /* One pass per image, so that multiplots (which replot cannot repeat) reach the SVG too. */
    fprintf(gp, "do for [format in 'png svg'] {\n"
                "if (format eq 'png') {\n"
                /* pngcairo draws anti-aliased lines and text; plain png (libgd) is the
                 * fallback, in truecolor for the faint (transparent) lines. */
                "    if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
                "        set terminal pngcairo size %d,%d noenhanced font '" PLOT_FONT "'\n"
                "    } else {\n"
                "        set terminal png truecolor size %d,%d noenhanced\n"
                "    }\n"
                "} else {\n"
                "    set terminal svg size %d,%d dynamic noenhanced font '" PLOT_FONT "' "
                "background rgb 'white'\n"
                "}\n",
            width, height, width, height, width, height);
    char output[520];
    snprintf(output, sizeof output, "%s.", stem);
    fprintf(gp, "set output ");
    plots_quote(gp, output);
    fprintf(gp, ".format\nset grid back lc rgb '#dddddd'\n");
}

void plots_script_begin(FILE *gp, const char *stem) {
    plots_script_begin_sized(gp, stem, PLOTS_WIDTH, PLOTS_HEIGHT);
}

void plots_script_end(FILE *gp) {
    fprintf(gp, "unset output\n}\n");
}

int plots_open_pair(const char *dir, const char *stem, FILE **dat, char *dat_path, FILE **gp,
                    char *gp_path) {
    char name[512];
    int status = plots_name(name, sizeof name, stem, ".dat");
    if (status) return status;
    *dat = plots_open(dir, name, dat_path, PLOTS_PATH_MAX);
    if (!*dat) return PM_ERR_ARG;
    status = plots_name(name, sizeof name, stem, ".gp");
    *gp = status ? NULL : plots_open(dir, name, gp_path, PLOTS_PATH_MAX);
    if (!*gp) {
        fclose(*dat);
        return PM_ERR_ARG;
    }
    plots_script_begin(*gp, stem);
    return PM_OK;
}

int plots_close_pair_and_run(const char *dir, const char *stem, FILE *dat, const char *dat_path,
                             FILE *gp, const char *gp_path) {
    plots_script_end(gp);
    const int a = plots_close(dat, dat_path), b = plots_close(gp, gp_path);
    if (a || b) return a ? a : b;
    return plots_run_gnuplot(dir, stem);
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
