/* The emulator as an sp_exec (see runtime/sp_exec.h): "device" memory is host
 * memory, plans compile with the host C++ compiler. Test-only. */
#ifndef SP_EXEC_EMU_H
#define SP_EXEC_EMU_H
#include "sp_exec.h"
#ifdef __cplusplus
extern "C" {
#endif
sprig_status sp_exec_open_emu(sp_exec **out);
#ifdef __cplusplus
}
#endif
#endif
