/*
 * What the checkpoint writer, loader and pruner share: the names around a checkpoint
 * directory and small file-system steps that report errors through pm_fail.
 *
 * Siblings of a checkpoint directory DIR (same parent, so renames stay atomic):
 *   DIR.tmp-<pid>   a save in progress (or a crashed one): never loaded
 *   DIR.old-<pid>   the previous DIR, renamed aside just before the new one takes its name
 *   DIR.del-<pid>   a directory being removed (renamed first so it vanishes atomically)
 */
#ifndef PM_IO_CHECKPOINT_INTERNAL_H
#define PM_IO_CHECKPOINT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

enum { CKPT_PATH_MAX = 4096 };

typedef struct {
    char dir[CKPT_PATH_MAX];    /* DIR without trailing slashes */
    char parent[CKPT_PATH_MAX]; /* "." when DIR has no slash */
    const char *base;           /* DIR's last component (points into dir) */
} ckpt_path;

/* Splits dir; refuses "", "/", "." and "..", which name no directory that could be replaced. */
int ckpt_path_init(ckpt_path *out, const char *dir);
/* DIR.<kind>-<pid>. */
int ckpt_sibling(const ckpt_path *path, const char *kind, long pid, char *out, size_t size);
/* dir/file. */
int ckpt_join(char *out, size_t size, const char *dir, const char *file);

/* Writes data to path and fsyncs it. */
int ckpt_write_file(const char *path, const void *data, size_t size);
/* Copies a file, fsyncing the copy. */
int ckpt_copy_file(const char *from, const char *to);
/* fsyncs a file (written by someone else, e.g. st_writer_write) or a directory. */
int ckpt_sync(const char *path, bool directory);
/* A whole text file, NUL-terminated (free() it); larger than max_bytes is an error. */
int ckpt_read_text(const char *path, size_t max_bytes, char **out);
/* Unlinks every entry of dir, then dir itself. Never recurses: a subdirectory is an error
 * (checkpoint directories are flat, so one means dir is not what we think it is). */
int ckpt_remove_flat(const char *dir);

/* Removes the siblings left by saves that no longer run (tmp-/del- of a dead process or of
 * this one) and, if remove_old, every DIR.old-*. */
int ckpt_sweep(const ckpt_path *path, bool remove_old);
/* Renames path to trash, then removes it: a crash midway never leaves a half-deleted
 * directory under a name that loaders use. */
int ckpt_discard(const char *path, const char *trash);

/* The directory to read a checkpoint from: DIR, or after a crash between the two renames
 * of a save (DIR missing), the complete DIR.old-* that the save had renamed aside. */
int ckpt_resolve(const char *dir, char *out, size_t size);

/* config.json's text with "chat_format": name in its "probmoe" object (frees config; NULL when
 * out of memory). */
char *ckpt_config_with_chat_format(char *config, const char *name);

#endif
