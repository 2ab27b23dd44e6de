/* The probmoe command: one function per subcommand, and small argument helpers. */
#ifndef PM_CLI_H
#define PM_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>

#include "core/batch_comm.h"
#include "probmoe.h"

/* Each returns the process exit code: 0 on success, 1 on a runtime error, 2 on bad usage. */
int cmd_route(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
/* `probmoe tokenizer encode` and `decode` (cmd_tokenizer_codec.c), dispatched by cmd_tokenizer. */
int cmd_tokenizer_encode(int argc, char **argv);
int cmd_tokenizer_decode(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_info(int argc, char **argv);
/* `probmoe data arith` (cmd_data_arith.c), dispatched by cmd_data, and its usage text. */
int cmd_data_arith(int argc, char **argv);
extern const char data_arith_usage[];

/* The command in messages ("probmoe train"), set by main and the commands that dispatch. */
void cli_set_command(const char *name);
const char *cli_command(void);

/* Parsing the value of flag `name` (text may be NULL: missing). Each accepts one syntax
 * (core/number.h: decimal, no spaces, nothing after the number, no hexadecimal, nan or inf)
 * and a range; otherwise it prints "probmoe CMD: --flag 'value' is ...; give <the range>" and
 * returns false. A whole number may be written 2e6 or 100.0 (not 2.5); beyond int64 (or 2^53
 * so written) it is out of range. */
bool parse_int_flag(const char *name, const char *text, int min, int max, int *value);
bool parse_long_flag(const char *name, const char *text, long long min, long long max, long long *value);
/* A float's range: min and max (±INFINITY: none), each excluded when open; always finite. */
typedef struct {
    double min, max;
    bool min_open, max_open;
} flag_range;
#define FLAG_ANY ((flag_range){-INFINITY, INFINITY, false, false})
#define FLAG_POSITIVE ((flag_range){0.0, INFINITY, true, false})
#define FLAG_NONNEGATIVE ((flag_range){0.0, INFINITY, false, false})
bool parse_float_flag(const char *name, const char *text, flag_range range, float *value);
bool parse_double_flag(const char *name, const char *text, flag_range range, double *value);
/* The largest whole number a flag takes where no other bound applies: 2^53. */
#define FLAG_MAX_COUNT 9007199254740992LL

/* Router settings from the command line (router_flags.c): --norm and one flag per router
 * config field, collected as given and applied on top of the router's defaults. */
enum { ROUTER_FLAGS_MAX = 32 };
typedef struct {
    const char *values[ROUTER_FLAGS_MAX]; /* per field of route/router_fields.h; NULL: not given */
    bool norm, any;
} router_flags;
/* If argv[*i] is a router flag, records it (advancing *i past its value) and returns true;
 * *error is set (and the problem printed) when its value is missing. */
bool router_flags_take(router_flags *flags, int argc, char **argv, int *i, bool *error);
/* Parses the recorded values into cfg; false after printing a bad value. */
bool router_flags_apply(const router_flags *flags, pm_router_config *cfg);
/* The --router names and the router flags, for usage texts. */
void router_flags_usage(FILE *out);

/* `mpirun -np N probmoe train`: starts MPI when a launcher started this process and gives the
 * ranks as a batch_comm (*comm NULL for a single process), with expert groups of
 * expert_parallel ranks (1: none). 0, or the exit code to stop with after printing why (a
 * launcher's several processes but a build without MPI; N not a multiple of expert_parallel). */
int cli_mpi_start(int *argc, char ***argv, const char *command, int expert_parallel, const batch_comm **comm);
/* --comm-timeout: after cli_mpi_start, a process blocked in one collective for `seconds` (0:
 * never) ends the run with a message (comm_watchdog.c). */
void cli_mpi_set_timeout(double seconds);
void comm_watchdog_start(double seconds, int rank, int size);
void comm_watchdog_enter(const char *name);
void comm_watchdog_leave(void);
void comm_watchdog_stop(void);
/* This process's expert rows of H floats to other ranks and back (train_result's). */
typedef struct {
    int hidden;
    int64_t pair_rows, rank_rows;
} cli_expert_traffic;
/* Rank 0 prints what the run's collectives cost (bytes handed to each kind per step and
 * process, the share of the run the slowest process spent blocked in them, and under expert
 * parallelism the expert rows sent per pair against one per (token, rank)). Collective. */
void cli_mpi_report(const batch_comm *comm, long steps, double seconds, const cli_expert_traffic *traffic);
void cli_mpi_stop(void);

/* Runs scripts/SCRIPT NAME from the repository ($PROBMOE_ROOT or the working directory) and
 * puts the path it prints into location. Prints what went wrong (as `who`) and returns false. */
bool cli_fetch(const char *who, const char *script, const char *name, char *location, size_t capacity);

#endif
