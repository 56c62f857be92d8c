#include <stdio.h>
#include "cli.h"
int cmd_compile(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "sprig compile: not built yet\n"); return 1; }
