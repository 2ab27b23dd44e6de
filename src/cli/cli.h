/* The probmoe command: one function per subcommand, and small argument helpers. */
#ifndef PM_CLI_H
#define PM_CLI_H

#include <stdbool.h>
#include <stddef.h>

/* Each returns the process exit code: 0 on success, 1 on a runtime error, 2 on bad usage. */
int cmd_route(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_eval(int argc, char **argv);

/* Parses the value of option `name` as an int / float; prints an error and returns false. */
bool parse_int_option(const char *name, const char *text, int *value);
bool parse_float_option(const char *name, const char *text, float *value);

/* Runs scripts/SCRIPT NAME from the repository ($PROBMOE_ROOT or the working directory) and
 * puts the path it prints into location. Prints what went wrong (as `who`) and returns false. */
bool cli_fetch(const char *who, const char *script, const char *name, char *location, size_t capacity);

#endif
