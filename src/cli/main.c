/* probmoe: the command-line tool. Subcommands live in cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char usage[] =
    "usage: probmoe <command> [options]\n"
    "\n"
    "commands:\n"
    "  train      train a MoE language model on a text file\n"
    "  generate   continue a prompt with a trained model\n"
    "  compare    train every router on the same budget and write a report\n"
    "  eval       validation loss on token shards; GSM8K answer loss and exact match\n"
    "  data       prepare token shards from corpora and text files; generate arithmetic problems\n"
    "  tokenizer  learn a byte-level BPE vocabulary (tokenizer.json); encode text to ids and decode back\n"
    "  route      route token logits with any router and print experts, weights and load\n"
    "  info       describe a model from its config.json: layers, experts, router, parameters, memory\n"
    "  version    print the version\n"
    "\n"
    "Run 'probmoe <command> --help' for a command's options.\n";

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("probmoe 0.1.0\n");
        return 0;
    }
    const struct {
        const char *name, *in_messages;
        int (*run)(int argc, char **argv);
    } commands[] = {
        {"route", "probmoe route", cmd_route},          {"train", "probmoe train", cmd_train},
        {"generate", "probmoe generate", cmd_generate}, {"compare", "probmoe compare", cmd_compare},
        {"eval", "probmoe eval", cmd_eval},             {"data", "probmoe data", cmd_data},
        {"tokenizer", "probmoe tokenizer", cmd_tokenizer}, {"info", "probmoe info", cmd_info},
    };
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) {
            cli_set_command(commands[i].in_messages);
            return commands[i].run(argc - 1, argv + 1);
        }
    fprintf(stderr, "probmoe: unknown command '%s'\n\n%s", argv[1], usage);
    return 2;
}
