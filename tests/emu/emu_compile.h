/* Compiling an emulated module: the host C++ compiler, and a cache of what it
 * built keyed by the source, the flags, sp_emu.h and the compiler. Test-only. */
#ifndef SP_EMU_COMPILE_H
#define SP_EMU_COMPILE_H

#include <string>

#include "sprig.h"

/* Builds `text` (a whole translation unit, sp_emu.h force-included) into
 * dir/kernel.so; dir/kernel.cpp holds the text. From the cache when it has
 * the same build: $SPRIG_EMU_CACHE_DIR, else $XDG_CACHE_HOME/sprig/emu, else
 * ~/.cache/sprig/emu; SPRIG_EMU_CACHE_DIR="" turns it off. SPRIG_E_COMPILE with the compiler's
 * output on failure. */
sprig_status sp_emu_compile(const std::string &text, const std::string &dir, std::string *so_path);

/* Reads path whole into *out; false if it cannot be opened or read. */
bool sp_emu_read_file(const std::string &path, std::string *out);

/* Runs a shell command; its output (stdout and stderr) and exit status. */
std::string sp_emu_run_capture(const std::string &cmd, int *rc);

#endif
