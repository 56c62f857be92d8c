/* sprig's command-line tool with the CPU emulator (tests/emu) in place of the
 * CUDA device: scripts/gpu-check.sh --dry-run runs the GPU commands' plumbing
 * (tune, bench, bench-e2e, their files and tables) with it, so CI keeps that
 * script working. Every timing it prints is the emulator's and means nothing. */
#include "cli.h"
#include "exec_emu.h"

static sprig_status open_emulator(struct sp_exec **out, int device) {
    (void)device;
    return sp_exec_open_emu(out);
}

int main(int argc, char **argv) {
    cli_exec_open = open_emulator;
    return sprig_cli_main(argc, argv);
}
