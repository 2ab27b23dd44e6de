#define _POSIX_C_SOURCE 200809L /* isatty, fileno, clock_gettime */
/* probmoe tokenizer train: learns a byte-level BPE vocabulary from text files and writes a
 * tokenizer.json for training and generation; encode and decode are in cmd_tokenizer_codec.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "tokenizer/bpe_train.h"
#include "probmoe.h"

static const char tokenizer_usage[] =
    "usage: probmoe tokenizer train --vocab-size N --out FILE CORPUS...\n"
    "       probmoe tokenizer encode --tokenizer FILE [--json] [TEXT_FILE...]   (text lines to ids)\n"
    "       probmoe tokenizer decode --tokenizer FILE [--json] [IDS_FILE...]    (ids to text lines)\n"
    "\n"
    "Learns a byte-level BPE vocabulary from UTF-8 text files (split into pieces by GPT-2's\n"
    "pre-tokenizer, then merging the most frequent pair of tokens again and again) and writes it\n"
    "as a Hugging Face tokenizer.json. Ids 0-255 are the bytes, then one token per merge, and\n"
    "the last id is <|endoftext|>. The same corpus always gives the same file.\n"
    "\n"
    "  --vocab-size N   tokens in all, <|endoftext|> included (%d to %d)\n"
    "  --out FILE       the tokenizer.json to write (replaced only once it is complete)\n";

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    double last;
    int shown;
} progress_line;

/* Redraws one status line on the terminal, at most ten times a second. */
static void show_progress(void *user, const char *phase, int64_t done, int64_t total) {
    progress_line *line = user;
    const double now = now_seconds();
    if (now - line->last < 0.1 && done < total) return;
    line->last = now;
    line->shown = 1;
    if (strcmp(phase, "reading") == 0)
        fprintf(stderr, "\rreading the corpus: %5.1f%% of %.1f MB      ", total ? 100.0 * (double)done / (double)total : 100.0,
                (double)total / 1e6);
    else
        fprintf(stderr, "\rlearning merges: %lld of %lld              ", (long long)done, (long long)total);
    fflush(stderr);
}

/* A missing or mistyped argument: the message, and where to read more. */
static void usage_error(const char *message) {
    fprintf(stderr, "probmoe tokenizer train: %s (see 'probmoe tokenizer train --help')\n", message);
}

typedef struct {
    int vocab_size;
    const char *out;
    const char **files; /* room for argc names */
    int file_count;
} train_options;

/* Returns 0 to go on, or the exit code to stop with (-1: stop with 0, after --help). */
static int parse_train_options(int argc, char **argv, train_options *opt) {
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            opt->files[opt->file_count++] = arg;
        } else if (strcmp(arg, "--") == 0) {
            options_done = true;
        } else if (strcmp(arg, "--help") == 0) {
            printf(tokenizer_usage, BPE_TRAIN_MIN_VOCAB, BPE_TRAIN_MAX_VOCAB);
            return -1;
        } else if (strcmp(arg, "--vocab-size") == 0) {
            if (!parse_int_flag(arg, i + 1 < argc ? argv[++i] : NULL, BPE_TRAIN_MIN_VOCAB, BPE_TRAIN_MAX_VOCAB,
                                &opt->vocab_size))
                return 2;
        } else if (strcmp(arg, "--out") == 0) {
            if (i + 1 >= argc) {
                usage_error("--out needs a file name");
                return 2;
            }
            opt->out = argv[++i];
        } else {
            fprintf(stderr, "probmoe tokenizer train: unknown option '%s'\n\n", arg);
            fprintf(stderr, tokenizer_usage, BPE_TRAIN_MIN_VOCAB, BPE_TRAIN_MAX_VOCAB);
            return 2;
        }
    }
    if (opt->vocab_size == 0) {
        usage_error("give the vocabulary size with --vocab-size N");
        return 2;
    }
    if (!opt->out) {
        usage_error("give the file to write with --out FILE");
        return 2;
    }
    if (opt->file_count == 0) {
        usage_error("give at least one corpus file");
        return 2;
    }
    return 0;
}

static int train(const train_options *opt) {
    progress_line line = {0};
    bpe_train_stats stats;
    const int status = bpe_train_with_progress(opt->files, opt->file_count, opt->vocab_size, opt->out, &stats,
                                               isatty(fileno(stderr)) ? show_progress : NULL, &line);
    if (line.shown) fputc('\n', stderr);
    if (status < 0) {
        fprintf(stderr, "probmoe tokenizer train: %s\n", pm_last_error());
        return 1;
    }
    if (stats.vocab_size < opt->vocab_size)
        fprintf(stderr, "probmoe tokenizer train: note: the corpus ran out of pairs to merge after %d merges, so "
                "the vocabulary has %d tokens, not %d\n", stats.merges, stats.vocab_size, opt->vocab_size);
    printf("wrote %s: %d tokens (%d merges; <|endoftext|> is id %d)\n", opt->out, stats.vocab_size, stats.merges,
           stats.vocab_size - 1);
    printf("corpus: %.2f MB in %d file%s, %lld pieces (%lld distinct); %.2f s\n", (double)stats.bytes / 1e6,
           opt->file_count, opt->file_count == 1 ? "" : "s", (long long)stats.pieces,
           (long long)stats.distinct_pieces, stats.seconds);
    return 0;
}

static int cmd_tokenizer_train(int argc, char **argv) {
    train_options opt = {.files = malloc((size_t)argc * sizeof(const char *))};
    if (!opt.files) {
        fputs("probmoe tokenizer train: out of memory\n", stderr);
        return 1;
    }
    int status = parse_train_options(argc, argv, &opt);
    if (status == 0) status = train(&opt);
    free(opt.files);
    return status < 0 ? 0 : status;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "train") == 0) {
        cli_set_command("probmoe tokenizer train");
        return cmd_tokenizer_train(argc - 1, argv + 1);
    }
    if (argc >= 2 && strcmp(argv[1], "encode") == 0) {
        cli_set_command("probmoe tokenizer encode");
        return cmd_tokenizer_encode(argc - 1, argv + 1);
    }
    if (argc >= 2 && strcmp(argv[1], "decode") == 0) {
        cli_set_command("probmoe tokenizer decode");
        return cmd_tokenizer_decode(argc - 1, argv + 1);
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)) {
        printf(tokenizer_usage, BPE_TRAIN_MIN_VOCAB, BPE_TRAIN_MAX_VOCAB);
        return 0;
    }
    if (argc < 2) fputs("probmoe tokenizer: give a subcommand (train, encode, decode)\n\n", stderr);
    else fprintf(stderr, "probmoe tokenizer: unknown subcommand '%s'\n\n", argv[1]);
    fprintf(stderr, tokenizer_usage, BPE_TRAIN_MIN_VOCAB, BPE_TRAIN_MAX_VOCAB);
    return 2;
}
