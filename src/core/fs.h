/* Small file-system helpers. */
#ifndef PM_CORE_FS_H
#define PM_CORE_FS_H

/* Creates dir and any missing parents (like mkdir -p). 0 or a negative pm_status. */
int ensure_directory(const char *dir);

#endif
