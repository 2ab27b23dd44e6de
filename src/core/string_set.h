/* A set of strings, to tell whether a text was seen before. It stores the caller's pointers,
 * not copies: every added string must outlive the set. */
#ifndef PM_CORE_STRING_SET_H
#define PM_CORE_STRING_SET_H

#include <stddef.h>

typedef struct {
    const char **slots; /* open addressing; NULL marks a free slot */
    size_t mask;        /* slot count - 1 (a power of two) */
    size_t count;
} string_set;

/* An empty set sized for about `expected` strings (it grows past that). 0 or PM_ERR_NOMEM. */
int string_set_init(string_set *set, size_t expected);
/* Adds text unless an equal string is in the set: 1 if added, 0 if already there, or
 * PM_ERR_NOMEM. */
int string_set_add(string_set *set, const char *text);
void string_set_free(string_set *set);

#endif
