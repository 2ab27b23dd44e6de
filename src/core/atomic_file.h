/* Writing a file so that readers see either the old file or the complete new one, never a
 * partial one (a crash or a full disk mid-write leaves only a stray temporary file, which the
 * writer removes when it can). */
#ifndef PM_CORE_ATOMIC_FILE_H
#define PM_CORE_ATOMIC_FILE_H

#include <stdio.h>

typedef struct {
    FILE *file;           /* write the contents here */
    char temp_path[4096]; /* a unique name next to the final one */
    char final_path[4096];
} atomic_file;

/* Opens a temporary file in path's directory. 0 or a negative pm_status naming the path. */
int atomic_file_open(atomic_file *out, const char *path);
/* Flushes the contents to disk and renames the temporary file to the final path. On failure
 * the temporary file is removed. 0 or a negative pm_status. */
int atomic_file_commit(atomic_file *out);
/* Closes and removes the temporary file (after a write error, or to give up). */
void atomic_file_abort(atomic_file *out);

#endif
