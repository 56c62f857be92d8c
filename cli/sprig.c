/* The sprig executable: the command-line tool of cli/main.c. (A test build
 * links the same commands with its own main: tests/sprig_emu_cli.c.) */
#include "cli.h"

int main(int argc, char **argv) { return sprig_cli_main(argc, argv); }
