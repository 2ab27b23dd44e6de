/* probmoe tokenizer encode / decode: text to ids and back, one input line per output line,
 * with any tokenizer probmoe loads (tokenizer.json, a directory, GPT-2's files). */
#define _POSIX_C_SOURCE 200809L /* getline */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/error.h"
#include "core/utf8.h"
#include "tokenizer/tokenizer.h"

static const char encode_usage[] =
    "usage: probmoe tokenizer encode --tokenizer FILE [--json] [TEXT_FILE...]\n"
    "\n"
    "Encodes each line of the text files (or of standard input) and prints its token ids on one\n"
    "line, separated by spaces. The line's newline is not part of the text. Added tokens written\n"
    "in the text (<|endoftext|>, <s>, ...) give their ids; nothing is added around a line (as\n"
    "Hugging Face's encode with add_special_tokens=False).\n"
    "\n"
    "  --tokenizer FILE  tokenizer.json, or a directory holding it or GPT-2's encoder.json and vocab.bpe\n"
    "  --json            print each line's ids as a JSON array\n";

static const char decode_usage[] =
    "usage: probmoe tokenizer decode --tokenizer FILE [--json] [IDS_FILE...]\n"
    "\n"
    "Decodes each line of token ids (separated by spaces or commas, or a JSON array) of the\n"
    "files (or of standard input) and prints the text on one line.\n"
    "\n"
    "  --tokenizer FILE  tokenizer.json, or a directory holding it or GPT-2's encoder.json and vocab.bpe\n"
    "  --json            print each text as a JSON string (so newlines in it stay on one line;\n"
    "                    bytes that are not valid UTF-8 become U+FFFD)\n";

typedef struct {
    const char *tokenizer;
    bool json;
    const char **files;
    int file_count;
} codec_options;

static int parse_codec_options(int argc, char **argv, const char *usage, codec_options *opt) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0) {
            fputs(usage, stdout);
            return -1;
        } else if (strcmp(arg, "--json") == 0) {
            opt->json = true;
        } else if (strcmp(arg, "--tokenizer") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: --tokenizer needs a file name\n", cli_command());
                return 2;
            }
            opt->tokenizer = argv[++i];
        } else if (arg[0] == '-' && arg[1] != '\0') {
            fprintf(stderr, "%s: unknown option '%s'\n\n%s", cli_command(), arg, usage);
            return 2;
        } else {
            opt->files[opt->file_count++] = arg;
        }
    }
    if (!opt->tokenizer) {
        fprintf(stderr, "%s: give the tokenizer with --tokenizer FILE (see '%s --help')\n", cli_command(), cli_command());
        return 2;
    }
    return 0;
}

typedef int (*line_handler)(const tokenizer *tok, bool json, const char *name, long line_number, char *line,
                            size_t length);

/* Calls handle on every line of the files (or standard input), without the '\n'. */
static int for_each_line(const tokenizer *tok, const codec_options *opt, line_handler handle) {
    const int inputs = opt->file_count ? opt->file_count : 1;
    char *line = NULL;
    size_t capacity = 0;
    int status = 0;
    for (int f = 0; f < inputs && !status; f++) {
        const char *name = opt->file_count ? opt->files[f] : "standard input";
        FILE *in = opt->file_count && strcmp(opt->files[f], "-") != 0 ? fopen(name, "rb") : stdin;
        if (!in) {
            fprintf(stderr, "%s: cannot open %s: %s\n", cli_command(), name, strerror(errno));
            status = 1;
            break;
        }
        ssize_t got;
        for (long number = 1; !status && (got = getline(&line, &capacity, in)) >= 0; number++) {
            size_t length = (size_t)got;
            if (length && line[length - 1] == '\n') line[--length] = '\0';
            status = handle(tok, opt->json, name, number, line, length);
        }
        if (!status && ferror(in)) {
            fprintf(stderr, "%s: cannot read %s\n", cli_command(), name);
            status = 1;
        }
        if (in != stdin) fclose(in);
    }
    free(line);
    if (!status && fflush(stdout) != 0) {
        fprintf(stderr, "%s: cannot write the output: %s\n", cli_command(), strerror(errno));
        status = 1;
    }
    return status;
}

static int encode_line(const tokenizer *tok, bool json, const char *name, long number, char *line, size_t length) {
    static int32_t *ids;
    static size_t capacity;
    int64_t n = tok->encode(tok, line, length, ids, capacity);
    if (n > (int64_t)capacity) {
        free(ids);
        capacity = (size_t)n;
        ids = malloc(capacity * sizeof *ids);
        n = ids ? tok->encode(tok, line, length, ids, capacity) : pm_fail(PM_ERR_NOMEM, "out of memory");
    }
    if (n < 0) {
        fprintf(stderr, "%s: %s line %ld: %s\n", cli_command(), name, number, pm_last_error());
        return 1;
    }
    if (json) putchar('[');
    for (int64_t i = 0; i < n; i++) printf(i ? (json ? ",%d" : " %d") : "%d", ids[i]);
    fputs(json ? "]\n" : "\n", stdout);
    return 0;
}

