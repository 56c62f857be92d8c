/* The CPU emulator of generated kernels (see sp_emu.h): compile a plan's
 * source with the host C++ compiler, then run its kernels with CUDA thread
 * semantics. "Device" memory is ordinary host memory. Test-only. */
#ifndef SP_EMU_RUNTIME_H
#define SP_EMU_RUNTIME_H

#include "sprig.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_emu_module sp_emu_module;

/* Compiles plan->source for the CPU and loads it. The caller owns *out
 * (sp_emu_module_free). SPRIG_E_COMPILE with the compiler's output on failure. */
sprig_status sp_emu_module_load(const sprig_plan *plan, sp_emu_module **out);
void sp_emu_module_free(sp_emu_module *mod);

/* Runs plan->kernels[0..n) in order, each over its whole grid, with the
 * cuLaunchKernel-style args. SPRIG_E_CUDA naming the kernel, CTA and thread on
 * a trap or a deadlock (divergent barrier or warp collective). */
sprig_status sp_emu_plan_launch(sp_emu_module *mod, const sprig_plan *plan, void **args);

#ifdef __cplusplus
}
#endif
#endif
