/* The emulator as an sp_exec (see exec/sp_exec.h): "device" memory is host
 * memory, plans compile with the host C++ compiler. Test-only. */
#ifndef SP_EXEC_EMU_H
#define SP_EXEC_EMU_H
#include "sp_exec.h"
#ifdef __cplusplus
extern "C" {
#endif
sprig_status sp_exec_open_emu(sp_exec **out);
/* The emulator module under a module this executor loaded (borrowed), for
 * tests of the emulator itself (emu_runtime.h). */
struct sp_emu_module *sp_exec_emu_module(sp_exec_module *m);
#ifdef __cplusplus
}
#endif
#endif
