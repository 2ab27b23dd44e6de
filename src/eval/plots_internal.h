/* Shared by the plot writers: files in the output directory, gnuplot scripts and running
 * gnuplot. */
#ifndef PM_EVAL_PLOTS_INTERNAL_H
#define PM_EVAL_PLOTS_INTERNAL_H

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

/* Starts STEM.gp: the PNG terminal (pngcairo or png) and output STEM.png. */
void plots_script_begin(FILE *gp, const char *stem);
/* Ends it: the same plot again (replot) on the svg terminal into STEM.svg. */
void plots_script_end(FILE *gp, const char *stem);

/* Runs dir/STEM.gp with gnuplot in dir and checks that STEM.png and STEM.svg appeared.
 * 0, PLOTS_SKIPPED (no gnuplot; warns on stderr) or a negative pm_status. */
int plots_run_gnuplot(const char *dir, const char *stem);

#endif
