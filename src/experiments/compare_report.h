/* report.md for probmoe compare: a table per metric group, mean ± std over seeds and ratios
 * to topk, from the result files of the runs; plus the plots. */
#ifndef PM_EXPERIMENTS_COMPARE_REPORT_H
#define PM_EXPERIMENTS_COMPARE_REPORT_H

#include "experiments/compare.h"

int compare_write_report(const compare_options *opt);
/* The router config of a compare router name ("topk-lb": topk + Switch loss 0.01). */
int compare_router_config(const char *name, const pm_model_config *model, pm_router_config *out);

#endif
