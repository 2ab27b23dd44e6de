#include <stdio.h>
#include <string.h>

#include "probmoe.h"

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("probmoe 0.1.0\n");
        return 0;
    }
    fprintf(stderr, "usage: probmoe --version\n");
    return 2;
}
