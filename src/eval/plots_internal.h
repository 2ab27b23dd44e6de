/* Shared by the plot writers: files in the output directory, gnuplot scripts, colours,
 * metrics.jsonl files and running gnuplot. */
#ifndef PM_EVAL_PLOTS_INTERNAL_H
#define PM_EVAL_PLOTS_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdio.h>

#include "core/error.h"
#include "eval/plots.h"

/* out = stem + suffix (say ".gp"); 0, or PM_ERR_ARG when it does not fit in size. */
int plots_name(char *out, size_t size, const char *stem, const char *suffix);
/* dir/name (created dir first) opened for writing; NULL after pm_fail. path gets the name. */
FILE *plots_open(const char *dir, const char *name, char *path, size_t path_size);
/* Closes a file written by plots_open; 0 or a negative pm_status naming path. */
int plots_close(FILE *file, const char *path);

/* Writes s as a gnuplot single-quoted string (where '' stands for one quote). */
void plots_quote(FILE *file, const char *s);
/* Writes `set SETTING 'text'` (say title, ylabel); nothing when text is NULL. */
void plots_set_quoted(FILE *gp, const char *setting, const char *text);

/* The default image size in pixels. */
enum { PLOTS_WIDTH = 1000, PLOTS_HEIGHT = 650 };
/* Starts STEM.gp: a loop over the two images, STEM.png (pngcairo, or png) and STEM.svg,
 * that draws what follows once into each; width × height pixels. */
void plots_script_begin(FILE *gp, const char *stem);
void plots_script_begin_sized(FILE *gp, const char *stem, int width, int height);
/* Ends the loop. */
void plots_script_end(FILE *gp);

/* Colour i of the plots' palette as 0xRRGGBB (it repeats after 8). */
unsigned plots_colour(int index);
/* Writes it as a gnuplot colour, rgb '#AARRGGBB': transparency 0 is opaque, 255 invisible. */
void plots_write_colour(FILE *gp, int index, int transparency);

enum { PLOTS_PATH_MAX = 4096 };
/* STEM.dat and STEM.gp opened (paths of PLOTS_PATH_MAX bytes) and the script begun; on
 * failure closes what opened and returns a pm_status. */
int plots_open_pair(const char *dir, const char *stem, FILE **dat, char *dat_path, FILE **gp,
                    char *gp_path);
/* Ends the script, closes both and runs gnuplot: 0, PLOTS_SKIPPED or a negative pm_status. */
int plots_close_pair_and_run(const char *dir, const char *stem, FILE *dat, const char *dat_path,
                             FILE *gp, const char *gp_path);

/* Calls visit on each line of a metrics.jsonl that parses as a JSON object, in order; a line
 * that does not (the trainer may be writing the last one right now) is skipped. Stops at the
 * first non-zero return of visit and returns it; PM_ERR_ARG when the file cannot be read. */
typedef int (*plots_metrics_visit)(const cJSON *line, void *context);
int plots_each_metrics_line(const char *path, plots_metrics_visit visit, void *context);

/* A growing array of doubles; starts zeroed. */
typedef struct {
    double *values;
    size_t count, capacity;
} plots_values;
/* 0, or PM_ERR_NOMEM after pm_fail. */
int plots_values_push(plots_values *array, double value);
void plots_values_free(plots_values *array);

/* Runs dir/STEM.gp with gnuplot in dir and checks that STEM.png and STEM.svg appeared.
 * 0, PLOTS_SKIPPED (no gnuplot; warns on stderr) or a negative pm_status. */
int plots_run_gnuplot(const char *dir, const char *stem);

#endif
