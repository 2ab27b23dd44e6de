#define _POSIX_C_SOURCE 200809L /* sysconf */
#include "core/memory.h"

#include <stdio.h>
#include <unistd.h>

#include "probmoe.h"

const char *memory_format(uint64_t bytes, char *out, size_t size) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes == UINT64_MAX) {
        snprintf(out, size, "more than 16 EiB");
        return out;
    }
    double value = (double)bytes;
    int unit = 0;
    while (value >= 1024.0 && unit < 6) value /= 1024.0, unit++;
    if (unit == 0) snprintf(out, size, "%llu B", (unsigned long long)bytes);
    else snprintf(out, size, "%.1f %s", value, units[unit]);
    return out;
}

/* A cgroup's memory limit from one of its files ("max" or bytes); 0 if none or unreadable. */
static uint64_t cgroup_limit(const char *path) {
    FILE *file = fopen(path, "r");
    if (!file) return 0;
    unsigned long long limit = 0;
    if (fscanf(file, "%llu", &limit) != 1) limit = 0; /* "max": no limit */
    fclose(file);
    return (uint64_t)limit;
}

uint64_t machine_memory_bytes(const char **source) {
    const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
    uint64_t memory = pages > 0 && page_size > 0 ? sat_mul((uint64_t)pages, (uint64_t)page_size) : 0;
    if (source) *source = "physical memory";
    /* a container's limit (cgroup v2, else v1) is all this process can have */
    const char *const limits[] = {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"};
    for (int i = 0; i < 2; i++) {
        const uint64_t limit = cgroup_limit(limits[i]);
        if (limit > 0 && (memory == 0 || limit < memory)) {
            memory = limit;
            if (source) *source = "the container's memory limit";
        }
    }
    return memory;
}

uint64_t pm_machine_memory(void) { return machine_memory_bytes(NULL); }
