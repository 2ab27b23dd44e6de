/* Data the commands fetch with the repository's scripts (scripts/fetch_data.sh,
 * scripts/fetch_npm.sh): the CLI, not the library, runs them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"

enum { ROOT_BYTES = 4096 };

/* The repository holding scripts/: $PROBMOE_ROOT, else the working directory. */
static bool find_root(const char *script, char *root, size_t capacity) {
    const char *env = getenv("PROBMOE_ROOT");
    snprintf(root, capacity, "%s", env && *env ? env : ".");
    char path[ROOT_BYTES + 64];
    snprintf(path, sizeof path, "%s/scripts/%s", root, script);
    return access(path, X_OK) == 0;
}

/* Appends text to command quoted for the shell: '...' with each ' written as '\''. */
static void append_quoted(char *command, size_t capacity, const char *text) {
    size_t length = strlen(command);
    if (length + 1 < capacity) command[length++] = '\'';
    for (const char *c = text; *c && length + 5 < capacity; c++) {
        if (*c == '\'') {
            memcpy(command + length, "'\\''", 4);
            length += 4;
        } else {
            command[length++] = *c;
        }
    }
    if (length + 2 < capacity) command[length++] = '\'';
    if (length + 1 < capacity) command[length++] = ' ';
    command[length] = '\0';
}

bool cli_fetch(const char *who, const char *script, const char *name, char *location, size_t capacity) {
    char root[ROOT_BYTES], command[3 * ROOT_BYTES] = "", output[ROOT_BYTES / 2] = "";
    if (!find_root(script, root, sizeof root)) {
        fprintf(stderr, "%s: cannot find scripts/%s to fetch '%s': run from the probmoe repository or "
                "set PROBMOE_ROOT to it\n", who, script, name);
        return false;
    }
    char path[ROOT_BYTES + 64];
    snprintf(path, sizeof path, "%s/scripts/%s", root, script);
    append_quoted(command, sizeof command, path);
    append_quoted(command, sizeof command, name);
    fflush(stdout);
    FILE *pipe = popen(command, "r");
    if (!pipe) {
        fprintf(stderr, "%s: cannot run %s\n", who, path);
        return false;
    }
    /* the scripts print the path as their last line */
    while (fgets(output, sizeof output, pipe) && strchr(output, '\n')) continue;
    int status = pclose(pipe);
    output[strcspn(output, "\r\n")] = '\0';
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || output[0] == '\0') {
        fprintf(stderr, "%s: %s %s failed (see above)\n", who, path, name);
        return false;
    }
    /* relative to the root; without PROBMOE_ROOT the root is the working directory */
    int length = output[0] == '/' || strcmp(root, ".") == 0 ? snprintf(location, capacity, "%s", output)
                                  : snprintf(location, capacity, "%s/%s", root, output);
    if (length < 0 || (size_t)length >= capacity) {
        fprintf(stderr, "%s: the path of '%s' is too long\n", who, name);
        return false;
    }
    return true;
}