/* The ids of one line: numbers separated by spaces or commas, optionally in [ ]. */
static int parse_ids(const char *name, long number, char *line, int32_t **ids, size_t *count, size_t *capacity) {
    *count = 0;
    char *at = line;
    while (*at == ' ' || *at == '\t') at++;
    const bool bracketed = *at == '[';
    if (bracketed) at++;
    for (;;) {
        while (*at == ' ' || *at == '\t' || *at == ',' || *at == '\r') at++;
        if (*at == '\0' || (bracketed && *at == ']')) break;
        char *end;
        errno = 0;
        const long value = strtol(at, &end, 10);
        if (end == at || errno || value < 0 || value > INT32_MAX || (*end && !strchr(" \t,\r]", *end))) {
            size_t word = strcspn(at, " \t,\r]");
            fprintf(stderr, "%s: %s line %ld: '%.*s' is not a token id (ids are whole numbers from 0)\n", cli_command(),
                    name, number, (int)(word > 40 ? 40 : word), at);
            return 1;
        }
        if (*count == *capacity) {
            const size_t grown_capacity = *capacity ? 2 * *capacity : 256;
            int32_t *grown = realloc(*ids, grown_capacity * sizeof *grown);
            if (!grown) {
                fprintf(stderr, "%s: out of memory\n", cli_command());
                return 1;
            }
            *ids = grown;
            *capacity = grown_capacity;
        }
        (*ids)[(*count)++] = (int32_t)value;
        at = end;
    }
    return 0;
}

/* Writes text as a JSON string; bytes outside valid UTF-8 become U+FFFD. */
static void print_json_string(const char *text, size_t length) {
    putchar('"');
    for (size_t at = 0; at < length;) {
        const size_t bad = at + utf8_invalid_at((const unsigned char *)text + at, length - at);
        for (; at < bad; at++) {
            const unsigned char c = (unsigned char)text[at];
            if (c == '"' || c == '\\') printf("\\%c", c);
            else if (c == '\n') fputs("\\n", stdout);
            else if (c == '\t') fputs("\\t", stdout);
            else if (c == '\r') fputs("\\r", stdout);
            else if (c < 0x20) printf("\\u%04x", c);
            else putchar(c);
        }
        if (at < length) {
            fputs("\\ufffd", stdout);
            at++;
        }
    }
    fputs("\"\n", stdout);
}

static int decode_line(const tokenizer *tok, bool json, const char *name, long number, char *line, size_t length) {
    (void)length;
    static int32_t *ids;
    static size_t capacity;
    static char *text;
    static size_t text_capacity;
    size_t count;
    if (parse_ids(name, number, line, &ids, &count, &capacity)) return 1;
    int64_t n = tokenizer_decode(tok, ids, count, text, text_capacity);
    if (n > (int64_t)text_capacity) {
        free(text);
        text_capacity = (size_t)n;
        text = malloc(text_capacity);
        n = text ? tokenizer_decode(tok, ids, count, text, text_capacity) : pm_fail(PM_ERR_NOMEM, "out of memory");
    }
    if (n < 0) {
        fprintf(stderr, "%s: %s line %ld: %s\n", cli_command(), name, number, pm_last_error());
        return 1;
    }
    if (json) {
        print_json_string(text, (size_t)n);
    } else {
        fwrite(text, 1, (size_t)n, stdout);
        putchar('\n');
    }
    return 0;
}

static int run_codec(int argc, char **argv, const char *usage, line_handler handle) {
    codec_options opt = {.files = malloc((size_t)argc * sizeof(const char *))};
    if (!opt.files) {
        fprintf(stderr, "%s: out of memory\n", cli_command());
        return 1;
    }
    int status = parse_codec_options(argc, argv, usage, &opt);
    tokenizer *tok = NULL;
    if (status == 0 && tokenizer_load(opt.tokenizer, &tok) < 0) {
        fprintf(stderr, "%s: %s\n", cli_command(), pm_last_error());
        status = 1;
    }
    if (status == 0) status = for_each_line(tok, &opt, handle);
    tokenizer_free(tok);
    free(opt.files);
    return status < 0 ? 0 : status;
}

int cmd_tokenizer_encode(int argc, char **argv) {
    return run_codec(argc, argv, encode_usage, encode_line);
}

int cmd_tokenizer_decode(int argc, char **argv) {
    return run_codec(argc, argv, decode_usage, decode_line);
}
